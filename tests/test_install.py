"""An installed brainrecon (wheel, or wheel built from the sdist) behaves exactly as the checkout.

The wheel is built offline (`--no-deps --no-build-isolation`), unpacked outside the checkout and imported from another
working directory; every stage x modality x preset must resolve to the same config as the source tree, and
`brainrecon demo` must run end to end from that install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from brainrecon.config import MODALITIES, STAGES, load_config, to_dict

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("paper", "demo", "demo,fast")
DUMP = """
import json, brainrecon
from brainrecon.config import load_config, to_dict
out = {f"{s}/{m}/{p}": to_dict(load_config(s, m, p)) for s in ("encoder", "decoder")
       for m in ("rgb", "depth", "rgbd") for p in ("paper", "demo", "demo,fast")}
print(json.dumps({"file": brainrecon.__file__, "configs": out}))
"""


def _pip_wheel(source: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dest)], check=True, cwd=dest, capture_output=True)
    (wheel,) = dest.glob("brainrecon-*.whl")
    return wheel


def _unpack(wheel: Path, site: Path) -> Path:
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    return site


def _sdist(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    code = f"from setuptools import build_meta; print(build_meta.build_sdist({str(dest)!r}))"
    name = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip().splitlines()[-1]
    return dest / name


@pytest.fixture(scope="module")
def installs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("install")
    wheel = _pip_wheel(ROOT, base / "wheel")
    sdist = _sdist(base / "sdist")
    from_sdist = _pip_wheel(sdist, base / "sdist-wheel")
    return {"wheel": _unpack(wheel, base / "site-wheel"), "sdist": _unpack(from_sdist, base / "site-sdist")}


def run_installed(site: Path, args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_installed_configs_equal_the_source_tree(installs, kind, tmp_path):
    site = installs[kind]
    assert list((site / "brainrecon" / "configs").rglob("*.yaml")), f"the {kind} ships no YAML"
    result = run_installed(site, ["-c", DUMP], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    dumped = json.loads(result.stdout)
    assert Path(dumped["file"]).is_relative_to(site), dumped["file"]    # the install, not the checkout, was used
    for s in STAGES:
        for m in MODALITIES:
            for p in PRESETS:
                assert dumped["configs"][f"{s}/{m}/{p}"] == to_dict(load_config(s, m, p)), (s, m, p)


@pytest.mark.slow  # ~5 min on a 2-core CPU: CI runs it in its second pass (.ci/run)
def test_demo_from_the_installed_wheel(installs, tmp_path):
    """The default demo from a wheel install, outside the checkout; a rerun reuses every finished stage."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    result = run_installed(installs["wheel"], ["-m", "brainrecon", "demo", "--out", "demo"], cwd, timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr
    out = cwd / "demo"
    assert "SIMULATED" in result.stdout + result.stderr and "tensorboard --logdir" in result.stderr
    assert (out / "decoder_rgbd/reconstruct_test/gallery.png").exists()
    assert (out / "evaluation/gallery_vs_ridge.png").exists()
    records = json.loads((out / "evaluation/identification.json").read_text())
    ten_way = {(r["run"], r["channel"], r["metric"]): r for r in records if r["ways"] == 10 and r["mode"] == "percent"}
    for channel, metric in (("rgb", "ssim"), ("depth", "pixcorr")):     # the deep decoder learned, above chance
        row = ten_way[("decoder_rgbd", channel, metric)]
        assert row["ci_low"] > row["chance"], row
    again = run_installed(installs["wheel"], ["-m", "brainrecon", "demo", "--out", "demo"], cwd)
    assert again.returncode == 0 and again.stderr.count("already done") == 6, again.stderr


def test_torch_has_no_upper_bound():
    """A torch (CUDA or CPU-only) installed before brainrecon must be kept: the dependencies set lower bounds only."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {d.split(">")[0].split("<")[0].split("=")[0].strip(): d for d in project["dependencies"]}
    for name in ("torch", "torchvision"):
        assert ">=" in pins[name] and "<" not in pins[name] and "==" not in pins[name], pins[name]
    assert "pytest" in " ".join(project["optional-dependencies"]["dev"])
    assert not any("pytest" in d for d in project["dependencies"])          # the demo needs only `pip install -e .`
