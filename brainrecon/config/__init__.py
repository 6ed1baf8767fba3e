"""A stage's resolved config: the paper settings, a preset, overlay or file, and `--set` overrides, into one typed
config; and that config back to YAML (`config show`, every run's config.yaml).

Paper settings are the dataclass defaults; `configs/<stage>/<modality>.yaml` sets what differs per modality in the
published runs and `configs/<stage>/demo.yaml` the small CPU settings for the simulated subject. Precedence, last
wins: dataclass defaults < modality YAML < the chosen preset or file < `--set section.key=value`. A preset or file
may hold a section per modality (`rgbd: {model: {depth_input: branch}}`): it is merged over the rest of that file
for that modality only, so one preset can serve every modality.

A preset that holds only part of a configuration declares the preset it refines (`overlay_on: demo` in
`configs/<stage>/fast.yaml`) and is refused unless that preset comes first (`--config demo,fast`). `--config` also takes
a YAML file or a run folder (its `config.yaml`).

Numbers are read as researchers write them (`1e-3`, `1E-4`, `5e+2`: floats, though YAML 1.1 wants a dot), in `--set`,
YAML files and presets alike; every numeric key is checked against its allowed range in `RANGES`, the one table of
them, and a value out of range is refused naming where it was typed (`--set train.lr=-1`, the flag, or the file).

The presets are read through the installed package `brainrecon.configs` (the top-level `configs/` folder, mapped in
pyproject.toml), so a wheel, an sdist and an editable install all resolve the same files.

The pieces live beside this module, and every public name is importable from here: the stage dataclasses in
`brainrecon.config.schema`, the range table in `brainrecon.config.ranges`, YAML reading and typed building in
`brainrecon.config.yaml_io`, the stage, modality, ROI and metric names in `brainrecon.config.choices`.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

import yaml

from brainrecon.config.choices import ALL_METRICS, MODALITIES, ROIS, STAGES
from brainrecon.config.ranges import RANGES, Range, check_ranges, leaves, show_value, typed_as
from brainrecon.config.schema import (
    DEPTH_INPUTS,
    DataConfig,
    DecoderConfig,
    DecoderLossConfig,
    DecoderModelConfig,
    DecoderTrainConfig,
    EncoderConfig,
    EncoderLossConfig,
    EncoderModelConfig,
    TrainConfig,
    check_modality,
)
from brainrecon.config.yaml_io import build_config, merge_mappings, read_yaml, yaml_load, yaml_problem
from brainrecon.errors import ConfigError

__all__ = [  # the names callers import from brainrecon.config, wherever they are defined
    "ALL_METRICS", "MODALITIES", "ROIS", "STAGES", "RANGES", "Range", "check_ranges", "DEPTH_INPUTS", "DataConfig",
    "DecoderConfig", "DecoderLossConfig", "DecoderModelConfig", "DecoderTrainConfig", "EncoderConfig",
    "EncoderLossConfig", "EncoderModelConfig", "TrainConfig", "check_modality", "read_yaml", "yaml_load",
    "OVERLAY_KEY", "for_modality", "preset_file", "preset_names", "preset_choices", "parse_overrides", "load_config",
    "to_dict", "to_yaml", "from_dict"]


def for_modality(values: dict, modality: str, path) -> dict:
    """A preset's mapping with its per-modality sections resolved: the section named `modality` merged over the rest,
    the other modalities' sections dropped."""
    own = {k: v for k, v in values.items() if k not in MODALITIES}
    for name in MODALITIES:
        section = values.get(name)
        if section is not None and not isinstance(section, dict):
            raise ConfigError(f"config file {path}: the {name!r} section must map sections to settings (e.g. "
                              f"'{name}: {{model: {{...}}}}'), found {type(section).__name__}")
    return merge_mappings(own, values.get(modality) or {})


