"""The epoch loop both trainers share: resume, per-epoch atomic checkpoints, best-model selection, Ctrl-C, logging.

The trainer supplies `train_epoch(epoch) -> dict` and `validate(epoch) -> dict`; this loop owns everything else.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from brainrecon.errors import Interrupted, UserError
from brainrecon.train import checkpoint
from brainrecon.train.core import Runtime, seed_everything, unwrap
from brainrecon.train.monitor import Monitor


def fit(*, run_dir: Path, runtime: Runtime, model: torch.nn.Module, optimizer, scheduler, epochs: int, seed: int,
        config: dict, data_fingerprint: str, train_epoch: Callable[[int], dict], validate: Callable[[int], dict],
        select: str, monitor: Monitor, resume: bool, max_seconds: float = 0.0, line: Callable[[dict], str] = str,
        extra: dict | None = None) -> list[dict]:
    run_dir = Path(run_dir)
    start_epoch, best, history, elapsed = 0, float("inf"), [], 0.0
    last = run_dir / checkpoint.LAST
    if resume:
        state = checkpoint.resume_state(run_dir, config, data_fingerprint)
        if state is not None:
            unwrap(model).load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start_epoch, best, elapsed = state["epoch"] + 1, state["best"], state.get("seconds", 0.0)
            history = _read_history(run_dir, start_epoch)
    elif last.exists():
        raise UserError(f"{run_dir}: this run folder already holds a checkpoint; pass --resume to continue it "
                        "or choose a new --out")
    t0 = time.perf_counter() - elapsed

    def save_last(epoch: int):
        if runtime.is_main:
            checkpoint.save(last, model=unwrap(model).state_dict(), optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict(), epoch=epoch, step=(epoch + 1), best=best,
                            seconds=time.perf_counter() - t0, config=config, data_fingerprint=data_fingerprint,
                            **(extra or {}))

    epoch = start_epoch
    try:
        for epoch in range(start_epoch, epochs):
            seed_everything(seed * 1000 + epoch * 7 + runtime.rank)
            model.train()
            record = {"epoch": epoch, **train_epoch(epoch)}
            model.eval()
            with torch.no_grad():
                record.update(validate(epoch))
            scheduler.step()
            record["lr"] = optimizer.param_groups[0]["lr"]
            record["seconds"] = round(time.perf_counter() - t0, 2)
            if record[select] < best:
                best = record[select]
                if runtime.is_main:
                    checkpoint.save(run_dir / checkpoint.BEST, model=unwrap(model).state_dict(), epoch=epoch,
                                    config=config, data_fingerprint=data_fingerprint, **(extra or {}))
            save_last(epoch)
            history.append(record)
            monitor.epoch(record, line(record))
            if max_seconds and time.perf_counter() - t0 > max_seconds and epoch + 1 < epochs:
                monitor.epoch({"epoch": epoch, "stopped": "max_seconds"},
                              f"time budget of {max_seconds:.0f}s reached after epoch {epoch + 1}/{epochs}")
                break
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted in epoch {epoch + 1}; the checkpoint of the last finished epoch is in "
                          f"{last}; continue with --resume") from None
    if runtime.distributed:  # every rank reads best.pt after this; rank 0 must have written it
        torch.distributed.barrier()
    return history


def _read_history(run_dir: Path, upto: int) -> list[dict]:
    import json
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    records = [json.loads(s) for s in path.read_text().splitlines() if s.strip()]
    # keep only the epochs that the checkpoint covers (a crash may have logged a later one), and rewrite the file
    records = [r for r in records if "stopped" not in r and r["epoch"] < upto]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records
