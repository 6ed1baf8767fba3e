"""`classify`'s options and the checks on them, without torch, so that the CLI refuses a bad value before the heavy
imports. The protocol itself is in classify.py."""

from __future__ import annotations

from dataclasses import dataclass

from brainrecon.config.choices import FEATURE_NETS
from brainrecon.errors import UserError

FEATURES = FEATURE_NETS
"""The feature networks `--features` takes (brainrecon/config/networks.py declares them)."""
SIDE = 112
"""The side every image is classified at (the authors resize every input to 112 px, bicubic)."""


@dataclass(frozen=True)
class ClassifyOptions:
    ways: tuple[int, ...] = (50, 100, 500, 1000)
    tops: tuple[int, ...] = (1, 5)
    trials: int = 1000
    seed: int = 0
    per_class: int = 100
    size: int | None = SIDE
    """Side the images are resized to (bicubic); None: the reconstructions' own side."""
    jpeg: int = 0
    """JPEG quality of a round trip applied to the reconstructions before classification (0: none)."""

    def __post_init__(self):
        if min(self.ways) < 2 or min(self.tops) < 1 or self.trials < 1 or self.per_class < 1:
            raise UserError("--ways must be at least 2, --top, --trials and --per-class at least 1")
        if self.size is not None and self.size < 16:
            raise UserError(f"--size {self.size}: give a side of at least 16 px, or native")
        if not 0 <= self.jpeg <= 100:
            raise UserError(f"--jpeg {self.jpeg}: give a JPEG quality from 1 to 100 (0: no round trip)")


def parse_size(text: str) -> int | None:
    """`--size`: a side in pixels, or `native` (the reconstructions' own side)."""
    if text == "native":
        return None
    try:
        return int(text)
    except ValueError:
        raise UserError(f"--size {text!r}: give a side in pixels (default {SIDE}) or native") from None
