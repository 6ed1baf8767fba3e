"""Typed, self-checking configs for every stage, loaded from YAML with overrides.

Paper settings are the dataclass defaults; `configs/<stage>/<modality>.yaml` sets what differs per modality in the
published runs and `configs/<stage>/demo.yaml` the small CPU settings for the simulated subject. Precedence, last
wins: dataclass defaults < modality YAML < the chosen preset or file < `--set section.key=value`. A preset or file
may hold a section per modality (`rgbd: {model: {depth_input: branch}}`): it is merged over the rest of that file
for that modality only, so one preset can serve every modality.

The presets are read through the installed package `brainrecon.configs` (the top-level `configs/` folder, mapped in
pyproject.toml), so a wheel, an sdist and an editable install all resolve the same files.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from brainrecon.errors import ConfigError

STAGES = ("encoder", "decoder")
MODALITIES = ("rgb", "depth", "rgbd")
ROIS = ("V1", "V2", "V3", "V4", "FFA", "PPA", "LOC", "LVC", "HVC", "VC")
ALL_METRICS = ("pixcorr", "ssim", "perceptual-effnet", "semantic-50way", "perceptual-vgg", "depth-perceptual",
               "lpips-alex")
"""Every metric `evaluate --metric` accepts (brainrecon/evaluation computes them)."""


@dataclass
class DataConfig:
    subject: int = 3
    """GOD subject number (1..5); selects sbj_<N>.npz."""
    roi: str = "VC"
    """ROI mask applied to every voxel array."""
    resolution: int = 112
    """Stimulus resolution in pixels; selects images_<res>.npz."""
    depth_source: str = "small"
    """MiDaS depth folder for unpaired images (the original decoder used `small`)."""
    max_unpaired: int = 0
    """Cap on unpaired images loaded (0 = all)."""
    val_fraction: float = 0.05
    """Fraction of training pairs held out for model selection (never the test set). 0: every training pair is used
    in every epoch, the last batch partial (the original code's data stream)."""
    unpaired_fmri: str = "test"
    """The fMRI of the decoder->encoder cycle: test (the test set's fMRI without their images, as the paper: a
    transductive choice) or train (the training fMRI only: strictly inductive)."""

    def __post_init__(self):
        if self.roi not in ROIS:
            raise ConfigError(f"data.roi={self.roi!r} is not a ROI; choose one of {', '.join(ROIS)}")
        if self.depth_source not in ("small", "large"):
            raise ConfigError(f"data.depth_source={self.depth_source!r}; choose small or large")
        if self.unpaired_fmri not in ("test", "train"):
            raise ConfigError(f"data.unpaired_fmri={self.unpaired_fmri!r}; choose test (the paper) or train")
        if not 0 <= self.val_fraction < 0.5:
            raise ConfigError(f"data.val_fraction={self.val_fraction} must lie in [0, 0.5)")
        if self.resolution < 16 or self.resolution % 8:
            raise ConfigError(f"data.resolution={self.resolution} must be a multiple of 8, at least 16")


@dataclass
class TrainConfig:
    epochs: int = 50
    """Passes over the training pairs."""
    batch_size: int = 64
    """Paired batch size."""
    lr: float = 1e-3
    """Adam learning rate."""
    milestones: list[int] = field(default_factory=lambda: [10, 20, 30, 40])
    """Epochs at which the learning rate is multiplied by `gamma`."""
    gamma: float = 0.2
    """Learning-rate decay factor."""
    seed: int = 0
    """Seed for weights, batches and augmentation."""
    deterministic: bool = False
    """Ask torch for deterministic kernels (slower)."""
    device: str = "auto"
    """auto | cpu | cuda | mps."""
    amp: bool | str = "auto"
    """bf16 autocast: auto (on CUDA and on CPUs with native bf16, fp32 elsewhere) | true (forced) | false."""
    threads: int = 0
    """CPU threads for torch (0 = OMP_NUM_THREADS if set, else the CPUs this process may use, split among ranks)."""
    log_every: int = 1
    """Epochs between validation/log lines."""

    def __post_init__(self):
        if self.epochs < 1:
            raise ConfigError(f"train.epochs={self.epochs} must be at least 1")
        if self.batch_size < 1:
            raise ConfigError(f"train.batch_size={self.batch_size} must be at least 1")
        if self.threads < 0:
            raise ConfigError(f"train.threads={self.threads} must be 0 (automatic) or a thread count")
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith("cuda:"):
            raise ConfigError(f"train.device={self.device!r}; choose auto, cpu, cuda or mps")
        if not (isinstance(self.amp, bool) or self.amp == "auto"):
            raise ConfigError(f"train.amp={self.amp!r}; choose auto, true or false")


DEPTH_INPUTS = ("grey", "stem", "branch")
"""How the effnet-lite0 encoder reads depth (models/encoder.py EffNetTaps): grey (through the frozen network as a grey
image), stem (rgbd only: a trainable depth column beside the frozen RGB stem), branch (a small trainable CNN of its own,
taps at the same strides, concatenated with the RGB taps)."""


@dataclass
class EncoderModelConfig:
    arch: str = "vgg19"
    """Backbone: vgg16 or vgg19 (torchvision layout), or effnet-lite0 (frozen EfficientNet-Lite0 stages 0, 1, 2, 4 at
    twice input_size; depth as depth_input says)."""
    backbone_weights: str = "release"
    """release (rgbd/depth VGG from the release), imagenet (torchvision, rgb), none (random init)."""
    width: float = 1.0
    """Backbone channel multiplier; only 1.0 can load published weights (the CPU demo uses less)."""
    train_backbone: bool = False
    """Train the backbone too (paper: frozen, features detached)."""
    input_size: int = 112
    """Side the image is resized to before the backbone."""
    head_channels: int = 32
    """Channels at the end of each per-tap head."""
    dropout: float = 0.5
    """Dropout on the readout features while the encoder trains."""
    depth_input: str = "grey"
    """effnet-lite0 only, how depth is read: grey (the frozen network on depth as a grey image), stem (rgbd: a
    trainable depth channel beside the frozen RGB stem, one stream) or branch (a small trainable CNN of its own)."""

    def __post_init__(self):
        if self.depth_input not in DEPTH_INPUTS:
            raise ConfigError(f"model.depth_input={self.depth_input!r}; choose grey, stem or branch")
        if self.depth_input != "grey" and self.arch != "effnet-lite0":
            raise ConfigError(f"model.depth_input={self.depth_input} is for model.arch=effnet-lite0; the VGG backbones "
                              "read depth as an input channel of their own")
        if self.arch not in ("vgg16", "vgg19", "effnet-lite0"):
            raise ConfigError(f"model.arch={self.arch!r}; choose vgg16, vgg19 or effnet-lite0")
        if self.arch == "effnet-lite0" and self.backbone_weights == "release":
            raise ConfigError("model.arch=effnet-lite0 takes backbone_weights imagenet (the weights that ship with "
                              "brainrecon) or none (random init of the same shape)")
        if self.backbone_weights not in ("release", "imagenet", "none"):
            raise ConfigError(f"model.backbone_weights={self.backbone_weights!r}; choose release, imagenet or none")
        if self.arch == "effnet-lite0" and self.width != 1.0:
            raise ConfigError("model.width scales VGG only; set model.width=1.0 with model.arch=effnet-lite0")
        if self.backbone_weights != "none" and self.width != 1.0:
            raise ConfigError("model.width must be 1.0 when loading backbone weights; set model.backbone_weights=none")
        if self.input_size < 32 or self.input_size % 16:
            raise ConfigError(f"model.input_size={self.input_size} must be a multiple of 16, at least 32")


@dataclass
class EncoderLossConfig:
    mse: float = 1.0
    """Weight of the voxel MSE."""
    cosine: float = 0.3
    """Weight of the voxel cosine loss."""
    group_lasso: float = 1.0
    """Weight of the spatial-map group lasso."""
    second_moment: float = 10.0
    """Weight of the spatial-map second moment (compact receptive fields)."""
    l1_convs: float = 1e-4
    """L1 on head conv weights."""
    l1_chan_mix: float = 5e-6
    """L1 on the per-voxel channel mixes."""
    l1_branch_mix: float = 5e-2
    """L1 on the per-voxel branch mix."""
    pad_percent: float = 3.0
    """Random-shift augmentation: edge padding in percent of the image side."""


@dataclass
class EncoderConfig:
    modality: str = "rgbd"
    """rgb | depth | rgbd."""
    data: DataConfig = field(default_factory=DataConfig)
    model: EncoderModelConfig = field(default_factory=EncoderModelConfig)
    loss: EncoderLossConfig = field(default_factory=EncoderLossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        check_modality(self.modality)
        if self.model.depth_input != "grey" and self.modality == "rgb":
            raise ConfigError(f"model.depth_input={self.model.depth_input} needs depth; the modality is rgb")
        if self.model.depth_input == "stem" and self.modality != "rgbd":
            raise ConfigError("model.depth_input=stem adds depth to the RGB stem (rgbd only); use grey or branch for "
                              "depth")
        if self.model.backbone_weights == "imagenet" and self.modality != "rgb" and self.model.arch != "effnet-lite0":
            raise ConfigError("model.backbone_weights=imagenet only fits rgb; use release (or none) for depth/rgbd")


@dataclass
class DecoderModelConfig:
    kind: str = "deep"
    """deep (the paper's conv decoder) or ridge (the linear baseline)."""
    channels: int = 64
    """Channels of the upsampling blocks (the seed tensor is channels x res/8 x res/8; three x2 blocks follow)."""

    def __post_init__(self):
        if self.kind not in ("deep", "ridge"):
            raise ConfigError(f"model.kind={self.kind!r}; choose deep or ridge")
        if self.channels % 32:
            raise ConfigError(f"model.channels={self.channels} must be a multiple of 32 (GroupNorm(32))")


@dataclass
class DecoderLossConfig:
    weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 0.0])
    """[D, ED, DE]: supervised, encoder->decoder (unpaired images), decoder->encoder (unpaired fMRI)."""
    perceptual_net: str = "auto"
    """auto | vgg16-release | vgg16-imagenet | vgg16-random | effnet-lite0 | none."""
    perceptual_width: float = 1.0
    """Channel multiplier of the vgg16-random network (random features need not be full width on a CPU)."""
    perceptual_weights: list[float] = field(default_factory=lambda: [10.0, 10.0, 10.0, 10.0, 2.0])
    """Per post-pool layer weight of the perceptual term."""
    rgb_l1: float = 1.0
    """Weight of the RGB L1 (channel-norm scaled)."""
    depth_l1: float = 1.0
    """Weight of the depth L1 (channel-norm scaled)."""
    tv: float = 0.3
    """Weight of the total-variation term."""
    fmri_cosine: float = 0.2
    """Weight of the cosine term of the fMRI loss."""
    gl_l1: float = 40.0
    """SNR-weighted L1 on the input linear map."""
    gl_gl: float = 400.0
    """Spatial group lasso on the input linear map."""
    l1_convs: float = 1e-4
    """L1 on decoder conv weights."""

    def __post_init__(self):
        if len(self.weights) != 3 or min(self.weights) < 0:
            raise ConfigError(f"loss.weights={self.weights} must be three non-negative numbers [D, ED, DE]")
        nets = ("auto", "vgg16-release", "vgg16-imagenet", "vgg16-random", "effnet-lite0", "none")
        if self.perceptual_net not in nets:
            raise ConfigError(f"loss.perceptual_net={self.perceptual_net!r}; choose one of {', '.join(nets)}")
        if len(self.perceptual_weights) not in (5, 7):
            raise ConfigError("loss.perceptual_weights must list 5 numbers (VGG pool1..pool5) or 7 (EfficientNet "
                              "stages)")


