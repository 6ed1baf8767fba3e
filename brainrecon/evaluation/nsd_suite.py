"""`evaluate --suite nsd`: the eight metrics every NSD reconstruction paper reports, defined as in Brain-Diffuser's
and MindEye's evaluation (facts in ../shared/NSD.md of the project history; no code copied).

- PixCorr: Pearson r of the flattened RGB reconstruction and ground truth (reconstruction resized, bilinear, to the
  ground truth's size), averaged over images.
- SSIM: scikit-image structural_similarity on greyscale (rgb2gray) images in [0, 1], gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=1.
- AlexNet(2), AlexNet(5), InceptionV3, CLIP: exhaustive two-way identification on network features. For the
  reconstruction of image j: the share of the other images i whose ground-truth features correlate less with it
  than image j's own, corr(f(gt_i), f(rec_j)) < corr(f(gt_j), f(rec_j)); averaged over j. Taps: AlexNet
  features.4 (ReLU after conv2) and features.11 (ReLU after conv5), InceptionV3 avgpool, CLIP ViT-L/14 image
  embedding.
- EffNet-B, SwAV: mean correlation distance 1 - r between the features of reconstruction and ground truth (lower is
  better): EfficientNet-B1 avgpool, SwAV ResNet-50 avgpool.
Each network's preprocessing: a bilinear resize of the shorter side (AlexNet 256, Inception 342, EfficientNet-B1 255,
CLIP and SwAV 224; no crop) and its normalisation (ImageNet mean/std; CLIP's own).
Weights: torchvision's weights API, open_clip and torch.hub on first use (`pip install 'brainrecon[nsd]'`). A
network that cannot be loaded makes its row 'unavailable' with the reason; the others still run. Never replaced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from brainrecon.correlation import correlation_distance, pearson
from brainrecon.data.transforms import to_float

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
COLUMNS = ("PixCorr", "SSIM", "AlexNet(2)", "AlexNet(5)", "InceptionV3", "CLIP", "EffNet-B", "SwAV")
LOWER_IS_BETTER = ("EffNet-B", "SwAV")


@dataclass(frozen=True)
class Network:
    name: str
    metrics: tuple[tuple[str, str], ...]
    """(metric column, feature tap) pairs read from one forward pass."""
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str


NETWORKS = (
    Network("alexnet", (("AlexNet(2)", "features.4"), ("AlexNet(5)", "features.11")), 256, IMAGENET_MEAN,
            IMAGENET_STD, "torchvision AlexNet_Weights.IMAGENET1K_V1"),
    Network("inception_v3", (("InceptionV3", "avgpool"),), 342, IMAGENET_MEAN, IMAGENET_STD,
            "torchvision Inception_V3_Weights.IMAGENET1K_V1"),
    Network("clip_vit_l14", (("CLIP", "image_embedding"),), 224, CLIP_MEAN, CLIP_STD,
            "open_clip ViT-L-14-quickgelu, pretrained='openai'"),
    Network("efficientnet_b1", (("EffNet-B", "avgpool"),), 255, IMAGENET_MEAN, IMAGENET_STD,
            "torchvision EfficientNet_B1_Weights.IMAGENET1K_V2"),
    Network("swav_resnet50", (("SwAV", "avgpool"),), 224, IMAGENET_MEAN, IMAGENET_STD,
            "torch.hub facebookresearch/swav:main resnet50"),
)


# --- protocols ---------------------------------------------------------------------------------------------------

def _matched(recon: np.ndarray, truth: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as float64 (N, 3, H, W) in [0, 1], the reconstruction resized (bilinear) to the ground truth's size."""
    r, t = to_float(recon[..., :3], torch.float64), to_float(truth[..., :3], torch.float64)
    if r.shape[-2:] != t.shape[-2:]:
        r = F.interpolate(r, size=t.shape[-2:], mode="bilinear", align_corners=False, antialias=True)
    return r, t


