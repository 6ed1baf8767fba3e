"""`brainrecon export RUN OUT`: a run's best network as a folder anyone can load, in the Hugging Face Hub's layout
(train/exported.py reads it back and lists the files), with nothing of the machine it was trained on: no pickle, no
absolute path. `huggingface-cli upload owner/name OUT` publishes it; loading takes the folder or `hf://owner/name`.

An encoder (deep or the ridge read-out), a deep or ridge decoder and a multi-subject run (every subject's network)
all export; the card says what the network is, what it was trained on and under which terms, the test metrics (with
CIs from an `evaluate` output when given), the networks training used and the command that gives the same config.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import torch

from brainrecon.atomic import write_all_atomic
from brainrecon.config import from_dict
from brainrecon.data import layout
from brainrecon.data.group import member_dir
from brainrecon.errors import DataError, UserError
from brainrecon.train import checkpoint
from brainrecon.train.exported import CARD, CONFIG, FORMAT, FORMAT_VERSION, METRICS, WEIGHTS, is_exported
from brainrecon.train.model_card import card_text, read_evaluation
from brainrecon.train.run_command import training_command
from brainrecon.version import version_string

WINDOWS_PATH = re.compile(r"^[A-Za-z]:[\\/]")
# an absolute path inside a longer string, of two components or more (/a/b, ~/a/b, C:\a\b, \\server\share\a): not
# a relative one (a/b, ./a/b), a ratio (1/2) or a URL (https://host/a/b)
PART = r"[^\s\\/'\"(),;:]"
EMBEDDED_PATH = re.compile(rf"(?<![\w.~/\\])(?:~|[A-Za-z]:|\\\\{PART}+)?[\\/](?:{PART}+[\\/])+{PART}*")


def is_machine_path(text: str) -> bool:
    """An absolute path (POSIX, home-relative or Windows) of the machine that wrote it."""
    return text.startswith(("/", "~", "\\\\")) or bool(WINDOWS_PATH.match(text))


def _last_part(match: re.Match) -> str:
    return [part for part in re.split(r"[\\/]", match.group(0)) if part][-1]


def strip_paths(value, key: str = "", removed: list[str] | None = None):
    """`value` with every absolute path replaced by its last component (the folder or file name), a whole string or
    one inside a longer string (a message naming a file); the dotted keys that held one are appended to `removed`."""
    removed = [] if removed is None else removed
    if isinstance(value, dict):
        return {k: strip_paths(v, f"{key}.{k}" if key else str(k), removed) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strip_paths(v, key, removed) for v in value]
    if isinstance(value, str) and is_machine_path(value):
        removed.append(key)
        return re.split(r"[\\/]", value.rstrip("/\\"))[-1]
    if isinstance(value, str):
        stripped = EMBEDDED_PATH.sub(_last_part, value)
        if stripped != value:
            removed.append(key)
        return stripped
    return value


def flatten(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors to store, {name: the stored name it shares}): a tensor that several modules share (a multi-subject
    run's trunk) is stored once; every stored tensor is a contiguous copy of its own (safetensors holds no views)."""
    tensors, tied, seen = {}, {}, {}
    for name, t in state_dict.items():
        t = t.detach()
        ident = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()),
                 t.dtype)
        if t.numel() and ident in seen:
            tied[name] = seen[ident]
            continue
        seen[ident] = name
        tensors[name] = t.cpu().contiguous().clone()
    return tensors, tied


def read_run(run_dir: Path) -> dict:
    """best.pt of a train-encoder / train-decoder run folder (not an exported one)."""
    if is_exported(run_dir):
        raise UserError(f"{run_dir}: already an exported model; give the run folder it was exported from")
    if not (run_dir / checkpoint.BEST).is_file():
        raise UserError(f"{run_dir}: no {checkpoint.BEST} here; give a train-encoder or train-decoder --out folder")
    state = checkpoint.load(run_dir / checkpoint.BEST)
    if state.get("kind") not in ("encoder", "decoder"):
        raise UserError(f"{run_dir / checkpoint.BEST}: not an encoder or decoder checkpoint; give a train-encoder or "
                        "train-decoder --out folder")
    return state


