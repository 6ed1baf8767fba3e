"""YAML in, typed values out: the number-aware loader (`1e-3` is a float), reading a config file with one-line errors,
and building a config dataclass from a mapping key by key -- its type, then its range -- naming where a bad value was
given.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from brainrecon.config.ranges import check_range, typed_as
from brainrecon.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader reading numbers as YAML 1.2 and researchers write them: `1e-3`, `1E-4`, `5e+2` are floats
    (YAML 1.1 wants a dot and a signed exponent, so PyYAML reads `1e-3` as a string)."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"""^[-+]?(?:
      [0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+
    | \.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?)$""", re.X), list("-+0123456789."))


def yaml_load(text: str) -> Any:
    """YAML text -> Python values, numbers as researchers write them (see `_Loader`)."""
    return yaml.load(text, Loader=_Loader)


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, hint: Any, key: str, origin: dict[str, str] | None) -> Any:
    """Check (and gently convert) one YAML value against its annotated type."""
    origin_ = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{typed_as(key, value, origin)}: {key} is a section; give a mapping of keys "
                              f"({key}.<key>=value), found {value!r}")
        return build_config(hint, value, key, origin)
    if origin_ in (list, typing.List):
        (item,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{typed_as(key, value, origin)}: {key} must be a list, e.g. [1, 2], found {value!r}")
        return [_coerce_scalar(v, item, f"{key}[{i}]", typed_as(key, value, origin)) for i, v in enumerate(value)]
    if origin_ in (typing.Union, types.UnionType):
        return value
    return _coerce_scalar(value, hint, key, typed_as(key, value, origin))


def _coerce_scalar(value: Any, hint: Any, key: str, typed: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{typed}: {key} must be true or false, found {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{typed}: {key} must be an integer, found {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{typed}: {key} must be a number (e.g. 0.001 or 1e-3), found {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{typed}: {key} must be a string, found {value!r}")
    return value


def build_config(cls, values: dict, section: str = "", origin: dict[str, str] | None = None):
    """`values` (a mapping) checked key by key -- type, then range -- and made into `cls`; `section` is its dotted
    place in the config ("" for the whole config, "train" ...), `origin` says where each dotted key was given."""
    types_ = _field_types(cls)
    prefix = f"{section}." if section else ""
    unknown = sorted(set(values) - set(types_))
    if unknown:
        first = f"{prefix}{unknown[0]}"
        where = (origin or {}).get(first) or f"the {section or 'top'} section"
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} in {section or 'the config'}; valid keys: "
                          f"{', '.join(types_)}")
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _coerce(value, types_[name], prefix + name, origin)
        check_range(prefix + name, kwargs[name], origin)
    return cls(**kwargs)


def merge_mappings(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge_mappings(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def yaml_problem(error: yaml.YAMLError, where: bool = True) -> str:
    """PyYAML's error on one line: what is wrong and (in a file) the line and column."""
    problem = getattr(error, "problem", None) or getattr(error, "context", None)
    if not problem:
        return " ".join(str(error).split())
    mark = getattr(error, "problem_mark", None)
    return f"{problem}" + (f" at line {mark.line + 1}, column {mark.column + 1}" if where and mark else "")


def read_yaml(path) -> dict:
    """A YAML mapping from a file path or a shipped preset (Traversable)."""
    try:
        values = yaml_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {Path(str(path)).resolve()} does not exist; pass a YAML file, a run folder "
                          "(its config.yaml) or a preset name") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} cannot be read ({getattr(e, 'strerror', None) or e}); pass a YAML "
                          "file, a run folder or a preset name") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {yaml_problem(e)}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, found {type(values).__name__}")
    return values
