"""Atomic checkpoint save, weights-only load, resume, and a run folder's best network for inference.

A checkpoint holds model, optimizer and scheduler state, epoch, step, the resolved config and a fingerprint of the
data files; it is loaded with `torch.load(..., weights_only=True)` and nothing else. `load_encoder` / `load_decoder`
rebuild a run's best network from best.pt and its config alone (no trainer, loss or data is imported), for
reconstruct, the API and the decoder's frozen encoder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path

import torch

from brainrecon.atomic import write_atomic
from brainrecon.config import DecoderConfig, EncoderConfig, from_dict, to_dict
from brainrecon.errors import ConfigError, UserError
from brainrecon.models.decoder import Decoder, DecoderArch
from brainrecon.models.encoder import Encoder, EncoderArch
from brainrecon.models.ridge import RidgeDecoder
from brainrecon.models.subjects import SubjectDecoders, SubjectEncoders
from brainrecon.train import exported
from brainrecon.weights import read_weights

LAST = "last.pt"
BEST = "best.pt"


def fingerprint(paths: list[Path]) -> str:
    """Cheap identity of the data files: name, size and mtime (hashing GBs of data on every run is too slow)."""
    h = hashlib.sha256()
    for p in sorted(Path(p) for p in paths):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def save(path: Path, **state) -> Path:
    def writer(tmp: Path):
        # serialised in memory, then written by Python: a full disk is then an OSError (ENOSPC) that write_atomic turns
        # into one line, where torch.save onto the file raises "[enforce fail at inline_container.cc] unexpected pos"
        buffer = io.BytesIO()
        torch.save(state, buffer)
        tmp.write_bytes(buffer.getbuffer())
    return write_atomic(path, writer)


def load(path: Path) -> dict:
    return read_weights(path, "train first or check the run folder", "delete it and train again")


def load_best(run_dir: Path, kind: str) -> dict:
    """best.pt of an encoder or decoder run folder, checked to be of that kind; of a `brainrecon export` folder, the
    same state read from its safetensors and config.json (train/exported.py)."""
    if exported.is_exported(run_dir):
        return exported.load_state(run_dir, kind)
    path = Path(run_dir) / BEST
    if not path.exists():
        raise UserError(f"{path}: no trained {kind} here; run `brainrecon train-{kind} --out {run_dir}` first")
    state = load(path)
    if state.get("kind") != kind:
        raise UserError(f"{path}: not a {kind} run (found {state.get('kind')!r}); pass a train-{kind} --out folder")
    return state


# train settings that change how fast a run computes, not what: a resume may change them (epochs: see resume_state)
NEUTRAL = ("epochs", "threads", "cache_mb", "warn_seconds")


def _without_epochs(config: dict) -> dict:
    return {**config, "train": {k: v for k, v in config.get("train", {}).items() if k not in NEUTRAL}}


def _with_new_defaults(kind: str | None, config: dict) -> dict:
    """A saved config as this version resolves it: a setting added since the run started takes its default (which
    is the behaviour the run trained with), so an upgrade alone does not block --resume."""
    if kind not in ("encoder", "decoder"):
        return config
    try:
        return to_dict(from_dict(kind, config))
    except (ConfigError, TypeError, KeyError):
        return config


def _same_config(state: dict, config: dict) -> bool:
    """The saved run's config (this version's defaults filled in) is `config`, but for the settings a resume may
    change."""
    return _without_epochs(_with_new_defaults(state.get("kind"), state.get("config") or {})) == _without_epochs(config)


def resume_state(run_dir: Path, config: dict, data_fingerprint: str) -> dict | None:
    """The last checkpoint of a run, if its config and data match the current ones; else a clear error.

    The one change allowed is a larger `train.epochs` ("train longer"): the loop continues to the new count, which
    gives the same weights as a run started with that count.
    """
    path = Path(run_dir) / LAST
    if not path.exists():
        return None
    state = load(path)
    if not _same_config(state, config):
        raise UserError(f"{path}: --resume with a different config than the run was started with (only a larger "
                        "--epochs, --threads or train.cache_mb may change); start a new --out folder or drop --resume")
    done = state["epoch"] + 1
    if config["train"]["epochs"] < done:
        raise UserError(f"{path}: --resume --epochs {config['train']['epochs']}, but this run has already trained "
                        f"{done} epochs; give --epochs {done} or more")
    if state.get("data_fingerprint") != data_fingerprint:
        raise UserError(f"{path}: the data files changed since this run was started; start a new --out folder")
    return state


def closed_form_done(run_dir: Path, config: dict, data_fingerprint: str, resume: bool,
                     distributed: bool = False) -> dict | None:
    """A closed-form run (ridge, either direction) has no epochs to continue. In a folder that already holds its fit:
    without --resume, refused as a deep run's folder is; with --resume, the fit is kept (its metrics.json returned,
    `kept` set) when the config and data match, else a clear error; a fit cut before its metrics.json is made again.
    None: fit. `distributed`: every rank looks before any rank goes on (rank 0 then writes the fit)."""
    done = _kept_fit(Path(run_dir), config, data_fingerprint, resume)
    if distributed:
        torch.distributed.barrier()
    return done


def _kept_fit(run_dir: Path, config: dict, data_fingerprint: str, resume: bool) -> dict | None:
    path = run_dir / BEST
    if not path.exists():
        return None
    if not resume:
        raise UserError(f"{run_dir}: this run folder already holds a fitted model; pass --resume to keep it or choose "
                        "a new --out")
    state = load(path)
    if not _same_config(state, config):
        raise UserError(f"{path}: --resume with a different config than the fit was made with; start a new --out "
                        "folder or drop --resume")
    if state.get("data_fingerprint") != data_fingerprint:
        raise UserError(f"{path}: the data files changed since this fit; start a new --out folder")
    metrics = run_dir / "metrics.json"
    return {**json.loads(metrics.read_text()), "kept": True} if metrics.exists() else None


def encoder_arch(cfg: EncoderConfig, n_voxels: int, train_backbone: bool) -> EncoderArch:
    m = cfg.model
    return EncoderArch(n_voxels=n_voxels, modality=cfg.modality, arch=m.arch, width=m.width, input_size=m.input_size,
                       head_channels=m.head_channels, dropout=m.dropout, train_backbone=train_backbone,
                       depth_input=m.depth_input)


def decoder_arch(cfg: DecoderConfig, n_voxels: int, anchor_rank: int = 0) -> DecoderArch:
    return DecoderArch(n_voxels=n_voxels, modality=cfg.modality, channels=cfg.model.channels,
                       start_size=cfg.data.resolution // 8, anchor_rank=anchor_rank)


def anchor_rank(weights: dict) -> int:
    """The rank of a saved decoder's ridge anchor (model.ridge_anchor), 0 without one."""
    left = weights.get("anchor.left")
    return int(left.shape[1]) if left is not None else 0


