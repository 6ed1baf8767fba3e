from pathlib import Path

import pytest
from typer.testing import CliRunner

from brainrecon import config as config_module
from brainrecon.cli import app
from brainrecon.config import MODALITIES, load_config, parse_overrides, to_dict, to_yaml
from brainrecon.errors import ConfigError

SOURCE_CONFIGS = Path(__file__).resolve().parents[1] / "configs"

PRESETS = ["paper", "demo", "demo,fast"]


@pytest.mark.parametrize("stage", ["encoder", "decoder"])
@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("preset", PRESETS)
def test_every_shipped_config_loads(stage, modality, preset):
    if stage == "encoder" and modality == "rgb" and preset == "paper":
        cfg = load_config(stage, modality, preset)
        assert cfg.model.backbone_weights == "imagenet"
        return
    cfg = load_config(stage, modality, preset)
    assert cfg.modality == modality
    if preset != "paper":
        assert cfg.data.resolution == 64


def test_every_yaml_file_is_used():
    files = {p.relative_to(SOURCE_CONFIGS).as_posix() for p in SOURCE_CONFIGS.rglob("*.yaml")}
    expected = {f"{s}/{n}.yaml" for s in ("encoder", "decoder") for n in (*MODALITIES, "demo", "fast")}
    assert files == expected


def test_presets_are_read_through_the_package():
    """The installed package's configs are the top-level configs/ folder (same bytes, found via importlib)."""
    for stage in ("encoder", "decoder"):
        for path in (SOURCE_CONFIGS / stage).glob("*.yaml"):
            assert config_module.preset_file(stage, path.stem).read_text() == path.read_text()
    assert config_module.preset_names("decoder") == ["demo", "fast"]


def test_missing_modality_config_is_an_error_not_a_skip(monkeypatch, tmp_path):
    monkeypatch.setattr(config_module, "preset_file", lambda stage, name: tmp_path / stage / f"{name}.yaml")
    with pytest.raises(ConfigError, match="configs/encoder/rgbd.yaml is missing"):
        load_config("encoder", "rgbd")


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="presets for decoder: paper, demo, fast"):
        load_config("decoder", "rgbd", "dmeo")


@pytest.mark.parametrize("stage", ["encoder", "decoder"])
@pytest.mark.parametrize("preset", ["paper", "demo,fast"])
def test_config_show_loads_back_to_the_same_config(stage, preset, tmp_path):
    sets = ["--set", "train.lr=0.002", "--set", "data.subject=2"]
    result = CliRunner().invoke(app, ["config", "show", "--stage", stage, "--modality", "depth", "--config", preset,
                                      *sets])
    assert result.exit_code == 0, result.output
    expected = load_config(stage, "depth", preset, ["train.lr=0.002", "data.subject=2"])
    assert result.output == to_yaml(expected)
    saved = tmp_path / "shown.yaml"
    saved.write_text(result.output)
    assert to_dict(load_config(stage, "depth", str(saved))) == to_dict(expected)


def test_a_preset_section_applies_to_its_modality_only(tmp_path):
    """The demo reads depth through a trainable branch for rgbd and as a grey image otherwise; a user file can hold
    per-modality sections too, and a malformed one is refused naming the file."""
    assert load_config("encoder", "rgbd", "demo").model.depth_input == "branch"
    assert load_config("encoder", "rgbd", "demo").train.epochs == 24
    for modality in ("rgb", "depth"):
        assert load_config("encoder", modality, "demo").model.depth_input == "grey"
        assert load_config("encoder", modality, "demo").train.epochs == 18
    assert load_config("encoder", "rgbd", "demo,fast").model.depth_input == "branch"   # fast keeps the branch
    assert load_config("encoder", "rgbd", "demo,fast").train.epochs < load_config("encoder", "rgbd", "demo").train.epochs
    own = tmp_path / "mine.yaml"
    own.write_text("train: {lr: 0.01}\ndepth: {train: {lr: 0.02}}\n")
    assert load_config("encoder", "depth", str(own)).train.lr == 0.02
    assert load_config("encoder", "rgb", str(own)).train.lr == 0.01
    own.write_text("rgbd: 3\n")
    with pytest.raises(ConfigError, match="mine.yaml: the 'rgbd' section must map"):
        load_config("encoder", "rgb", str(own))


def test_version_flag():
    from brainrecon import __version__
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"brainrecon {__version__}"


def test_paper_defaults_match_method():
    enc = load_config("encoder", "rgbd")
    assert (enc.train.epochs, enc.train.lr, enc.train.batch_size, enc.loss.cosine) == (50, 1e-3, 64, 0.3)
    assert enc.train.milestones == [10, 20, 30, 40] and enc.train.gamma == 0.2
    dec = load_config("decoder", "rgbd")
    assert dec.loss.weights == [1.0, 1.0, 0.0] and dec.train.lr == 5e-3 and dec.train.milestones == [100, 140]
    assert (dec.train.batch_size, dec.train.unpaired_fmri_batch, dec.train.unpaired_image_batch) == (24, 16, 48)


def test_unknown_key_lists_valid_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) epoch; valid keys: epochs"):
        load_config("encoder", "rgbd", str(bad))


def test_mistyped_value_names_the_key():
    with pytest.raises(ConfigError, match="train.epochs must be an integer"):
        load_config("encoder", "rgbd", "paper", ["train.epochs=many"])


def test_invalid_value_is_rejected():
    with pytest.raises(ConfigError, match="data.roi"):
        load_config("encoder", "rgbd", "paper", ["data.roi=V9"])


def test_overrides_parse_nested_values():
    assert parse_overrides(["a.b=3", "a.c=[1, 2]", "d=true"]) == {"a": {"b": 3, "c": [1, 2]}, "d": True}
    with pytest.raises(ConfigError):
        parse_overrides(["nonsense"])


def test_missing_config_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("decoder", "rgb", "/nonexistent/x.yaml")
