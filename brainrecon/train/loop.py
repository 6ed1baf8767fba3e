"""The epoch loop both trainers share: resume, per-epoch atomic checkpoints, best-model selection, Ctrl-C, logging.

The trainer supplies `train_epoch(epoch) -> dict` (calling `monitor.step` after each of its `steps` steps) and
`validate(epoch) -> dict`; this loop owns everything else (the stage's progress bar among it),
including writing the resolved `config.yaml` once the run folder is known to be new or resumable. `select` names the
validation quantity that picks best.pt; None (no validation split) keeps the last epoch: the test set never selects.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from brainrecon.atomic import write_text_atomic
from brainrecon.config import to_yaml
from brainrecon.errors import Interrupted, UserError, WriteError
from brainrecon.train import checkpoint
from brainrecon.train.core import Runtime, seed_everything, unwrap
from brainrecon.train.guards import NonFiniteLoss, Preempted, stop_on_signals
from brainrecon.train.monitor import Monitor


def fit(*, run_dir: Path, runtime: Runtime, model: torch.nn.Module, optimizer, scheduler, epochs: int, seed: int,
        config: dict, data_fingerprint: str, train_epoch: Callable[[int], dict], validate: Callable[[int], dict],
        select: str | None, monitor: Monitor, resume: bool, warn_seconds: float = 0.0,
        line: Callable[[dict], str] = str, extra: dict | None = None, name: str = "training",
        steps: int = 1) -> list[dict]:
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
    if runtime.is_main:
        write_text_atomic(run_dir / "config.yaml", to_yaml(config))
    t0 = time.perf_counter() - elapsed

    def save_last(epoch: int):
        if runtime.is_main:
            checkpoint.save(last, model=unwrap(model).state_dict(), optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict(), epoch=epoch, step=(epoch + 1), best=best,
                            seconds=time.perf_counter() - t0, config=config, data_fingerprint=data_fingerprint,
                            **(extra or {}))

    epoch, warned = start_epoch, False
    try:
        with stop_on_signals(), monitor.stage(name, epochs, steps, start_epoch):
            for epoch in range(start_epoch, epochs):
                seed_everything(seed * 1000 + epoch * 7 + runtime.rank)
                model.train()
                record = {"epoch": epoch, **train_epoch(epoch)}
                model.eval()
                with torch.no_grad():
                    record.update(validate(epoch))
                check_record(record, epoch)
                scheduler.step()
                record["lr"] = optimizer.param_groups[0]["lr"]
                record["seconds"] = round(time.perf_counter() - t0, 2)
                if select is None or record[select] < best:
                    best = record[select] if select else float(epoch)
                    if runtime.is_main:
                        checkpoint.save(run_dir / checkpoint.BEST, model=unwrap(model).state_dict(), epoch=epoch,
                                        config=config, data_fingerprint=data_fingerprint, **(extra or {}))
                save_last(epoch)
                history.append(record)
                monitor.epoch(record, line(record))
                if warn_seconds and record["seconds"] > warn_seconds and not warned and epoch + 1 < epochs:
                    warned = True  # a guard, not a stop: the result must not depend on the machine's speed
                    monitor.note(f"training has taken {record['seconds']:.0f}s, over its budget of "
                                 f"{warn_seconds:.0f}s, after epoch {epoch + 1}/{epochs}; it still trains all "
                                 f"{epochs} epochs")
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted in epoch {epoch + 1}; {last_good(last)}; continue with "
                          f"{resume_command()}") from None
    except (Preempted, WriteError) as e:
        raise type(e)(f"{e}; {last_good(last)}; continue with {resume_command()}") from None
    except NonFiniteLoss as e:
        raise NonFiniteLoss(f"{e}; {last_good(last)}; find the cause (the data, train.lr, train.amp) and continue "
                            f"with {resume_command()}") from None
    if runtime.distributed:  # every rank reads best.pt after this; rank 0 must have written it
        torch.distributed.barrier()
    return history


def check_record(record: dict, epoch: int) -> None:
    """A non-finite training or validation quantity is an error, never a silent 'not better'."""
    bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise NonFiniteLoss(f"epoch {epoch + 1}: " + ", ".join(f"{k} is {record[k]}" for k in bad))


def last_good(last: Path) -> str:
    """Where the last good checkpoint is, in words."""
    if not last.exists():
        return "no epoch had finished, so there is no checkpoint to resume from"
    return f"the last good checkpoint is {last} (epoch {checkpoint.load(last)['epoch'] + 1})"


def resume_command() -> str:
    """The command that continues this run: the same command line with --resume."""
    argv = list(sys.argv)
    if not argv or "brainrecon" not in (Path(argv[0]).name, Path(argv[0]).parent.name):  # the script or -m brainrecon
        return "--resume"
    args = argv[1:] + ([] if "--resume" in argv or argv[1:2] == ["demo"] else ["--resume"])
    torchrun = " (under torchrun: the same torchrun line)" if int(os.environ.get("WORLD_SIZE", 1)) > 1 else ""
    return f"`{shlex.join(['brainrecon', *args])}`{torchrun}"


def selection(select: str | None, val_fraction: float) -> str:
    """How best.pt was chosen, in words, for metrics.json."""
    if select is None:
        return "last epoch (no validation split)"
    return f"lowest {select} on the validation split ({val_fraction:.0%} of the training pairs)"


def _read_history(run_dir: Path, upto: int) -> list[dict]:
    import json
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    records = [json.loads(s) for s in path.read_text().splitlines() if s.strip()]
    # keep only the epochs that the checkpoint covers (a crash may have logged a later one), and rewrite the file
    records = [r for r in records if r["epoch"] < upto]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records
