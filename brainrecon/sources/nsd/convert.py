"""convert-nsd: one NSD subject's files -> sbj_<N>.npz, images_<res>.npz and convert.json (the release formats).

The steps (the standard preparation of the reconstruction literature; ../shared/NSD.md in the project history):
1. Voxels: inside the nsdgeneral mask (or another roi/ volume named by --roi), in C order over the NIfTI (X, Y, Z)
   volume. The HDF5 betas are read as (trials, Z, Y, X), the reverse of the NIfTI order, and indexed accordingly.
2. Betas / 300 (percent signal change), then each voxel z-scored within each session over that session's trials
   (population std; a constant voxel becomes 0).
3. Trial t -> 73k id: subjectim[subject, masterordering[t]] (both 1-based). Test set: the shared 1000 (sharedix)
   seen at least --test-repeats times in the sessions used, their first --test-repeats trials (the rest dropped and
   listed); training: every other image, as single trials (--train trials) or each image's trials averaged
   (--train average).
4. ROI masks over the kept voxels from the label volumes, names read from their ctab files: V1 = V1v+V1d, V2, V3
   likewise, V4 = hV4, FFA = FFA-1+FFA-2, PPA, LOC (no NSD label: empty, recorded), LVC = V1+V2+V3, HVC = every
   floc-* label, VC = every kept voxel. An absent label file gives empty masks, recorded.
5. Noise ceiling: from ncsnr when present (ceiling of the --test-repeats average = sqrt(ncsnr^2 / (ncsnr^2 + 1/n)),
   SNR = ncsnr^2, the same quantities as release.noise_ceiling_from_repeats), else from the test repeats.
6. Repeat check: every trial's pattern is compared with the other presentations of its image in other sessions
   (correlations through a fixed random projection to 512 dimensions); a session whose trials are no closer to
   their repeats than to other images (z < 3) is refused as shuffled or from another session.
It streams: one block of one session's betas in memory at a time, images read from the brick one by one. Everything
is read and checked before the outputs appear; they are written to temp files and moved into place together.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainrecon.atomic import write_all_atomic, write_text_atomic
from brainrecon.config import ROIS
from brainrecon.data import layout
from brainrecon.data.npz_stream import NpzStream
from brainrecon.errors import DataError, UserError
from brainrecon.locks import hold_data
from brainrecon.sources.nsd import files
from brainrecon.sources.nsd.read import BetaSession, Brick, Design, read_ctab, read_expdesign, read_volume, require
from brainrecon.sources.photos import square_resize

DESIGN_SESSIONS = 40
"""nsd_expdesign's masterordering covers 40 sessions: trials per session = its length / 40 (750 in NSD)."""
ROI_LABELS = {"V1": ("prf-visualrois", ("V1v", "V1d")), "V2": ("prf-visualrois", ("V2v", "V2d")),
              "V3": ("prf-visualrois", ("V3v", "V3d")), "V4": ("prf-visualrois", ("hV4",)),
              "FFA": ("floc-faces", ("FFA-1", "FFA-2")), "PPA": ("floc-places", ("PPA",))}
PROJECTION_DIM, PROJECTION_SEED, REPEAT_Z_MIN, REPEAT_MIN_PAIRS = 512, 20220101, 3.0, 30
ZERO_VOXEL_LIMIT = 0.05
"""A session where more than this share of the mask's voxels are 0 in every trial is misaligned with the mask."""


@dataclass
class NsdOptions:
    subject: int
    nsd_dir: Path
    out: Path
    sessions: list[int] | None = None
    """None: every session whose betas file is present."""
    roi: str = "nsdgeneral"
    resolution: int = 112
    train: str = "trials"
    test_repeats: int = 3
    block: int = 50
    repeat_check: bool = True
    unpaired: int = 0
    """Brick images this subject never saw, written as PNGs to out/imagenet/val/nsd_unseen/ (the unpaired images of
    the self-supervised decoder: they come from the same distribution as the subject's own)."""

    def __post_init__(self):
        if self.train not in ("trials", "average"):
            raise UserError(f"--train {self.train!r}; choose trials or average")
        if not 1 <= self.test_repeats <= 3:
            raise UserError(f"--test-repeats {self.test_repeats} must lie in 1..3 (NSD shows each image 3 times)")
        if self.resolution < 16 or self.resolution % 8:
            raise UserError(f"--resolution {self.resolution} must be a multiple of 8, at least 16")


