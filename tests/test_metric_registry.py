"""The metric registry (brainrecon/metric_specs.py) is the one list of metrics: every declared name has a function,
channels and a network; `evaluate --help` and the config list exactly those names; the offline flag matches what a
bare machine can run; a metric whose network is missing stops with one line. And the one `pearson` against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from brainrecon.cli import app
from brainrecon.config import ALL_METRICS
from brainrecon.correlation import correlation_distance, pearson
from brainrecon.errors import UserError
from brainrecon.evaluation import distances
from brainrecon.evaluation.identification import EvalOptions, evaluate_runs
from brainrecon.metric_specs import METRIC_NAMES, METRICS, metric_spec
from brainrecon.models.perceptual import STAND_INS


def test_every_allowed_name_has_a_function_channels_and_a_network():
    assert tuple(ALL_METRICS) == METRIC_NAMES and len(set(METRIC_NAMES)) == len(METRIC_NAMES)
    assert set(distances.METRIC_FUNCTIONS) == set(METRIC_NAMES)
    kinds = {"vgg16-imagenet", "vgg16-release", *STAND_INS}
    for name in ALL_METRICS:
        spec = metric_spec(name)
        assert callable(distances.METRIC_FUNCTIONS[name])
        assert spec.channels and set(spec.channels) <= {"rgb", "depth"}, name
        assert spec.network is None or spec.network in kinds, name
        assert spec.network is not None or spec.offline, name         # weight-free runs anywhere
        assert spec.candidates in ("images", "classes") and spec.about, name


def test_an_undeclared_name_cannot_be_bound():
    with pytest.raises(KeyError, match="metric_specs.py"):
        distances.distance("not-a-metric")(lambda recon, pool: None)


def test_evaluate_help_lists_exactly_the_registry_names():
    import typer.main
    command = typer.main.get_command(app).commands["evaluate"]
    option = next(p for p in command.params if "--metric" in p.opts)
    listed = option.help.split(" (")[0].split(", ")
    assert listed == list(METRIC_NAMES)
    result = CliRunner().invoke(app, ["evaluate", "--help"], terminal_width=200)
    flat = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 0 and ", ".join(METRIC_NAMES) in flat


@pytest.fixture
def bare_machine(tmp_path, monkeypatch):
    """An empty data folder and an empty torch hub cache (conftest refuses downloads)."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "data"


@pytest.mark.parametrize("spec", METRICS, ids=METRIC_NAMES)
def test_offline_flag_is_what_a_bare_machine_can_run(spec, bare_machine):
    for channel in ("rgb", "depth"):
        available = distances.metric_available(spec.name, channel, bare_machine)
        assert available == (channel in spec.channels and spec.offline), (spec.name, channel)


@pytest.mark.parametrize("spec", [m for m in METRICS if not m.offline], ids=lambda m: m.name)
def test_a_missing_network_stops_with_one_line(spec, bare_machine, rng):
    channels = {"rgb": 3, "depth": 1}[spec.channels[0]]
    truth = rng.integers(0, 256, (6, 16, 16, channels), dtype=np.uint8)
    run = {"reconstructions": truth, "ground_truth": truth, "modality": np.array(spec.channels[0]),
           "run": np.array("r")}
    with pytest.raises(UserError) as e:
        evaluate_runs([run], EvalOptions(ways=(2,), metrics=(spec.name,)), bare_machine)
    msg = str(e.value)
    assert msg.startswith(f"metric {spec.name} needs") and f"drop --metric {spec.name}" in msg and "\n" not in msg


def test_default_selection_skips_what_is_missing(bare_machine, rng):
    truth = rng.integers(0, 256, (6, 16, 16, 1), dtype=np.uint8)
    run = {"reconstructions": truth, "ground_truth": truth, "modality": np.array("depth"), "run": np.array("r")}
    records, _ = evaluate_runs([run], EvalOptions(ways=(2,), repeats=5), bare_machine)
    scored = {r["metric"] for r in records}
    assert scored == {m.name for m in METRICS if "depth" in m.channels and m.offline}


# --- pearson -------------------------------------------------------------------------------------------------------

def test_pearson_paired_rows_and_columns_match_numpy(rng):
    a, b = rng.normal(size=(7, 50)), rng.normal(size=(7, 50))
    b[:3] += a[:3]
    rows = [np.corrcoef(x, y)[0, 1] for x, y in zip(a, b)]
    np.testing.assert_allclose(pearson(a, b), rows, rtol=0, atol=1e-12)
    np.testing.assert_allclose(pearson(torch.tensor(a), torch.tensor(b)).numpy(), rows, rtol=0, atol=1e-12)
    cols = [np.corrcoef(x, y)[0, 1] for x, y in zip(a.T, b.T)]
    np.testing.assert_allclose(pearson(a, b, dim=0), cols, rtol=0, atol=1e-12)
    np.testing.assert_allclose(correlation_distance(a, b), 1 - np.array(rows), rtol=0, atol=1e-12)


def test_pearson_cross_matches_numpy(rng):
    a, b = rng.normal(size=(5, 40)), rng.normal(size=(9, 40))
    want = np.corrcoef(a, b)[:5, 5:]
    got = pearson(a, b, cross=True)
    assert isinstance(got, np.ndarray) and got.shape == (5, 9)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(pearson(torch.tensor(a), torch.tensor(b), cross=True).numpy(), want, atol=1e-12)
    np.testing.assert_allclose(correlation_distance(a, b, cross=True), 1 - want, atol=1e-12)
    np.testing.assert_allclose(pearson(a[::-1], b[::-1], cross=True), want[::-1, ::-1], atol=1e-12)  # any strides


def test_pearson_of_a_constant_row_is_zero_and_float32_stays_float32(rng):
    a = rng.normal(size=(3, 20)).astype(np.float32)
    const = np.ones((3, 20), dtype=np.float32)
    assert np.array_equal(pearson(a, const), np.zeros(3, dtype=np.float32))
    assert np.array_equal(pearson(const, a, cross=True), np.zeros((3, 3), dtype=np.float32))
    assert pearson(torch.tensor(a), torch.tensor(a)).dtype == torch.float32
    np.testing.assert_allclose(pearson(a, a), 1, atol=1e-6)


def test_pixcorr_distance_is_one_minus_r_of_the_flattened_pixels(rng):
    recon = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    pool = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    want = 1 - np.corrcoef(recon.reshape(4, -1) / 255, pool.reshape(6, -1) / 255)[:4, 4:]
    np.testing.assert_allclose(distances.pixcorr_distance(recon, pool), want, atol=1e-12)
