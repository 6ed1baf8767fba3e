"""`evaluate --depth-from-rgb`: is depth decoded directly from fMRI better than depth estimated from the decoded RGB?
(Gaziv & Irani 2021's claim.)

Two arms, each a derived run of modality depth that `evaluate` scores and compares image by image with the direct
depth on the same test images and the same ground truth:

- `rgb-only` (the paper's arm, the default): MiDaS v2.1 on the reconstructions of an **rgb-only** run (as the
  original's `--depth_from_rgb`, whose notebook ties it to the rgb-only decoder), paired with an rgbd or depth-only
  run of the same test images: `<rgb run> MiDaS-<size>(RGB)`;
- `rgbd`: MiDaS on the RGB half of an rgbd run's own reconstructions: `<rgbd run> MiDaS-<size>(its RGB)`.

Ground truth (`gt`), named in every derived run: `release` (the depth the direct runs are scored against: the
release's MiDaS-large depth of the 224-px stimuli) or `midas-on-rgb` (the original's ground truth for this arm:
the same MiDaS variant on the ground-truth RGB at the stimulus size); with `midas-on-rgb` the direct depth is scored
against that ground truth instead, as a derived run of its own (`<run> direct depth | GT ...`), so the pair shares
it: a depth-only partner is replaced by it, an rgbd partner keeps its RGB rows under its own name.

Each MiDaS map is min-max scaled per image (the same as the original's z-score then [0, 1] scaling) and stored as
uint8 like every depth channel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from brainrecon.errors import UserError

ARMS = ("rgb-only", "rgbd")
GROUND_TRUTHS = {"release": "release depth (MiDaS large, 224 px)", "midas-on-rgb": "MiDaS-{size} on the GT RGB"}


def _midas(net, images: np.ndarray, device, batch: int) -> np.ndarray:
    from brainrecon import depth
    maps = []
    for i in range(0, len(images), batch):
        maps += depth.predict(net, list(images[i:i + batch]), device)
    return np.stack(maps)[..., None]


def _direct_depth(rec: dict, key: str) -> np.ndarray:
    return rec[key][..., 3:] if str(rec["modality"]) == "rgbd" else rec[key]


def _same_test_images(rgb: dict, partner: dict) -> bool:
    if rgb["ground_truth"].shape[:3] != partner["ground_truth"].shape[:3]:
        return False
    if int(rgb.get("subject", -1)) != int(partner.get("subject", -1)):
        return False
    if str(partner["modality"]) == "rgbd":
        return np.array_equal(rgb["ground_truth"], partner["ground_truth"][..., :3])
    if "indices" in rgb and "indices" in partner:
        return np.array_equal(rgb["indices"], partner["indices"])
    return True


def _derived(rec: dict, run: str, recon: np.ndarray, truth: np.ndarray) -> dict:
    out = {k: v for k, v in rec.items() if k != "ceiling_reconstructions"}
    out.update(run=run, modality=np.array("depth"), reconstructions=recon, ground_truth=truth)
    return out


def depth_from_rgb(recons: list[dict], size: str, data_root: Path, device, weights: Path | None = None,
                   say: Callable[[str], None] = print, batch: int = 16, arm: str = "rgb-only",
                   gt: str = "release") -> list[dict]:
    """The runs given, followed by the derived depth runs of the chosen arm and ground truth. Missing MiDaS weights:
    one line naming `fetch-data --only midas`; runs that do not fit the arm: one line."""
    from brainrecon import depth
    if arm not in ARMS:
        raise UserError(f"--depth-arm {arm!r}; choose {' or '.join(ARMS)}")
    if gt not in GROUND_TRUTHS:
        raise UserError(f"--depth-gt {gt!r}; choose {' or '.join(GROUND_TRUTHS)}")
    gt_name = GROUND_TRUTHS[gt].format(size=size)
    direct = [r for r in recons if str(r["modality"]) in (("rgbd", "depth") if arm == "rgb-only" else ("rgbd",))]
    sources = [r for r in recons if str(r["modality"]) == ("rgb" if arm == "rgb-only" else "rgbd")]
    if arm == "rgb-only":
        if not sources or not direct:
            raise UserError("--depth-from-rgb (the paper's arm) needs an rgb-only run (--modality rgb) and an rgbd or "
                            "depth-only run of the same test images; give both (or --depth-arm rgbd for MiDaS on an "
                            "rgbd run's own RGB)")
    elif not sources:
        raise UserError("--depth-from-rgb --depth-arm rgbd needs a run that decodes RGB and depth (--modality rgbd); "
                        "none was given")
    net = depth.load_model(size, weights, data_root, device)
    out, scored_again = list(recons), []
    for src in sources:
        partners = [p for p in direct if p is not src and _same_test_images(src, p)] if arm == "rgb-only" else [src]
        if not partners:
            raise UserError(f"--depth-from-rgb: no rgbd or depth-only run was given on the test images of "
                            f"{src['run']} (same subject, images and order); give one")
        rgb = src["reconstructions"][..., :3]
        truth_rgb = src["ground_truth"][..., :3]
        if gt == "release":
            truth = _direct_depth(partners[0], "ground_truth")
        else:
            truth = _midas(net, truth_rgb, device, batch)
            say(f"--depth-from-rgb: ground truth = MiDaS {size} on the ground-truth RGB of {src['run']} "
                f"({len(truth)} images, {truth.shape[1]} px)")
        label = "(RGB)" if arm == "rgb-only" else "(its RGB)"
        say(f"--depth-from-rgb ({arm} arm): MiDaS {size} on the RGB reconstructions of {src['run']} "
            f"({len(rgb)} images); ground truth: {gt_name}")
        out.append(_derived(src, f"{src['run']} MiDaS-{size}{label} | GT {gt_name}", _midas(net, rgb, device, batch),
                            truth))
        if gt != "release":                 # the direct depth against the same (derived) ground truth
            for p in partners:
                out.append(_derived(p, f"{p['run']} direct depth | GT {gt_name}",
                                    _direct_depth(p, "reconstructions"), truth))
                scored_again.append(p)
    return [_rgb_view(r) if any(r is p for p in scored_again) else r for r in out
            if not (str(r["modality"]) == "depth" and any(r is p for p in scored_again))]


def _rgb_view(rec: dict) -> dict:
    """An rgbd run as its RGB channel alone: its depth is scored against the other ground truth instead (one ground
    truth per channel and test set, so that every pair of runs compares image by image)."""
    if str(rec["modality"]) != "rgbd":
        return rec
    out = {k: (v[..., :3] if k in ("reconstructions", "ground_truth", "ceiling_reconstructions") else v)
           for k, v in rec.items()}
    out["modality"] = np.array("rgb")
    return out