@dataclass
class Split:
    """Where each used trial goes, decided from the design alone before any beta is read."""
    trials: np.ndarray
    """(n_used,) global trial indices (0-based) of the sessions used, in order."""
    ids: np.ndarray
    """(n_used,) their 73k ids."""
    session: np.ndarray
    train_ids: np.ndarray
    test_ids: np.ndarray
    train_label: np.ndarray
    """(n_used,) index into train_ids, -1 for a test or dropped trial."""
    test_row: np.ndarray
    """(n_used,) row of arr_1, -1 otherwise."""
    test_label: np.ndarray
    dropped: dict = field(default_factory=dict)


def plan_split(design: Design, subject: int, sessions: list[int], per_session: int, test_repeats: int) -> Split:
    trials = np.concatenate([np.arange((s - 1) * per_session, s * per_session) for s in sessions])
    ids = design.trial_ids(subject)[trials]
    session = np.repeat(np.asarray(sessions), per_session)
    shared = np.isin(ids, design.sharedix)
    shown, counts = np.unique(ids[shared], return_counts=True)
    test_ids = shown[counts >= test_repeats]
    few = {int(i): int(c) for i, c in zip(shown, counts) if c < test_repeats}
    is_test = np.isin(ids, test_ids)
    seen = np.zeros(len(ids), dtype=np.int64)  # 0-based presentation number of each trial's image so far
    order: dict[int, int] = {}
    for k, i in enumerate(ids):
        seen[k] = order.get(int(i), 0)
        order[int(i)] = seen[k] + 1
    kept_test = is_test & (seen < test_repeats)
    test_row = np.full(len(ids), -1)
    test_row[kept_test] = np.arange(int(kept_test.sum()))
    test_label = np.full(len(ids), -1)
    test_label[kept_test] = np.searchsorted(test_ids, ids[kept_test])
    train_ids = np.unique(ids[~shared])
    train_label = np.full(len(ids), -1)
    train_label[~shared] = np.searchsorted(train_ids, ids[~shared])
    dropped = {"shared_images_with_too_few_repeats": few,
               "shared_trials_of_those_images": int((shared & ~is_test).sum()),
               "test_trials_beyond_test_repeats": int((is_test & ~kept_test).sum())}
    return Split(trials=trials, ids=ids, session=session, train_ids=train_ids, test_ids=test_ids,
                 train_label=train_label, test_row=test_row, test_label=test_label, dropped=dropped)


def present_sessions(nsd_dir: Path, subject: int) -> list[int]:
    return [s for s in range(1, files.SESSIONS[subject] + 1) if (nsd_dir / files.betas(subject, s)).is_file()]


