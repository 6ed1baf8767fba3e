"""python -m benchmarks.cross_subject {study|report} OUT [SEEDS [ARMS [POINTS]]]: a new simulated subject from a group,
with the ablations that say why (docs/results.md, "A new subject from a group: the ablation study").

It runs on the few-pairs study's data, runner, budgets and selection (benchmarks/few_pairs.py) in its **standard**
regime, so its scratch arms (both cycles, pairs only, ridge, and both cycles on all pairs, the reference) are the
few-pairs study's own runs, shared, not rerun. Everything is inductive (`data.unpaired_fmri=train`, the group's
training included): no test fMRI of any subject is read in training.

- study [SEEDS [ARMS [POINTS]]]: for each seed (seed-major) one group model (encoder, then decoder; subjects 1-4 on
  all their pairs, training seed = the seed), the scratch reference (both cycles on all of subject 5's pairs), then
  at each POINT (default 1/8, 1/16, 1/4: the goal's point first) the first ARMS of RUN_ORDER (or their folder
  names). Every stage done in OUT is reused, so a study cut short resumes.
- report: scores -> OUT/cross_subject.csv, OUT/cross_subject_pairs.csv, OUT/cross_subject.png,
  OUT/cross_subject_tables.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.few_pairs import (
    BUDGET,
    GROUP,
    NEW,
    arm_folder,
    cycle_encoder,
    data_dir,
    encoder_name,
    epochs,
    group_encoder,
    label,
    point_sets,
    recon,
    train,
)

REGIME = "standard"
POINTS = (1 / 8, 1 / 16, 1 / 4)
REFERENCE = "scratch, all pairs (reference)"
# the initialisation alone: one step at lr 1e-12 (the decoder normalises with GroupNorm, which keeps no running
# statistics, so its weights stay the adapted initialisation's to within 1e-12 of a step)
NO_FINE_TUNING = ["train.self_supervision=false", "train.epochs=1", "train.milestones=[]",
                  "train.steps_per_epoch=1", "train.lr=1e-12"]
# arm -> (decoder settings, the encoder behind its cycles ('own', 'group': adapted from the group's, None), whether
# the decoder starts from the group's decoder (--init-from))
ARMS = {
    "adapted, both cycles": ([], "group", True),
    "adapted, pairs only": (["train.self_supervision=false"], None, True),
    "adapted, no fine-tuning": (NO_FINE_TUNING, None, True),
    "both cycles, encoder adapted from a group": ([], "group", False),   # adapted encoder, scratch decoder
    "scratch encoder, adapted decoder": ([], "own", True),
    "both cycles": ([], "own", False),                                     # scratch, self-supervised
    "pairs only": (["train.self_supervision=false"], None, False),
    "ridge": (["model.kind=ridge"], None, False),
}
RUN_ORDER = tuple(ARMS)
COMPARISONS = (("adapted, both cycles", REFERENCE), ("adapted, both cycles", "both cycles"),
               ("adapted, both cycles", "adapted, pairs only"), ("adapted, pairs only", "pairs only"),
               ("adapted, both cycles", "adapted, no fine-tuning"),
               ("adapted, both cycles", "both cycles, encoder adapted from a group"),
               ("adapted, both cycles", "scratch encoder, adapted decoder"), ("adapted, both cycles", "ridge"),
               ("both cycles", REFERENCE), ("both cycles", "pairs only"))
GOALS = {("adapted, both cycles", REFERENCE)}     # non-inferiority at the margin, every point


def group_decoder(data: Path, root: Path, seed: int) -> Path:
    """The group's self-supervised decoder (subjects 1-4, all pairs, training seed `seed`) through its encoder."""
    others = ",".join(str(s) for s in GROUP if s != NEW)
    return train("decoder", data, root / f"group_decoder_seed{seed}_e{BUDGET['decoder']}",
                 [f"data.subjects=[{others}]", f"train.seed={seed}", *epochs("decoder", BUDGET["decoder"])],
                 encoder_run=group_encoder(data, root, seed))


def run_arm(data: Path, root: Path, arm: str, point: float, seed: int) -> Path:
    """One arm at (point, seed): its encoder, its decoder (from the group's where the arm says), its reconstruction."""
    sets, which, adapted = ARMS[arm]
    enc = cycle_encoder(data, root, which, point, seed)
    init = [f"train.init_from={group_decoder(data, root, seed)}"] if adapted else []
    run = root / f"{label(point)}_seed{seed}" / arm_folder(arm)
    return recon(data, train("decoder", data, run, [*point_sets(point, seed), *epochs("decoder", BUDGET["decoder"]),
                                                    *sets, *init], **({"encoder_run": enc} if enc else {})))


def study(out: Path, n_seeds: int = 3, arms: tuple[str, ...] = RUN_ORDER, points: tuple[float, ...] = POINTS) -> None:
    data, root = data_dir(out, REGIME), out / REGIME / "study"
    for seed in range(n_seeds):
        run_arm(data, root, "both cycles", 0, seed)                       # the reference: scratch on all pairs
        for point in points:
            for arm in arms:
                run_arm(data, root, arm, point, seed)


def with_reference(scores: dict) -> dict:
    """The scores with the reference (both cycles on all pairs) also filed at every point, so that pair_rows pairs
    each point's arms with it (by seed and image)."""
    out = dict(scores)
    for (regime, arm, point, channel, metric), v in scores.items():
        if arm == "both cycles" and point == "all":
            for p in POINTS:
                out[(regime, REFERENCE, label(p), channel, metric)] = v
    return out


def report(out: Path) -> None:
    from benchmarks.few_pairs_plots import plot_arms
    from benchmarks.few_pairs_report import arm_rows, markdown, pair_rows, study_scores, write_csv
    scores, extra = study_scores(out, {arm_folder(a): a for a in ARMS}, {a: w for a, (_, w, _) in ARMS.items()},
                                 lambda point, seed, which: encoder_name(point, seed, BUDGET["encoder"], which=which))
    scores = {k: v for k, v in with_reference(scores).items() if k[0] == REGIME}
    arms, pairs = arm_rows(scores, extra), pair_rows(scores, COMPARISONS, GOALS, set())
    write_csv(out / "cross_subject.csv", arms)
    write_csv(out / "cross_subject_pairs.csv", pairs)
    colours = dict(zip([*ARMS, REFERENCE], ["tab:green", "tab:olive", "tab:grey", "tab:cyan", "tab:pink", "tab:blue",
                                            "tab:orange", "k", "tab:red"]))
    plot_arms(arms, out / "cross_subject.png", colours, "SIMULATED group, a new subject")
    (out / "cross_subject_tables.md").write_text(markdown(arms, pairs) + "\n")


if __name__ == "__main__":
    mode, out, *rest = sys.argv[1:]
    if mode == "study":
        n_arms = rest[1] if len(rest) > 1 else str(len(RUN_ORDER))
        arms = RUN_ORDER[:int(n_arms)] if n_arms.isdigit() else tuple(a for a in RUN_ORDER
                                                                       if arm_folder(a) in n_arms.split(","))
        points = tuple(1 / int(p.split("/")[1]) for p in rest[2].split(",")) if len(rest) > 2 else POINTS
        study(Path(out), int(rest[0]) if rest else 3, arms, points)
    elif mode == "report":
        report(Path(out))
    else:
        raise SystemExit(f"unknown mode {mode!r}; choose study or report")
