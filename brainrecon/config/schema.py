"""The typed stage configs: one dataclass per section (data, model, loss, train) and per stage (`EncoderConfig`,
`DecoderConfig`), each key with its paper default and its meaning, and the checks between keys a config must pass.

Every numeric key is also checked against its allowed range (`brainrecon.config.ranges.RANGES`) when a stage config is
built, in code or from YAML (`brainrecon.config.load_config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from brainrecon.config.choices import BACKBONE_WEIGHTS, BACKBONES, MODALITIES, PERCEPTUAL_NETS, ROIS
from brainrecon.config.networks import BACKBONE_SPECS, backbone_spec, either
from brainrecon.config.ranges import check_ranges
from brainrecon.errors import ConfigError


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
    exclude_classes: str = ""
    """Class folders left out of the unpaired images: '' or none (keep all), god-test (the 50 GOD test synsets, as the
    2022 paper's code: the classification's test classes are then never seen in training; on in the GOD paper
    presets), or a file with one class folder name per line."""
    val_fraction: float = 0.05
    """Fraction of training pairs held out for model selection (never the test set). 0: every training pair is used
    in every epoch, the last batch partial (the original code's data stream)."""
    unpaired_fmri: str = "test"
    """The fMRI of the decoder->encoder cycle: test (the test set's fMRI without their images, as the paper: a
    transductive choice) or train (the training fMRI only: strictly inductive)."""
    subjects: list[int] = field(default_factory=list)
    """Several subjects in one model (e.g. [1, 2, 4, 5]): the image pathway of the encoder and the decoder's trunk
    shared, the voxel readout and input layer per subject (models/subjects.py). Each subject's files lie in the data
    folder (GOD: beside one stimulus file) or in the one folder inside it holding its sbj_<N>.npz (convert-nsd's
    nsd_subjNN/; data/group.py). Empty: data.subject alone."""
    pairs: float = 0.0
    """Training stimuli used (with every row that shows them): 0 = all (the paper); a whole number N >= 1 = N
    stimuli; a fraction in (0, 1) = that share of them. A seeded draw (train.seed) of whole stimuli, nested (the first
    N of one seeded order, so a smaller set lies inside a larger one), the same for every subject of one stimulus set;
    the run records it in pairs.json."""
    val_min: int = 20
    """Floor of the validation split, in pairs: a split of val_fraction smaller than this is raised to it; below
    5 x val_min kept pairs the split ramps down, (n - 3 x val_min) / 2 pairs, to none at 3 x val_min, where the last
    epoch is kept. No jump: one more kept pair never leaves fewer training pairs."""

    def __post_init__(self):
        if self.roi not in ROIS:
            raise ConfigError(f"data.roi={self.roi!r} is not a ROI; choose one of {', '.join(ROIS)}")
        if self.depth_source not in ("small", "large"):
            raise ConfigError(f"data.depth_source={self.depth_source!r}; choose small or large")
        if self.unpaired_fmri not in ("test", "train"):
            raise ConfigError(f"data.unpaired_fmri={self.unpaired_fmri!r}; choose test (the paper) or train")
        if self.subjects and (len(self.subjects) < 2 or len(set(self.subjects)) != len(self.subjects)):
            raise ConfigError(f"data.subjects={self.subjects}: list two or more different subjects (one subject: "
                              "data.subject)")
        if self.pairs > 1 and not float(self.pairs).is_integer():
            raise ConfigError(f"data.pairs={self.pairs}: give a whole number of stimuli (>= 1) or a fraction in (0, 1)")


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
    init_from: str = ""
    """A run folder of the same stage trained on several subjects (data.subjects): start this single-subject run from
    it (its shared parts loaded, the new subject's own layers initialised from it: train/adapt.py) and fine-tune all.
    Empty: a fresh start."""
    steps_per_epoch: int = 0
    """0 = an epoch is one pass over the training pairs (the paper). N = every epoch is N optimiser steps, its batches
    drawn from consecutive shuffles of the pairs: a run's optimisation budget (epochs x N) then does not depend on how
    many pairs it has (`data.pairs`)."""

    def __post_init__(self):
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith("cuda:"):
            raise ConfigError(f"train.device={self.device!r}; choose auto, cpu, cuda or mps")
        if not (isinstance(self.amp, bool) or self.amp == "auto"):
            raise ConfigError(f"train.amp={self.amp!r}; choose auto, true or false")


DEPTH_INPUTS = ("grey", "stem", "branch")
"""How the effnet-lite0 encoder reads depth (models/effnet_taps.py EffNetTaps): grey (through the frozen network as a
grey image), stem (rgbd only: a trainable depth column beside the frozen RGB stem), branch (a small trainable CNN of its
own, taps at the same strides, concatenated with the RGB taps)."""


@dataclass
class EncoderModelConfig:
    arch: str = "vgg19"
    """Backbone: vgg16 or vgg19 (torchvision layout), or effnet-lite0 (frozen EfficientNet-Lite0 stages 0, 1, 2, 4 at
    twice input_size; depth as depth_input says); declared in config/networks.py."""
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
    kind: str = "deep"
    """deep (the paper's trained read-out) or ridge (not in the paper: the frozen backbone's taps, each average-pooled
    to ridge_pool x ridge_pool and z-scored, read out linearly in closed form with a penalty per voxel chosen by
    cross-validation on the training pairs; train/ridge_encoder.py)."""
    ridge_pool: int = 2
    """Ridge read-out only: the side each tap is average-pooled to."""

    def __post_init__(self):
        if self.kind not in ("deep", "ridge"):
            raise ConfigError(f"model.kind={self.kind!r}; choose deep or ridge")
        if self.depth_input not in DEPTH_INPUTS:
            raise ConfigError(f"model.depth_input={self.depth_input!r}; choose grey, stem or branch")
        if self.arch not in BACKBONES:
            raise ConfigError(f"model.arch={self.arch!r}; choose {either(BACKBONES)}")
        if self.backbone_weights not in BACKBONE_WEIGHTS:
            raise ConfigError(f"model.backbone_weights={self.backbone_weights!r}; choose {either(BACKBONE_WEIGHTS)}")
        spec = backbone_spec(self.arch)
        if self.depth_input not in spec.depth_inputs:
            takers = [b.name for b in BACKBONE_SPECS if self.depth_input in b.depth_inputs]
            raise ConfigError(f"model.depth_input={self.depth_input} is for model.arch={either(takers)}; "
                              f"model.arch={self.arch} reads depth as an input channel of its own")
        if self.backbone_weights not in spec.weights:
            raise ConfigError(f"model.arch={self.arch} takes backbone_weights "
                              + " or ".join(f"{w} ({what})" for w, what in spec.weights.items()))
        if not spec.scalable and self.width != 1.0:
            scaled = [b.name for b in BACKBONE_SPECS if b.scalable]
            raise ConfigError(f"model.width scales {either(scaled)} only; set model.width=1.0 with "
                              f"model.arch={self.arch}")
        if self.backbone_weights != "none" and self.width != 1.0:
            raise ConfigError("model.width must be 1.0 when loading backbone weights; set model.backbone_weights=none")


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
    ridge_lambdas: list[float] = field(default_factory=lambda: [10.0 ** k for k in range(-1, 7)])
    """Ridge read-out only (model.kind=ridge): the penalties cross-validated per voxel on the training pairs."""
    ridge_folds: int = 5
    """Ridge read-out only: number of cross-validation folds."""

    def __post_init__(self):
        check_modality(self.modality)
        check_ranges(self)
        check_group(self)
        ridge_conflicts = [k for k, on in (("data.subjects", self.data.subjects), ("train.init_from",
                           self.train.init_from), ("model.train_backbone", self.model.train_backbone)) if on]
        if self.model.kind == "ridge" and ridge_conflicts:
            raise ConfigError("model.kind=ridge fits one subject's read-out in closed form on the frozen backbone; "
                              f"drop {' and '.join(ridge_conflicts)}")
        if self.model.kind == "ridge" and self.model.depth_input != "grey":
            raise ConfigError(f"model.kind=ridge reads depth through the frozen backbone, with nothing to train: "
                              f"set model.depth_input=grey (not {self.model.depth_input})")
        if self.model.depth_input != "grey" and self.modality == "rgb":
            raise ConfigError(f"model.depth_input={self.model.depth_input} needs depth; the modality is rgb")
        if self.model.depth_input == "stem" and self.modality != "rgbd":
            raise ConfigError("model.depth_input=stem adds depth to the RGB stem (rgbd only); use grey or branch for "
                              "depth")
        if (self.model.backbone_weights == "imagenet" and self.modality != "rgb"
                and not backbone_spec(self.model.arch).imagenet_reads_depth):
            raise ConfigError("model.backbone_weights=imagenet only fits rgb; use release (or none) for depth/rgbd")


@dataclass
class DecoderModelConfig:
    kind: str = "deep"
    """deep (the paper's conv decoder) or ridge (the linear baseline)."""
    channels: int = 64
    """Channels of the upsampling blocks (the seed tensor is channels x res/8 x res/8; three x2 blocks follow)."""
    ridge_anchor: bool = False
    """Not in the paper (off in its presets): the deep decoder learns a residual on ridge's image, ridge fitted in
    closed form (lambda by CV) on the run's own training pairs: image = sigmoid(logit(ridge(y)) + net(y)), the net's
    last conv starting at zero, so training starts from ridge and with few pairs falls back to what ridge knows.
    Single-subject runs only."""

    def __post_init__(self):
        if self.kind not in ("deep", "ridge"):
            raise ConfigError(f"model.kind={self.kind!r}; choose deep or ridge")


@dataclass
class DecoderLossConfig:
    weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 0.0])
    """[D, ED, DE]: supervised, encoder->decoder (unpaired images), decoder->encoder (unpaired fMRI)."""
    perceptual_net: str = "auto"
    """auto | vgg16-release | vgg16-imagenet | vgg16-random | effnet-lite0 | none (config/networks.py)."""
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
    ed_noise: bool = False
    """Not in the paper (off in its presets): the ED cycle's pseudo-fMRI E(x) get Gaussian noise of each voxel's
    measured single-trial noise variance (its training-fMRI variance / (1 + SNR), SNR the release's arr_6), so the
    decoder learns from inputs as noisy as the scans it will read."""
    ed_noise_from: str = "snr"
    """With loss.ed_noise, where each voxel's noise SD comes from: `snr` (the single-trial noise above) or `residual`
    (not in the paper: the SD of the frozen encoder's residuals on the decoder's training rows it held out for its
    own validation, so the pseudo-fMRI differ from E(x) as much as measured scans do; train/heldout.py)."""
    de_voxel_weights: str = "snr"
    """The DE cycle's per-voxel weight: `snr` (the release's SNR over its mean, the paper) or `encoder_r` (not in the
    paper: the frozen encoder's correlation on its held-out rows, floored at zero, over its mean, so a voxel the
    encoder cannot predict carries no weight; train/heldout.py)."""

    def __post_init__(self):
        if self.ed_noise_from not in ("snr", "residual"):
            raise ConfigError(f"loss.ed_noise_from={self.ed_noise_from!r}; choose snr or residual")
        if self.ed_noise_from != "snr" and not self.ed_noise:
            raise ConfigError(f"loss.ed_noise_from={self.ed_noise_from} sets the ED cycle's noise; add "
                              "loss.ed_noise=true")
        if self.de_voxel_weights not in ("snr", "encoder_r"):
            raise ConfigError(f"loss.de_voxel_weights={self.de_voxel_weights!r}; choose snr (the paper) or encoder_r")
        if len(self.weights) != 3:
            raise ConfigError(f"loss.weights={self.weights} must be three non-negative numbers [D, ED, DE]")
        if self.perceptual_net not in PERCEPTUAL_NETS:
            raise ConfigError(f"loss.perceptual_net={self.perceptual_net!r}; choose one of "
                              f"{', '.join(PERCEPTUAL_NETS)}")
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
        check_ranges(self)
        check_group(self)
        if self.model.ridge_anchor and (self.model.kind == "ridge" or self.data.subjects or self.train.init_from):
            raise ConfigError("model.ridge_anchor anchors one subject's deep decoder trained from scratch on ridge; "
                              "drop it with model.kind=ridge, data.subjects or train.init_from")
        if self.model.kind == "ridge" and (self.data.subjects or self.train.init_from):
            raise ConfigError("the ridge baseline is fitted per subject from scratch; drop data.subjects and "
                              "train.init_from with model.kind=ridge")


def check_group(cfg) -> None:
    """A run trains several subjects (data.subjects) or adapts one from such a run (train.init_from), not both."""
    if cfg.data.subjects and cfg.train.init_from:
        raise ConfigError("train.init_from adapts a multi-subject run to one new subject (data.subject); it cannot be "
                          "combined with data.subjects")


def check_modality(modality: str) -> None:
    if modality not in MODALITIES:
        raise ConfigError(f"--modality {modality!r} is not one of {', '.join(MODALITIES)}")
