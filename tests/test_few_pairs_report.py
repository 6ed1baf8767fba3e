"""The few-pairs study's report on a tiny committed fixture (tests/data/few_pairs_scores.json: per-image scores of
three arms, two points, three seeds, six images): its rows, its two intervals, its goal flags and its budget rule."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.few_pairs_plots import chosen_budget
from benchmarks.few_pairs_report import (
    MARGIN,
    arm_rows,
    carry_earlier,
    hierarchical_ci,
    image_ci,
    markdown,
    pair_rows,
    write_csv,
)

FIXTURE = Path(__file__).parent / "data" / "few_pairs_scores.json"


def _scores() -> dict:
    scores: dict = {}
    for r in json.loads(FIXTURE.read_text()):
        key = (r["regime"], r["arm"], r["point"], r["channel"], r["metric"])
        scores.setdefault(key, {})[r["seed"]] = np.array(r["per_image"])
    return scores


def test_arm_rows_are_seed_means_with_both_intervals(tmp_path):
    scores = _scores()
    rows = arm_rows(scores)
    assert len(rows) == len(scores)
    row = next(r for r in rows if (r["arm"], r["fraction"], r["channel"], r["metric"]) ==
               ("default", "1/16", "rgb", "pixcorr"))
    by_seed = scores[("hard", "default", "1of16", "rgb", "pixcorr")]
    means = [by_seed[s].mean() for s in range(3)]
    assert row["mean"] == round(float(np.mean(means)), 4) and row["pairs"] == 75 and row["seeds"] == 3
    assert row["seed_sd"] == round(float(np.std(means, ddof=1)), 4)
    # the default arm's seeds disagree (+0.08, -0.06, +0.01 by construction): the seed level widens the interval
    assert row["h_ci_high"] - row["h_ci_low"] > row["ci_high"] - row["ci_low"]
    write_csv(tmp_path / "arms.csv", rows)
    with open(tmp_path / "arms.csv") as f:
        first = next(csv.DictReader(f))
    assert first["regime"] == "hard" and "h_ci_low" in first


def test_pair_rows_pair_by_seed_and_flag_the_goal():
    scores = _scores()
    rows = pair_rows(scores)
    row = next(r for r in rows if (r["a"], r["b"], r["fraction"], r["channel"], r["metric"]) ==
               ("default", "pairs only", "all", "rgb", "ssim"))
    a, b = scores[("hard", "default", "all", "rgb", "ssim")], scores[("hard", "pairs only", "all", "rgb", "ssim")]
    per_seed = [float((a[s] - b[s]).mean()) for s in range(3)]
    assert row["diff"] == round(float(np.mean(per_seed)), 4)
    assert row["per_seed_diffs"] == " ".join(f"{d:+.3f}" for d in per_seed)
    assert row["non_inferior"] == (row["h_ci_low"] > MARGIN) and row["ahead"] == (row["h_ci_low"] > 0)
    other = next(r for r in rows if r["a"] == "default" and r["b"] == "ridge" and r["metric"] == "perceptual-effnet")
    assert other["non_inferior"] == "" and other["ahead"] == ""     # not a goal metric, and ridge is no "ahead" test


def test_only_the_named_candidates_are_judged_by_the_goal():
    scores = _scores()
    for key in [k for k in scores if k[1] == "default"]:                   # the paper's cycles, a later candidate
        scores[(key[0], "both cycles", *key[2:])] = {s: v - 0.01 for s, v in scores[key].items()}
    rows = pair_rows(scores)
    flagged = {(r["a"], r["b"]) for r in rows if r["non_inferior"] != ""}
    assert flagged == {("default", "pairs only"), ("default", "ridge"), ("both cycles", "pairs only"),
                       ("both cycles", "ridge")}
    assert all(r["ahead"] == "" for r in rows if r["b"] == "ridge")


def test_hierarchical_interval_is_the_image_interval_when_seeds_agree():
    """With three identical seeds the seed draw adds nothing: both intervals agree closely; with seeds shifted apart
    the hierarchical one is wider and still centred on the mean."""
    rng = np.random.default_rng(0)
    one = rng.normal(0, 1, 200)
    same = np.stack([one, one, one])
    lo, hi = image_ci(same, np.random.default_rng(1))
    hlo, hhi = hierarchical_ci(same, np.random.default_rng(1))
    assert abs((hhi - hlo) - (hi - lo)) < 0.25 * (hi - lo)
    apart = same + np.array([[-1.0], [0.0], [1.0]])
    hlo2, hhi2 = hierarchical_ci(apart, np.random.default_rng(1))
    assert hhi2 - hlo2 > 2 * (hi - lo) and hlo2 < apart.mean() < hhi2


def test_budget_rule_takes_the_smallest_budget_near_the_largest():
    rows = [{"stage": "decoder", "arm": arm, "fraction": f, "regime": "hard", "epochs": str(e), "score": str(v)}
            for arm, f, e, v in (("a", "all", 4, 0.30), ("a", "all", 8, 0.41), ("a", "all", 16, 0.42),
                                 ("b", "1of16", 4, 0.20), ("b", "1of16", 8, 0.215), ("b", "1of16", 16, 0.20))]
    assert chosen_budget(rows, "decoder", ["score"])[0] == 8
    rows[1]["score"] = "0.39"
    assert chosen_budget(rows, "decoder", ["score"])[0] == 16


def test_markdown_tables_hold_every_arm_and_comparison():
    scores = _scores()
    arms, pairs = arm_rows(scores), pair_rows(scores)
    text = markdown(arms, pairs)
    assert text.count("| hard | 75 |") == 3 + len({(r["a"], r["b"]) for r in pairs if r["pairs"] == 75})
    assert "default − pairs only" in text and "hier [" in text


def test_an_earlier_report_fills_in_only_what_is_not_scored_again(tmp_path):
    """Rows of runs no longer on disk come from the earlier CSVs, marked carried and typed as numbers; a key scored
    again comes from the new scores, unless the earlier row rests on more seeds."""
    scores = _scores()
    arms, pairs = arm_rows(scores), pair_rows(scores)
    write_csv(tmp_path / "few_pairs.csv", [r | {"mean": -1.0} for r in arms])             # the stale scores
    write_csv(tmp_path / "few_pairs_pairs.csv", pairs)
    now = {k: v for k, v in scores.items() if k[1] != "ridge"}                            # ridge not on disk now
    new_arms, new_pairs = arm_rows(now), pair_rows(now)
    merged_arms, merged_pairs = carry_earlier(new_arms, new_pairs, tmp_path / "few_pairs.csv",
                                              tmp_path / "few_pairs_pairs.csv")
    assert len(merged_arms) == len(arms) and len(merged_pairs) == len(pairs)
    carried = [r for r in merged_arms if r.get("carried")]
    assert carried and {r["arm"] for r in carried} == {"ridge"} and all(r["mean"] == -1.0 for r in carried)
    assert all(r["mean"] != -1.0 for r in merged_arms if not r.get("carried"))
    assert {(r["a"], r["b"]) for r in merged_pairs if r.get("carried")} == {(a, b) for a, b in
                                                                           {(r["a"], r["b"]) for r in pairs}
                                                                           if "ridge" in (a, b)}
    assert isinstance(carried[0]["pairs"], int) and isinstance(carried[0]["h_ci_low"], float)
    assert "ridge" in markdown(merged_arms, merged_pairs)
    one_seed = {k: {0: v[0]} for k, v in scores.items()}                                 # a rerun of fewer seeds
    kept, _ = carry_earlier(arm_rows(one_seed), [], tmp_path / "few_pairs.csv", tmp_path / "few_pairs_pairs.csv")
    assert all(r.get("carried") and r["seeds"] == 3 for r in kept)
    with pytest.raises(SystemExit, match="no earlier report"):
        carry_earlier(new_arms, new_pairs, tmp_path / "missing.csv", tmp_path / "few_pairs_pairs.csv")


def test_the_plot_draws_an_arm_that_has_no_colour(tmp_path):
    from benchmarks.few_pairs_plots import plot_arms
    rows = arm_rows(_scores())
    arms = {r["arm"] for r in rows}
    uncoloured = sorted(arms)[0]
    drawn = plot_arms(rows, tmp_path / "arms.png", {a: "tab:blue" for a in arms - {uncoloured}})
    assert (tmp_path / "arms.png").exists()
    assert drawn == arms