@dataclass
class DecoderTrainConfig(TrainConfig):
    epochs: int = 150
    batch_size: int = 24
    lr: float = 5e-3
    milestones: list[int] = field(default_factory=lambda: [100, 140])
    unpaired_fmri_batch: int = 16
    """Unpaired (test, image-less) fMRI samples per step."""
    unpaired_image_batch: int = 48
    """Unpaired images per step."""
    test_avg_fraction: float = 1.0
    """Fraction of an image's repeats averaged into one unpaired fMRI sample."""
    self_supervision: bool = True
    """False = supervised only (weights ED and DE forced to 0)."""
    warn_seconds: float = 0.0
    """Warn when training takes longer than this (0 = never); a guard only: all `epochs` are always trained."""
    cache_mb: float = 1024.0
    """Memory (MB, on the training device) for exact caches of frozen-network outputs on fixed images: the encoder's
    voxels for unpaired images first, then the perceptual features of paired targets, then of unpaired images; what
    does not fit is computed per step. 0 turns caching off; the values are the same either way."""

    def __post_init__(self):
        super().__post_init__()
        if self.cache_mb < 0:
            raise ConfigError(f"train.cache_mb={self.cache_mb} must be 0 (no cache) or more")
        if not 0 < self.test_avg_fraction <= 1:
            raise ConfigError(f"train.test_avg_fraction={self.test_avg_fraction} must lie in (0, 1]")


