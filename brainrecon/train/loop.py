"""The epoch loop both trainers share: resume, per-epoch atomic checkpoints, best-model selection, Ctrl-C, logging.

The trainer supplies `train_epoch(epoch) -> dict` (calling `monitor.step` after each of its `steps` steps; both
trainers' is `run_epoch` with their step's loss) and `validate(epoch) -> dict`; this loop owns everything else (the
stage's progress bar among it), including writing the resolved `config.yaml` once the run folder is known to be new or
resumable. `Schedule.select` names the validation quantity that picks best.pt; None (no validation split) keeps the
last epoch: the test set never selects.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from brainrecon.atomic import write_text_atomic
from brainrecon.config import to_yaml
from brainrecon.data.pair_subset import write_listing
from brainrecon.errors import Interrupted, UserError, WriteError
from brainrecon.runtime import Runtime, seed_everything
from brainrecon.train import checkpoint
from brainrecon.train.distributed import all_reduce_mean, epoch_generator, epoch_order, unwrap
from brainrecon.train.guards import NonFiniteLoss, Preempted, StepGuard, stop_on_signals
from brainrecon.train.monitor import Monitor


@dataclass
class RunFolder:
    """Where a run lives and what its checkpoints record."""
    path: Path
    config: dict
    """The resolved config (written as config.yaml; a resume must match it)."""
    data_fingerprint: str
    resume: bool = False
    resume_hint: str = "--resume"
    """How to continue the run, in words, for the messages of an interrupted run: the caller knows its command line."""
    extra: dict = field(default_factory=dict)
    """More entries for every checkpoint (kind, n_voxels, ...)."""


@dataclass
class Schedule:
    """What the loop runs: `epochs` epochs of `steps` steps, selecting on `select`, under the stage name `name`."""
    epochs: int
    seed: int
    select: str | None
    steps: int = 1
    name: str = "training"
    warn_seconds: float = 0.0
    """A time budget: past it the loop says so once (and still trains every epoch); 0: none."""


def fit(run: RunFolder, schedule: Schedule, *, runtime: Runtime, model: torch.nn.Module, optimizer, scheduler,
        train_epoch: Callable[[int], dict], validate: Callable[[int], dict], monitor: Monitor,
        line: Callable[[dict], str] = str) -> list[dict]:
    run_dir, config, fingerprint, extra = Path(run.path), run.config, run.data_fingerprint, run.extra
    epochs, select = schedule.epochs, schedule.select
    start_epoch, best, history, elapsed = 0, float("inf"), [], 0.0
    last = run_dir / checkpoint.LAST
    if run.resume:
        state = checkpoint.resume_state(run_dir, config, fingerprint)
        if state is not None:
            unwrap(model).load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start_epoch, best, elapsed = state["epoch"] + 1, state["best"], state.get("seconds", 0.0)
            history = _read_history(run_dir, start_epoch, runtime.is_main)
    elif last.exists():
        raise UserError(f"{run_dir}: this run folder already holds a checkpoint; pass --resume to continue it "
                        "or choose a new --out")
    if not last.exists() and (run_dir / checkpoint.BEST).exists() and \
            checkpoint.load(run_dir / checkpoint.BEST).get("model_kind") == "ridge":
        raise UserError(f"{run_dir}: this run folder holds a ridge fit; choose a new --out for a deep run")
    if runtime.is_main:
        write_text_atomic(run_dir / "config.yaml", to_yaml(config))
    t0 = time.perf_counter() - elapsed

    def save_last(epoch: int):
        if runtime.is_main:
            checkpoint.save(last, model=unwrap(model).state_dict(), optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict(), epoch=epoch, step=(epoch + 1), best=best,
                            seconds=time.perf_counter() - t0, config=config, data_fingerprint=fingerprint, **extra)

    epoch, warned = start_epoch, False
    try:
        with stop_on_signals(), monitor.stage(schedule.name, epochs, schedule.steps, start_epoch):
            for epoch in range(start_epoch, epochs):
                seed_everything(schedule.seed * 1000 + epoch * 7 + runtime.rank)
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
                                        config=config, data_fingerprint=fingerprint, **extra)
                save_last(epoch)
                history.append(record)
                monitor.epoch(record, line(record))
                budget = schedule.warn_seconds
                if budget and record["seconds"] > budget and not warned and epoch + 1 < epochs:
                    warned = True  # a guard, not a stop: the result must not depend on the machine's speed
                    monitor.note(f"training has taken {record['seconds']:.0f}s, over its budget of "
                                 f"{budget:.0f}s, after epoch {epoch + 1}/{epochs}; it still trains all "
                                 f"{epochs} epochs")
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted in epoch {epoch + 1}; {last_good(last)}; continue with "
                          f"{run.resume_hint}") from None
    except (Preempted, WriteError) as e:
        raise type(e)(f"{e}; {last_good(last)}; continue with {run.resume_hint}") from None
    except NonFiniteLoss as e:
        raise NonFiniteLoss(f"{e}; {last_good(last)}; find the cause (the data, train.lr, train.amp) and continue "
                            f"with {run.resume_hint}") from None
    if runtime.distributed:  # every rank reads best.pt after this; rank 0 must have written it
        torch.distributed.barrier()
    return history


def run_epoch(epoch: int, steps: int, n_pairs: int, batch_size: int, seed: int, runtime: Runtime, optimizer,
              monitor: Monitor, batch_loss: Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, dict]],
              ) -> dict:
    """One epoch of a trainer's steps on this rank's share of the shuffled `n_pairs` training pairs: `batch_loss(idx,
    gen) -> (loss, logged)` per batch, checked (a NaN or SIGTERM stops before the weights change), then the
    optimiser's step. Returns the logged means over the epoch and the ranks, as `train_<name>`."""
    order = epoch_order(n_pairs, seed, epoch, runtime)
    if (steps - 1) * batch_size >= len(order):  # train.steps_per_epoch beyond one pass: further shuffles follow
        order = epoch_order(n_pairs, seed, epoch, runtime, at_least=steps * batch_size)
    gen = epoch_generator(seed, epoch, runtime)
    guard = StepGuard(runtime, epoch, steps)
    for s in range(steps):
        idx = order[s * batch_size:(s + 1) * batch_size].to(runtime.device)
        loss, logged = batch_loss(idx, gen)
        guard.add(s, logged)  # stops here, before the weights change, on a NaN or SIGTERM
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        monitor.step(epoch, guard.running())
    return {f"train_{k}": all_reduce_mean(v, runtime) for k, v in guard.means().items()}


