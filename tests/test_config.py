import dataclasses
from pathlib import Path

import pytest
import yaml
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
    with pytest.raises(ConfigError, match="presets for decoder: paper, demo; refined: demo,fast"):
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
    fast, demo = load_config("encoder", "rgbd", "demo,fast"), load_config("encoder", "rgbd", "demo")
    assert fast.train.epochs < demo.train.epochs
    own = tmp_path / "mine.yaml"
    own.write_text("train: {lr: 0.01}\ndepth: {train: {lr: 0.02}}\n")
    assert load_config("encoder", "depth", str(own)).train.lr == 0.02
    assert load_config("encoder", "rgb", str(own)).train.lr == 0.01
    own.write_text("rgbd: 3\n")
    with pytest.raises(ConfigError, match="mine.yaml: the 'rgbd' section must map"):
        load_config("encoder", "rgb", str(own))


def test_version_flag():
    from brainrecon import version_string
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.splitlines()[0].strip() == f"brainrecon {version_string()}"


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
    with pytest.raises(ConfigError, match=r"unknown key\(s\) epoch in train; valid keys: epochs"):
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
    with pytest.raises(ConfigError, match="no such file"):
        load_config("decoder", "rgb", "/nonexistent/x.yaml", ["train.lr=1e-3"])


# ---------------------------------------------------------------------------------------------------------------
# Values as typed: numbers as researchers write them, ranges in one table, --config sources, partial presets


