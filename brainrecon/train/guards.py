"""What stops a training run early, cleanly: a non-finite loss, and SIGTERM (a scheduler's preemption).

`StepGuard` is called once per step by both trainers. It sums the step's logged terms on the device and, every
`every` steps (every step on a CPU; every 20 on CUDA, where a check waits for the device), and at the end of the
epoch, checks that they are finite and whether a stop was requested. A non-finite term stops the run at once, naming
the epoch, the step and the terms; SIGTERM (and SIGUSR1, which schedulers send as an early warning) stops it at the
next check. Under torchrun the ranks agree on both (one all-reduce of two numbers per check), so every rank stops at
the same step. The epoch loop (train/loop.py) turns either into a one-line message with the last good checkpoint.
"""

from __future__ import annotations

import contextlib
import signal

import torch

from brainrecon.errors import Interrupted, UserError

STOP_SIGNALS = ("SIGTERM", "SIGUSR1")
_requested: list[str] = []


class NonFiniteLoss(UserError):
    """A loss term became NaN or infinite; the message names the epoch, the step and the terms."""


class Preempted(Interrupted):
    """SIGTERM or SIGUSR1 during training: stopped at a step boundary; the CLI exits 143 (128 + SIGTERM)."""
    exit_code = 143


@contextlib.contextmanager
def stop_on_signals():
    """For the body of the `with`: SIGTERM / SIGUSR1 only ask the run to stop (StepGuard raises Preempted at its next
    check); outside it they keep their usual effect. A no-op off the main thread, where handlers cannot be set."""
    _requested.clear()
    previous = {}
    try:
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                previous[sig] = signal.signal(sig, lambda signum, frame: _requested.append(signal.Signals(signum).name))
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_requested() -> str | None:
    return _requested[0] if _requested else None


class StepGuard:
    def __init__(self, runtime, epoch: int, steps: int, every: int | None = None):
        self.runtime, self.epoch, self.steps = runtime, epoch, steps
        self.every = every or (20 if runtime.device.type == "cuda" else 1)
        self.names: list[str] = []
        self.sums = self.first_bad = None
        self.count = 0

    def add(self, step: int, terms: dict) -> None:
        """Record step `step`'s terms ({name: scalar tensor or float}); check at the cadence."""
        device = self.runtime.device
        dtype = torch.float32 if device.type == "mps" else torch.float64                # MPS has no float64
        if self.sums is None:
            self.names = list(terms)
            self.sums = torch.zeros(len(terms), dtype=dtype, device=device)
            self.first_bad = torch.full((len(terms),), -1, dtype=torch.int64, device=device)
        values = torch.stack([v.detach().to(device, dtype) if torch.is_tensor(v)
                              else torch.tensor(float(v), dtype=dtype, device=device) for v in terms.values()])
        bad = ~torch.isfinite(values)
        self.first_bad = torch.where(bad & (self.first_bad < 0), torch.full_like(self.first_bad, step), self.first_bad)
        self.sums += values
        self.count += 1
        if (step + 1) % self.every == 0 or step + 1 == self.steps:
            self.check()

    def check(self) -> None:
        """Raise NonFiniteLoss or Preempted now if a term went non-finite or a stop was asked for (on any rank)."""
        flags = torch.tensor([float(stop_requested() is not None),
                              float(bool((self.first_bad >= 0).any())) if self.first_bad is not None else 0.0],
                             device=self.runtime.device)
        if self.runtime.distributed:
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        stop, bad = flags.tolist()
        if bad:
            first = self.first_bad.cpu()
            if (first >= 0).any():
                step = int(first[first >= 0].min())
                names = [n for n, s in zip(self.names, first.tolist()) if s == step]
                where = f"step {step + 1}/{self.steps}"
            else:
                names, where = ["(on another rank)"], "a step"
            raise NonFiniteLoss(f"epoch {self.epoch + 1}, {where}: the loss became non-finite ({', '.join(names)})")
        if stop:
            raise Preempted(f"{stop_requested() or 'a stop signal (on another rank)'} in epoch {self.epoch + 1}, "
                            f"stopped after step {self.count}/{self.steps}")

    def means(self) -> dict[str, float]:
        """The epoch's mean of each term (checked first)."""
        self.check()
        if self.sums is None:
            return {}
        return {n: float(v) / max(1, self.count) for n, v in zip(self.names, self.sums.cpu().tolist())}

    def running(self, name: str = "loss") -> str:
        """The running mean of a term for the progress bar, only where reading it does not stall the device."""
        if self.sums is None or self.count % self.every:
            return ""
        return f"{name} {float(self.sums[self.names.index(name)]) / self.count:.4f}"