def group_subjects(state: dict) -> dict[int, int]:
    """{subject: voxel count} of a multi-subject run's checkpoint; {} for a single-subject run."""
    return {int(k): int(v) for k, v in (state.get("subjects") or {}).items()}


def member_config(cfg, subject: int):
    """A multi-subject run's config as subject `subject`'s own (data.subject set, data.subjects empty)."""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, subject=subject, subjects=[]))


def pick_subject(state: dict, run_dir: Path, subject: int | None, kind: str) -> int | None:
    """Which member of a multi-subject run to load (None for a single-subject run); a group run needs --subject."""
    group = group_subjects(state)
    if not group:
        return None
    names = ", ".join(map(str, group))
    if subject is None:
        raise UserError(f"{run_dir}: this {kind} run holds subjects {names}; pass --subject N (one of them)")
    if subject not in group and state.get("exported"):
        raise UserError(f"{run_dir}: this exported {kind} holds subjects {names}, not {subject}; pass one of them, or "
                        f"adapt the run folder it was exported from (with its best.pt) to subject {subject}: "
                        f"`train-{kind} --subject {subject} --init-from GROUP_RUN`")
    if subject not in group:
        raise UserError(f"{run_dir}: this {kind} run holds subjects {names}, not {subject}; pass one of them, or adapt "
                        f"it to subject {subject} with `train-{kind} --subject {subject} --init-from {run_dir}`")
    return subject