@dataclass
class DecoderConfig:
    modality: str = "rgbd"
    """rgb | depth | rgbd."""
    data: DataConfig = field(default_factory=DataConfig)
    model: DecoderModelConfig = field(default_factory=DecoderModelConfig)
    loss: DecoderLossConfig = field(default_factory=DecoderLossConfig)
    train: DecoderTrainConfig = field(default_factory=DecoderTrainConfig)
    ridge_lambdas: list[float] = field(default_factory=lambda: [10.0 ** k for k in range(-1, 7)])
    """Ridge only: the grid of regularisation strengths cross-validated on the training pairs."""
    ridge_folds: int = 5
    """Ridge only: number of cross-validation folds."""

    def __post_init__(self):
        check_modality(self.modality)


def check_modality(modality: str) -> None:
    if modality not in MODALITIES:
        raise ConfigError(f"--modality {modality!r} is not one of {', '.join(MODALITIES)}")


# ---------------------------------------------------------------------------------------------------------------
# YAML loading, validation and overrides


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check (and gently convert) one YAML value against its annotated type."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping of keys, found {value!r}")
        return _build(hint, value, where)
    if origin in (list, typing.List):
        (item,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, found {value!r}")
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, found {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where} must be an integer, found {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where} must be a number, found {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where} must be a string, found {value!r}")
    return value


def _build(cls, values: dict, where: str):
    types_ = _field_types(cls)
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(types_)}")
    kwargs = {k: _coerce(v, types_[k], f"{where}.{k}") for k, v in values.items()}
    return cls(**kwargs)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def for_modality(values: dict, modality: str, path) -> dict:
    """A preset's mapping with its per-modality sections resolved: the section named `modality` merged over the rest,
    the other modalities' sections dropped."""
    own = {k: v for k, v in values.items() if k not in MODALITIES}
    for name in MODALITIES:
        section = values.get(name)
        if section is not None and not isinstance(section, dict):
            raise ConfigError(f"config file {path}: the {name!r} section must map sections to settings (e.g. "
                              f"'{name}: {{model: {{...}}}}'), found {type(section).__name__}")
    return _merge(own, values.get(modality) or {})