def mean_over_subjects(results: dict) -> tuple[torch.Tensor, dict]:
    """A step of several subjects: {subject: (loss, logged)} -> (the mean loss, each logged term's mean and every
    subject's loss). One subject's step is returned as it is."""
    if len(results) == 1:
        return next(iter(results.values()))
    n, total, logged = len(results), 0, {}
    for s, (loss, parts) in results.items():
        total = total + loss / n
        for k, v in parts.items():
            logged[k] = logged.get(k, 0) + v.detach() / n
        logged[f"loss_subject{s}"] = loss.detach()
    logged["loss"] = total
    return total, logged


def subject_metrics(per_subject: dict[int, dict], mean_keys: tuple[str, ...]) -> dict:
    """metrics.json's subject entries: one subject's own at the top level (and under `subjects`); for several, the
    mean over subjects of `mean_keys` at the top level and each subject's under `subjects`."""
    entries = {str(s): m for s, m in per_subject.items()}
    if len(per_subject) == 1:
        (s, m), = per_subject.items()
        return {**m, "subject": s, "subjects": entries}
    mean = {k: float(sum(m[k] for m in per_subject.values()) / len(per_subject)) for k in mean_keys}
    return {**mean, "summary": f"{', '.join(mean_keys)}: the mean over subjects of each one's", "subjects": entries}


def write_records(run_dir: Path, metrics: dict, subsets: dict) -> None:
    """metrics.json and the kept pairs' listing (pairs.json; pairs_subject<N>.json per member of a group)."""
    write_text_atomic(Path(run_dir) / "metrics.json", json.dumps(metrics, indent=2))
    for s, subset in subsets.items():
        write_listing(run_dir, subset, None if len(subsets) == 1 else s)


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


def selection(select: str | None, val_rule: str) -> str:
    """How best.pt was chosen, in words, for metrics.json (`val_rule`: how the validation split was made)."""
    if select is None:
        return f"last epoch: {val_rule}"
    return f"lowest {select} on the validation split: {val_rule}"


def _read_history(run_dir: Path, upto: int, write: bool) -> list[dict]:
    """The logged epochs that the checkpoint covers (a crash may have logged a later one); rank 0 (`write`) rewrites
    metrics.jsonl to hold just those, atomically."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    records = [json.loads(s) for s in path.read_text().splitlines() if s.strip()]
    records = [r for r in records if r["epoch"] < upto]
    if write:
        write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in records))
    return records
