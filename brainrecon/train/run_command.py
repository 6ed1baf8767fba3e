"""The training command that gives a run's resolved config: a preset chain, the named options and `--set` for the
rest, checked by resolving it again (what an exported model card shows; runs do not record their command line).

The shortest command is the one whose preset chain (paper, each preset, each refining preset after its base) leaves
the fewest keys to `--set`. Keys that held a machine path (`train.init_from`, a file of `data.exclude_classes`) are
left to placeholders the card explains.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from brainrecon.config import OVERLAY_KEY, from_dict, leaves, load_config, preset_file, preset_names, read_yaml, to_dict
from brainrecon.errors import ConfigError

# keys given by named options of train-encoder / train-decoder (a --set of them is refused beside the option)
NAMED = {"data.subject": "--subject", "data.subjects": "--subjects", "model.kind": "--model",
         "train.init_from": "--init-from"}


@dataclass
class RunCommand:
    text: str
    """The command, one line, with placeholders: DATA, ENCODER_RUN, GROUP_RUN, OUT."""
    exact: bool
    """True when resolving the command again gave the run's config (paths aside)."""


def preset_chains(stage: str) -> list[str]:
    """Every --config a stage accepts from its shipped presets: paper, each full preset, each refining preset after
    the preset it refines."""
    chains = ["paper"]
    for name in preset_names(stage):
        base = read_yaml(preset_file(stage, name)).get(OVERLAY_KEY)
        chains.append(f"{base},{name}" if base else name)
    return chains


def _value(v) -> str:
    """A --set value that the config's YAML reader reads back as `v`."""
    if isinstance(v, str):
        return v if v else "''"
    return json.dumps(v, separators=(",", ":"))


def _named_extra(config: dict, kind: str) -> dict:
    data = config["data"]
    extra = {"data": {"subject": data["subject"]}}
    if data.get("subjects"):
        extra["data"]["subjects"] = list(data["subjects"])
    extra["model"] = {"kind": config["model"]["kind"]}     # --model of both commands
    return extra


def _differences(config: dict, resolved: dict, skip: set[str]) -> dict:
    """The keys of `config` (but `skip` and the named options') whose value `resolved` does not have."""
    theirs = dict(leaves(resolved))
    return {k: v for k, v in leaves(config) if k not in skip and k not in NAMED and theirs.get(k, object()) != v}


def training_command(kind: str, config: dict, path_keys: set[str], encoder: bool) -> RunCommand:
    """The train-encoder / train-decoder command for the resolved config `config` (a run's, as to_dict gives it).
    `path_keys`: the keys whose values were machine paths (not reproduced); `encoder`: the decoder used one."""
    modality = config["modality"]
    normal = to_dict(from_dict(kind, config))
    extra = _named_extra(normal, kind)
    skip = set(path_keys) | {"modality"}
    best = None
    for chain in preset_chains(kind):
        try:
            base = to_dict(load_config(kind, modality, chain, [], extra))
        except ConfigError:
            continue
        diff = _differences(normal, base, skip)
        if best is None or len(diff) < len(best[1]):
            best = (chain, diff)
    chain, diff = best
    sets = [f"{k}={_value(v)}" for k, v in diff.items()]
    try:
        again = to_dict(load_config(kind, modality, chain, sets, extra))
        exact = not _differences(normal, again, skip) and not _differences(again, normal, skip)
    except ConfigError:
        exact = False
    words = ["brainrecon", f"train-{kind}", "--modality", modality]
    data = normal["data"]
    if data.get("subjects"):
        words += ["--subjects", ",".join(map(str, data["subjects"]))]
    else:
        words += ["--subject", str(data["subject"])]
    if normal["model"]["kind"] != "deep":
        words += ["--model", normal["model"]["kind"]]
    if kind == "decoder" and encoder:
        words += ["--encoder", "ENCODER_RUN"]
    if normal["train"].get("init_from"):
        words += ["--init-from", "GROUP_RUN"]
    if chain != "paper":
        words += ["--config", chain]
    for item in sets:
        words += ["--set", item]
    words += ["--data-dir", "DATA", "--out", "OUT"]
    return RunCommand(" ".join(shlex.quote(w) for w in words), exact)
