"""The statistics every evaluation shares: n-way identification over a distance matrix (random draws of the
distractors, vectorised), the exhaustive two-way, and the bootstrap CI of a mean over images."""

from __future__ import annotations

import numpy as np

from brainrecon.errors import UserError


def identification(dist: np.ndarray, ways: int, repeats: int, rng: np.random.Generator,
                   distractors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-image (% correct, normalised rank) of n-way identification.

    dist (N, M): distance of reconstruction i to candidate j; the true candidate of i is column i. Distractors are
    drawn without replacement for every repeat from the columns != i (distractors=None) or from the given columns.
    Correct: the truth is strictly closer than every distractor. Rank: distractors closer than the truth (ties count
    half) divided by n - 1 (0 = best, chance 0.5).
    """
    n = dist.shape[0]
    k = ways - 1
    if distractors is None:
        if k > dist.shape[1] - 1:
            raise UserError(f"--ways {ways} needs {ways} candidates but there are only {dist.shape[1]} test images")
        # column choices excluding i: draw from 0..M-2 and shift the values >= i by one
        keys = rng.random((n, repeats, dist.shape[1] - 1))
        pick = np.argpartition(keys, k - 1, axis=2)[..., :k] if k < keys.shape[2] else np.argsort(keys, axis=2)
        pick = pick + (pick >= np.arange(n)[:, None, None])
    else:
        if k > len(distractors):
            raise UserError(f"--ways {ways} needs {k} distractors but the pool has only {len(distractors)}")
        keys = rng.random((n, repeats, len(distractors)))
        pick = distractors[np.argpartition(keys, k - 1, axis=2)[..., :k] if k < keys.shape[2]
                           else np.argsort(keys, axis=2)]
    true_d = dist[np.arange(n), np.arange(n)][:, None, None]                          # (N, 1, 1)
    other = np.take_along_axis(dist[:, None, :].repeat(repeats, 1), pick, axis=2)   # (N, R, k)
    correct = (other > true_d).all(axis=2).mean(1)
    rank = ((other < true_d).sum(2) + 0.5 * (other == true_d).sum(2)).mean(1) / k
    return correct, rank


def exhaustive_two_way(dist: np.ndarray) -> np.ndarray:
    """Per image: the fraction of other test images j with d(i, i) < d(i, j) (the NSD-style exhaustive 2-way)."""
    n = dist.shape[0]
    true_d = np.diag(dist[:, :n])[:, None]
    mask = ~np.eye(n, dtype=bool)
    wins = (dist[:, :n] > true_d) + 0.5 * (dist[:, :n] == true_d)
    return (wins * mask).sum(1) / (n - 1)


def bootstrap_ci(values: np.ndarray, rng: np.random.Generator, n_boot: int = 2000) -> tuple[float, float]:
    idx = rng.integers(0, len(values), (n_boot, len(values)))
    means = values[idx].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))
