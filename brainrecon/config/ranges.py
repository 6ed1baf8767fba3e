"""The allowed range of every numeric config key, in one table (`RANGES`), and the check that refuses a value out of
range naming where it was typed: `--set train.lr=-1`, the option (`--subject 0`), or the key and the file.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import yaml

from brainrecon.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """The values a numeric key allows: an interval (each end closed, open or absent), optionally a step the value must
    be a multiple of; for a list, every item, and `increasing` items where order matters."""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    multiple_of: int = 0
    increasing: bool = False

    def holds(self, value) -> bool:
        if isinstance(value, (list, tuple)):
            ordered = not self.increasing or all(a < b for a, b in zip(value, value[1:]))
            return ordered and all(self.holds(v) for v in value)
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return not self.multiple_of or value % self.multiple_of == 0

    def __str__(self) -> str:
        parts = [f"a multiple of {self.multiple_of}"] if self.multiple_of else []
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            parts.append(f"in {left}{self.low:g}, {self.high:g}{right}")
        elif self.low is not None:
            parts.append(f"{'above' if self.low_open else 'at least'} {self.low:g}")
        elif self.high is not None:
            parts.append(f"{'below' if self.high_open else 'at most'} {self.high:g}")
        return ", ".join(parts) or "a finite number"


_WEIGHT = Range(0)   # a loss weight: 0 turns its term off
RANGES: dict[str, Range] = {
    "data.subject": Range(1),
    "data.subjects": Range(1),
    "data.resolution": Range(16, multiple_of=8),
    "data.max_unpaired": Range(0),
    "data.val_fraction": Range(0, 0.5, high_open=True),
    "data.pairs": Range(0),
    "data.val_min": Range(1),
    "train.epochs": Range(1),
    "train.batch_size": Range(1),
    "train.lr": Range(0, 1, low_open=True),
    "train.milestones": Range(1, increasing=True),   # and below train.epochs where typed (load_config)
    "train.gamma": Range(0, 1, low_open=True),
    "train.seed": Range(0),
    "train.threads": Range(0),
    "train.log_every": Range(1),
    "train.steps_per_epoch": Range(0),
    "train.unpaired_fmri_batch": Range(1),
    "train.unpaired_image_batch": Range(1),
    "train.test_avg_fraction": Range(0, 1, low_open=True),
    "train.warn_seconds": Range(0),
    "train.cache_mb": Range(0),
    "model.width": Range(0, 1, low_open=True),
    "model.input_size": Range(32, multiple_of=16),
    "model.head_channels": Range(1),
    "model.dropout": Range(0, 1, high_open=True),
    "model.channels": Range(32, multiple_of=32),   # GroupNorm(32)
    "model.ridge_pool": Range(1),
    "loss.pad_percent": Range(0, 50, high_open=True),
    "loss.perceptual_width": Range(0, 1, low_open=True),
    **{f"loss.{name}": _WEIGHT for name in (
        "mse", "cosine", "group_lasso", "second_moment", "l1_convs", "l1_chan_mix", "l1_branch_mix",   # encoder
        "weights", "perceptual_weights", "rgb_l1", "depth_l1", "tv", "fmri_cosine", "gl_l1", "gl_gl")},  # decoder
    "ridge_lambdas": Range(0, low_open=True),
    "ridge_folds": Range(2),
}
"""Every numeric key of both stages (`section.key`) and the values it allows; a list's range holds for each item."""


def show_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip() \
        if isinstance(value, (list, dict)) else str(value)


def typed_as(key: str, value: Any, origin: dict[str, str] | None) -> str:
    """Where `key` was given, as the user typed it: `--set train.lr=-1`, `--subject 0`, or the key and the file."""
    source = (origin or {}).get(key)
    if source and source.startswith("-"):
        return source
    return f"{key}={show_value(value)}" + (f" in {source}" if source else "")


def check_range(key: str, value: Any, origin: dict[str, str] | None = None) -> None:
    rng = RANGES.get(key)
    if rng is not None and not isinstance(value, bool) and not rng.holds(value):
        rule = (f"list {'increasing ' if rng.increasing else ''}values, each {rng}" if isinstance(value, list)
                else f"be {rng}")
        raise ConfigError(f"{typed_as(key, value, origin)} is out of range: {key} must {rule}")


def leaves(values: dict, prefix: str = ""):
    for name, value in values.items():
        if isinstance(value, dict):
            yield from leaves(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def check_ranges(config) -> None:
    """Every numeric value of a built config against `RANGES` (also for a config made in code, not loaded)."""
    for key, value in leaves(dataclasses.asdict(config)):
        check_range(key, value)

