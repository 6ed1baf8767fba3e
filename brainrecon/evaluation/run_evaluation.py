"""One evaluation of reconstructions from start to end, as `brainrecon evaluate` and the demo run it: the sets loaded
(each run under a name of its own), MiDaS's depth of the RGB reconstructions if asked, each run's D(E(x)) ceiling as
a run of its own, n-way identification, paired comparisons between the runs, the NSD papers' suite if asked, and the
tables and plot written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from brainrecon.errors import UserError
from brainrecon.evaluation.compare import compare_runs
from brainrecon.evaluation.identification import EvalOptions, evaluate_runs, write_outputs
from brainrecon.reconstruct import distinct_runs, load_reconstructions, with_ceilings


@dataclass
class Evaluation:
    """What one evaluation produced: the identification records, the depth-error records, the paired comparisons,
    the NSD suite's rows, the files written, and the reconstruction sets as scored."""
    records: list
    depth: list
    comparisons: list
    suite_rows: list
    paths: dict[str, Path]
    runs: list = field(repr=False)


def evaluate_reconstructions(recons: list[Path], opts: EvalOptions, data_root: Path, out: Path, *,
                             depth_from_rgb: str | None = None, depth_arm: str = "rgb-only",
                             depth_gt: str = "release", suite: str | None = None, download: bool = True,
                             device: str = "auto", say: Callable[[str], None] = lambda s: None) -> Evaluation:
    """Score `recons` (reconstructions.npz files or run folders) and write the tables and plot into `out`.

    `depth_from_rgb`: a MiDaS model (small | large) whose depth of RGB reconstructions is scored as a run of its own
    (`depth_arm` rgb-only: an rgb-only run's, paired with a depth-carrying run, the paper's arm; rgbd: an rgbd run's
    own RGB) against `depth_gt` (release | midas-on-rgb; depth_from_rgb.py); `suite="nsd"`: the NSD papers' eight
    metrics too (`download`: fetch their networks' weights on first use); `device`: where those networks run."""
    if suite not in (None, "nsd"):
        raise UserError(f"--suite {suite!r}: the one suite is nsd")
    loaded = distinct_runs([load_reconstructions(Path(p)) for p in recons])
    if depth_from_rgb or suite:
        from brainrecon.runtime import pick_device
        dev = pick_device(device)
    if depth_from_rgb:
        from brainrecon.evaluation.depth_from_rgb import depth_from_rgb as with_midas_depth
        loaded = with_midas_depth(loaded, depth_from_rgb, data_root, dev, say=say, arm=depth_arm, gt=depth_gt)
    loaded = with_ceilings(loaded)
    records, depth = evaluate_runs(loaded, opts, data_root)
    comparisons = compare_runs(records, opts.seed) if len({r["run"] for r in records}) > 1 else []
    suite_rows: list = []
    if suite == "nsd":
        from brainrecon.evaluation.nsd_suite import evaluate_suite
        suite_rows = evaluate_suite(loaded, dev, offline=not download, say=lambda s: say(f"--suite nsd: {s}"))
    paths = write_outputs(records, depth, out, comparisons, suite_rows)
    return Evaluation(records, depth, comparisons, suite_rows, paths, loaded)