def roi_masks(nsd_dir: Path, subject: int, kept: np.ndarray, shape: tuple) -> tuple[dict, dict]:
    """Boolean masks over the kept voxels for every ROI the format names, and what each was made of."""
    labels, record = {}, {}
    for name in files.LABEL_VOLUMES:
        vol_path, ctab_path = nsd_dir / files.roi_volume(subject, name), nsd_dir / files.ctab(subject, name)
        vol = read_volume(vol_path, subject, f"label volume {name}", optional=True)
        if vol is None or not ctab_path.is_file():
            record[name] = f"absent ({vol_path.name if vol is None else ctab_path.name} not found): its ROIs are empty"
            continue
        if vol.shape != shape:
            raise DataError(f"{vol_path}: shape {vol.shape} differs from the mask's {shape}; use the subject's "
                            "func1pt8mm volumes")
        labels[name] = (np.rint(vol[kept]).astype(np.int64), read_ctab(ctab_path))
        record[name] = {"labels": labels[name][1]}
    masks = {}
    for roi in ROIS:
        if roi in ROI_LABELS:
            volume, names = ROI_LABELS[roi]
            if volume in labels:
                values, table = labels[volume]
                missing = [n for n in names if n not in table]
                if missing:
                    raise DataError(f"{nsd_dir / files.ctab(subject, volume)}: label(s) {', '.join(missing)} not in "
                                    f"the table (found {', '.join(table)}); fetch the file again")
                masks[roi] = np.isin(values, [table[n] for n in names])
            else:
                masks[roi] = np.zeros(len(kept[kept]), dtype=bool)
    masks["LOC"] = np.zeros(int(kept.sum()), dtype=bool)
    masks["LVC"] = masks["V1"] | masks["V2"] | masks["V3"]
    masks["HVC"] = np.zeros(int(kept.sum()), dtype=bool)
    for name in files.LABEL_VOLUMES:
        if name.startswith("floc-") and name in labels:
            masks["HVC"] |= labels[name][0] > 0
    masks["VC"] = np.ones(int(kept.sum()), dtype=bool)
    record["LOC"] = "NSD has no LOC label: empty"
    record["HVC"] = "every voxel with a floc-* label (faces, places, bodies, words)"
    return {r: masks[r] for r in ROIS}, record


def repeat_consistency(proj: np.ndarray, split: Split, sessions: list[int]) -> dict[int, dict]:
    """Per session: mean correlation of its trials with other-session presentations of the same image, against
    other-session presentations of other images (one random partner per trial, fixed seed), and the z of the gap."""
    rng = np.random.default_rng(PROJECTION_SEED)
    by_id: dict[int, list[int]] = {}
    for k, i in enumerate(split.ids):
        by_id.setdefault(int(i), []).append(k)
    same_a, same_b = [], []
    for rows in by_id.values():
        for a in rows:
            for b in rows:
                if a != b and split.session[a] != split.session[b]:
                    same_a.append(a)
                    same_b.append(b)
    same_a, same_b = np.asarray(same_a, dtype=np.int64), np.asarray(same_b, dtype=np.int64)
    other = rng.integers(0, len(split.ids), len(split.ids))
    diff_ok = (split.ids[other] != split.ids) & (split.session[other] != split.session)
    out = {}
    for s in sessions:
        mine = split.session[same_a] == s if len(same_a) else np.zeros(0, dtype=bool)
        r_same = np.einsum("ij,ij->i", proj[same_a[mine]], proj[same_b[mine]])
        rows = np.flatnonzero((split.session == s) & diff_ok)
        r_diff = np.einsum("ij,ij->i", proj[rows], proj[other[rows]])
        entry = {"pairs": int(len(r_same)), "r_same": float(r_same.mean()) if len(r_same) else None,
                 "r_other": float(r_diff.mean()) if len(r_diff) else None}
        if len(r_same) >= REPEAT_MIN_PAIRS and len(r_diff) >= REPEAT_MIN_PAIRS:
            se = np.sqrt(r_same.var(ddof=1) / len(r_same) + r_diff.var(ddof=1) / len(r_diff))
            entry["z"] = float((r_same.mean() - r_diff.mean()) / max(se, 1e-12))
        else:
            entry["z"] = None
            entry["note"] = f"fewer than {REPEAT_MIN_PAIRS} cross-session repeat pairs: not checked"
        out[s] = entry
    return out


def zscore_session(raw: np.ndarray) -> np.ndarray:
    """int16 betas (trials, V) -> / 300, each voxel z-scored over the session's trials (population std, a constant
    voxel 0), in float32 and in place (statistics in float64): one copy of the session, not five."""
    x = raw.astype(np.float32)
    x /= 300
    mean = x.mean(0, dtype=np.float64)
    sd = x.std(0, dtype=np.float64)
    x -= mean.astype(np.float32)
    x /= np.where(sd > 0, sd, 1.0).astype(np.float32)
    return x


