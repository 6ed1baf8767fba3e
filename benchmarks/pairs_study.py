"""The pairs study's settings, read by the script that runs it (pairs_curve) and the one that scores it
(pairs_report): the simulated group, the new subject, the points of the curve and the fixed optimisation budget."""

from __future__ import annotations

GROUP = (1, 2, 3, 4, 5)
NEW = 5
POINTS = (1 / 16, 1 / 8, 1 / 4, 0)          # 0: all pairs
ADAPT_POINTS = (1 / 8, 1 / 16, 1 / 4)      # the goal's point first
ENCODER_BUDGET = ["train.steps_per_epoch=18", "data.val_fraction=0"]
DECODER_BUDGET = ["train.steps_per_epoch=50", "data.val_fraction=0"]
PRESET = "demo,fast"


def label(point: float) -> str:
    return "all" if point == 0 else f"1/{round(1 / point)}"
