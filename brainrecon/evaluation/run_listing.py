"""`brainrecon runs`: what each run folder under a folder is, read from the small files every run writes (config.yaml,
metrics.json, metrics.jsonl, run.lock) and from which checkpoints exist; no checkpoint is opened.

A run folder holds config.yaml and at least one of best.pt, last.pt, metrics.json, metrics.jsonl or run.lock. The
state: running (its run.lock is held), finished (best.pt and metrics.json, written when a run ends), interrupted
(last.pt without a later metrics.json: a stopped run that `--resume` continues) or no checkpoint (nothing to
resume from)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from brainrecon.locks import LOCK, in_use

MARKS = ("best.pt", "last.pt", "metrics.json", "metrics.jsonl", LOCK)


@dataclass(frozen=True)
class RunSummary:
    name: str
    """The folder, relative to the listed folder."""
    stage: str
    """encoder, decoder or ridge."""
    modality: str
    subjects: str
    """One subject, or a group's (1,2,3,4); `5<-g_enc` for a run adapted from a group run."""
    pairs: str
    """Training stimuli used: all, a count of the total (150/1200), or, before the run recorded it, the config's
    request (150, 12.5%)."""
    state: str
    result: str
    """The headline metric of a finished run (encoder: median test r; decoder and ridge: test PixCorr), the epoch a
    stopped one reached."""


def is_run(folder: Path) -> bool:
    return (folder / "config.yaml").is_file() and any((folder / m).exists() for m in MARKS)


def find_runs(root: Path, depth: int = 2) -> list[Path]:
    """`root` if it is a run folder, else the run folders below it, `depth` levels down at most (a run folder's own
    subfolders are not searched), in path order."""
    root = Path(root)
    if is_run(root):
        return [root]
    found, level = [], [root]
    for _ in range(depth):
        nxt = []
        for folder in level:
            for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
                (found if is_run(child) else nxt).append(child)
        level = nxt
    return sorted(found)


def _read(path: Path, load) -> dict:
    try:
        with open(path) as f:
            value = load(f)
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError, yaml.YAMLError):
        return {}


def _last_epoch(path: Path) -> int | None:
    """The last epoch metrics.jsonl records (counted from 1), None without one."""
    try:
        lines = [s for s in path.read_text().splitlines() if s.strip()]
        return int(json.loads(lines[-1])["epoch"]) + 1 if lines else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _newer(a: Path, b: Path) -> bool:
    """`a` was written after `b` (a finished run resumed for more epochs and stopped again)."""
    try:
        return a.stat().st_mtime > b.stat().st_mtime
    except OSError:
        return False


def _stage(cfg: dict) -> str:
    """An encoder's model section names its backbone (`arch`; its `kind` is deep or a ridge read-out), a decoder's
    does not."""
    model = cfg.get("model") or {}
    if "arch" in model or "kind" not in model:
        return "encoder"
    return "ridge" if model["kind"] == "ridge" else "decoder"


def _subjects(cfg: dict) -> str:
    data = cfg.get("data") or {}
    group = data.get("subjects") or []
    text = ",".join(str(s) for s in group) if group else str(data.get("subject", "?"))
    init_from = (cfg.get("train") or {}).get("init_from") or ""
    return f"{text}<-{Path(init_from).name}" if init_from else text


def _pairs(cfg: dict, metrics: dict) -> str:
    record = metrics.get("pairs")
    if not isinstance(record, dict):                      # a group: each subject's record, the same draw
        members = [m.get("pairs") for m in (metrics.get("subjects") or {}).values() if isinstance(m, dict)]
        record = next((r for r in members if isinstance(r, dict)), None)
    if isinstance(record, dict) and "stimuli" in record:
        kept, total = record["stimuli"], record.get("of_stimuli", record["stimuli"])
        return "all" if kept == total else f"{kept}/{total}"
    asked = (cfg.get("data") or {}).get("pairs", 0) or 0
    return "all" if not asked else f"{asked:g}" if asked >= 1 else f"{asked:.1%}"


def _result(stage: str, metrics: dict) -> str:
    key, label = ("median_r", "median r") if stage == "encoder" else ("test_pixcorr", "pixcorr")
    value = metrics.get(key)
    return f"{label} {value:.3f}" if isinstance(value, (int, float)) else "-"


def summarise(run: Path, root: Path) -> RunSummary:
    """One run folder's row."""
    run = Path(run)
    cfg = _read(run / "config.yaml", yaml.safe_load)
    metrics = _read(run / "metrics.json", json.load)
    stage = _stage(cfg)
    epochs = (cfg.get("train") or {}).get("epochs")
    reached = _last_epoch(run / "metrics.jsonl")
    progress = f"epoch {reached or 0}/{epochs}" if epochs else "-"
    if in_use(run):
        state, result = "running", progress
    elif (run / "best.pt").is_file() and metrics and not _newer(run / "last.pt", run / "metrics.json"):
        state, result = "finished", _result(stage, metrics)
    elif (run / "last.pt").is_file():
        state, result = "interrupted", progress
    else:
        state, result = "no checkpoint", "-"
    name = "." if run == Path(root) else run.relative_to(root).as_posix()
    return RunSummary(name=name, stage=stage, modality=str(cfg.get("modality", "?")), subjects=_subjects(cfg),
                      pairs=_pairs(cfg, metrics), state=state, result=result)


def list_runs(root: Path, depth: int = 2) -> list[RunSummary]:
    """A row per run folder in `root` (or `root` itself)."""
    return [summarise(run, Path(root)) for run in find_runs(root, depth)]