def data_record(data_dir: str | None, subject: int) -> dict:
    """What the run was trained on, read from its data folder if it is still there: simulated (simulated.json), a
    lab's own (import-arrays: sbj_<N>_import.json), convert-nsd or convert-god output (convert.json), else the
    authors' GOD release."""
    root = Path(data_dir) if data_dir else None
    if root is None or not root.is_dir():
        return {"source": "unknown", "note": "the data folder the run was trained on is not on this machine"}
    if (root / "simulated.json").is_file():
        manifest = json.loads((root / "simulated.json").read_text())
        return {"source": "simulated", "note": manifest.get("note", "a simulated subject (`brainrecon simulate`)"),
                "normalisation": "as `brainrecon simulate` writes sbj_<N>.npz"}
    if (root / f"sbj_{subject}_import.json").is_file():
        record = json.loads((root / f"sbj_{subject}_import.json").read_text())
        return {"source": "own", "converted_by": "brainrecon import-arrays", "depth": record.get("depth", "")}
    if (root / "convert.json").is_file():
        record = json.loads((root / "convert.json").read_text())
        source = "nsd" if "sessions" in record else "god"
        return {"source": source, "normalisation": record.get("normalisation", ""),
                "converted_by": f"brainrecon convert-{source}"}
    if layout.subject_file(root, subject).is_file():
        return {"source": "god", "normalisation": "as the authors' release (sbj_<N>.npz)",
                "converted_by": "the authors' release files"}
    return {"source": "unknown", "note": f"no sbj_{subject}.npz in the run's data folder"}


def training_data(data_dir: str | None, subject: int, group: dict[int, int]) -> dict:
    """`data_record` of a single-subject run; of a multi-subject run, each member's from its own folder (an NSD group's
    subjects each sit in a folder below the data folder: data/group.py `member_dir`) under `subjects`, with the source
    (or "mixed") and the fields they share."""
    root = Path(data_dir) if data_dir else None
    if not group or root is None or not root.is_dir():
        return data_record(data_dir, subject if not group else next(iter(group)))
    members = {}
    for s in group:
        try:
            members[str(s)] = data_record(str(member_dir(root, s)), s)
        except DataError:
            members[str(s)] = {"source": "unknown", "note": f"no sbj_{s}.npz in the run's data folder or below it"}
    sources = {m["source"] for m in members.values()}
    record = {"source": sources.pop() if len(sources) == 1 else "mixed"}
    for key in ("normalisation", "converted_by", "depth"):
        values = {m.get(key) for m in members.values()}
        if len(values) == 1 and None not in values:
            record[key] = values.pop()
    return {**record, "subjects": members}


def architecture(state: dict, cfg, kind: str) -> dict:
    """The network's shape as the loaders build it (a ridge decoder: its factorised map)."""
    group = checkpoint.group_subjects(state)
    if kind == "decoder" and state.get("model_kind") == "ridge":
        left, right = state["model"]["left"], state["model"]["right"]
        return {"form": "((voxels - voxel_mean) / voxel_std) @ left @ right + intercept, clamped to [0, 1]",
                "n_voxels": int(left.shape[0]), "rank": int(left.shape[1]), "n_outputs": int(right.shape[1])}
    if kind == "encoder" and state.get("model_kind") == "ridge":
        return {**dataclasses.asdict(checkpoint.encoder_arch(cfg, int(state["n_voxels"]), train_backbone=False)),
                "read_out": "the frozen backbone's taps, each average-pooled to pool x pool, z-scored "
                            "((f - feature_mean) / feature_std) @ weight + intercept, in fp32",
                "pool": cfg.model.ridge_pool, "n_features": int(state["model"]["weight"].shape[0])}
    build = (lambda n: checkpoint.decoder_arch(cfg, n)) if kind == "decoder" else \
        (lambda n: checkpoint.encoder_arch(cfg, n, train_backbone=False))
    if group:
        return {"subjects": {str(s): dataclasses.asdict(build(n)) for s, n in group.items()}}
    return dataclasses.asdict(build(int(state["n_voxels"])))


