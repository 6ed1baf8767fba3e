"""The networks a user names, declared once: the encoder's backbones (`model.arch`, with `model.backbone_weights`),
the networks of the perceptual loss and metrics (`loss.perceptual_net`, `MetricSpec.network`) and classify's feature
networks (`--features`), each with what it is.

The names live here and the constructors in brainrecon/models/registry.py because the config and the CLI check and
list these names before torch is imported, and this layer (L1) may not import the models (L3). Each constructor
registers itself under its name (`@register_backbone("vgg19")`, as timm's `register_model`), and registering a name
that is not declared here is refused; the one module that registers a family checks, when it is imported, that every
name declared for that family has a constructor (`registry.check_complete`), and tests/test_network_registry.py checks
the two sets again. Adding a network: its declaration below and its decorated constructor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from brainrecon.errors import UserError


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    """What `model.arch` takes."""
    title: str
    """Its name in prose (the run's announcement)."""
    weights: dict[str, str] = field(hash=False)
    """The `model.backbone_weights` it takes, each with what the weights are."""
    scalable: bool
    """`model.width` scales its channels (only 1.0 loads trained weights)."""
    depth_inputs: tuple[str, ...] = ("grey",)
    """The `model.depth_input` values it takes (grey: depth enters as the network's own input channel or image)."""
    imagenet_reads_depth: bool = False
    """Its ImageNet weights read depth too (as a grey image or through a depth part), not rgb alone."""
    stand_in: bool = False
    """Not the paper's family (VGG): a run on it is announced whatever its weights."""


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    """What the key or flag takes."""
    about: str
    """One phrase: what it is (announcements, `--help`, the model card)."""
    stand_in: bool = False
    """Not the paper's network: announced at the start of a run and recorded."""


BACKBONE_WEIGHTS = ("release", "imagenet", "none")
"""Every value of `model.backbone_weights`; each backbone takes those its `weights` lists."""
_VGG_WEIGHTS = {"release": "the release's depth / RGBD weights", "imagenet": "torchvision's ImageNet weights (rgb)",
                "none": "random weights"}
BACKBONE_SPECS = (
    BackboneSpec("vgg16", "VGG16", _VGG_WEIGHTS, scalable=True),
    BackboneSpec("vgg19", "VGG19", _VGG_WEIGHTS, scalable=True),
    BackboneSpec("effnet-lite0", "EfficientNet-Lite0",
                 {"imagenet": "the ImageNet weights that ship with brainrecon", "none": "random weights"},
                 scalable=False, depth_inputs=("grey", "stem", "branch"), imagenet_reads_depth=True, stand_in=True),
)
PERCEPTUAL_SPECS = (
    NetworkSpec("vgg16-release", "the release's depth / RGBD VGG16 (`brainrecon fetch-data --only vgg`)"),
    NetworkSpec("vgg16-imagenet", "torchvision's ImageNet VGG16 (rgb; fetched on first use)"),
    NetworkSpec("vgg16-random", "a randomly initialised VGG16 (no trained weights)", stand_in=True),
    NetworkSpec("effnet-lite0", "the EfficientNet-Lite0 that ships with brainrecon (ImageNet weights)", stand_in=True),
)
PAPER_PERCEPTUAL = {"rgb": "vgg16-imagenet", "depth": "vgg16-release", "rgbd": "vgg16-release"}
"""What `loss.perceptual_net=auto` means for each modality: the paper's network."""
FEATURE_SPECS = (
    NetworkSpec("alexnet", "the paper's: torchvision's ImageNet AlexNet conv4, fetched on first use"),
    NetworkSpec("effnet-lite0", "shipped; a stand-in: its stage 4, chosen to match conv4", stand_in=True),
    NetworkSpec("effnet-lite0-last", "its last feature map", stand_in=True),
)

BACKBONE_NAMES = tuple(s.name for s in BACKBONE_SPECS)
PERCEPTUAL_NAMES = tuple(s.name for s in PERCEPTUAL_SPECS)
PERCEPTUAL_CHOICES = ("auto", *PERCEPTUAL_NAMES, "none")
"""Every value of `loss.perceptual_net`: auto (the paper's network), a network, or none (no perceptual term)."""
FEATURE_NAMES = tuple(s.name for s in FEATURE_SPECS)


def either(names) -> str:
    """'a, b or c'."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def backbone_spec(name: str) -> BackboneSpec:
    """The declaration of backbone `name`; an unknown name is one line naming the known ones."""
    for spec in BACKBONE_SPECS:
        if spec.name == name:
            return spec
    raise UserError(f"model.arch={name!r}; choose {either(BACKBONE_NAMES)}")


def features_help() -> str:
    """The `classify --features` help: every feature network with what it is."""
    return " | ".join(f"{s.name} ({s.about})" for s in FEATURE_SPECS) + "."
