"""Fewer training pairs on request (`data.pairs`), and the validation split's floor (`data.val_min`).

A subset is of whole stimuli: every training row that shows a kept stimulus is kept, so a stimulus shown several times
(an NSD conversion) is never split between the kept and the dropped rows. The kept stimuli are the first N of one
seeded order of the stimulus indices: the same for every subject who saw the same stimulus set, and nested (the
stimuli of a smaller N lie inside those of a larger one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainrecon.atomic import write_text_atomic
from brainrecon.errors import UserError

ORDER_STREAM = 104_729  # the stimulus order's seed is train.seed + this: apart from the row shuffle of the val split


@dataclass
class PairSubset:
    rows: np.ndarray               # kept training rows, in file order
    stimuli: np.ndarray            # kept stimulus indices, sorted
    total_stimuli: int
    total_rows: int
    requested: float
    seed: int
    val_rows: int = 0
    val_rule: str = ""
    ids: np.ndarray | None = None  # the source id of each training stimulus (NSD 73k ids), when the data records them
    val_stimuli: np.ndarray | None = None  # the stimuli of the validation split (whole stimuli, never split)

    def record(self) -> dict:
        """For metrics.json: what was kept and how the validation split was made."""
        return {"requested": _show(self.requested), "stimuli": int(len(self.stimuli)),
                "of_stimuli": self.total_stimuli, "rows": int(len(self.rows)), "of_rows": self.total_rows,
                "seed": self.seed, "validation_rows": self.val_rows, "validation_rule": self.val_rule}

    def listing(self) -> dict:
        """For pairs.json: the record and every kept stimulus index (into the stimulus file's training images)."""
        ids = {"kept_ids": [int(self.ids[i]) for i in self.stimuli]} if self.ids is not None else {}
        held = [int(i) for i in self.val_stimuli] if self.val_stimuli is not None else []
        return {**self.record(), "kept_stimuli": [int(i) for i in self.stimuli], "validation_stimuli": held, **ids}


def listing_name(subject: int | None = None) -> str:
    """pairs.json of a single-subject run; pairs_subject<N>.json for each member of a multi-subject run."""
    return "pairs.json" if subject is None else f"pairs_subject{subject}.json"


def write_listing(run_dir: Path, subset: PairSubset, subject: int | None = None) -> None:
    """A run folder's listing of the kept stimuli and the validation rule (`listing_name`)."""
    write_text_atomic(Path(run_dir) / listing_name(subject), json.dumps(subset.listing(), indent=1))


def _show(pairs: float):
    return "all" if pairs == 0 else (int(pairs) if pairs >= 1 else float(pairs))


def stimulus_count(pairs: float, available: int, where: str = "data.pairs") -> int:
    """How many stimuli `pairs` asks for out of `available` (0: all); more than there are is refused."""
    if pairs == 0:
        return available
    n = int(pairs) if pairs >= 1 else max(1, int(round(pairs * available)))
    if n > available:
        raise UserError(f"{where} {_show(pairs)}: the training set has only {available} stimuli; ask for at most "
                        f"{available} (or a fraction in (0, 1))")
    return n


def keep_pairs(labels: np.ndarray, pairs: float, seed: int, where: str = "data.pairs") -> PairSubset:
    """The rows of a subject's training set (`labels`: the stimulus index of each row) that `pairs` keeps."""
    labels = np.asarray(labels)
    stimuli = np.unique(labels)
    n = stimulus_count(pairs, len(stimuli), where)
    order = np.random.default_rng(seed + ORDER_STREAM).permutation(stimuli)
    kept = np.sort(order[:n]) if pairs != 0 else stimuli
    rows = np.flatnonzero(np.isin(labels, kept))
    return PairSubset(rows=rows, stimuli=kept, total_stimuli=len(stimuli), total_rows=len(labels),
                      requested=pairs, seed=seed)


def validation_size(n: int, fraction: float, floor: int) -> tuple[int, str]:
    """(rows held out for model selection, the rule in words) for `n` kept rows: `fraction` of them, raised to `floor`
    when smaller; below 5 x floor rows the split ramps down to none at 3 x floor ((n - 3 floor) / 2 rows), and with
    none the last epoch is kept. The ramp leaves no jump: one more kept pair never means fewer training rows (a step
    from no split to a split of `floor` took 20 of 80 pairs at once)."""
    if fraction == 0:
        return 0, "no validation split (data.val_fraction 0)"
    share = int(round(fraction * n))
    if share >= floor:
        return share, f"{share} of {n} pairs ({fraction:.0%})"
    if n >= 5 * floor:
        return floor, f"{floor} of {n} pairs ({fraction:.0%} = {share} raised to the floor data.val_min {floor})"
    ramp = max(0, (n - 3 * floor) // 2)
    if ramp and floor:
        return ramp, (f"{ramp} of {n} pairs (the floor data.val_min {floor} ramped down below {5 * floor} pairs: "
                      f"(n - {3 * floor}) / 2)")
    return 0, (f"no validation split: {n} pairs, under {3 * floor + 2} (3 x the floor data.val_min {floor}); the "
               "last epoch is kept")