def preset_file(stage: str, name: str):
    """The shipped YAML `configs/<stage>/<name>.yaml`, as an importlib.resources Traversable."""
    return resources.files("brainrecon.configs").joinpath(stage, f"{name}.yaml")


def preset_names(stage: str) -> list[str]:
    """Every preset shipped for a stage (modality files excluded), e.g. ['demo', 'fast']."""
    names = (p.name[:-5] for p in resources.files("brainrecon.configs").joinpath(stage).iterdir()
             if p.name.endswith(".yaml"))
    return sorted(n for n in names if n not in MODALITIES)


OVERLAY_KEY = "overlay_on"
"""A top-level key naming the preset a partial preset refines (`overlay_on: demo`): it is accepted only after it."""


def preset_choices(stage: str) -> str:
    """The `--config` values a stage's presets allow, in words: full presets alone, overlays after their base."""
    full, overlays = ["paper"], []
    for name in preset_names(stage):
        base = read_yaml(preset_file(stage, name)).get(OVERLAY_KEY)
        (overlays if base else full).append(f"{base},{name}" if base else name)
    return ", ".join(full) + (f"; refined: {', '.join(overlays)}" if overlays else "")


def _split_override(item: str) -> tuple[str, str]:
    if "=" not in item or not item.split("=", 1)[0].strip():
        raise ConfigError(f"--set {item!r} must look like section.key=value, e.g. --set train.lr=1e-3")
    key, raw = item.split("=", 1)
    key = key.strip()
    if key == "modality":
        raise ConfigError(f"--set {item}: the modality is chosen with --modality")
    return key, raw


def parse_overrides(overrides: list[str]) -> dict:
    """`section.key=value` strings -> nested dict; values are parsed as YAML scalars/lists (`1e-3` is a number)."""
    out: dict = {}
    for item in overrides or []:
        key, raw = _split_override(item)
        try:
            value = yaml_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item}: the value is not valid YAML ({yaml_problem(e, where=False)}); e.g. "
                              "--set 'loss.weights=[1, 1, 0]' (quoted for the shell)") from None
        node = out
        *parents, leaf = key.split(".")
        for depth, p in enumerate(parents):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item}: {'.'.join(parents[:depth + 1])} was given a value by an earlier "
                                  "--set; it cannot also hold keys")
        node[leaf] = value
    return out


def _config_source(stage: str, name: str):
    """What one `--config` item names and how to say it: (a file or shipped preset, its label)."""
    pathlike = "/" in name or "\\" in name or name.endswith((".yaml", ".yml")) or name.startswith(("~", "."))
    if not pathlike:
        if name in MODALITIES:
            raise ConfigError(f"--config {name}: {name} is a modality, not a preset; pass --modality {name} (its "
                              f"published settings are the default, --config paper)")
        if preset_file(stage, name).is_file():
            return preset_file(stage, name), f"preset {name} (configs/{stage}/{name}.yaml)"
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "config.yaml").is_file():
            return path / "config.yaml", f"run config {path / 'config.yaml'}"
        raise ConfigError(f"--config {name}: the folder holds no config.yaml; pass a run folder (every run writes "
                          f"its config.yaml), a YAML file or a preset ({preset_choices(stage)})")
    if path.is_file():
        return path, f"config file {path}"
    if pathlike:
        raise ConfigError(f"--config {name}: no such file ({path.resolve()}); pass a YAML file, a run folder or a "
                          f"preset ({preset_choices(stage)})")
    raise ConfigError(f"--config {name!r} is neither a preset, a YAML file nor a run folder; presets for {stage}: "
                      f"{preset_choices(stage)}")


def _label(values: dict, label: str | None, origin: dict[str, str], flags: dict[str, str] | None = None) -> None:
    for key, value in leaves(values):
        if flags and key in flags:
            origin[key] = f"{flags[key]} {show_value(value)}"
        elif label:
            origin[key] = label
        else:
            origin.pop(key, None)


