"""One table from a network's name to what builds it, as timm's `register_model`: the encoder's backbones
(`model.arch`), the perceptual networks (`loss.perceptual_net`, the metrics') and classify's feature networks
(`--features`). Each constructor registers itself with a decorator beside the code it calls; callers build by name
through one lookup per family, never an if/elif over names.

The design, and why: the names are declared one layer down, in brainrecon/config/networks.py, because the config and
the CLI list and check them without torch and may not import this package (the layer order). A decorator refuses a
name not declared there, so a typo fails at import. Each family is registered by one module, which ends by calling
`check_complete` for it: importing that module fails when a declared name has no constructor, so the declarations and
the constructors cannot drift (tests/test_network_registry.py checks the two sets as well). The families' modules:

    backbone    brainrecon/models/backbones.py     (imported by models/encoder.py)
    perceptual  brainrecon/models/perceptual.py    (its front door, `build_perceptual_net`)
    features    brainrecon/evaluation/classify.py  (its front door, `feature_network`)

This module imports neither torch nor them (they import it), so it is a leaf of the models and no import is circular.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from brainrecon.config.networks import (
    BACKBONE_NAMES,
    FEATURE_NAMES,
    PERCEPTUAL_CHOICES,
    PERCEPTUAL_NAMES,
    backbone_spec,
    either,
)
from brainrecon.errors import UserError


@dataclass(frozen=True)
class Backbone:
    """An encoder backbone: `build(weights, modality, width, root)` -> the network with the weights
    `model.backbone_weights` names; `taps(network, modality, depth_input)` -> the module returning its named taps
    (conv1..conv4) and their `channels()`; `prepare(images, modality, input_size)` -> [0, 1] images as it reads them."""
    build: Callable[..., Any]
    taps: Callable[..., Any]
    prepare: Callable[..., Any]


@dataclass(frozen=True)
class Perceptual:
    """A perceptual network: `build(modality, root, *, seed, width, input_size, large)` -> the frozen network ([0, 1]
    images -> dict of named features); `missing(modality, root, large)` -> None when it builds here without a download,
    else what is missing and how to get it (None for a network that needs nothing)."""
    build: Callable[..., Any]
    missing: Callable[..., str | None] | None = None


class _Family:
    """The constructors of one family, keyed by the names declared for it."""

    def __init__(self, key: str, family: str, declared: tuple[str, ...], flag: str, choices: tuple[str, ...]):
        self.key, self.family, self.declared, self.flag, self.choices = key, family, declared, flag, choices
        self.entries: dict[str, Any] = {}

    def register(self, name: str, entry) -> None:
        if name not in self.declared:
            raise KeyError(f"{self.family} {name!r} is not declared in brainrecon/config/networks.py; declare it there")
        if name in self.entries:
            raise KeyError(f"{self.family} {name!r} is registered twice")
        self.entries[name] = entry

    def __getitem__(self, name: str):
        if name not in self.declared:
            raise UserError(f"{self.flag} {name!r}: choose one of {', '.join(self.choices)}")
        if name not in self.entries:  # a bug, not a user's mistake: the family's module was not imported
            raise LookupError(f"{self.family} {name!r} has no constructor: import {MODULES[self.key]} first")
        return self.entries[name]

    def check_complete(self) -> None:
        absent = [n for n in self.declared if n not in self.entries]
        if absent:
            raise LookupError(f"{self.family} {', '.join(absent)}: declared in brainrecon/config/networks.py but no "
                              f"constructor is registered in {MODULES[self.key]}")


MODULES = {"backbone": "brainrecon.models.backbones", "perceptual": "brainrecon.models.perceptual",
           "features": "brainrecon.evaluation.classify"}
"""The one module that registers each family."""
FAMILIES = {"backbone": _Family("backbone", "backbone", BACKBONE_NAMES, "model.arch", BACKBONE_NAMES),
            "perceptual": _Family("perceptual", "perceptual network", PERCEPTUAL_NAMES, "loss.perceptual_net",
                                  PERCEPTUAL_CHOICES),
            "features": _Family("features", "feature network", FEATURE_NAMES, "--features", FEATURE_NAMES)}


def register_backbone(name: str, *, taps: Callable, prepare: Callable):
    """Decorator: `build(weights, modality, width, root)` is backbone `name`, with its taps and input (`Backbone`)."""
    def add(build: Callable) -> Callable:
        FAMILIES["backbone"].register(name, Backbone(build, taps, prepare))
        return build
    return add


def register_perceptual(name: str, *, missing: Callable | None = None):
    """Decorator: `build(modality, root, *, seed, width, input_size, large)` is perceptual network `name`."""
    def add(build: Callable) -> Callable:
        FAMILIES["perceptual"].register(name, Perceptual(build, missing))
        return build
    return add


def register_features(name: str):
    """Decorator: `build(device)` -> features of [0, 1] images (N, 3, H, W) -> (N, D), as classify's `name`."""
    def add(build: Callable) -> Callable:
        FAMILIES["features"].register(name, build)
        return build
    return add


def check_complete(family: str) -> None:
    """Every name declared for `family` has its constructor (the family's module calls this at its end)."""
    FAMILIES[family].check_complete()


def registered(family: str) -> tuple[str, ...]:
    """The names that have a constructor, in the order they were registered."""
    return tuple(FAMILIES[family].entries)


def backbone(name: str) -> Backbone:
    """The backbone `name`; an undeclared name is one line naming the declared ones."""
    return FAMILIES["backbone"][name]


def build_backbone(name: str, weights: str, modality: str, width: float = 1.0, root=None):
    """Backbone `name` with the weights `model.backbone_weights` names (release, imagenet or none)."""
    entry, takes = backbone(name), backbone_spec(name).weights
    if weights not in takes:
        raise UserError(f"model.backbone_weights={weights!r}: model.arch={name} takes {either(takes)}")
    return entry.build(weights, modality, width, root)


def perceptual(name: str) -> Perceptual:
    """The perceptual network `name` (auto and none are resolved by models/perceptual.py, its front door)."""
    return FAMILIES["perceptual"][name]


def features(name: str) -> Callable:
    """classify's feature network `name`: `features(name)(device)` -> the features function."""
    return FAMILIES["features"][name]