def _resize(image: np.ndarray, resolution: int) -> np.ndarray:
    """A brick row (425 px, square) -> `resolution` px, as convert-god resizes its photos."""
    from PIL import Image
    return square_resize(Image.fromarray(image), resolution)


class InputHashes:
    """Path, size and sha256 of every input, hashed in a background thread while the conversion runs (hashlib
    releases the GIL, so on 2 cores it overlaps; a real subject is ~40 GB). A file unchanged since fetch-data
    verified it (same size, not modified after its lock entry) takes its sha256 from the lock. `cancel()` stops the
    thread at the next block, so a failed conversion exits at once."""

    def __init__(self, nsd: Path, paths: list[Path]):
        import threading

        from brainrecon.data.download import LOCK, Lock
        self.lock = Lock(nsd.parent).data["files"] if (nsd.parent / LOCK).is_file() else {}
        self.nsd, self.paths, self.records, self.error = nsd, paths, [], None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for p in self.paths:
                if self.stop.is_set():
                    return
                self.records.append(self._record(p))
        except OSError as e:
            self.error = e

    def _record(self, path: Path) -> dict:
        import hashlib
        from datetime import datetime
        stat = path.stat()
        key = f"{self.nsd.name}/{path.relative_to(self.nsd)}" if path.is_relative_to(self.nsd) else None
        locked = self.lock.get(key) if key else None
        if locked and locked.get("size") == stat.st_size and "fetched" in locked and \
                stat.st_mtime <= datetime.fromisoformat(locked["fetched"]).timestamp() + 1:
            return {"path": str(path), "bytes": stat.st_size, "sha256": locked["sha256"], "sha256_from": "fetch lock"}
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                if self.stop.is_set():
                    break
                h.update(block)
        return {"path": str(path), "bytes": stat.st_size, "sha256": h.hexdigest(), "sha256_from": "computed"}

    def result(self) -> list[dict]:
        self.thread.join()
        if self.error:
            raise DataError(f"could not read an input to hash it ({self.error})")
        return self.records

    def cancel(self) -> None:
        self.stop.set()


def convert_nsd(opts: NsdOptions, say=lambda s: None, progress=None) -> dict:
    """Convert one subject; returns the record also written to `out/convert.json`. Holds the output folder's data
    lock throughout."""
    with hold_data(Path(opts.out)):
        return _convert(opts, say, progress)