def _load_group(run_dir: Path, kind: str, device, state: dict | None):
    state = state or load_best(run_dir, kind)
    cfg = from_dict(kind, state["config"])
    group = group_subjects(state)
    if not group:
        raise UserError(f"{run_dir}: a single-subject {kind} run; --init-from takes a run trained on several "
                        f"subjects (train-{kind} --subjects 1,2,...)")
    if kind == "encoder":
        model = SubjectEncoders({s: encoder_arch(cfg, v, train_backbone=False) for s, v in group.items()})
    else:
        model = SubjectDecoders({s: decoder_arch(cfg, v) for s, v in group.items()})
    model.load_state_dict(state["model"])
    model.config = cfg
    return model.to(device).eval()


def load_group_encoder(run_dir: Path, device="cpu", state: dict | None = None) -> SubjectEncoders:
    """Every subject's best encoder of a multi-subject train-encoder run, in eval mode; the config as `.config`."""
    return _load_group(run_dir, "encoder", device, state)


def load_group_decoder(run_dir: Path, device="cpu", state: dict | None = None) -> SubjectDecoders:
    """Every subject's best decoder of a multi-subject train-decoder run, in eval mode; the config as `.config`."""
    return _load_group(run_dir, "decoder", device, state)


def run_extra(kind: str, members, data_root: Path) -> dict:
    """What every checkpoint of a run records besides the weights: a single-subject run its voxel count (today's
    format), a group each subject's voxel count and the identity of their stimuli (data/group.py `Members`)."""
    extra = {"kind": kind, "data_dir": str(Path(data_root).resolve())}
    if members.single:
        (data,) = members.data.values()
        return {**extra, "n_voxels": data.n_voxels}
    return {**extra, "n_voxels": 0, "subjects": {str(s): d.n_voxels for s, d in members.data.items()},
            "stimuli": members.stimuli}


def load_members(run_dir: Path, kind: str, device="cpu") -> dict[int, torch.nn.Module]:
    """{subject: best network} of a deep encoder or decoder run, one subject or several, in eval mode."""
    state = load_best(run_dir, kind)
    group = group_subjects(state)
    if group:
        nets = _load_group(run_dir, kind, device, state)
        return {s: nets.members[str(s)] for s in group}
    subject = int(state["config"]["data"]["subject"])
    build = _single_encoder if kind == "encoder" else _single_decoder
    return {subject: build(state, from_dict(kind, state["config"]), device)}


def load_encoder(run_dir: Path, device="cpu", subject: int | None = None) -> Encoder:
    """The best encoder of a train-encoder run, in eval mode; its resolved EncoderConfig as `.config`. Of a
    multi-subject run: subject `subject`'s (its config as that subject's)."""
    state = load_best(run_dir, "encoder")
    cfg = from_dict("encoder", state["config"])
    member = pick_subject(state, run_dir, subject, "encoder")
    if member is not None:
        model = load_group_encoder(run_dir, device, state).members[str(member)]
        model.config = member_config(cfg, member)
        return model
    return _single_encoder(state, cfg, device)


def _single_encoder(state: dict, cfg: EncoderConfig, device) -> Encoder:
    if state.get("model_kind") == "ridge":                  # train-encoder --model ridge (train/ridge_encoder.py)
        from brainrecon.models.ridge_encoder import RidgeEncoder
        model = RidgeEncoder(encoder_arch(cfg, state["n_voxels"], train_backbone=False), cfg.model.ridge_pool)
    else:
        model = Encoder(encoder_arch(cfg, state["n_voxels"], train_backbone=False))
    model.load_state_dict(state["model"])
    model.config = cfg
    return model.to(device).eval()


def load_decoder(run_dir: Path, device="cpu", subject: int | None = None) -> tuple[torch.nn.Module, DecoderConfig]:
    """The best decoder of a train-decoder run (deep or ridge), in eval mode, with its config. Of a multi-subject run:
    subject `subject`'s, with the config as that subject's."""
    state = load_best(run_dir, "decoder")
    cfg = from_dict("decoder", state["config"])
    member = pick_subject(state, run_dir, subject, "decoder")
    if member is not None:
        return load_group_decoder(run_dir, device, state).members[str(member)], member_config(cfg, member)
    return _single_decoder(state, cfg, device), cfg


def _single_decoder(state: dict, cfg: DecoderConfig, device) -> torch.nn.Module:
    if state["model_kind"] == "ridge":
        model = RidgeDecoder.from_state(state["model"], cfg.modality, cfg.data.resolution)
    else:
        model = Decoder(decoder_arch(cfg, state["n_voxels"], anchor_rank(state["model"])))
        model.load_state_dict(state["model"])
    return model.to(device).eval()
