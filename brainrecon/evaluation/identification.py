"""evaluate: n-way identification (% correct and rank) with bootstrap CIs, depth errors, tables and a plot.

Each metric's distance matrix (reconstructions x candidate pool) is computed once (distances.py), and every repeat is
drawn from that matrix, vectorised (statistics.py). `evaluate_runs` scores reconstruction files; `write_outputs` writes
the tables (CSV / JSON), the paired comparisons and the plot.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainrecon.atomic import write_text_atomic
from brainrecon.data import imagenet, layout
from brainrecon.errors import UserError
from brainrecon.evaluation.distances import METRIC_FUNCTIONS, depth_errors, distance_matrix, metric_available
from brainrecon.evaluation.statistics import bootstrap_ci, exhaustive_two_way, identification
from brainrecon.metric_specs import METRIC_NAMES, metric_spec

COLUMNS = ("run", "subject", "modality", "channel", "metric", "distractors", "ways", "mode", "mean", "ci_low",
           "ci_high", "chance", "n_images", "repeats", "seed")


@dataclass
class EvalOptions:
    ways: tuple[int, ...] = (2, 5, 10)
    metrics: tuple[str, ...] = ()
    repeats: int = 100
    mode: str = "both"
    seed: int = 0
    distractors: str = "test"
    pool_size: int = 1000
    exhaustive: bool = False

    def __post_init__(self):
        if self.mode not in ("percent", "rank", "both"):
            raise UserError(f"--mode {self.mode!r}; choose percent, rank or both")
        if self.repeats < 1:
            raise UserError(f"--repeats {self.repeats} must be at least 1")
        if self.exhaustive and (self.distractors != "test" or tuple(self.ways) != (2,)):
            raise UserError("--exhaustive is the 2-way against every other test image: it takes --distractors test "
                            "and --ways 2")
        for m in self.metrics:
            metric_spec(m)                                          # an unknown name: one line listing the known


def channels_of(modality: str) -> list[str]:
    return {"rgb": ["rgb"], "depth": ["depth"], "rgbd": ["rgb", "depth"]}[modality]


def _channel(images: np.ndarray, channel: str) -> np.ndarray:
    if channel == "rgb":
        return images[..., :3]
    return images[..., -1:]


def _distractor_pool(opts: EvalOptions, data_root: Path, size: int, channel: str) -> np.ndarray | None:
    if opts.distractors == "test":
        return None
    root = layout.unpaired_image_dir(data_root) if opts.distractors == "imagenet" else Path(opts.distractors)
    files = imagenet.list_images(root)
    rng = np.random.default_rng(opts.seed)
    pick = np.sort(rng.choice(len(files), size=min(opts.pool_size, len(files)), replace=False))
    if channel == "rgb":
        return np.stack([imagenet.load_image(files[i], size, "RGB") for i in pick])
    depth_dir = layout.unpaired_depth_dir(data_root, "large") if opts.distractors == "imagenet" \
        else Path(str(root).rstrip("/") + "_depth")
    depths = imagenet.list_depth_pngs(depth_dir, len(files))
    return np.stack([imagenet.load_image(depths[i], size, "L") for i in pick])


def _records(base: dict, ways: int, correct: np.ndarray, rank: np.ndarray, opts: EvalOptions,
             rng: np.random.Generator) -> list[dict]:
    """The % correct and rank rows (as --mode asks) of one run x channel x metric x ways, with bootstrap CIs."""
    rows = []
    for mode, scores, chance in (("percent", correct, 1 / ways), ("rank", rank, 0.5)):
        if opts.mode in (mode, "both"):
            lo, hi = bootstrap_ci(scores, rng)
            rows.append({**base, "ways": ways, "mode": mode, "mean": float(scores.mean()), "ci_low": lo,
                         "ci_high": hi, "chance": chance, "repeats": opts.repeats, "per_image": scores})
    return rows


def evaluate_runs(recons: list[dict], opts: EvalOptions, data_root: Path | None = None) -> tuple[list, list]:
    """Identification records and depth-error records for every run x channel x metric x ways x mode."""
    data_root = Path(data_root) if data_root else layout.data_dir()
    records, depth_records = [], []
    pools: dict = {}
    for rec in recons:
        modality = str(rec["modality"])
        run, subject = str(rec["run"]), int(rec.get("subject", -1))
        n_images = len(rec["reconstructions"])
        for w in opts.ways:
            if opts.distractors == "test" and not 2 <= w <= n_images:
                raise UserError(f"--ways {w} must lie in 2..{n_images} (the number of test images)")
            if w < 2:
                raise UserError(f"--ways {w} must be at least 2")
        for channel in channels_of(modality):
            recon, truth = _channel(rec["reconstructions"], channel), _channel(rec["ground_truth"], channel)
            test_set = hashlib.sha256(np.ascontiguousarray(truth).tobytes()).hexdigest()[:16]  # pairs runs (compare.py)
            key = (channel, truth.shape[1])
            if key not in pools:
                pools[key] = _distractor_pool(opts, data_root, truth.shape[1], channel)
            extra = pools[key]
            pool = truth if extra is None else np.concatenate([truth, extra])
            distractors = None if extra is None else np.arange(n_images, len(pool))
            metrics = opts.metrics or tuple(m for m in METRIC_NAMES if metric_available(m, channel, data_root))
            for metric in metrics:
                spec = metric_spec(metric)
                if channel not in spec.channels:
                    continue
                base = {"run": run, "subject": subject, "modality": modality, "channel": channel, "metric": metric,
                        "distractors": opts.distractors if opts.distractors in ("test", "imagenet")
                        else Path(opts.distractors).name, "n_images": n_images, "seed": opts.seed,
                        "test_set": test_set}
                if spec.candidates == "classes":  # the classifier's classes are the candidates: always 50-way
                    rng = np.random.default_rng([opts.seed, 50])
                    correct, rank = METRIC_FUNCTIONS[metric](recon, truth, 50, opts.repeats, rng)
                    base.update(metric=f"{metric}/{spec.network}", distractors="imagenet-classes")
                    records += _records(base, 50, correct, rank, opts, rng)
                    continue
                dist = distance_matrix(metric, recon, pool, data_root)
                for w in () if opts.exhaustive else opts.ways:          # --exhaustive: no random draws
                    rng = np.random.default_rng([opts.seed, w])
                    correct, rank = identification(dist, w, opts.repeats, rng, distractors)
                    records += _records(base, w, correct, rank, opts, rng)
                if opts.exhaustive:
                    scores = exhaustive_two_way(dist)
                    lo, hi = bootstrap_ci(scores, np.random.default_rng(opts.seed))
                    records.append({**base, "ways": 2, "mode": "percent", "mean": float(scores.mean()), "ci_low": lo,
                                    "ci_high": hi, "chance": 0.5, "repeats": 0, "distractors": "test-exhaustive",
                                    "per_image": scores})
            if channel == "depth":
                rng = np.random.default_rng(opts.seed)
                for name, values in depth_errors(recon, truth).items():
                    lo, hi = bootstrap_ci(values, rng)
                    depth_records.append({"run": run, "subject": subject, "modality": modality, "metric": name,
                                          "mean": float(values.mean()), "ci_low": lo, "ci_high": hi,
                                          "n_images": n_images})
    return records, depth_records


def write_outputs(records: list, depth_records: list, out: Path, comparisons: list | None = None,
                  suite_rows: list | None = None) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "identification.csv", "json": out / "identification.json",
             "png": out / "identification.png"}

    def to_csv(rows, cols) -> str:
        import io
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
    write_text_atomic(paths["csv"], to_csv(records, COLUMNS))
    write_text_atomic(paths["json"], json.dumps([{k: r[k] for k in COLUMNS} for r in records], indent=1))
    if comparisons:
        from brainrecon.evaluation.compare import COLUMNS as PAIRED
        paths["comparisons_csv"], paths["comparisons_json"] = out / "comparisons.csv", out / "comparisons.json"
        write_text_atomic(paths["comparisons_csv"], to_csv(comparisons, PAIRED))
        write_text_atomic(paths["comparisons_json"], json.dumps(comparisons, indent=1))
    if suite_rows:
        cols = ("run", "subject", "metric", "mean", "better", "n_images", "source", "unavailable")
        paths["nsd_suite_csv"], paths["nsd_suite_json"] = out / "nsd_suite.csv", out / "nsd_suite.json"
        write_text_atomic(paths["nsd_suite_csv"], to_csv(suite_rows, cols))
        write_text_atomic(paths["nsd_suite_json"], json.dumps(
            [{**{k: r[k] for k in cols}, "per_image": [float(v) for v in r.get("per_image", [])]}
             for r in suite_rows], indent=1))
    if depth_records:
        paths["depth_csv"] = out / "depth_metrics.csv"
        write_text_atomic(paths["depth_csv"], to_csv(depth_records, list(depth_records[0])))
    from brainrecon.viz import plot_identification
    plot_identification(records, paths["png"])
    return paths
