"""benchmarks.gpu_check in its CPU smoke mode, and the arithmetic and memory accounting behind benchmarks.gpu_cost."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import gpu_cost, paper_steps  # noqa: E402
from brainrecon.config import load_config  # noqa: E402


def test_steps_per_epoch_are_the_trainers():
    """GOD's 1,200 pairs less the 5 % validation split, in whole batches: 17 encoder and 47 decoder steps."""
    assert gpu_cost.epoch_steps(load_config("encoder", "rgbd")) == (17, 1140)
    assert gpu_cost.epoch_steps(load_config("decoder", "rgbd")) == (47, 1140)
    assert gpu_cost.epoch_steps(load_config("decoder", "rgb", overrides=["data.val_fraction=0"])) == (50, 1200)


def test_cache_plan_fills_in_the_trainers_order():
    per = {"voxel_bytes": 4500 * 4, "feature_bytes": 1_500_000}
    plan = gpu_cost.cache_plan(1024, 1140, per)
    assert plan["voxels"] == (50_000, 50_000)                       # 858 MiB of voxels first
    left = 1024 * 2 ** 20 - 50_000 * 18_000
    assert plan["paired_features"] == (left // 1_500_000, 1140) and plan["unpaired_features"][0] == 0
    assert plan["bytes"] <= 1024 * 2 ** 20
    assert gpu_cost.cache_plan(0, 1140, per)["bytes"] == 0


def test_storage_tracker_counts_live_tensors_and_frees():
    tracker = paper_steps.StorageTracker("cpu")
    with tracker:
        a = torch.ones(1024, 1024)          # 4 MiB
        b = a * 2                           # 8 MiB live
        del a
        c = b[:10]                          # a view: no new storage
        d = b + 1                           # 8 MiB live again
        del b, c, d
    assert tracker.peak == 8 * 2 ** 20 and tracker.now == 0


@pytest.mark.slow   # the GPU check's CPU smoke run (23 s): in the slow pass, to keep the default one short
def test_gpu_check_smoke_on_cpu(tmp_path, capsys):
    """The prepared GPU check runs end to end as a CPU smoke test: the rehearsal world, one epoch of a preset through
    the brainrecon command, and the step table, writing its CSV."""
    if torch.cuda.is_available():
        pytest.skip("on CUDA the check is the real one (minutes); run python -m benchmarks.gpu_check")
    from benchmarks import gpu_check
    rc = gpu_check.main(["--presets", "depth", "--out", str(tmp_path / "work"), "--results", str(tmp_path / "results")])
    out = capsys.readouterr().out
    assert rc == 0, out + "".join(p.read_text()[-2000:] for p in (tmp_path / "work").glob("*.log"))
    assert "device: " in out and "smoke mode" in out
    with open(tmp_path / "results" / "gpu_check_cpu-smoke.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    got = {(r["part"], r["preset"], r["stage"]): r for r in rows}
    assert set(got) == {("world", "", ""), ("train", "depth", "encoder"), ("train", "depth", "decoder"),
                        ("steps", "depth", "encoder"), ("steps", "depth", "decoder")}
    assert all(r["status"] == "ok" for r in rows)
    for stage in ("encoder", "decoder"):
        metrics = json.loads((tmp_path / "work" / "runs" / f"{stage}_depth" / "metrics.json").read_text())
        assert metrics["epochs"] == 1
        r = got[("steps", "depth", stage)]
        steps, epochs = int(r["steps_per_epoch"]), int(r["epochs"])
        assert float(r["flops_step"]) > 0 and float(r["step_peak_mib"]) > 0 and float(r["step_ms"]) > 0
        assert int(r["flops_epoch"]) >= steps * int(r["flops_step"])
        assert int(r["flops_preset"]) >= epochs * int(r["flops_epoch"])
    assert (tmp_path / "results" / "gpu_check_cpu-smoke.txt").read_text().startswith("device: ")