def _convert(opts: NsdOptions, say, progress) -> dict:
    start = time.perf_counter()
    nsd, subject = Path(opts.nsd_dir), opts.subject
    if subject not in files.SESSIONS:
        raise UserError(f"--subject {subject}: NSD has subjects 1..8")
    if not nsd.is_dir():
        raise DataError(f"{nsd}: NSD folder not found; pass --nsd-dir (the bucket's layout, as fetch-data --only nsd "
                        "writes it)")
    sessions = opts.sessions or present_sessions(nsd, subject)
    if not sessions:
        require(nsd / files.betas(subject, 1), subject, "1")
    # --- read and check every input before anything is written
    design = read_expdesign(nsd / files.EXPDESIGN, subject)
    if len(design.masterordering) % DESIGN_SESSIONS:
        raise DataError(f"{nsd / files.EXPDESIGN}: masterordering has {len(design.masterordering)} trials, not a "
                        f"multiple of the design's {DESIGN_SESSIONS} sessions")
    per_session = len(design.masterordering) // DESIGN_SESSIONS
    mask_path = nsd / files.roi_volume(subject, opts.roi)
    mask_vol = read_volume(mask_path, subject, f"ROI mask {opts.roi}")
    kept = mask_vol > 0.5
    if not kept.any():
        raise DataError(f"{mask_path}: the mask selects no voxel; use the subject's {opts.roi}.nii.gz")
    betas = [BetaSession(nsd / files.betas(subject, s), subject, s, kept) for s in sessions]
    try:
        for b in betas:
            if b.ds.shape[0] != per_session:
                raise DataError(f"{b.path}: {b.ds.shape[0]} trials but nsd_expdesign.mat has {per_session} per "
                                "session; use the betas and design of the same release")
        masks, roi_record = roi_masks(nsd, subject, kept, mask_vol.shape)
        ncsnr_vol = read_volume(nsd / files.ncsnr(subject), subject, "ncsnr", optional=True)
        if ncsnr_vol is not None and ncsnr_vol.shape != kept.shape:
            raise DataError(f"{nsd / files.ncsnr(subject)}: shape {ncsnr_vol.shape} differs from the mask's "
                            f"{kept.shape}; use the subject's func1pt8mm ncsnr")
        split = plan_split(design, subject, sessions, per_session, opts.test_repeats)
        if len(split.test_ids) < 2:
            raise DataError(f"{nsd}: {len(split.test_ids)} shared images were shown {opts.test_repeats} times in "
                            f"sessions {_ranges(sessions)} (identification needs at least 2); use more sessions or a "
                            "smaller --test-repeats")
        brick = Brick(nsd / files.STIMULI, subject, int(split.ids.max()))
        say(f"subject {subject}: sessions {_ranges(sessions)}, {int(kept.sum())} voxels, {len(split.train_ids)} "
            f"training and {len(split.test_ids)} test images")
        used = [mask_path if p.name == "nsdgeneral.nii.gz" else p
                for p in (nsd / q for q in files.subject_files(subject, sessions))]
        used = [p for p in dict.fromkeys(used) if p.is_file()]
        inputs = InputHashes(nsd, used)
        out = Path(opts.out)
        n_vox = int(kept.sum())
        state: dict = {}
        subject_writer = lambda tmp: _write_subject(tmp, opts, betas, split, kept, ncsnr_vol, masks, state,
                                                     progress)
        images_writer = lambda tmp: _write_images(tmp, brick, split, opts.resolution, progress)
        paths = write_all_atomic([(layout.subject_file(out, subject), subject_writer),
                                  (layout.stimuli_file(out, opts.resolution), images_writer)])
    except BaseException:
        if "inputs" in locals():
            inputs.cancel()
        raise
    finally:
        for b in betas:
            b.close()
        if "brick" in locals():
            brick.close()
    unpaired = write_unpaired(nsd / files.STIMULI, design, subject, opts, progress) if opts.unpaired else None
    say("finishing the sha256 of the inputs for convert.json")
    absent = [str(nsd / q) for q in files.subject_files(subject, sessions) if not (nsd / q).is_file()]
    record = {
        "source": "Natural Scenes Dataset (Allen et al. 2022), betas_fithrf_GLMdenoise_RR, func1pt8mm",
        "inputs": inputs.result(),
        "absent_optional_inputs": absent,
        "outputs": {"fmri": paths[0].name, "stimuli": paths[1].name},
        "subject": subject, "sessions": sessions, "trials_per_session": per_session, "roi": opts.roi,
        "resolution": opts.resolution, "train": opts.train, "test_repeats": opts.test_repeats,
        "voxel_order": "C order over the NIfTI (X, Y, Z) volume; the coordinates are the npz key voxel_xyz",
        "counts": {"voxels": n_vox, "voxels_per_roi": {r: int(m.sum()) for r, m in masks.items()},
                   "train_images": int(len(split.train_ids)), "test_images": int(len(split.test_ids)),
                   "train_rows": state["train_rows"], "train_trials": int((split.train_label >= 0).sum()),
                   "test_trials": int((split.test_row >= 0).sum()),
                   "all_zero_voxels_per_session": state["zero_voxels"]},
        "rois": roi_record,
        "normalisation": "betas / 300, then each voxel z-scored within each session over its trials (population "
                         "std; a constant voxel becomes 0)",
        "noise_ceiling": state["ceiling_source"],
        "dropped": split.dropped,
        "repeat_check": state["repeat_check"],
        "images": f"73k ids sorted ascending; {files.BRICK_SIDE} px brick rows resized to {opts.resolution} px "
                  "(PIL bicubic), stored as uint8; the ids are the npz keys train_nsd_ids and test_nsd_ids",
        "unpaired_images": unpaired,
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    write_text_atomic(out / "convert.json", json.dumps(record, indent=2))
    return record


def _ranges(sessions: list[int]) -> str:
    parts, start = [], sessions[0]
    for a, b in zip(sessions, sessions[1:] + [None]):
        if b != a + 1:
            parts.append(f"{start}" if start == a else f"{start}-{a}")
            start = b
    return ",".join(parts)


def _write_subject(tmp: Path, opts: NsdOptions, betas: list[BetaSession], split: Split, kept: np.ndarray,
                   ncsnr_vol, masks: dict, state: dict, progress) -> None:
    n_vox = int(kept.sum())
    n_used = len(split.ids)
    proj_matrix = np.random.default_rng(PROJECTION_SEED).standard_normal((n_vox, PROJECTION_DIM)).astype(np.float32)
    proj = np.zeros((n_used, PROJECTION_DIM), dtype=np.float32)
    is_train = split.train_label >= 0
    n_test_trials = int((split.test_row >= 0).sum())
    test_trials = np.zeros((n_test_trials, n_vox), dtype=np.float32)
    averaging = opts.train == "average"
    n_train_rows = len(split.train_ids) if averaging else int(is_train.sum())
    sums = np.zeros((len(split.train_ids), n_vox), dtype=np.float32) if averaging else None
    counts = np.zeros(len(split.train_ids), dtype=np.int64)
    zero_voxels = {}
    per = len(split.ids) // len(betas)
    with NpzStream(tmp) as z:
        with z.rows("arr_0", (n_train_rows, n_vox), np.float32) as train_rows:
            for k, b in enumerate(betas):
                session = int(split.session[k * per])
                raw = np.concatenate([b.read(i, min(i + opts.block, per)) for i in range(0, per, opts.block)])
                zero = int((raw == 0).all(0).sum())
                if zero > ZERO_VOXEL_LIMIT * n_vox:
                    raise DataError(f"{b.path}: {zero} of the mask's {n_vox} voxels are 0 in every trial (outside "
                                    "the brain): the mask and the betas are misaligned (a transposed or another "
                                    "subject's mask?); use the subject's own func1pt8mm files")
                zero_voxels[session] = zero
                x = zscore_session(raw)
                rows = slice(k * per, (k + 1) * per)
                p = (x - x.mean(1, keepdims=True)) @ proj_matrix
                proj[rows] = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
                label, trow = split.train_label[rows], split.test_row[rows]
                if averaging:
                    np.add.at(sums, label[label >= 0], x[label >= 0])
                    np.add.at(counts, label[label >= 0], 1)
                else:
                    train_rows.write(x[label >= 0])
                test_trials[trow[trow >= 0]] = x[trow >= 0]
                if progress:
                    progress(k + 1, len(betas), f"session {session}")
            if averaging:
                train_rows.write((sums / counts[:, None]).astype(np.float32))
        sessions = [int(s) for s in np.unique(split.session)]  # sorted, as the betas files were opened
        state["repeat_check"] = repeat_consistency(proj, split, sessions)
        bad = {s: e for s, e in state["repeat_check"].items() if e["z"] is not None and e["z"] < REPEAT_Z_MIN}
        if bad and opts.repeat_check:
            s, e = next(iter(bad.items()))
            raise DataError(f"{dict(zip(sessions, betas))[s].path}: session {s}'s trials "
                            f"are no closer to other presentations of the same images (mean r {e['r_same']:.3f}) "
                            f"than to other images ({e['r_other']:.3f}; z {e['z']:.1f} < {REPEAT_Z_MIN}): the file "
                            "is shuffled or belongs to another session; fetch it again (or pass --no-repeat-check "
                            "if you know better)")
        train_labels = np.arange(len(split.train_ids)) if averaging else split.train_label[is_train]
        test_labels = split.test_label[split.test_row >= 0]
        order = np.argsort(test_labels, kind="stable")
        grouped = test_trials[order].reshape(len(split.test_ids), opts.test_repeats, n_vox)
        if ncsnr_vol is not None:
            snr = np.nan_to_num(ncsnr_vol[kept].astype(np.float64), nan=0.0) ** 2
            ceiling = np.sqrt(snr / (snr + 1.0 / opts.test_repeats))
            state["ceiling_source"] = (f"ncsnr.nii.gz: ceiling = sqrt(ncsnr^2 / (ncsnr^2 + 1/{opts.test_repeats})), "
                                       "SNR = ncsnr^2")
        else:
            from brainrecon.data.release import noise_ceiling_from_repeats
            ceiling, snr = noise_ceiling_from_repeats(grouped)
            state["ceiling_source"] = ("ncsnr.nii.gz absent: release.noise_ceiling_from_repeats over the "
                                       f"{opts.test_repeats} test repeats")
        z.put("arr_1", test_trials)
        z.put("arr_2", grouped.mean(1).astype(np.float32))
        z.put("arr_3", train_labels.astype(np.int64))
        z.put("arr_4", test_labels.astype(np.int64))
        z.put("arr_5", np.asarray(ceiling, dtype=np.float32))
        z.put("arr_6", np.maximum(snr, 1e-3).astype(np.float32))
        for roi, m in masks.items():
            z.put(roi, m)
        z.put("voxel_xyz", np.stack(np.nonzero(kept), 1).astype(np.int16))
    state["train_rows"] = n_train_rows
    state["zero_voxels"] = zero_voxels


def write_unpaired(brick_path: Path, design: Design, subject: int, opts: NsdOptions, progress) -> dict:
    """`opts.unpaired` brick images outside the subject's whole image list (never shown to it in any session), drawn
    with a fixed seed, as <73k id>.png at the resolution; each written atomically, present ones kept (resumable)."""
    from PIL import Image

    from brainrecon.atomic import write_atomic
    folder = layout.unpaired_image_dir(Path(opts.out)) / "nsd_unseen"
    brick = Brick(brick_path, subject, 1)
    try:
        unseen = np.setdiff1d(np.arange(1, brick.ds.shape[0] + 1), design.subjectim[subject - 1])
        if opts.unpaired > len(unseen):
            raise UserError(f"--unpaired {opts.unpaired}: the brick holds {len(unseen)} images this subject never saw")
        ids = np.sort(np.random.default_rng(PROJECTION_SEED).choice(unseen, opts.unpaired, replace=False))
        for k, i in enumerate(ids):
            path = folder / f"{int(i):05d}.png"
            if not path.exists():
                image = Image.fromarray(_resize(brick.image(int(i)), opts.resolution))
                write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))
            if progress and (k % 500 == 0 or k == len(ids) - 1):
                progress(k + 1, len(ids), "unpaired images")
    finally:
        brick.close()
    return {"folder": str(folder), "count": int(len(ids)), "first_ids": [int(i) for i in ids[:5]],
            "rule": "73k ids outside the subject's subjectim row, drawn without replacement (seed "
                    f"{PROJECTION_SEED}), sorted"}


def _write_images(tmp: Path, brick: Brick, split: Split, resolution: int, progress) -> None:
    with NpzStream(tmp) as z:
        for key, ids in (("train_images", split.train_ids), ("test_images", split.test_ids)):
            with z.rows(key, (len(ids), resolution, resolution, 3), np.uint8) as w:
                for k, i in enumerate(ids):
                    w.write(_resize(brick.image(int(i)), resolution)[None])
                    if progress and (k % 500 == 0 or k == len(ids) - 1):
                        progress(k + 1, len(ids), key.replace("_", " "))
        z.put("train_nsd_ids", split.train_ids.astype(np.int64))
        z.put("test_nsd_ids", split.test_ids.astype(np.int64))
