"""The network registry (brainrecon/models/registry.py) against the declarations (brainrecon/config/networks.py): the
declared names are exactly the registered constructors, family by family; an undeclared name cannot be registered and a
declared one without a constructor fails its family's import; unknown names are one line; the constructors build what
the code before the registry built (same weights, same RNG draws); the config and the CLI offer the declared names,
without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import typer.main

from brainrecon.cli import app
from brainrecon.config import EncoderConfig, EncoderModelConfig, choices, load_config, networks
from brainrecon.data.transforms import N_CHANNELS, normalize_for_network, resize
from brainrecon.errors import ConfigError, UserError
from brainrecon.evaluation import classify
from brainrecon.models import backbones, perceptual, registry  # noqa: F401 - backbones registers its family
from brainrecon.models.encoder import Encoder, EncoderArch
from brainrecon.models.vgg import build_vgg
from brainrecon.train.encoder_step import backbone_note

DECLARED = {"backbone": networks.BACKBONE_NAMES, "perceptual": networks.PERCEPTUAL_NAMES,
            "features": networks.FEATURE_NAMES}


@pytest.mark.parametrize("family", list(DECLARED))
def test_declared_names_are_the_registered_constructors(family):
    assert registry.registered(family) == DECLARED[family]
    assert len(set(DECLARED[family])) == len(DECLARED[family])
    assert registry.MODULES.keys() == DECLARED.keys()


def test_the_choices_are_the_declarations():
    assert choices.BACKBONES == networks.BACKBONE_NAMES
    assert choices.PERCEPTUAL_NETS == ("auto", *networks.PERCEPTUAL_NAMES, "none")
    assert choices.FEATURE_NETS == networks.FEATURE_NAMES == classify.FEATURES
    assert set(classify.STAND_IN) == {s.name for s in networks.FEATURE_SPECS if s.stand_in}
    assert set(perceptual.STAND_INS) == {"vgg16-random", "effnet-lite0"}
    assert set(networks.PAPER_PERCEPTUAL.values()) <= set(networks.PERCEPTUAL_NAMES)
    assert set(networks.PAPER_PERCEPTUAL) == set(choices.MODALITIES)
    for spec in networks.BACKBONE_SPECS:
        assert spec.weights and set(spec.weights) <= set(networks.BACKBONE_WEIGHTS), spec.name
        assert "grey" in spec.depth_inputs, spec.name


def test_an_undeclared_name_cannot_be_registered():
    before = registry.registered("backbone")
    with pytest.raises(KeyError, match="vgg21.*config/networks.py"):
        registry.register_backbone("vgg21", taps=None, prepare=None)(lambda *a: None)
    with pytest.raises(KeyError, match="registered twice"):
        registry.register_perceptual("vgg16-random")(lambda *a, **k: None)
    with pytest.raises(KeyError, match="resnet50"):
        registry.register_features("resnet50")(lambda device: None)
    assert registry.registered("backbone") == before


def test_a_declared_name_without_a_constructor_fails_its_family(monkeypatch):
    family = registry.FAMILIES["perceptual"]
    monkeypatch.setattr(family, "declared", (*family.declared, "vgg11-random"))
    with pytest.raises(LookupError, match="vgg11-random.*brainrecon.models.perceptual"):
        registry.check_complete("perceptual")
    with pytest.raises(LookupError, match="no constructor"):      # a lookup says so too: a bug, not a user error
        registry.perceptual("vgg11-random")


def test_unknown_names_are_one_line():
    cases = [(lambda: registry.backbone("vgg21"), "model.arch 'vgg21': choose one of vgg16, vgg19, effnet-lite0"),
             (lambda: perceptual.build_perceptual_net("vgg17", "rgb", None),   # was a random VGG16 named vgg17
              "loss.perceptual_net 'vgg17': choose one of auto, vgg16-release"),
             (lambda: perceptual.missing_weights("vgg17", "rgb", None), "loss.perceptual_net 'vgg17'"),
             (lambda: classify.feature_network("resnet", "cpu"),
              "--features 'resnet': choose one of alexnet, effnet-lite0, effnet-lite0-last"),
             (lambda: registry.build_backbone("effnet-lite0", "release", "rgbd"),
              "model.arch=effnet-lite0 takes imagenet or none"),
             (lambda: registry.build_backbone("vgg19", "hub", "rgbd"), "model.arch=vgg19 takes release, imagenet or")]
    for call, says in cases:
        with pytest.raises(UserError) as e:
            call()
        assert says in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_backbones_build_as_before_with_the_same_draws():
    """A random VGG backbone by name = torchvision's layout built directly, from the same seed, leaving the global RNG
    where the direct build leaves it; an Encoder without a backbone draws it the same way."""
    for arch, modality in (("vgg19", "rgbd"), ("vgg16", "depth"), ("vgg19", "rgb")):
        torch.manual_seed(3)
        direct = build_vgg(arch, N_CHANNELS[modality], 0.25).state_dict()
        direct_rng = torch.get_rng_state()
        torch.manual_seed(3)
        named = registry.build_backbone(arch, "none", modality, 0.25).state_dict()
        assert torch.equal(torch.get_rng_state(), direct_rng), arch
        assert named.keys() == direct.keys() and all(torch.equal(named[k], direct[k]) for k in direct), arch
    a = EncoderArch(n_voxels=7, modality="rgbd", arch="vgg19", width=0.25, input_size=32, head_channels=4)
    torch.manual_seed(5)
    inside = Encoder(a).state_dict()
    torch.manual_seed(5)
    given = Encoder(a, registry.build_backbone("vgg19", "none", "rgbd", 0.25)).state_dict()
    assert all(torch.equal(inside[k], given[k]) for k in inside)


def test_a_random_perceptual_vgg_draws_from_its_own_seed():
    torch.manual_seed(11)
    state = torch.get_rng_state()
    net = perceptual.build_perceptual_net("vgg16-random", "rgbd", None, seed=2, width=0.25)
    assert torch.equal(torch.get_rng_state(), state) and net.name == "vgg16-random"
    torch.manual_seed(2)
    direct = build_vgg("vgg16", 4, 0.25).features
    assert all(torch.equal(p, q) for p, q in zip(net.features.features.parameters(), direct.parameters()))


def test_the_inputs_each_backbone_reads():
    """VGG: bicubic to the input size, then normalised; effnet-lite0: bicubic to twice the size (it normalises)."""
    images = torch.rand(2, 4, 20, 20)
    for arch in ("vgg16", "vgg19"):
        assert torch.equal(registry.backbone(arch).prepare(images, "rgbd", 32),
                           normalize_for_network(resize(images, 32, mode="bicubic"), "rgbd"))
    assert torch.equal(registry.backbone("effnet-lite0").prepare(images, "rgbd", 32),
                       resize(images, 64, mode="bicubic"))


def test_the_config_checks_read_the_declarations():
    for spec in networks.BACKBONE_SPECS:
        for weights in spec.weights:
            modality = "rgb" if weights == "imagenet" else "rgbd"
            assert EncoderConfig(modality=modality, model=EncoderModelConfig(arch=spec.name, backbone_weights=weights))
    refusals = [(dict(arch="resnet18"), "model.arch='resnet18'; choose vgg16, vgg19 or effnet-lite0"),
                (dict(backbone_weights="hub"), "choose release, imagenet or none"),
                (dict(arch="effnet-lite0", backbone_weights="release"),
                 "model.arch=effnet-lite0 takes backbone_weights imagenet (the ImageNet weights that ship"),
                (dict(arch="effnet-lite0", backbone_weights="none", width=0.5),
                 "model.width scales vgg16 or vgg19 only; set model.width=1.0 with model.arch=effnet-lite0"),
                (dict(arch="vgg16", depth_input="stem"), "model.depth_input=stem is for model.arch=effnet-lite0")]
    for kw, says in refusals:
        with pytest.raises(ConfigError) as e:
            EncoderModelConfig(**kw)
        assert says in str(e.value), str(e.value)
    with pytest.raises(ConfigError, match="imagenet only fits rgb"):
        EncoderConfig(modality="depth", model=EncoderModelConfig(arch="vgg19", backbone_weights="imagenet"))
    assert EncoderConfig(modality="depth", model=EncoderModelConfig(arch="effnet-lite0", backbone_weights="imagenet"))
    with pytest.raises(ConfigError, match="loss.perceptual_net='vgg17'; choose one of auto, vgg16-release"):
        load_config("decoder", "rgb", None, ["loss.perceptual_net=vgg17"])


def test_the_backbone_note_says_what_is_not_the_papers():
    def note(arch, weights, modality="rgbd", **more):
        return backbone_note(load_config("encoder", modality, None, [f"model.arch={arch}",
                                                                      f"model.backbone_weights={weights}", *more]))
    assert note("vgg19", "release") is None and note("vgg16", "imagenet", "rgb") is None
    assert "VGG19, random weights (backbone_weights none)" in note("vgg19", "none")
    said = note("effnet-lite0", "imagenet")
    assert said.startswith("encoder backbone: EfficientNet-Lite0, the ImageNet weights that ship with brainrecon")
    assert said.endswith("a stand-in for the paper's VGG19 with the release's weights")


def _option_help(command: str, flag: str) -> str:
    cmd = typer.main.get_command(app).commands[command]
    return next(p for p in cmd.params if flag in p.opts).help


def test_the_cli_help_lists_the_declared_names():
    features = _option_help("classify", "--features")
    assert features == networks.features_help()
    assert [part.split(" (")[0] for part in features.split(" | ")] == list(networks.FEATURE_NAMES)
    assert _option_help("train-encoder", "--backbone-weights").startswith("release, imagenet or none (")


def test_bad_network_names_are_refused_before_torch(tmp_path):
    cases = [["classify", str(tmp_path), "--class-images", str(tmp_path), "--features", "resnet"],
             ["train-encoder", "--backbone-weights", "hub", "--out", str(tmp_path / "r")],
             ["config", "show", "--stage", "encoder", "--set", "model.arch=resnet18"]]
    script = ("import json, sys\nfrom brainrecon.cli import main\ncodes = [main(a) for a in json.loads(sys.argv[1])]\n"
              "import brainrecon.models.registry\n"
              "print(json.dumps({'codes': codes, 'torch': 'torch' in sys.modules}))")
    result = subprocess.run([sys.executable, "-c", script, json.dumps(cases)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"codes": [2, 2, 2], "torch": False}
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3, result.stderr
    assert "--features 'resnet': choose one of alexnet, effnet-lite0, effnet-lite0-last" in errors[0]
    assert "--backbone-weights 'hub': choose one of release, imagenet, none" in errors[1]
    assert "model.arch='resnet18'; choose vgg16, vgg19 or effnet-lite0" in errors[2]
