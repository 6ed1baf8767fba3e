"""Paired comparisons of runs on the same test images: checked against direct numpy computations."""

from __future__ import annotations

from itertools import product

import numpy as np
import pytest

from brainrecon.errors import UserError
from brainrecon.evaluation.compare import compare_runs, paired_difference
from brainrecon.evaluation.identification import EvalOptions, evaluate_runs, write_outputs


def test_a_known_shift_gives_a_ci_around_it_and_a_small_p():
    rng = np.random.default_rng(0)
    b = rng.random(50)
    a = b + 0.1 + rng.normal(0, 0.05, 50)
    d = a - b
    r = paired_difference(a, b, seed=3)
    assert r["diff"] == pytest.approx(d.mean(), abs=1e-12)
    se = d.std(ddof=1) / np.sqrt(len(d))                            # the normal-theory interval, independently
    assert r["ci_low"] == pytest.approx(d.mean() - 1.96 * se, abs=0.3 * se)
    assert r["ci_high"] == pytest.approx(d.mean() + 1.96 * se, abs=0.3 * se)
    assert r["ci_low"] < 0.1 < r["ci_high"] and r["ci_low"] > 0
    assert r["p_value"] < 0.01 and r["p_value"] == pytest.approx(1 / (1 + r["n_perm"]))
    assert (r["a_better"], r["b_better"]) == (int((d > 0).sum()), int((d < 0).sum()))


def test_identical_runs_give_zero_and_p_one():
    s = np.random.default_rng(1).random(30)
    r = paired_difference(s, s.copy())
    assert r["diff"] == 0 and r["ci_low"] == 0 and r["ci_high"] == 0 and r["p_value"] == 1.0
    assert r["a_better"] == r["b_better"] == 0


def test_sign_flip_p_matches_exact_enumeration():
    rng = np.random.default_rng(2)
    d = rng.normal(0.15, 0.3, 12)
    exact = np.mean([abs((np.array(signs) * d).mean()) >= abs(d.mean()) - 1e-12
                     for signs in product((-1, 1), repeat=len(d))])
    r = paired_difference(d, np.zeros_like(d))
    assert r["p_value"] == pytest.approx(exact, abs=0.015)


def test_unpaired_scores_and_different_test_sets_are_refused():
    with pytest.raises(UserError, match="same images"):
        paired_difference(np.zeros(5), np.zeros(6))
    row = {"channel": "rgb", "metric": "pixcorr", "distractors": "test", "ways": 2, "mode": "percent", "mean": 0.5,
           "per_image": np.zeros(4)}
    records = [{**row, "run": "a", "test_set": "x"}, {**row, "run": "b", "test_set": "y"}]
    with pytest.raises(UserError, match="different test images"):
        compare_runs(records)


def _run(name, truth, noise, rng):
    """Reconstructions: the truth plus noise, or (noise None) unrelated images."""
    recon = rng.integers(0, 256, truth.shape, dtype=np.uint8) if noise is None else \
        np.clip(truth.astype(float) + rng.normal(0, noise, truth.shape), 0, 255).astype(np.uint8)
    return {"run": name, "subject": 3, "modality": "rgb", "reconstructions": recon, "ground_truth": truth}


def test_evaluate_writes_the_pairwise_comparisons(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    runs = [_run("good", truth, 40, rng), _run("bad", truth, None, rng), _run("good_again", truth, 40, rng)]
    opts = EvalOptions(ways=(2, 5), metrics=("pixcorr",), repeats=50, mode="percent")
    records, depth = evaluate_runs(runs, opts, tmp_path)
    rows = compare_runs(records)
    assert [(r["run_a"], r["run_b"], r["ways"]) for r in rows] == [
        ("good", "bad", 2), ("good", "bad", 5), ("good", "good_again", 2), ("good", "good_again", 5),
        ("bad", "good_again", 2), ("bad", "good_again", 5)]
    per = {(r["run"], r["ways"]): r["per_image"] for r in records}
    for r in rows:                                                   # the difference of the runs' own scores
        assert r["diff"] == pytest.approx((per[r["run_a"], r["ways"]] - per[r["run_b"], r["ways"]]).mean())
        assert r["mean_a"] - r["mean_b"] == pytest.approx(r["diff"])
    good_bad = rows[1]
    assert good_bad["diff"] > 0.3 and good_bad["p_value"] < 0.01 and good_bad["ci_low"] > 0
    paths = write_outputs(records, depth, tmp_path / "ev", rows)
    lines = paths["comparisons_csv"].read_text().splitlines()
    assert lines[0].startswith("run_a,run_b,channel,metric") and len(lines) == 7


def test_runs_of_the_same_name_from_different_folders_are_told_apart(tmp_path):
    from brainrecon.reconstruct import distinct_runs
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    runs = [{**_run("decoder_rgb", truth, 40, rng), "path": tmp_path / f"{k}/decoder_rgb/reconstructions.npz"}
            for k in ("a", "b")]
    runs.append({**_run("ridge_rgb", truth, None, rng), "path": tmp_path / "a/ridge_rgb/reconstructions.npz"})
    named = distinct_runs(runs)
    assert [r["run"] for r in named] == ["decoder_rgb (a/decoder_rgb)", "decoder_rgb (b/decoder_rgb)", "ridge_rgb"]
    records, _ = evaluate_runs(named, EvalOptions(ways=(2,), metrics=("pixcorr",), repeats=20, mode="percent"),
                               tmp_path)
    assert len(compare_runs(records)) == 3   # both decoders compared with each other, not merged into one run
