"""Paired comparisons of runs scored on the same test images.

Every run is scored on the same test images under the same distractor draws (`evaluate` seeds the draws by metric
and n, not by run), so two runs are compared image by image: the per-image score difference a - b, its mean, a paired
bootstrap 95 % CI over images, and a two-sided sign-flip permutation p-value (under the null the sign of each image's
difference is arbitrary). Side-by-side CIs of each run throw this pairing away and call real differences noise.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from brainrecon.errors import UserError

N_BOOT = 2000
N_PERM = 10000
KEY = ("channel", "metric", "distractors", "ways", "mode")
COLUMNS = ("run_a", "run_b", "channel", "metric", "distractors", "ways", "mode", "n_images", "mean_a", "mean_b",
           "diff", "ci_low", "ci_high", "p_value", "a_better", "b_better", "n_boot", "n_perm", "seed")


def paired_difference(a: np.ndarray, b: np.ndarray, seed: int = 0, n_boot: int = N_BOOT,
                      n_perm: int = N_PERM) -> dict:
    """Per-image scores of two runs on the same images -> mean difference a - b, paired bootstrap 95 % CI, two-sided
    sign-flip permutation p-value ((1 + #{|permuted mean| >= |observed|}) / (1 + n_perm)), and how many images each
    run scored higher on."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise UserError(f"a paired comparison needs the same images in both runs; found {a.shape} and {b.shape} "
                        "per-image scores")
    from brainrecon.evaluation.statistics import bootstrap_ci
    d = a - b
    ci_low, ci_high = bootstrap_ci(d, np.random.default_rng([seed, 1]), n_boot)     # resampling images, paired
    signs = np.random.default_rng([seed, 2]).choice((-1.0, 1.0), (n_perm, len(d)))
    observed = abs(d.mean())
    extreme = int((np.abs((signs * d).mean(1)) >= observed - 1e-12).sum())
    return {"diff": float(d.mean()), "ci_low": ci_low, "ci_high": ci_high, "p_value": (1 + extreme) / (1 + n_perm),
            "a_better": int((d > 0).sum()), "b_better": int((d < 0).sum()), "n_boot": n_boot, "n_perm": n_perm}


def compare_runs(records: list[dict], seed: int = 0) -> list[dict]:
    """One row per pair of runs (in the order given) x channel x metric x distractors x n x mode, from `evaluate`
    records that carry per-image scores. Runs scored on different test images are refused."""
    runs = list(dict.fromkeys(r["run"] for r in records))
    rows = []
    for run_a, run_b in combinations(runs, 2):
        by_key = {tuple(r[k] for k in KEY): r for r in records if r["run"] == run_b}
        for ra in (r for r in records if r["run"] == run_a):
            rb = by_key.get(tuple(ra[k] for k in KEY))
            if rb is None:
                continue
            if ra["test_set"] != rb["test_set"]:
                raise UserError(f"runs {run_a} and {run_b} were scored on different test images ({ra['channel']} "
                                "channel), so they cannot be compared image by image; evaluate runs of the same "
                                "subject and test split together")
            stats = paired_difference(ra["per_image"], rb["per_image"], seed)
            rows.append({"run_a": run_a, "run_b": run_b, **{k: ra[k] for k in KEY}, "n_images": len(ra["per_image"]),
                         "mean_a": ra["mean"], "mean_b": rb["mean"], **stats, "seed": seed})
    return rows


def describe(row: dict) -> str:
    """One line: 'rgb pixcorr 10-way: +0.080 [+0.010, +0.150], p = 0.03 (better on 20, worse on 9)'."""
    return (f"{row['channel']} {row['metric']} {row['ways']}-way {row['mode']}: {row['diff']:+.3f} "
            f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}], p = {row['p_value']:.3g} "
            f"(better on {row['a_better']}, worse on {row['b_better']} of {row['n_images']})")
