"""The NSD metric suite: each protocol against a direct computation, the networks' taps and preprocessing on
randomly initialised networks of the same architectures (no weights here), unavailable networks reported."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from brainrecon.evaluation import nsd_suite as suite

pytest.importorskip("skimage", reason="scikit-image (brainrecon[nsd]) computes the suite's SSIM")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_pixcorr_is_the_mean_pearson_r_of_flattened_rgb(rng):
    truth = rng.integers(0, 256, (5, 12, 12, 3), dtype=np.uint8)
    recon = np.clip(truth.astype(int) + rng.integers(-60, 60, truth.shape), 0, 255).astype(np.uint8)
    direct = [np.corrcoef(r.ravel().astype(float), t.ravel().astype(float))[0, 1] for r, t in zip(recon, truth)]
    np.testing.assert_allclose(suite.pixcorr(recon, truth), direct, atol=1e-10)
    # a reconstruction at another size is resized to the ground truth's
    assert suite.pixcorr(np.repeat(np.repeat(truth, 2, 1), 2, 2), truth).min() > 0.5


def test_ssim_uses_the_published_arguments_on_grey_images(rng):
    from skimage.metrics import structural_similarity
    truth = rng.integers(0, 256, (3, 20, 20, 3), dtype=np.uint8)
    recon = rng.integers(0, 256, (3, 20, 20, 3), dtype=np.uint8)
    grey = lambda x: (x[..., :3] / 255.0) @ np.array([0.2125, 0.7154, 0.0721])  # noqa: E731  skimage's rgb2gray
    direct = [structural_similarity(grey(r), grey(t), gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=1.0) for r, t in zip(recon, truth)]
    np.testing.assert_allclose(suite.ssim(recon, truth), direct, atol=1e-10)
    np.testing.assert_allclose(suite.ssim(truth, truth), 1.0, atol=1e-12)


def test_two_way_is_exhaustive_and_counts_less_correlated_ground_truths(rng):
    truth = rng.standard_normal((7, 30))
    recon = truth + rng.standard_normal((7, 30)) * 1.5
    expected = []
    for j in range(7):
        own = np.corrcoef(truth[j], recon[j])[0, 1]
        wins = [np.corrcoef(truth[i], recon[j])[0, 1] < own for i in range(7) if i != j]
        expected.append(np.mean(wins))
    np.testing.assert_allclose(suite.two_way(recon, truth), expected)
    assert suite.two_way(truth, truth).mean() == 1.0


def test_correlation_distance_is_one_minus_r_and_lower_is_better(rng):
    from scipy.spatial.distance import correlation
    a, b = rng.standard_normal((4, 50)), rng.standard_normal((4, 50))
    np.testing.assert_allclose(suite.correlation_distance(a, b), [correlation(x, y) for x, y in zip(b, a)])
    assert np.allclose(suite.correlation_distance(a, a), 0) and "EffNet-B" in suite.LOWER_IS_BETTER


def test_preprocessing_resizes_the_shorter_side_and_normalises():
    x = torch.full((2, 3, 112, 112), 0.5)
    for net in suite.NETWORKS:
        y = suite.preprocess(x, net)
        assert y.shape == (2, 3, net.size, net.size)
        expected = (0.5 - torch.tensor(net.mean)) / torch.tensor(net.std)
        torch.testing.assert_close(y[0, :, 5, 5], expected)
    wide = suite.preprocess(torch.rand(1, 3, 100, 200), suite.NETWORKS[0])
    assert wide.shape == (1, 3, 256, 512)


TAPS = {"alexnet": {"features.4": 192 * 31 * 31, "features.11": 256 * 15 * 15}, "inception_v3": {"avgpool": 2048},
        "clip_vit_l14": {"image_embedding": 768}, "efficientnet_b1": {"avgpool": 1280},
        "swav_resnet50": {"avgpool": 2048}}


@pytest.mark.parametrize("net", suite.NETWORKS, ids=lambda n: n.name)
def test_taps_on_randomly_initialised_networks(net, rng):
    if net.name == "clip_vit_l14":
        pytest.importorskip("open_clip", reason="open_clip (brainrecon[nsd]) builds CLIP")
    extractor = suite.build(net, pretrained=False)
    assert not any(p.requires_grad for p in extractor.parameters())
    feats = suite.features(extractor, net, rng.integers(0, 256, (2, 40, 40, 3), dtype=np.uint8), torch.device("cpu"))
    assert {k: v.shape[1] for k, v in feats.items()} == TAPS[net.name]
    assert all(np.isfinite(v).all() and v.shape[0] == 2 for v in feats.values())


def _run(rng, name, n=6, noise=20):
    truth = rng.integers(0, 256, (n, 24, 24, 3), dtype=np.uint8)
    recon = np.clip(truth.astype(int) + rng.integers(-noise, noise, truth.shape), 0, 255).astype(np.uint8)
    return {"reconstructions": recon, "ground_truth": truth, "modality": np.array("rgb"), "run": np.array(name),
            "subject": np.array(1)}


def test_unavailable_networks_are_reported_and_the_rest_run(rng):
    def loader(net, offline):
        if net.name in ("alexnet", "efficientnet_b1"):
            return suite.build(net, pretrained=False), None
        return None, f"{net.name} weights not here"
    rows = suite.evaluate_suite([_run(rng, "a")], torch.device("cpu"), loader=loader)
    by = {r["metric"]: r for r in rows}
    assert list(by) == list(suite.COLUMNS)
    assert by["CLIP"]["mean"] is None and by["CLIP"]["unavailable"] == "clip_vit_l14 weights not here"
    assert by["SwAV"]["unavailable"] and by["InceptionV3"]["unavailable"]
    assert by["PixCorr"]["mean"] > 0.9 and by["SSIM"]["mean"] > 0.5
    assert 0 <= by["AlexNet(2)"]["mean"] <= 1 and by["EffNet-B"]["better"] == "lower"
    line = suite.table(rows)[0]
    assert line["CLIP"] == "unavailable" and line["AlexNet(2)"].endswith("%")


def test_cli_suite_without_downloads(rng, tmp_path, monkeypatch):
    """--no-download with an empty weights cache: every network row says why, PixCorr and SSIM still come."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    np.savez(tmp_path / "reconstructions.npz", **_run(rng, "deep"))
    from brainrecon.cli import app
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "reconstructions.npz"), "--ways", "2", "--metric",
                                      "pixcorr", "--suite", "nsd", "--no-download", "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert "NSD metric suite" in result.output and "AlexNet(2): unavailable: weights not in the local cache" in \
        result.output
    import csv
    rows = list(csv.DictReader(open(tmp_path / "ev" / "nsd_suite.csv")))
    assert [r["metric"] for r in rows] == list(suite.COLUMNS)
    assert float(rows[0]["mean"]) > 0.9 and all(r["unavailable"] for r in rows[2:])
