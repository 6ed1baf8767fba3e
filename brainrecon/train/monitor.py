"""Rank-0 logging: live progress, one plain line and one metrics.jsonl record per epoch, TensorBoard scalars and images.

On a terminal a training stage shows one bar over all its steps (epoch, step, elapsed, remaining, the running loss)
with each epoch's line printed above it; when stderr is not a terminal (a log file, CI, a scheduler) there is no bar,
only the plain line per epoch. `quiet` turns both off (the epoch records are still written)."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, width=shutil.get_terminal_size((140, 24)).columns)


class Monitor:
    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True, quiet: bool = False):
        self.run_dir, self.enabled, self.quiet = Path(run_dir), enabled, quiet
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))
            except ImportError:  # tensorboard is a dependency, but a missing one must not stop training
                self.writer = None

    @property
    def live(self) -> bool:
        """Whether bars are drawn: rank 0, not quiet, stderr a terminal."""
        return self.enabled and not self.quiet and console.is_terminal

    def progress(self, total: int, description: str) -> Progress:
        p = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                     TextColumn("{task.fields[metric]}"), TimeElapsedColumn(), TextColumn("remaining"),
                     TimeRemainingColumn(), console=console, disable=not self.live, transient=True)
        p.add_task(description, total=total, metric="")
        return p

    @contextlib.contextmanager
    def stage(self, name: str, epochs: int, steps: int, start_epoch: int = 0):
        """One bar over a whole training stage (epochs x steps, a resumed run starting where it stopped); yields
        `step(epoch, running)`, called after each step with the running loss text."""
        with self.progress(epochs * steps, name) as bar:
            task = bar.task_ids[0]
            bar.update(task, completed=start_epoch * steps)

            def step(epoch: int, running: str):
                bar.update(task, advance=1, metric=running, description=f"{name} epoch {epoch + 1}/{epochs}")
            self._step = step
            try:
                yield step
            finally:
                self._step = None

    def step(self, epoch: int, running: str) -> None:
        """Advance the stage's bar by one step (a no-op outside `stage`)."""
        if getattr(self, "_step", None) is not None:
            self._step(epoch, running)

    @contextlib.contextmanager
    def counting(self, total: int, description: str):
        """A progress bar for work counted in items: yields `tick(k)`, which advances it by k."""
        with self.progress(total, description) as bar:
            yield lambda k: bar.update(bar.task_ids[0], advance=k)

    def epoch(self, record: dict, line: str) -> None:
        if not self.enabled:
            return
        if not self.quiet:
            console.print(line)
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    self.writer.add_scalar(k, v, record.get("epoch", 0))
            self.writer.flush()

    def say(self, message: str) -> None:
        """An information line on rank 0, shown even when quiet (what a run is made of, e.g. a stand-in network)."""
        if self.enabled:
            console.print(message, highlight=False)

    def note(self, message: str) -> None:
        """A warning line on rank 0, shown even when quiet (the demo runs its trainers quietly)."""
        if self.enabled:
            console.print(f"[yellow]warning:[/] {message}", highlight=False)

    def scalars(self, values: dict, step: int) -> None:
        if self.enabled and self.writer:
            for k, v in values.items():
                self.writer.add_scalar(k, v, step)

    def image(self, tag: str, image_chw, step: int) -> None:
        if self.enabled and self.writer:
            self.writer.add_image(tag, image_chw, step)

    def close(self) -> None:
        if self.writer:
            self.writer.close()

