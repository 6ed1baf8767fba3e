"""The few-pairs study's pictures and its learning curves: identification against pairs per regime and arm
(few_pairs.png), and the learning curves that fixed the budgets (few_pairs_curves.csv / .png, with the budget rule of
docs/results.md applied to them)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from benchmarks.few_pairs_report import GOAL_PANELS, WAYS, _score_file, scored_panels, write_csv
from brainrecon.reconstruct import NPZ

COLOURS = {"default": "tab:red", "both cycles": "tab:blue", "pairs only": "tab:orange", "ridge": "tab:grey",
           "both cycles, encoder on all pairs (oracle)": "tab:purple", "ED only": "tab:cyan", "DE only": "tab:olive",
           "default without ed_noise": "tab:pink", "default without ridge_anchor": "tab:brown",
           "both cycles, encoder adapted from a group": "tab:green", "both cycles, residual ED noise": "gold",
           "both cycles, encoder-r DE weights": "teal", "both cycles, ridge read-out encoder": "navy",
           "both cycles, transductive": "black", "both cycles, 48 unpaired images": "lime"}
TOLERANCE = 0.02


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_arms(rows: list[dict], path: Path, colours: dict[str, str] = COLOURS,
              title: str = "SIMULATED subject, few pairs") -> set[str]:
    """One row of panels per regime: fraction correct against pairs (log scale), seed mean with seed-SD bars; an arm
    without a colour in `colours` is drawn in matplotlib's next colour, never left out. Returns the arms drawn."""
    drawn: set[str] = set()
    if not rows:
        return drawn
    plt = _plt()
    regimes = sorted({r["regime"] for r in rows})
    arms = [*colours, *sorted({r["arm"] for r in rows} - set(colours))]
    panels = scored_panels(rows)
    fig, axes = plt.subplots(len(regimes), len(panels), figsize=(3.6 * len(panels), 3.2 * len(regimes)),
                             squeeze=False, sharex=True)
    for i, regime in enumerate(regimes):
        for j, (channel, metric) in enumerate(panels):
            ax = axes[i][j]
            for arm in arms:
                colour = colours.get(arm)
                pts = sorted((r["pairs"], r["mean"], r["seed_sd"] or 0.0) for r in rows if r["arm"] == arm and
                             r["regime"] == regime and r["channel"] == channel and r["metric"] == metric)
                if pts:
                    x, m, sd = zip(*pts)
                    ax.errorbar(x, m, yerr=sd, fmt="o-", color=colour, label=arm, capsize=3, ms=3, lw=1)
                    drawn.add(arm)
            ax.axhline(1 / WAYS, color="k", lw=0.8, ls=":")
            ax.set_xscale("log", base=2)
            ax.set_xticks([75, 150, 300, 1200], ["75", "150", "300", "1200"])
            ax.set_title(f"{regime}: {channel} {metric}", fontsize=8)
    axes[0][0].set_ylabel(f"{WAYS}-way fraction correct")
    axes[0][0].legend(fontsize=6)
    shared = "; perceptual-effnet shares a network with the method" if ("rgb", "perceptual-effnet") in panels else ""
    fig.suptitle(f"{title}: seed mean and SD (chance dotted){shared}", fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")
    return drawn


def curve_rows(out: Path) -> list[dict]:
    """The learning-curve runs of every regime with their scores (decoders: GOAL_PANELS, 10-way)."""
    rows = []
    for listing in sorted(out.glob("*/curves.csv")):
        with open(listing) as f:
            for r in csv.DictReader(f):
                if r["stage"] == "decoder":
                    scores = _score_file(out / r["run"] / "reconstruct_test" / NPZ, listing.parent / "data")
                    r.update({f"{c} {m}": round(float(np.mean(scores[(c, m)])), 4) for c, m in GOAL_PANELS})
                rows.append({k: v for k, v in r.items() if v != ""})
    return rows


def chosen_budget(rows: list[dict], stage: str, keys: list[str]) -> tuple[int, str]:
    """The budget rule: the smallest budget within TOLERANCE of the largest budget's score, for every arm at every
    pair count of the curves; the largest when none is."""
    mine = [r for r in rows if r["stage"] == stage]
    budgets = sorted({int(r["epochs"]) for r in mine})
    top = budgets[-1]
    ref = {(r["arm"], r["fraction"], r["regime"]): r for r in mine if int(r["epochs"]) == top}
    for b in budgets:
        gaps = [abs(float(r[k]) - float(ref[(r["arm"], r["fraction"], r["regime"])][k]))
                for r in mine if int(r["epochs"]) == b for k in keys]
        if gaps and max(gaps) <= TOLERANCE:
            return b, f"{stage}: {b} epochs (largest gap to {top} epochs: {max(gaps):.3f})"
    return top, f"{stage}: {top} epochs (no smaller budget within {TOLERANCE})"


def plot_curves(out: Path) -> None:
    rows = curve_rows(out)
    if not rows:
        return
    write_csv(out / "few_pairs_curves.csv", rows)
    for stage, keys in (("encoder", ["median_test_r"]), ("decoder", [f"{c} {m}" for c, m in GOAL_PANELS])):
        if any(r["stage"] == stage for r in rows):
            print("budget rule ->", chosen_budget(rows, stage, keys)[1])
    plt = _plt()
    panels = [("encoder", "median_test_r")] + [("decoder", f"{c} {m}") for c, m in GOAL_PANELS]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.2))
    for ax, (stage, key) in zip(axes, panels):
        groups = sorted({(r["regime"], r["arm"], r["fraction"]) for r in rows if r["stage"] == stage})
        for regime, arm, fraction in groups:
            pts = sorted((int(r["steps"]), float(r[key])) for r in rows if r["stage"] == stage and
                         (r["regime"], r["arm"], r["fraction"]) == (regime, arm, fraction))
            x, y = zip(*pts)
            ax.plot(x, y, "o-" if fraction == "all" else "s--", ms=3, lw=1,
                    color=COLOURS.get(arm, "k"), alpha=1.0 if regime == "hard" else 0.5,
                    label=f"{regime} {arm} {fraction.replace('of', '/')}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("optimiser steps")
        ax.set_title(f"{stage}: {key}", fontsize=8)
    axes[0].legend(fontsize=5)
    axes[1].legend(fontsize=5)
    fig.suptitle("Learning curves (seed 0, test images): the budgets of the few-pairs study", fontsize=9)
    fig.savefig(out / "few_pairs_curves.png", dpi=100, bbox_inches="tight")
    print(f"wrote {out / 'few_pairs_curves.png'}")
