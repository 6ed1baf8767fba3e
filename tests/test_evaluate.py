"""n-way identification: known answers, and the vectorised result equals a naive loop."""

import numpy as np
import pytest

from brainrecon.errors import UserError
from brainrecon.evaluation.distances import distance_matrix, pixcorr_distance, ssim_distance
from brainrecon.evaluation.identification import EvalOptions, evaluate_runs
from brainrecon.evaluation.statistics import exhaustive_two_way, identification


def images(rng, n=20, size=16, c=3):
    return rng.integers(0, 256, (n, size, size, c), dtype=np.uint8)


def run_of(recon, truth, modality="rgb"):
    return {"reconstructions": recon, "ground_truth": truth, "modality": np.array(modality), "run": np.array("r"),
            "subject": np.array(3)}


@pytest.mark.parametrize("distractors", ["test", "pool"])
@pytest.mark.parametrize("metric", ["pixcorr", "ssim"])
def test_identity_is_perfect(rng, metric, distractors):
    truth = images(rng)
    pool = truth if distractors == "test" else np.concatenate([truth, images(rng, 30)])
    d = distance_matrix(metric, truth, pool)
    extra = None if distractors == "test" else np.arange(20, 50)
    for ways in (2, 5, 10):
        correct, rank = identification(d, ways, 50, rng, extra)
        assert correct.mean() == 1.0 and rank.mean() == 0.0


def test_noise_is_at_chance(rng):
    truth = images(rng, 50)
    d = pixcorr_distance(images(rng, 50), truth)
    for ways in (2, 5, 10):
        correct, rank = identification(d, ways, 200, rng)
        half = 2.5 * correct.std() / np.sqrt(len(correct)) + 0.02
        assert abs(correct.mean() - 1 / ways) < half
        assert abs(rank.mean() - 0.5) < 0.06


def test_permutation_is_far_below_chance(rng):
    truth = images(rng, 30)
    d = pixcorr_distance(np.roll(truth, 1, axis=0), truth)   # each reconstruction is another image's truth
    # with every other image among the candidates the wrongly matched truth always wins: 0% at n = N (chance 1/30)
    correct, rank = identification(d, 30, 10, rng)
    assert correct.mean() == 0.0 and rank.mean() > 0.5
    correct, _ = identification(d, 10, 200, rng)
    assert correct.mean() < 0.1 / 2


def naive(dist, ways, repeats, rng):
    n = len(dist)
    correct = np.zeros(n)
    for i in range(n):
        for _ in range(repeats):
            others = rng.choice([j for j in range(dist.shape[1]) if j != i], ways - 1, replace=False)
            correct[i] += all(dist[i, i] < dist[i, j] for j in others) / repeats
    return correct


def test_vectorised_equals_naive_loop_in_expectation(rng):
    d = rng.random((8, 8))
    exact = np.array([np.mean(d[i, i] < np.delete(d[i], i)) for i in range(8)])   # 2-way closed form
    fast, _ = identification(d, 2, 20000, np.random.default_rng(1))
    slow = naive(d, 2, 4000, np.random.default_rng(2))
    np.testing.assert_allclose(fast, exact, atol=0.02)
    np.testing.assert_allclose(slow, exact, atol=0.03)
    fast5, _ = identification(d, 5, 20000, np.random.default_rng(1))
    slow5 = naive(d, 5, 4000, np.random.default_rng(2))
    np.testing.assert_allclose(fast5, slow5, atol=0.04)


def test_exhaustive_two_way(rng):
    d = rng.random((6, 6))
    expected = [np.mean(d[i, i] < np.delete(d[i], i)) for i in range(6)]
    np.testing.assert_allclose(exhaustive_two_way(d), expected)


def test_ssim_of_identical_images_is_zero_distance(rng):
    x = images(rng, 3)
    d = ssim_distance(x, x)
    assert np.allclose(np.diag(d), 0, atol=1e-5) and (d[~np.eye(3, dtype=bool)] > 0.1).all()


def test_evaluate_runs_scores_both_channels_of_rgbd(rng):
    truth = images(rng, 12, c=4)
    records, depth = evaluate_runs([run_of(truth, truth, "rgbd")], EvalOptions(ways=(2, 10), metrics=("pixcorr",),
                                                                                repeats=20))
    assert {r["channel"] for r in records} == {"rgb", "depth"}
    assert all(r["mean"] == (1.0 if r["mode"] == "percent" else 0.0) for r in records)
    absrel = next(r for r in depth if r["metric"] == "abs_rel")
    assert absrel["mean"] < 1e-9


def test_ways_out_of_range_and_missing_weights(rng):
    truth = images(rng, 10)
    with pytest.raises(UserError, match="--ways 11 must lie in 2..10"):
        evaluate_runs([run_of(truth, truth)], EvalOptions(ways=(11,), metrics=("pixcorr",)))
    with pytest.raises(UserError, match="--metric 'lpips-alex' is unknown; choose from pixcorr, ssim"):
        evaluate_runs([run_of(truth, truth)], EvalOptions(ways=(2,), metrics=("lpips-alex",)))
    with pytest.raises(UserError, match="depth-perceptual needs"):
        evaluate_runs([run_of(truth[..., :1], truth[..., :1], "depth")],
                      EvalOptions(ways=(2,), metrics=("depth-perceptual",)))


def test_deterministic_per_seed(rng):
    truth, recon = images(rng, 15), images(rng, 15)
    a, _ = evaluate_runs([run_of(recon, truth)], EvalOptions(ways=(5,), metrics=("pixcorr",), seed=3))
    b, _ = evaluate_runs([run_of(recon, truth)], EvalOptions(ways=(5,), metrics=("pixcorr",), seed=3))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "per_image"} for r in rows]  # noqa: E731
    assert strip(a) == strip(b)
    assert all(np.array_equal(ra["per_image"], rb["per_image"]) for ra, rb in zip(a, b))


def test_comparison_grid_shows_the_same_images_for_each_decoder(rng, tmp_path):
    from PIL import Image

    from brainrecon.viz import comparison_grid
    truth = images(rng, 6, c=4)
    comparison_grid(truth, {"deep": truth, "ridge": truth[::-1]}, tmp_path / "g.png", n=4)
    with Image.open(tmp_path / "g.png") as g:
        w, h = g.size
    assert w > h  # 4 rows of 3 columns x (rgb, depth) panels
