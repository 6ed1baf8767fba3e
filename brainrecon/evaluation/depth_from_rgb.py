"""`evaluate --depth-from-rgb`: is depth decoded directly from fMRI better than depth estimated from the decoded RGB?
(Gaziv & Irani 2021's claim.)

For each run that decodes RGB and depth (rgbd), MiDaS v2.1 (`make-depth`'s network, small by default as in the
original evaluation) estimates depth from the run's RGB reconstructions; each map is normalised per image as the
original does: z-scored, then scaled to [0, 1] (together the same as a per-image min-max scaling of MiDaS's relative
inverse depth), stored as uint8 like every depth channel. It becomes a run of its own, `<run> MiDaS(RGB)`, scored
against the same ground-truth depth as the run's direct depth, so `evaluate` reports it beside the run and compares
the two image by image (direct - MiDaS(RGB), every depth metric).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

SUFFIX = "MiDaS(RGB)"


def depth_from_rgb(recons: list[dict], size: str, data_root: Path, device, weights: Path | None = None,
                   say: Callable[[str], None] = print, batch: int = 16) -> list[dict]:
    """The runs given, each rgbd run followed by its `<run> MiDaS(RGB)` run (modality depth). Missing MiDaS weights:
    one line naming `fetch-data --only midas`."""
    from brainrecon import depth
    from brainrecon.errors import UserError
    rgbd = [r for r in recons if str(r["modality"]) == "rgbd"]
    if not rgbd:
        raise UserError("--depth-from-rgb needs a run that decodes RGB and depth (--modality rgbd); none was given")
    net = depth.load_model(size, weights, data_root, device)
    out = []
    for rec in recons:
        out.append(rec)
        if str(rec["modality"]) != "rgbd":
            continue
        rgb = rec["reconstructions"][..., :3]
        maps = []
        for i in range(0, len(rgb), batch):
            maps += depth.predict(net, list(rgb[i:i + batch]), device)
        say(f"--depth-from-rgb: MiDaS {size} on the RGB of {rec['run']} ({len(rgb)} images)")
        derived = {k: v for k, v in rec.items() if k != "ceiling_reconstructions"}
        derived.update(run=f"{rec['run']} {SUFFIX}", modality=np.array("depth"),
                       reconstructions=np.stack(maps)[..., None], ground_truth=rec["ground_truth"][..., 3:])
        out.append(derived)
    return out