def _show(capsys, *args) -> tuple[int, str, str]:
    """`brainrecon config show --stage decoder ...` in-process: (exit code, stdout, stderr)."""
    from brainrecon.cli import main
    code = main(["config", "show", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("typed,value", [("1e-3", 1e-3), ("1E-4", 1e-4), ("5e+2", 500.0), ("2.5e-3", 2.5e-3),
                                         ("3", 3.0)])
def test_numbers_are_read_as_researchers_write_them(typed, value, tmp_path, capsys):
    assert load_config("decoder", "rgbd", "paper", [f"loss.tv={typed}"]).loss.tv == value
    own = tmp_path / "mine.yaml"
    own.write_text(f"loss:\n  tv: {typed}\n  perceptual_weights: [{typed}, 1, 1, 1, 1]\n")
    cfg = load_config("decoder", "rgbd", str(own))
    assert cfg.loss.tv == value and cfg.loss.perceptual_weights[0] == value
    code, out, err = _show(capsys, "--stage", "encoder", "--set", f"loss.mse={typed}")
    assert code == 0, err
    assert yaml.safe_load(out)["loss"]["mse"] == value


def test_an_integer_key_takes_an_exponent_that_is_a_whole_number():
    assert load_config("encoder", "rgbd", "paper", ["train.epochs=5e+1"]).train.epochs == 50
    with pytest.raises(ConfigError, match="train.epochs must be an integer"):
        load_config("encoder", "rgbd", "paper", ["train.epochs=2.5"])


OUT_OF_RANGE = [
    ("train.lr=-1", "(0, 1]"),
    ("train.lr=0", "(0, 1]"),
    ("train.gamma=5", "(0, 1]"),
    ("data.subject=0", "at least 1"),
    ("train.milestones=[200]", "[1, 149]"),
    ("train.milestones=[100, 50]", "increasing"),
    ("train.epochs=0", "at least 1"),
    ("data.val_fraction=0.5", "[0, 0.5)"),
    ("loss.weights=[1, -1, 0]", "at least 0"),
    ("model.channels=48", "multiple of 32"),
    ("train.cache_mb=-1", "at least 0"),
    ("ridge_folds=1", "at least 2"),
    ("train.lr=.nan", "(0, 1]"),
]


@pytest.mark.parametrize("item,rule", OUT_OF_RANGE, ids=[c[0] for c in OUT_OF_RANGE])
def test_a_value_out_of_range_is_one_line_naming_the_set_and_the_range(item, rule, capsys):
    code, out, err = _show(capsys, "--stage", "decoder", "--set", item)
    assert code == 2 and out == ""
    assert err.startswith(f"error: --set {item} is out of range: {item.split('=')[0]} must"), err
    assert rule in err and len(err.strip().splitlines()) == 1, err


def test_an_encoder_value_out_of_range_too(capsys):
    code, _, err = _show(capsys, "--stage", "encoder", "--set", "model.input_size=40")
    assert code == 2 and "model.input_size must be a multiple of 16, at least 32" in err


def test_a_value_out_of_range_in_a_file_names_the_file(tmp_path, capsys):
    own = tmp_path / "mine.yaml"
    own.write_text("train:\n  gamma: 5\n")
    code, _, err = _show(capsys, "--stage", "encoder", "--config", str(own))
    assert code == 2 and f"train.gamma=5.0 in config file {own}" in err and "(0, 1]" in err, err


def test_an_option_is_named_as_typed():
    """The training commands pass the option that gave a key (`--subject`, `--epochs`): the message names it."""
    with pytest.raises(ConfigError, match=r"^--subject 0 is out of range: data.subject must be at least 1"):
        load_config("encoder", "rgbd", "paper", [], {"data": {"subject": 0}}, flags={"data.subject": "--subject"})
    with pytest.raises(ConfigError, match=r"^--epochs 0 is out of range: train.epochs must be at least 1"):
        load_config("encoder", "rgbd", "paper", ["train.epochs=0"], flags={"train.epochs": "--epochs"})


def test_a_config_made_in_code_is_checked_too():
    with pytest.raises(ConfigError, match="train.gamma=5 is out of range"):
        config_module.EncoderConfig(train=config_module.TrainConfig(gamma=5))


def test_every_numeric_key_has_its_range_in_the_one_table():
    """RANGES lists every int/float key (or list of them) of both stages, and nothing else."""
    import typing

    def numeric_keys(cls, prefix=""):
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(hint):
                yield from numeric_keys(hint, f"{prefix}{f.name}.")
            elif hint in (int, float) or typing.get_args(hint) in ((int,), (float,)):
                yield f"{prefix}{f.name}"

    keys = {*numeric_keys(config_module.EncoderConfig), *numeric_keys(config_module.DecoderConfig)}
    assert keys == set(config_module.RANGES)
    for stage in ("encoder", "decoder"):   # the defaults and every shipped preset lie in range
        for modality in MODALITIES:
            for preset in PRESETS:
                config_module.check_ranges(load_config(stage, modality, preset))


def test_milestones_typed_beyond_the_run_are_refused_a_presets_cut_short_are_not(capsys):
    code, _, err = _show(capsys, "--stage", "decoder", "--config", "demo", "--set", "train.epochs=4", "--set",
                         "train.milestones=[6]")
    assert code == 2 and "--set train.milestones=[6] is out of range" in err and "(--set train.epochs=4)" in err
    assert load_config("decoder", "rgbd", "demo", ["train.epochs=4"]).train.milestones == [6]   # the preset's


@pytest.mark.parametrize("item,says", [("loss.weights=[1,1", "is not valid YAML"),
                                       ("nonsense", "must look like section.key=value"),
                                       ("modality=rgb", "chosen with --modality"),
                                       ("train.epoch=3", "unknown key(s) epoch"),
                                       ("train=3", "train is a section")])
def test_a_malformed_set_is_one_line(item, says, capsys):
    code, _, err = _show(capsys, "--stage", "decoder", "--set", item)
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_config_takes_a_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    code, _, err = _show(capsys, "--stage", "encoder", "--config", str(run))
    assert code == 2 and "holds no config.yaml" in err and len(err.strip().splitlines()) == 1, err
    (run / "config.yaml").write_text(to_yaml(load_config("encoder", "depth", "demo", ["train.lr=2e-3"])))
    code, out, err = _show(capsys, "--stage", "encoder", "--modality", "depth", "--config", str(run))
    assert code == 0, err
    assert out == to_yaml(load_config("encoder", "depth", "demo", ["train.lr=2e-3"]))
    code, _, err = _show(capsys, "--stage", "encoder", "--modality", "rgbd", "--config", str(run))
    assert code == 2 and "is a depth config" in err and "--modality depth" in err, err


def test_a_missing_config_file_lists_the_presets_not_removed_ones(capsys):
    code, _, err = _show(capsys, "--stage", "decoder", "--config", "nosuch.yaml")
    assert code == 2 and "no such file" in err and "paper, demo" in err and "quick" not in err, err
    code, _, err = _show(capsys, "--stage", "decoder", "--config", "rgb")
    assert code == 2 and "--modality rgb" in err, err


@pytest.mark.parametrize("stage", ["encoder", "decoder"])
def test_a_partial_preset_is_only_an_overlay_on_its_base(stage, capsys):
    for alone in ("fast", "paper,fast", "fast,demo"):
        code, _, err = _show(capsys, "--stage", stage, "--config", alone)
        assert code == 2 and "use --config demo,fast" in err, (alone, err)
    code, out, _ = _show(capsys, "--stage", stage, "--config", "demo,fast")
    assert code == 0 and "overlay_on" not in out


def test_a_run_folder_of_a_short_run_is_a_config_again(tmp_path):
    """A run trained with --epochs below its preset's milestones writes them in config.yaml; --config RUN takes it
    back (the schedule cut short, as the preset's), where a file the user typed with such milestones is refused."""
    from brainrecon.config import load_config, to_yaml
    cfg = load_config("decoder", "rgbd", "demo,fast", ["train.epochs=1"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(to_yaml(cfg))
    assert load_config("decoder", "rgbd", str(run)).train.epochs == 1
    typed = tmp_path / "mine.yaml"
    typed.write_text("train:\n  epochs: 1\n  milestones: [3]\n")
    with pytest.raises(Exception, match="out of range"):
        load_config("decoder", "rgbd", str(typed))
