"""The subjects of a run and their data. A single-subject run is a group of one.

Where each member's files are: a subject of one is read from the data folder itself; a member of a group is read from
the data folder when its sbj_<N>.npz lies there (the GOD layout: every subject beside one stimulus file), else from the
one folder below it that holds sbj_<N>.npz (convert-nsd's `nsd_subjNN/`, one stimulus file per subject).

Whether the members must have seen the same images: subjects who read one stimulus file did (GOD); members from
different folders whose stimulus files record NSD 73k ids (`train_nsd_ids`, written by convert-nsd) need not (each
trains on its own pairs; the common test images are recorded); members from different folders without source ids must
hold the same training images, checked by content (a sha256 of the pixels), never by name or size.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

import brainrecon.data.layout as layout
from brainrecon.config import DataConfig
from brainrecon.data.datasets import PairedData, load_paired, stimulus_path
from brainrecon.errors import DataError

ID_KEYS = ("train_nsd_ids", "test_nsd_ids")


def member_dir(root: Path, subject: int) -> Path:
    """The folder holding subject `subject`'s sbj_<N>.npz: `root` itself, or the one folder below it that does."""
    root = Path(root)
    if layout.subject_file(root, subject).is_file():
        return root
    found = sorted(p.parent for p in root.glob(f"*/sbj_{subject}.npz"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(f"{layout.subject_file(root, subject)}: missing, and no folder in {root} holds "
                        f"sbj_{subject}.npz; convert subject {subject} into it (convert-god, convert-nsd --out "
                        f"{root}/nsd_subj{subject:02d}) or drop {subject} from --subjects")
    raise DataError(f"{root}: {len(found)} folders hold sbj_{subject}.npz ({', '.join(p.name for p in found)}); keep "
                    "one per subject under the data folder")


def source_ids(root: Path, resolution: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(training, test) NSD 73k ids of a data folder's stimuli, when its images_<res>.npz records them; else None."""
    path = layout.stimuli_file(root, resolution)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        if not all(k in z.files for k in ID_KEYS):
            return None
        return z[ID_KEYS[0]].astype(np.int64), z[ID_KEYS[1]].astype(np.int64)


def images_sha256(path: Path) -> str:
    """A hash of a stimulus file's training and test pixels (its content, whatever its name or compression)."""
    h = hashlib.sha256()
    with np.load(path, allow_pickle=False) as z:
        for key in ("train_images", "test_images"):
            a = np.ascontiguousarray(z[key])
            h.update(f"{key}:{a.dtype}:{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()[:16]


@dataclass
class Members:
    """Every subject's training data (in --subjects order) and how their stimuli relate."""
    data: dict[int, PairedData]
    roots: dict[int, Path]
    shared_stimuli: bool
    """True: every member saw the same training images (GOD); False: each its own (NSD)."""
    stimuli: dict
    """For checkpoints and metrics.json: each member's stimulus file and identity, and the test images in common."""

    @property
    def single(self) -> bool:
        return len(self.data) == 1

    @property
    def n_rows(self) -> int:
        """The largest member's training rows: an epoch's batches are drawn over this many."""
        return max(len(d.train_images) for d in self.data.values())

    @property
    def has_val(self) -> bool:
        return all(len(d.val_images) > 0 for d in self.data.values())

    def files(self) -> list[Path]:
        """Every data file the members read, each once."""
        return list(dict.fromkeys(f for d in self.data.values() for f in d.files))

    def rows(self, idx, subject: int):
        """A batch's rows in `subject`'s training pairs: the shuffled indices over the largest member's rows, wrapped
        onto this member's count (unchanged where it has the most)."""
        n = len(self.data[subject].train_images)
        return idx if n == self.n_rows else idx % n


def load_members(root: Path, cfg: DataConfig, modality: str, seed: int = 0, device="cpu") -> Members:
    """`cfg.subjects` (or the one `cfg.subject`) with their training data, each under data.pairs drawn from its own
    stimuli; a group of subjects who must share their images and do not is refused in one line."""
    root = Path(root)
    subjects = list(cfg.subjects) or [cfg.subject]
    roots = {s: member_dir(root, s) for s in subjects} if len(subjects) > 1 else {subjects[0]: root}
    ids = {s: source_ids(roots[s], cfg.resolution) for s in subjects}
    stimulus = {s: stimulus_path(roots[s], modality, cfg.resolution) for s in subjects}
    one_file = len({p.resolve() for p in stimulus.values()}) == 1
    shared = one_file or not all(i is not None for i in ids.values())
    data = {}
    for s in subjects:       # members of one stimulus set validate on the first member's validation images
        held = data[subjects[0]].subset.val_stimuli if data and shared else None
        data[s] = load_paired(roots[s], replace(cfg, subject=s, subjects=[]), modality, seed, device, held)
        if ids[s] is not None:
            data[s].subset.ids = ids[s][0]
    record = {"rule": ("one stimulus file" if one_file else "the same images, checked by content") if shared else
              "each subject its own images (NSD 73k ids)", "subjects": {}}
    first, hashes = subjects[0], {}
    for s in subjects:
        if len(subjects) > 1 and stimulus[s].resolve() not in hashes:
            hashes[stimulus[s].resolve()] = images_sha256(stimulus[s])
        entry = {"file": stimulus[s].name, "folder": str(roots[s].resolve()),
                 "sha256": hashes.get(stimulus[s].resolve())}
        if ids[s] is not None:
            entry["training_stimuli"] = int(len(np.unique(ids[s][0])))
        record["subjects"][str(s)] = entry
    if len(subjects) > 1 and shared:
        _check_shared(data, record, first, one_file)
    if len(subjects) > 1 and not shared:
        common = set(ids[first][1].tolist())
        for s in subjects[1:]:
            common &= set(ids[s][1].tolist())
        train_common = set(ids[first][0].tolist())
        for s in subjects[1:]:
            train_common &= set(ids[s][0].tolist())
        record["common_test_stimuli"] = len(common)
        record["common_training_stimuli"] = len(train_common)
    return Members(data=data, roots=roots, shared_stimuli=shared, stimuli=record)


def _check_shared(data: dict[int, PairedData], record: dict, first: int, one_file: bool) -> None:
    a = data[first]
    for s, d in data.items():
        if s == first:
            continue
        if not one_file and record["subjects"][str(s)]["sha256"] != record["subjects"][str(first)]["sha256"]:
            raise DataError(f"{d.files[0]}: subject {s}'s stimuli differ in content from subject {first}'s "
                            f"({a.files[0]}); a group from several folders must have seen the same images (or be "
                            "convert-nsd folders, which record their NSD ids): convert them from the same stimuli")
        if not np.array_equal(d.subset.stimuli, a.subset.stimuli):
            raise DataError(f"{d.files[1]}: subject {s} saw {d.subset.total_stimuli} training stimuli, not the "
                            f"{a.subset.total_stimuli} of subject {first} ({a.files[1].name}); a multi-subject run "
                            "needs subjects who saw the same images")