def load_config(stage: str, modality: str, config: str = "paper", overrides: list[str] | None = None,
                extra: dict | None = None, flags: dict[str, str] | None = None):
    """Resolve the config for `stage` (encoder | decoder) and `modality`; see the module docstring for precedence.

    `overrides`: `--set section.key=value` strings; `extra`: values of named options as a nested mapping, below
    `--set`; `flags`: the option that gave a key of either (`{"data.subject": "--subject"}`), so that a value out
    of range is refused naming the option as typed rather than the key."""
    check_modality(modality)
    if stage not in STAGES:
        raise ConfigError(f"--stage {stage!r}; choose encoder or decoder")
    cls = {"encoder": EncoderConfig, "decoder": DecoderConfig}[stage]
    paper = preset_file(stage, modality)
    if not paper.is_file():  # a broken install must not train the published runs with the wrong settings
        raise ConfigError(f"the shipped config configs/{stage}/{modality}.yaml is missing from the brainrecon "
                          f"install ({paper}); reinstall brainrecon")
    origin: dict[str, str] = {}
    values = read_yaml(paper)
    _label(values, f"configs/{stage}/{modality}.yaml", origin)
    chain: list[str] = []
    for name in (config or "paper").split(","):  # e.g. "demo,fast": presets and files merged in order
        name = name.strip()
        if name in ("paper", ""):
            continue
        path, label = _config_source(stage, name)
        found = read_yaml(path)
        base = found.pop(OVERLAY_KEY, None)
        if base is not None and base not in chain:
            raise ConfigError(f"--config {name}: {label} only refines the {base} preset and is not a configuration "
                              f"of its own; use --config {base},{name}")
        found = for_modality(found, modality, path)
        shown = found.pop("modality", modality)
        if shown != modality:
            raise ConfigError(f"--config {name}: {label} is a {shown} config (modality: {shown}); pass --modality "
                              f"{shown}, or delete its modality line to use it for {modality}")
        _label(found, label, origin)
        values = merge_mappings(values, found)
        chain.append(name)
    _label(extra or {}, None, origin, flags)
    values = merge_mappings(values, extra or {})
    for item in overrides or []:   # one at a time, so that each value is labelled with the item that gave it
        key, raw = _split_override(item)
        given = parse_overrides([item])
        typed = f"{flags[key]} {raw.strip()}" if flags and key in flags else f"--set {item}"
        _label(given, typed, origin)
        values = merge_mappings(values, given)
    values["modality"] = modality
    cfg = build_config(cls, values, "", origin)
    _check_milestones(cfg.train, origin)
    return cfg


def _check_milestones(train: TrainConfig, origin: dict[str, str]) -> None:
    """Milestones given by the user (a file, `--set`) must fall before the last epoch, where a decay can apply; a
    shipped preset's schedule, or a run folder's (its resolved config, reused), cut short by `--epochs` simply does
    not reach its later milestones."""
    source = origin.get("train.milestones", "")
    typed = source and not source.startswith(("preset ", "configs/", "run config "))
    late = [m for m in train.milestones if m >= train.epochs]
    if typed and late:
        epochs = typed_as("train.epochs", train.epochs, origin)
        rule = (f"train.milestones must list epochs in [1, {train.epochs - 1}], below the epoch count ({epochs})"
                if train.epochs > 1 else f"a 1-epoch run ({epochs}) takes no train.milestones: set []")
        raise ConfigError(f"{typed_as('train.milestones', train.milestones, origin)} is out of range: {rule}; a decay "
                          "at or after the last epoch never applies")


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def to_yaml(config) -> str:
    """The resolved config as YAML: what `config show` prints and every run writes to config.yaml."""
    return yaml.safe_dump(config if isinstance(config, dict) else to_dict(config), sort_keys=False)


def from_dict(stage: str, values: dict):
    cls = {"encoder": EncoderConfig, "decoder": DecoderConfig}[stage]
    return build_config(cls, values)
