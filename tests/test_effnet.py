"""The embedded ImageNet network: strict load through the name map, accuracy on real photos, metric and loss."""

from pathlib import Path

import numpy as np
import pytest
import torch

from brainrecon import losses
from brainrecon.evaluation.distances import distance_matrix
from brainrecon.evaluation.identification import EvalOptions, evaluate_runs
from brainrecon.evaluation.statistics import identification
from brainrecon.models import effnet

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples-112" / "val"


@pytest.fixture(scope="module")
def net():
    return effnet.load_effnet_lite0()


def test_name_map_agrees_with_the_file_order(net):
    """The explicit map must send the i-th tensor of the file to the i-th tensor of timm's model."""
    raw = torch.load(effnet.weights_path(), map_location="cpu", weights_only=True)
    assert [effnet.rename(k) for k in raw] == list(net.state_dict())
    assert len(raw) == 296


@pytest.mark.skipif(not PHOTOS.is_dir(), reason="../shared/data ImageNet photos are not on this machine")
def test_classifier_accuracy_on_real_photos(net):
    """Measured: 63.9% top-1 on all 1,000 photos (one per class, 112 px upsampled to 224, bicubic, (x-0.5)/0.5);
    53% when fed at 112. The first 300 are checked here; > 50% leaves ~2.5 standard errors of margin."""
    from brainrecon.data.imagenet import list_images, load_image
    files = list_images(PHOTOS)[:300]
    wnids = sorted(p.name for p in PHOTOS.iterdir() if p.is_dir())
    labels = torch.tensor([wnids.index(f.parent.name) for f in files])
    x = torch.from_numpy(np.stack([load_image(f, 112) for f in files])).permute(0, 3, 1, 2).float() / 255
    top1 = (effnet.classify(net, x) == labels).float().mean().item()
    assert top1 > 0.5, top1


def test_perceptual_effnet_identity_and_noise(rng):
    truth = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    d = distance_matrix("perceptual-effnet", truth, truth)
    correct, _ = identification(d, 10, 50, rng)
    assert correct.mean() == 1.0
    noise = distance_matrix("perceptual-effnet", rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), truth)
    correct, _ = identification(noise, 2, 200, rng)
    assert abs(correct.mean() - 0.5) < 0.15


def test_semantic_50way_rows_name_the_classifier(rng):
    truth = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    run = {"reconstructions": truth, "ground_truth": truth, "modality": np.array("rgb"), "run": np.array("r"),
           "subject": np.array(3)}
    records, _ = evaluate_runs([run], EvalOptions(ways=(2,), metrics=("semantic-50way",), repeats=20))
    pct = next(r for r in records if r["mode"] == "percent")
    assert pct["metric"] == "semantic-50way/effnet-lite0" and pct["ways"] == 50 and pct["mean"] == 1.0


def test_effnet_loss_is_differentiable_and_frozen():
    from brainrecon.models.perceptual import build_perceptual_net
    net = build_perceptual_net("effnet-lite0", "rgbd", None)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    loss_fn = losses.ImageLoss("rgbd", torch.full((4,), 0.5), net, perceptual_weights=[1] * 7)
    pred = torch.rand(2, 4, 32, 32, requires_grad=True)
    sum(loss_fn(pred, torch.rand(2, 4, 32, 32)).values()).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in net.parameters()) and not net.training
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
