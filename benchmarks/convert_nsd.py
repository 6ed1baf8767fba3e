"""python -m benchmarks.convert_nsd [--sessions N] [--keep DIR]: convert-nsd at NSD's real sizes on generated files.

Subject 1's 1.8 mm volume (81 x 104 x 83), 750 trials per session, 15,724 nsdgeneral voxels, the full design
(30,000 trials over 10,000 images, each shown 3 times, the first 1,000 of the list shared), a 73,000-row 425 px
stimulus brick holding only the rows the sessions use (chunked: unwritten rows take no disk). Values are random
(speed and memory do not depend on them), so the repeat check is off. Both the floor (reading each session's
masked box and each used brick row with h5py, nothing else) and convert-nsd run in child processes, so that each one's
peak RSS is its own; the floor runs before and after the conversion and its faster run is the floor.
convert-nsd runs twice: hashing every input (sha256 reads each byte once more, in a thread beside the conversion)
and with the inputs in a fetch lock (as after fetch-data, which verified them: their sha256 is taken from it).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
from scipy.io import savemat

from brainrecon.sources.nsd import files

N_VOXELS = 15724


def build(root: Path, sessions: int) -> None:
    rng = np.random.default_rng(0)
    x, y, z = files.VOLUME_XYZ[1]
    grid = np.stack(np.meshgrid(np.arange(x), np.arange(y), np.arange(z), indexing="ij"), -1).astype(float)
    dist = (((grid - [x / 2, y * 0.25, z / 2]) / [x * 0.45, y * 0.3, z * 0.4]) ** 2).sum(-1)
    mask = np.zeros((x, y, z), dtype=np.float32) - 1
    mask.flat[np.argsort(dist, axis=None)[:N_VOXELS]] = 1             # a posterior ellipsoid of 15,724 voxels
    path = root / files.roi_volume(1, "nsdgeneral")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(mask, np.eye(4)), str(path))
    subjectim = np.stack([rng.choice(np.arange(1, files.N_STIMULI + 1), 10000, replace=False) for _ in range(8)])
    order = rng.permutation(np.repeat(np.arange(1, 10001), 3))
    design = root / files.EXPDESIGN
    design.parent.mkdir(parents=True, exist_ok=True)
    savemat(design, {"masterordering": order[None].astype(np.float64), "subjectim": subjectim.astype(np.float64),
                     "sharedix": subjectim[0, :1000][None].astype(np.float64)})
    inside = mask > 0
    for s in range(1, sessions + 1):
        vol = np.zeros((750, z, y, x), dtype=np.int16)
        vol[:, inside.T] = rng.integers(-900, 900, (750, N_VOXELS), dtype=np.int16)
        path = root / files.betas(1, s)
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as f:
            f.create_dataset("betas", data=vol)
    used = np.unique(subjectim[0][order[:sessions * 750] - 1])
    path = root / files.STIMULI
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        brick = f.create_dataset("imgBrick", (files.N_STIMULI, 425, 425, 3), dtype=np.uint8, chunks=(1, 425, 425, 3))
        for i in used:
            brick[i - 1] = rng.integers(0, 256, (425, 425, 3), dtype=np.uint8)


FLOOR = """
import sys, h5py, numpy as np, nibabel as nib
from pathlib import Path
from scipy.io import loadmat
from brainrecon.sources.nsd import files
root, sessions = Path(sys.argv[1]), int(sys.argv[2])
mask = np.asarray(nib.load(root / files.roi_volume(1, "nsdgeneral")).dataobj) > 0
z, y, x = np.nonzero(mask.T)
box = tuple(slice(a.min(), a.max() + 1) for a in (z, y, x))
for s in range(1, sessions + 1):
    with h5py.File(root / files.betas(1, s)) as f:
        f["betas"][:, box[0], box[1], box[2]]
mat = loadmat(root / files.EXPDESIGN)
ids = np.unique(mat["subjectim"][0][mat["masterordering"].ravel()[:sessions * 750].astype(int) - 1].astype(int))
with h5py.File(root / files.STIMULI) as f:
    for i in ids:
        f["imgBrick"][i - 1]
print("PEAK_RSS_KB", open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
"""

CONVERT = """
import sys
from pathlib import Path
from brainrecon.sources.nsd.convert import NsdOptions, convert_nsd
root, out = Path(sys.argv[1]), Path(sys.argv[2])
convert_nsd(NsdOptions(subject=1, nsd_dir=root, out=out, repeat_check=False, train=sys.argv[3],
                       test_repeats=int(sys.argv[4])))
print("PEAK_RSS_KB", open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
"""


def lock_files(root: Path) -> None:
    """A fetch lock naming every input with its size (the sha256 is a stand-in: the converter takes the lock's)."""
    import json
    from datetime import datetime, timezone

    from brainrecon.data.download import LOCK
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    entries = {f"{root.name}/{p.relative_to(root)}": {"sha256": "0" * 64, "size": p.stat().st_size, "url": "bench",
                                                      "fetched": now} for p in root.rglob("*") if p.is_file()}
    (root.parent / LOCK).write_text(json.dumps({"files": entries}))


def child(code: str, *args: str) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one child process: it prints its own VmHWM (ru_maxrss would carry the parent's
    peak across fork + exec on Linux)."""
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if run.returncode:
        sys.exit(run.stderr)
    out = run.stdout
    seconds = time.perf_counter() - start
    return seconds, int(out.split("PEAK_RSS_KB")[-1]) / 1024


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sessions", type=int, default=3)
    p.add_argument("--train", default="trials")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "nsd"
        start = time.perf_counter()
        build(root, args.sessions)
        print(f"generated {args.sessions} sessions at the real size in {time.perf_counter() - start:.0f} s")
        floor_a, floor_rss = child(FLOOR, str(root), str(args.sessions))  # reads each box whole: its RSS is high
        # few shared images reach 3 repeats in a handful of sessions (NSD spreads them over all 40): below 10
        # sessions the test set is every shared image seen once (--test-repeats 1)
        repeats = "3" if args.sessions >= 10 else "1"
        seconds, rss = child(CONVERT, str(root), str(Path(tmp) / "out"), args.train, repeats)
        lock_files(root)  # as after fetch-data: the inputs' sha256 come from its lock, not hashed again
        seconds_locked, rss_locked = child(CONVERT, str(root), str(Path(tmp) / "out2"), args.train, repeats)
        floor_b, _ = child(FLOOR, str(root), str(args.sessions))
        floor = min(floor_a, floor_b)
        on_disk = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e9
        print(f"convert-nsd, subject-1 sizes, {args.sessions} sessions x 750 trials, {N_VOXELS} voxels, "
              f"--train {args.train}, --test-repeats {repeats} ({on_disk:.1f} GB of input on disk):")
        print(f"  read the inputs alone (floor)    {floor:8.1f} s   peak RSS {floor_rss:7.0f} MB (a session's box "
              "at once)")
        print(f"  convert-nsd                      {seconds:8.1f} s   x{seconds / floor:5.1f} the floor")
        print(f"  convert-nsd, inputs in the fetch lock {seconds_locked:3.1f} s   x{seconds_locked / floor:5.1f} the "
              f"floor   peak RSS {rss_locked:.0f} MB")
        print(f"  convert-nsd peak RSS             {rss:8.0f} MB   (one session of betas as int16: "
              f"{750 * 81 * 104 * 83 * 2 / 1e6:.0f} MB on disk, {750 * N_VOXELS * 8 / 1e6:.0f} MB masked in float64)")


if __name__ == "__main__":
    main()
