"""python -m benchmarks.encoder_backbones OUT [--study backbone|depth] [--epochs N]: the encoder's backbone on the
--full demo's subject (brainrecon.demo.DEMO_SUBJECT).

--study backbone (default): three arms, everything else the demo config (rgbd, 64 px, heads of 16 channels, frozen
backbone), a constant learning rate (the demo's milestone dropped) so that each validation curve shows where it stops
improving:
- vgg19-random: today's demo backbone, a randomly initialised quarter-width VGG19 (no VGG weights ship);
- effnet-random: EfficientNet-Lite0 of the same shape as the next, randomly initialised (timm's init);
- effnet-imagenet: the ImageNet EfficientNet-Lite0 that ships with brainrecon (the perceptual loss's network).
The last two read stages 0, 1, 2, 4 at twice the input size (the VGG taps' sides), depth as a grey image.
Per arm: seconds per epoch, the epoch of the lowest validation loss, and at that epoch the median test r/ceiling
over signal voxels (ceiling > 0.5, as the encoder reports), overall and per ROI group, and the share of signal voxels
above vgg19-random.
-> OUT/encoder_backbones_epochs.csv, OUT/encoder_backbones.csv, OUT/encoder_backbones.png

--study depth: how the ImageNet EfficientNet-Lite0 encoder reads depth (model.depth_input), same settings:
rgbd with depth as a grey image through the frozen network (effnet-imagenet above, reused when OUT holds it), a
trainable 4th stem channel (stem), a small trainable depth CNN (branch); depth alone as a grey image and through the
branch. Each is compared voxel by voxel with the grey arm of its modality.
-> OUT/encoder_depth_input_epochs.csv, OUT/encoder_depth_input.csv, OUT/encoder_depth_input.png
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch

from brainrecon.config import load_config
from brainrecon.data import layout
from brainrecon.data.datasets import load_paired
from brainrecon.demo import DEMO_SUBJECT
from brainrecon.simulation.simulate import simulate_subject
from brainrecon.train.checkpoint import load_encoder
from brainrecon.train.encoder import SIGNAL_CEILING, predict, train_encoder, voxel_correlation

# every arm names its backbone and depth input in full, so the study does not follow later changes of the demo preset
EFFNET = ["model.arch=effnet-lite0", "model.width=1.0", "model.backbone_weights=imagenet", "model.depth_input=grey"]
VGG19_RANDOM = ["model.arch=vgg19", "model.width=0.25", "model.backbone_weights=none", "model.depth_input=grey"]
STUDIES = {  # study: (file stem, {arm: (modality, overrides, the arm it is compared with voxel by voxel)})
    "backbone": ("encoder_backbones", {
        "vgg19-random": ("rgbd", VGG19_RANDOM, None),
        "effnet-random": ("rgbd", [*EFFNET[:2], "model.backbone_weights=none", EFFNET[3]], "vgg19-random"),
        "effnet-imagenet": ("rgbd", EFFNET, "vgg19-random")}),
    "depth": ("encoder_depth_input", {
        "effnet-imagenet": ("rgbd", EFFNET, None),
        "rgbd-stem": ("rgbd", [*EFFNET, "model.depth_input=stem"], "effnet-imagenet"),
        "rgbd-branch": ("rgbd", [*EFFNET, "model.depth_input=branch"], "effnet-imagenet"),
        "depth-grey": ("depth", EFFNET, None),
        "depth-branch": ("depth", [*EFFNET, "model.depth_input=branch"], "depth-grey")}),
}
GROUPS = {"V1": ("V1",), "V2": ("V2",), "V3": ("V3",), "V4": ("V4",), "HVC (LOC, FFA, PPA)": ("LOC", "FFA", "PPA")}


def roi_groups(data: Path) -> dict[str, np.ndarray]:
    with np.load(layout.subject_file(data, DEMO_SUBJECT.subject)) as npz:
        vc = npz["VC"]
        return {g: np.any([npz[r][vc] for r in rois], axis=0) for g, rois in GROUPS.items()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--study", choices=list(STUDIES), default="backbone")
    p.add_argument("--epochs", type=int, default=24)
    args = p.parse_args()
    stem, arms = STUDIES[args.study]
    data = args.out / "data"
    if not (data / "simulated.json").exists():
        simulate_subject(data, DEMO_SUBJECT)
    groups = roi_groups(data)
    rows, summary, ratios = [], [], {}
    for arm, (modality, sets, baseline) in arms.items():
        run = args.out / arm
        cfg = load_config("encoder", modality, "demo", [*sets, f"train.epochs={args.epochs}", "train.milestones=[]"])
        if not (run / "metrics.json").exists():
            train_encoder(cfg, data, run, resume=(run / "last.pt").exists(), quiet=True)
        history = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
        for h in history:
            rows.append({"arm": arm, "modality": modality, "epoch": h["epoch"] + 1, "val_loss": h["val_loss"],
                         "val_median_r": h["val_median_r"],
                         "seconds_since_start": h["seconds"]})
        best = min(history, key=lambda h: h["val_loss"])
        paired = load_paired(data, cfg.data, modality)
        enc = load_encoder(run)
        with torch.no_grad():
            pred = predict(enc, paired.test_images)
        r = voxel_correlation(pred, paired.test_fmri).numpy()
        ceiling = paired.noise_ceiling.numpy()
        signal = ceiling > SIGNAL_CEILING
        ratio = np.where(signal, r / np.maximum(ceiling, 1e-6), np.nan)
        ratios[arm] = ratio
        elapsed = np.diff([0.0] + [h["seconds"] for h in history])  # metrics.jsonl's seconds are since the start
        row = {"arm": arm, "modality": modality, "depth_input": cfg.model.depth_input,
               "seconds_per_epoch": round(float(np.median(elapsed)), 1),
               "best_epoch_by_val": best["epoch"] + 1, "epochs_run": len(history),
               "median_r_over_ceiling": round(float(np.nanmedian(ratio)), 3),
               **{f"r/ceiling {g}": round(float(np.nanmedian(ratio[m & signal])), 3) if (m & signal).any() else ""
                  for g, m in groups.items()}}
        if baseline is not None:
            both = signal & np.isfinite(ratios[baseline])
            above = float(np.mean(ratio[both] > ratios[baseline][both]))
            row[f"share_of_signal_voxels_above_{baseline}"] = round(above, 3)
        summary.append(row)
        print(json.dumps(row))
    for name, table in ((f"{stem}_epochs.csv", rows), (f"{stem}.csv", summary)):
        cols = list(dict.fromkeys(k for r in table for k in r))
        with open(args.out / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(table)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for arm in arms:
        ep = [r for r in rows if r["arm"] == arm]
        axes[0].plot([r["epoch"] for r in ep], [r["val_loss"] for r in ep], label=arm)
        axes[1].plot([r["epoch"] for r in ep], [r["val_median_r"] for r in ep], label=arm)
    axes[0].set(xlabel="epoch", ylabel="validation loss", title="encoder validation loss")
    axes[1].set(xlabel="epoch", ylabel="median validation r", title="encoder validation r (single trials)")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(args.out / f"{stem}.png", dpi=120)


if __name__ == "__main__":
    main()