def preset_file(stage: str, name: str):
    """The shipped YAML `configs/<stage>/<name>.yaml`, as an importlib.resources Traversable."""
    return resources.files("brainrecon.configs").joinpath(stage, f"{name}.yaml")


def preset_names(stage: str) -> list[str]:
    """Every preset shipped for a stage (modality files excluded), e.g. ['demo', 'fast']."""
    names = (p.name[:-5] for p in resources.files("brainrecon.configs").joinpath(stage).iterdir()
             if p.name.endswith(".yaml"))
    return sorted(n for n in names if n not in MODALITIES)


def read_yaml(path) -> dict:
    """A YAML mapping from a file path or a shipped preset (Traversable)."""
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {Path(str(path)).resolve()} does not exist; pass a YAML path or a preset "
                          "name (paper, demo, quick)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, found {type(values).__name__}")
    return values


def parse_overrides(overrides: list[str]) -> dict:
    """`section.key=value` strings -> nested dict; values are parsed as YAML scalars/lists."""
    out: dict = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(raw)
    return out


def load_config(stage: str, modality: str, config: str = "paper", overrides: list[str] | None = None,
                extra: dict | None = None):
    """Resolve the config for `stage` (encoder | decoder) and `modality`; see the module docstring for precedence."""
    check_modality(modality)
    if stage not in STAGES:
        raise ConfigError(f"--stage {stage!r}; choose encoder or decoder")
    cls = {"encoder": EncoderConfig, "decoder": DecoderConfig}[stage]
    paper = preset_file(stage, modality)
    if not paper.is_file():  # a broken install must not train the published runs with the wrong settings
        raise ConfigError(f"the shipped config configs/{stage}/{modality}.yaml is missing from the brainrecon "
                          f"install ({paper}); reinstall brainrecon")
    values = read_yaml(paper)
    for name in (config or "paper").split(","):  # e.g. "demo,fast": presets and files merged in order
        name = name.strip()
        if name in ("paper", ""):
            continue
        if "/" in name or "\\" in name or name.endswith((".yaml", ".yml")):
            path = Path(name).expanduser()
        else:
            path = preset_file(stage, name)
            if not path.is_file() or name in MODALITIES:
                raise ConfigError(f"--config {name!r} is neither a YAML file nor a preset; presets for {stage}: "
                                  f"paper, {', '.join(preset_names(stage))}")
        values = _merge(values, for_modality(read_yaml(path), modality, path))
    values = _merge(values, extra or {})
    values = _merge(values, parse_overrides(overrides or []))
    values["modality"] = modality
    return _build(cls, values, f"{stage} config")


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def to_yaml(config) -> str:
    """The resolved config as YAML: what `config show` prints and every run writes to config.yaml."""
    return yaml.safe_dump(config if isinstance(config, dict) else to_dict(config), sort_keys=False)


def from_dict(stage: str, values: dict):
    cls = {"encoder": EncoderConfig, "decoder": DecoderConfig}[stage]
    return _build(cls, values, f"{stage} config")
