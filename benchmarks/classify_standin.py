"""python -m benchmarks.classify_standin: which EfficientNet-Lite0 tap stands in for AlexNet conv4 in `classify`.

A constructed tree of low-level classes, where the answer is known: each class is a grating of its own orientation,
spatial frequency and colour (60 classes); prototypes are the mean features of 20 noisy draws per class (random
phase jitter, pixel noise); the "reconstructions" are 2 further draws per class, blurred and noisier. Each tap is
scored with the `classify` protocol itself (112 px, 1 - Pearson r to the prototypes, 50-way top-1, 200 trials per
image), beside a plain pixel-correlation classifier. Each tap's stride and empirical receptive field (the input
pixels a centre unit's gradient reaches, at 448 px, random input; AlexNet with random weights: a property of the
architecture) are printed next to AlexNet conv4's. Writes benchmarks/results/classify_standin.csv.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from brainrecon.correlation import correlation_distance
from brainrecon.evaluation.classify import ClassifyOptions, effnet_tap, extract, trial_accuracy
from brainrecon.models.effnet import load_effnet_lite0

SIDE = 112


def grating(c: int, n_classes: int, rng: np.random.Generator, n: int, noise: float, blur: float) -> np.ndarray:
    """n draws of class c: uint8 (n, SIDE, SIDE, 3)."""
    theta = np.pi * (c % 6) / 6 + 0.1 * (c // 6)           # orientation, frequency and colour each vary by class
    freq = 2.0 + 1.5 * ((c * 7) % 10)                      # cycles per image
    hue = 0.5 + 0.4 * np.array([np.cos(2.4 * c), np.cos(2.4 * c + 2.1), np.cos(2.4 * c + 4.2)])
    yy, xx = np.mgrid[:SIDE, :SIDE] / SIDE
    out = []
    for _ in range(n):
        phase = rng.uniform(0, np.pi / 3)
        g = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (np.cos(theta) * xx + np.sin(theta) * yy) + phase)
        img = hue * g[..., None] + (1 - hue) * (1 - g[..., None]) * 0.3
        img = img + rng.normal(0, noise, img.shape)
        out.append(np.clip(img, 0, 1))
    x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float()
    if blur:
        k = torch.exp(-torch.arange(-3, 4).float() ** 2 / (2 * blur ** 2))
        k = (k / k.sum()).view(1, 1, 1, 7).repeat(3, 1, 1, 1)
        x = F.conv2d(F.pad(x, (3, 3, 0, 0), mode="reflect"), k, groups=3)
        x = F.conv2d(F.pad(x, (0, 0, 3, 3), mode="reflect"), k.transpose(2, 3), groups=3)
    return (x.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def rf_of(module_fn, side: int = 448) -> tuple[int, int]:
    """(stride, receptive field) of a feature map function (1, 3, H, W) -> (1, C, h, w)."""
    x = torch.rand(1, 3, side, side, requires_grad=True)
    y = module_fn(x)
    h, w = y.shape[-2:]
    y[0, :, h // 2, w // 2].sum().backward()
    cols = np.nonzero(x.grad[0].abs().sum((0, 1)).numpy() > 0)[0]
    return round(side / w), int(cols.max() - cols.min() + 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--classes", type=int, default=60)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/classify_standin.csv"))
    args = ap.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = args.classes
    proto_imgs = [grating(c, n, rng, 20, noise=0.1, blur=0) for c in range(n)]
    recons = np.concatenate([grating(c, n, rng, 2, noise=0.2, blur=1.5) for c in range(n)])
    true = np.repeat(np.arange(n), 2)
    opts = ClassifyOptions(ways=(50,), tops=(1,), trials=200)
    net = load_effnet_lite0().eval()

    def spatial(stage):
        def run(x):
            x = (x - 0.5) / 0.5
            if stage is None:
                return net.forward_features(x)
            x = net.bn1(net.conv_stem(x))
            for block in net.blocks[:stage]:
                x = block(x)
            return x
        return run

    taps = {"pixels": None, **{f"stage{s}": s for s in range(1, 8)}, "last map": "last"}
    rows = []
    for name, stage in taps.items():
        if name == "pixels":
            f = lambda x: x.flatten(1)                                                    # noqa: E731
            stride, rf = 1, 1
        else:
            s = None if stage == "last" else stage
            f = effnet_tap(net, s)
            with torch.enable_grad():
                stride, rf = rf_of(spatial(s))
        protos = np.stack([extract(f, imgs).mean(0) for imgs in proto_imgs])
        acc = trial_accuracy(correlation_distance(extract(f, recons), protos, cross=True), true, opts)[(50, 1)]
        dims = extract(f, recons[:1]).shape[1]
        rows.append({"tap": name, "stride": stride, "receptive_field_px": rf, "features": dims,
                     "top1_50way": round(float(acc.mean()), 3)})
        print(rows[-1], flush=True)
    from torchvision.models import alexnet
    conv4 = alexnet(weights=None).features[:10]
    with torch.enable_grad():
        stride, rf = rf_of(lambda x: conv4(x))
    rows.append({"tap": "alexnet conv4 (architecture only)", "stride": stride, "receptive_field_px": rf,
                 "features": int(conv4(torch.zeros(1, 3, SIDE, SIDE)).numel()), "top1_50way": ""})
    print(rows[-1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
