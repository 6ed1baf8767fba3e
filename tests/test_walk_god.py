"""The real-data paths walked as the docs write them: the README's "Real data: GOD" block, docs/data.md's convert-god
route and its NSD block, run verbatim on the rehearsal world (GOD) and the tests' mini NSD tree, each command exiting
0 with its outputs in place. The commands are parsed out of the docs, so a changed doc changes the walk; the walk adds
only epochs and sizes (and reaches the server and the data folder through BRAINRECON_BASE_URL / BRAINRECON_DATA, `~`
through HOME). Then the paper's table in one command, and its resume."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from brainrecon.cli import app
from brainrecon.simulation.rehearsal import RehearsalConfig, make_world
from brainrecon.simulation.serve import FileServer

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
SMALL_DECODER = ["--epochs", "1", "--set", "train.batch_size=8", "--set", "train.unpaired_image_batch=8",
                 "--set", "train.unpaired_fmri_batch=8"]
ADDED = {  # what the walk adds to each command: epochs and sizes, and --yes (the terms, typed in a terminal)
    "fetch-data": ["--yes"],
    "train-encoder": ["--epochs", "1"],
    "train-decoder": SMALL_DECODER,
    "classify": ["--ways", "50", "--trials", "20"],
    "make-depth": ["--net-size", "32"],
}


def section(path: Path, heading: str) -> str:
    text = path.read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end > 0 else None]


def code_block(text: str) -> list[str]:
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return commands(block.splitlines())


def inline_commands(text: str) -> list[str]:
    return commands(re.findall(r"`(brainrecon [^`]+)`", text))


def commands(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        for part in line.split("&&"):
            part = part.split("  #")[0].split(" # ")[0].strip()
            if part.startswith("brainrecon "):
                out.append(part)
    return out


def run(command: str, home: Path, data: Path, extra: list[str] = ()) -> str:
    args = [a.replace("~/", f"{home}/", 1) if a.startswith("~/") else a for a in shlex.split(command)[1:]]
    args = [a.replace("DATA/", f"{data}/", 1) if a.startswith("DATA/") else str(data) if a == "DATA" else a
            for a in args]
    if args[0] == "train-decoder" and "ridge" in args:
        added = []
    else:
        added = ADDED.get(args[0], [])
    full = args + added + list(extra)
    r = CliRunner().invoke(app, full, input="yes\n")
    assert r.exit_code == 0, f"brainrecon {' '.join(full)}\n{r.output}"
    return r.output


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    return make_world(root, RehearsalConfig(subjects=(3,), n_train=16, n_voxels=100, repeats=2),
                      torch_home=root / "torch_home")


@pytest.fixture
def walker(world, tmp_path, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("BRAINRECON_DATA", str(data))
    monkeypatch.setenv("TORCH_HOME", str(world.torch_home))
    monkeypatch.setenv("HOME", str(world.root))
    monkeypatch.chdir(tmp_path)
    with FileServer(world.release) as server:
        monkeypatch.setenv("BRAINRECON_BASE_URL", server.url)
        yield data


def test_readme_god_block(world, walker, tmp_path):
    cmds = code_block(section(ROOT / "README.md", "## Real data: GOD"))
    names = [shlex.split(c)[1] for c in cmds]
    assert names[0] == "fetch-data" and {"train-encoder", "train-decoder", "reconstruct", "evaluate",
                                         "classify"} <= set(names)
    assert any("--distractors imagenet" in c for c in cmds)          # the authors' distractors
    for c in cmds:
        run(c, world.root, walker)
    runs = tmp_path / "runs"
    deep = [p for p in runs.iterdir() if (p / "config.yaml").exists() and "ridge" not in p.name]
    for run_dir in runs.iterdir():
        if (run_dir / "metrics.json").exists() and run_dir.name.endswith(("dec", "ridge")):
            assert (run_dir / "reconstruct_test" / "reconstructions.npz").exists()
    assert deep and (runs / "evaluation" / "identification.csv").exists()
    assert (runs / "classification").exists()


def test_docs_convert_god_route_then_training(world, walker, tmp_path):
    cmds = inline_commands(section(ROOT / "docs" / "data.md", "## From the public GOD data"))
    names = [shlex.split(c)[1] for c in cmds]
    assert "convert-god" in names and "make-depth" in names
    for c in cmds:
        if "--only imagenet --only depth" in c:
            continue                              # step 5's other alternative: the walk brings its own images
        if "--images DATA/imagenet/val" in c and not (walker / "imagenet" / "val").exists():
            shutil.copytree(world.my_images, walker / "imagenet" / "val")       # one's own unpaired images
        run(c, world.root, walker)
    readme = code_block(section(ROOT / "README.md", "## Real data: GOD"))
    for c in readme[1:3]:                                                    # rgbd encoder, rgbd decoder
        run(c, world.root, walker)
    with np.load(walker / "rgbd_112_from_224_large_png_uint8.npz") as z:
        assert z["train_images"].shape[-1] == 4


def test_docs_nsd_block(world, tmp_path, monkeypatch):
    from brainrecon.sources.nsd import files
    from tests.nsd_writer import write_mini_nsd
    mini = write_mini_nsd(tmp_path / "source" / "nsd", sessions=3, per_session=60)
    served = {}
    for path in files.subject_files(1, list(range(1, 38))):
        p = mini.root / path
        served[path.rsplit("/", 1)[-1]] = p.read_bytes() if p.exists() else b"absent in the mini tree"
    data = tmp_path / "data"
    monkeypatch.setenv("BRAINRECON_DATA", str(data))
    monkeypatch.setenv("TORCH_HOME", str(world.torch_home))          # the rehearsal's torchvision networks
    monkeypatch.chdir(tmp_path)
    cmds = code_block(section(ROOT / "docs" / "data.md", "## From the Natural Scenes Dataset"))
    with FileServer(served) as server:
        monkeypatch.setenv("BRAINRECON_BASE_URL", server.url)
        fetch = shlex.split(cmds[0])
        if "--sessions" in fetch:                                        # the mini tree's size
            fetch[fetch.index("--sessions") + 1] = "1-3"
        else:
            fetch += ["--sessions", "1-3"]
        run(shlex.join(fetch), tmp_path, data)
    for p in (data / "nsd").rglob("*"):                                  # what the mini tree lacks: absent files
        if p.is_file() and p.read_bytes() == b"absent in the mini tree":
            p.unlink()
    for c in cmds[1:]:
        args = shlex.split(c)
        if args[1] == "convert-nsd":
            args[args.index("--unpaired") + 1] = "40"                    # sizes
            c = shlex.join(args) + " --resolution 32"
        elif args[1] in ("train-encoder", "train-decoder"):
            c += " --set data.resolution=32"
        elif args[1] == "evaluate":
            c += " --no-download"                                        # tests never reach the network
        run(c, tmp_path, data)
    assert (tmp_path / "runs" / "evaluation" / "nsd_suite.csv").exists()


def test_paper_table_has_every_published_row_and_resumes(world, walker, tmp_path, capsys):
    from benchmarks import paper_table
    run("brainrecon fetch-data --only stimuli --only rgbd --only fmri --subjects 3 --only vgg --only imagenet "
        "--only depth", world.root, walker)
    args = ["--data-dir", str(walker), "--subject", "3", "--out", str(tmp_path / "table"), "--encoder-epochs", "1",
            "--decoder-epochs", "1", "--repeats", "2", "--pool-size", "50", "--device", "cpu"]
    args += [x for s in SMALL_DECODER[3::2] for x in ("--decoder-set", s)]
    rows = paper_table.main(args)
    assert [(r["row"], r["ways"]) for r in rows] == [(p[0], p[3]) for p in paper_table.PUBLISHED]
    for r in rows:
        assert 0 <= r["brainrecon"] <= 1 and r["diff_ci_low"] <= r["difference"] <= r["diff_ci_high"]
        assert r["difference"] == pytest.approx(r["brainrecon"] - r["published"])
    text = capsys.readouterr().out
    assert "official code's evaluation file" in text and "95.2" in text and "59.8" in text
    trained = {p: p.stat().st_mtime_ns for p in (tmp_path / "table").glob("*/last.pt")}
    assert len(trained) == 6
    again = paper_table.run_stages(paper_table.build_parser().parse_args(args), say=lambda s: None)
    assert set(again.values()) == {"skipped"}
    assert {p: p.stat().st_mtime_ns for p in trained} == trained