def config_record(run_dir: Path, state: dict, metrics: dict, removed: list[str], run_config: dict,
                  metric_keys: list[str]) -> dict:
    """config.json; `removed`: the config keys that held a machine path, `metric_keys` the metrics.json keys."""
    kind = state["kind"]
    cfg = from_dict(kind, state["config"])
    group = checkpoint.group_subjects(state)
    data_keys: list[str] = []
    data = strip_paths(training_data(state.get("data_dir"), cfg.data.subject, group), "training.data", data_keys)
    encoder_run = state.get("encoder_run") or ""
    command = training_command(kind, state["config"], set(removed), bool(encoder_run))
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": run_dir.resolve().name, "kind": kind,
        "model_kind": (state.get("model_kind", "deep") if kind == "decoder" or state.get("model_kind") == "ridge"
                       else cfg.model.arch),
        "modality": cfg.modality, "roi": cfg.data.roi, "resolution": cfg.data.resolution,
        "subject": None if group else cfg.data.subject, "subjects": {str(s): n for s, n in group.items()},
        "n_voxels": int(state.get("n_voxels") or 0), "best_epoch": int(state.get("epoch", 0)) + 1,
        "architecture": architecture(state, cfg, kind),
        "preprocessing": preprocessing(kind, cfg, data),
        "training": {"data": data, "encoder_run": Path(encoder_run).name if encoder_run else None,
                     "perceptual_net": metrics.get("perceptual_net"), "command": command.text,
                     "command_exact": command.exact, "trained_with": metrics.get("brainrecon_version")},
        "exported_with": version_string(), "tied": {},
        "paths_removed": sorted(set(removed) | set(data_keys)) + sorted({f"metrics:{k}" for k in metric_keys}),
        "run_config": run_config,
    }


def preprocessing(kind: str, cfg, data: dict) -> dict:
    voxels = (f"(N, V) float32: the subject's {cfg.data.roi} voxels (the ROI mask of sbj_<N>.npz), normalised as the "
              "training data (" + (data.get("normalisation") or "see `training.data`") + ")")
    images = (f"(N, C, {cfg.data.resolution}, {cfg.data.resolution}) float32 in [0, 1], channels R, G, B then depth "
              f"({cfg.modality})")
    depth = {"simulated": "the simulated scenes' own depth", "unknown": "as the training data's RGBD file",
             "own": f"as imported ({data.get('depth') or 'see the data owners'})",
             "mixed": "as each subject's RGBD file holds it (`training.data.subjects` names their sources)"}.get(
        data["source"], "MiDaS v2.1 relative inverse depth of the stimuli, as the training data's RGBD file holds it")
    io = {"input": voxels, "output": images} if kind == "decoder" else {"input": images, "output": voxels}
    return {**io, **({"depth": depth} if cfg.modality != "rgb" else {})}


def check_out(out: Path, run_dir: Path) -> None:
    """OUT is new, empty, or an earlier export (whose files are replaced): an export folder is uploaded whole."""
    if out.resolve() == run_dir.resolve():
        raise UserError(f"{out}: the run folder itself; give a new folder for the export")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: a file; give a folder for the export")
    if out.is_dir() and any(out.iterdir()) and not is_exported(out):
        raise UserError(f"{out}: holds other files; give a new or empty folder (an export folder is uploaded whole)")


def export_run(run_dir: str | Path, out: str | Path, evaluation: str | Path | None = None) -> Path:
    """Write RUN's best network into OUT (model.safetensors, config.json, metrics.json, README.md); `evaluation`:
    an `evaluate` output folder (or its identification.csv) whose rows for this run go into the card. Returns OUT."""
    from safetensors.torch import save

    run_dir, out = Path(run_dir), Path(out)
    state = read_run(run_dir)
    check_out(out, run_dir)
    removed: list[str] = []
    run_config = strip_paths(state["config"], "", removed)
    config_keys = list(removed)
    raw_metrics = {}
    if (run_dir / METRICS).is_file():
        raw_metrics = json.loads((run_dir / METRICS).read_text())
    if evaluation is not None:
        raw_metrics["evaluation"] = read_evaluation(Path(evaluation), run_dir.resolve().name)
    metric_keys: list[str] = []
    metrics = strip_paths(raw_metrics, "", metric_keys)
    meta = config_record(run_dir, state, metrics, config_keys, run_config, metric_keys)
    tensors, meta["tied"] = flatten(state["model"])
    card = card_text(meta, metrics)
    blob = save(tensors, metadata={"format": "pt", "brainrecon": version_string()})
    out.mkdir(parents=True, exist_ok=True)
    write_all_atomic([(out / WEIGHTS, lambda p: p.write_bytes(blob)),
                      (out / CONFIG, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n")),
                      (out / METRICS, lambda p: p.write_text(json.dumps(metrics, indent=2) + "\n")),
                      (out / CARD, lambda p: p.write_text(card))])
    return out