def pixcorr(recon: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per image: Pearson r of the flattened RGB pixels, the reconstruction resized to the ground truth's size."""
    r, t = _matched(recon, truth)
    return pearson(r.flatten(1), t.flatten(1)).numpy()


def ssim(recon: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per image: scikit-image SSIM on greyscale images in [0, 1] with the published arguments."""
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity
    r, t = (x.permute(0, 2, 3, 1).numpy() for x in _matched(recon, truth))
    return np.array([structural_similarity(rgb2gray(a), rgb2gray(b), gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False, data_range=1.0) for a, b in zip(r, t)])


def two_way(recon_features: np.ndarray, truth_features: np.ndarray) -> np.ndarray:
    """Per reconstruction j: the share of other images i with corr(gt_i, rec_j) < corr(gt_j, rec_j)."""
    r = pearson(truth_features.astype(np.float64), recon_features.astype(np.float64), cross=True)  # [i, j]
    own = np.diag(r)
    n = len(own)
    return ((r < own[None, :]).sum(0)) / (n - 1)


# --- networks ----------------------------------------------------------------------------------------------------

def preprocess(images: torch.Tensor, net: Network) -> torch.Tensor:
    """float (N, 3, H, W) in [0, 1] -> the network's input: shorter side resized (bilinear), normalised."""
    h, w = images.shape[-2:]
    size = (net.size, round(net.size * w / h)) if h <= w else (round(net.size * h / w), net.size)
    x = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(net.mean, dtype=x.dtype, device=x.device)[:, None, None]
    std = torch.tensor(net.std, dtype=x.dtype, device=x.device)[:, None, None]
    return (x - mean) / std


class Unavailable(Exception):
    """A network whose weights cannot be loaded; the message is the reason shown in its row."""


def _torchvision_weights(weights, offline: bool):
    if offline:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
        if not cached.is_file():
            raise Unavailable(f"weights not in the local cache ({cached}) and downloads are off")
    return weights


class ImageEmbedding(torch.nn.Module):
    """CLIP's image tower as a feature extractor: {"image_embedding": (N, 768)}, frozen, in eval mode."""

    def __init__(self, visual: torch.nn.Module):
        super().__init__()
        self.visual = visual.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> dict:
        return {"image_embedding": self.visual(x)}


def build(net: Network, pretrained: bool = True, offline: bool = False) -> Callable[[torch.Tensor], dict]:
    """A function images -> {tap: features} for the network (random weights when pretrained=False: for tests)."""
    import torchvision.models as tvm
    from torchvision.models.feature_extraction import create_feature_extractor
    taps = [tap for _, tap in net.metrics]
    if net.name == "clip_vit_l14":
        try:
            import open_clip
        except ImportError:
            raise Unavailable("open_clip is not installed: pip install 'brainrecon[nsd]'") from None
        import huggingface_hub.constants as hub
        was, hub.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE or (offline and pretrained)
        try:  # OpenAI's ViT-L/14 was trained with QuickGELU: the -quickgelu config is its exact architecture
            model = open_clip.create_model("ViT-L-14-quickgelu", pretrained="openai" if pretrained else None)
        finally:
            hub.HF_HUB_OFFLINE = was
        return ImageEmbedding(model.visual)
    if net.name == "swav_resnet50":
        if pretrained:
            if offline and not (Path(torch.hub.get_dir()) / "facebookresearch_swav_main").is_dir():
                raise Unavailable(f"the SwAV hub repository is not in the local cache ({torch.hub.get_dir()}) and "
                                  "downloads are off")
            model = torch.hub.load("facebookresearch/swav:main", "resnet50", trust_repo=True, skip_validation=True)
        else:
            model = tvm.resnet50(weights=None)
    else:
        factory, weights = {
            "alexnet": (tvm.alexnet, "AlexNet_Weights.IMAGENET1K_V1"),
            "inception_v3": (tvm.inception_v3, "Inception_V3_Weights.IMAGENET1K_V1"),
            "efficientnet_b1": (tvm.efficientnet_b1, "EfficientNet_B1_Weights.IMAGENET1K_V2"),
        }[net.name]
        if pretrained:
            enum, member = weights.split(".")
            model = factory(weights=_torchvision_weights(getattr(getattr(tvm, enum), member), offline))
        else:
            extra = {"aux_logits": True, "init_weights": False} if net.name == "inception_v3" else {}
            model = factory(weights=None, **extra)
    import warnings
    with warnings.catch_warnings():  # inception warns 'eval-mode nodes are a subsequence of train-mode nodes'
        warnings.simplefilter("ignore", UserWarning)
        extractor = create_feature_extractor(model.eval(), return_nodes=taps).requires_grad_(False)
    return extractor


def load(net: Network, offline: bool = False):
    """(extractor, None) or (None, reason): a network that cannot be loaded is reported, never replaced."""
    try:
        return build(net, pretrained=True, offline=offline), None
    except Unavailable as e:
        return None, str(e)
    except Exception as e:  # noqa: BLE001 -- network, hub or file errors all mean: not available here
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"


@torch.no_grad()
def features(extractor, net: Network, images: np.ndarray, device: torch.device, batch: int = 32) -> dict:
    out: dict[str, list] = {}
    for i in range(0, len(images), batch):
        x = preprocess(to_float(images[i:i + batch, ..., :3]).to(device), net)
        for tap, f in extractor(x).items():
            out.setdefault(tap, []).append(f.float().flatten(1).cpu().numpy())
    return {tap: np.concatenate(v) for tap, v in out.items()}


def evaluate_suite(recons: list[dict], device: torch.device | None = None, offline: bool = False,
                   loader=load, say=lambda s: None) -> list[dict]:
    """One row per run and metric: mean, its per-image values, or 'unavailable' with the reason."""
    from brainrecon.runtime import pick_device
    device = device or pick_device("auto")
    rows = []
    runs = [r for r in recons if str(r["modality"]) in ("rgb", "rgbd")]
    for rec in runs:
        recon, truth = rec["reconstructions"][..., :3], rec["ground_truth"][..., :3]
        for name, values in (("PixCorr", pixcorr(recon, truth)), ("SSIM", ssim(recon, truth))):
            rows.append(_row(rec, name, values, "weight-free"))
    for net in NETWORKS:
        extractor, reason = loader(net, offline)
        if extractor is None:
            say(f"{net.name}: unavailable ({reason})")
            for rec in runs:
                for metric, _ in net.metrics:
                    rows.append({**_row(rec, metric, None, net.source), "unavailable": reason})
            continue
        extractor = extractor.to(device)
        for rec in runs:
            f_recon = features(extractor, net, rec["reconstructions"], device)
            f_truth = features(extractor, net, rec["ground_truth"], device)
            for metric, tap in net.metrics:
                a, b = f_recon[tap].astype(np.float64), f_truth[tap].astype(np.float64)
                score = correlation_distance(a, b) if metric in LOWER_IS_BETTER else two_way(a, b)
                rows.append(_row(rec, metric, score, net.source))
        del extractor
    order = {m: k for k, m in enumerate(COLUMNS)}
    return sorted(rows, key=lambda r: (r["run"], order[r["metric"]]))


def _row(rec: dict, metric: str, values: np.ndarray | None, source: str) -> dict:
    row = {"run": str(rec["run"]), "subject": int(rec.get("subject", -1)), "metric": metric, "source": source,
           "better": "lower" if metric in LOWER_IS_BETTER else "higher", "n_images": len(rec["reconstructions"]),
           "mean": None if values is None else float(np.mean(values)), "unavailable": ""}
    if values is not None:
        row["per_image"] = values
    return row


def table(rows: list[dict]) -> list[dict]:
    """The published layout: one line per run, the eight metrics as columns (two-way ones in %)."""
    out = []
    for run in dict.fromkeys(r["run"] for r in rows):
        line = {"run": run}
        for r in (r for r in rows if r["run"] == run):
            if r["mean"] is None:
                line[r["metric"]] = "unavailable"
            elif r["metric"] in ("PixCorr", "SSIM") or r["metric"] in LOWER_IS_BETTER:
                line[r["metric"]] = f"{r['mean']:.3f}"
            else:
                line[r["metric"]] = f"{100 * r['mean']:.1f}%"
        out.append(line)
    return out
