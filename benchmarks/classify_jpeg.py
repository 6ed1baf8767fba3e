"""python -m benchmarks.classify_jpeg RECONS: what `classify --jpeg 75` changes, on a run's reconstructions.

The simulated subject has no semantic classes, so each test image's ground truth stands in for a class prototype:
the classify protocol (112 px, the stand-in features, 1 - Pearson r, random trials) identifies each reconstruction
among n ground truths, with and without the quality-75 JPEG round trip. Also the round trip's pixel change and the
features' change (1 - r between a reconstruction's features and its JPEG copy's, against 1 - r to its ground truth).
Prints one line per quantity; writes benchmarks/results/classify_jpeg.csv.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from brainrecon.correlation import correlation_distance
from brainrecon.evaluation.classify import ClassifyOptions, extract, feature_network, prepare, trial_accuracy
from brainrecon.evaluation.compare import paired_difference
from brainrecon.evaluation.statistics import bootstrap_ci
from brainrecon.reconstruct import load_reconstructions


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("recons", type=Path)
    ap.add_argument("--features", default="effnet-lite0")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/classify_jpeg.csv"))
    args = ap.parse_args()
    rec = load_reconstructions(args.recons)
    recon, truth = rec["reconstructions"][..., :3], rec["ground_truth"][..., :3]
    n = len(recon)
    net = feature_network(args.features, "cpu")
    plain, jpeg = prepare(recon, 112), prepare(recon, 112, jpeg=75)
    f_truth, f_plain, f_jpeg = extract(net, prepare(truth, 112)), extract(net, plain), extract(net, jpeg)
    rows = [{"quantity": "pixel mean |jpeg - plain| (0-255, at 112 px)",
             "value": round(float(np.abs(jpeg.astype(int) - plain).mean()), 2)},
            {"quantity": "features 1-r(plain, jpeg), mean over images",
             "value": round(float(correlation_distance(f_plain, f_jpeg).mean()), 4)},
            {"quantity": "features 1-r(plain, ground truth), mean over images",
             "value": round(float(correlation_distance(f_plain, f_truth).mean()), 4)}]
    ways = tuple(w for w in (2, 10, n) if w <= n)
    opts = ClassifyOptions(ways=ways, tops=(1,), trials=1000)
    accs = {}
    for name, feats in (("plain", f_plain), ("jpeg 75", f_jpeg)):
        accs[name] = acc = trial_accuracy(correlation_distance(feats, f_truth, cross=True), np.arange(n), opts)
        for (w, k), a in acc.items():
            lo, hi = bootstrap_ci(a, np.random.default_rng(0))
            rows.append({"quantity": f"{name}: {w}-way top-{k} among ground truths",
                         "value": f"{a.mean():.3f} [{lo:.2f}-{hi:.2f}]"})
    for key in accs["plain"]:                    # the same trials for both: paired per image
        d = paired_difference(accs["plain"][key], accs["jpeg 75"][key], 0)
        rows.append({"quantity": f"plain - jpeg 75: {key[0]}-way top-{key[1]}, paired",
                     "value": f"{d['diff']:+.3f} [{d['ci_low']:+.2f} to {d['ci_high']:+.2f}], p {d['p_value']:.2g}"})
    for r in rows:
        print(f"{r['quantity']}: {r['value']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["quantity", "value"])
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
