"""evaluate and classify --format csv|md|latex: the same cells as the terminal table, as Markdown or LaTeX, printed and
written beside the CSV; and evaluate/classify --subject N finding a group subject's reconstructions."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from brainrecon.cli import main
from brainrecon.evaluation.paper_tables import Table, latex, markdown
from brainrecon.evaluation.recon_paths import NPZ, reconstruction_file
from tests.test_classify import make_tree


def write_reconstructions(folder: Path, rng, run: str, subject: int, n: int = 8, side: int = 16,
                          noise: int = 30) -> Path:
    """A reconstructions.npz with the keys `reconstruct` writes that evaluate and classify read."""
    truth = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    recon = np.clip(truth.astype(int) + rng.integers(-noise, noise, truth.shape), 0, 255).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / NPZ, reconstructions=recon, ground_truth=truth, modality=np.array("rgb"), run=np.array(run),
             subject=np.array(subject), split=np.array("test"))
    return folder / NPZ


def test_markdown_and_latex_of_a_table():
    t = Table("scores: 95% CI", ("run", "mean"), (("dec_1 | a", "0.50"), ("r&d", "1.00")), frozenset({"mean"}))
    md = markdown([t])
    assert md.splitlines()[:4] == ["**scores: 95% CI**", "", "| run | mean |", "|:---|---:|"]
    assert "| dec_1 \\| a | 0.50 |" in md
    tex = latex([t])
    assert r"\begin{tabular}{lr}" in tex and r"\caption{scores: 95\% CI}" in tex
    assert r"dec\_1 | a & 0.50 \\" in tex and r"r\&d & 1.00 \\" in tex
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")


@pytest.mark.parametrize("fmt", ["csv", "md", "latex"])
def test_evaluate_format(fmt, rng, tmp_path, capsys):
    npz = write_reconstructions(tmp_path / "dec", rng, "dec_a", 3)
    out = tmp_path / "ev"
    assert main(["evaluate", str(npz), "--metric", "pixcorr", "--ways", "2", "--repeats", "5", "--format", fmt,
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "identification.csv")))
    assert [r["mode"] for r in rows] == ["percent", "rank"]                     # the CSV as before, in every format
    mean = f"{float(rows[0]['mean']):.3f}"
    written = {"md": out / "identification.md", "latex": out / "identification.tex"}.get(fmt)
    assert sorted(p.suffix for p in out.iterdir()) == sorted([".csv", ".json", ".png"] + ([written.suffix]
                                                                                           if written else []))
    if fmt == "csv":
        assert "n-way identification" in printed and "┃" in printed                 # the terminal table
        return
    text = written.read_text()
    assert text in printed and f"{written}" in printed                          # printed as written, and named
    if fmt == "md":
        assert f"| dec_a | rgb | pixcorr | 2 | percent | {mean} |" in text
    else:
        assert f"dec\\_a & rgb & pixcorr & 2 & percent & {mean} &" in text and r"\begin{table}" in text


@pytest.mark.parametrize("fmt", ["csv", "md", "latex"])
def test_classify_format(fmt, rng, tmp_path, capsys):
    root = tmp_path / "classes"
    held = make_tree(root, rng, n_classes=4, per_class=3)
    classes = tmp_path / "classes.txt"
    classes.write_text("".join(f"n{c:08d}\n" for c in range(len(held))))
    np.save(tmp_path / "recons.npy", held)
    out = tmp_path / "cl"
    assert main(["classify", str(tmp_path / "recons.npy"), "--class-images", str(root), "--test-classes",
                 str(classes), "--features", "effnet-lite0", "--ways", "2,4", "--top", "1", "--trials", "10",
                 "--size", "32", "--cache", str(tmp_path / "cache"), "--format", fmt, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "classification.csv")))
    assert [(r["ways"], r["top"]) for r in rows] == [("2", "1"), ("4", "1")]
    written = {"md": out / "classification.md", "latex": out / "classification.tex"}.get(fmt)
    if fmt == "csv":
        assert "semantic classification" in printed and not any(out.glob("classification.md"))
        assert not any(out.glob("classification.tex"))
        return
    text = written.read_text()
    assert text in printed
    mean = f"{float(rows[1]['mean']):.3f}"
    line = f"| recons | 4 | 1 | {mean} |" if fmt == "md" else f"recons & 4 & 1 & {mean} &"
    assert line in text


def test_bad_format_is_refused_at_once(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    assert main(["evaluate", str(tmp_path / "r"), "--format", "html"]) == 2
    assert main(["classify", str(tmp_path / "r"), "--class-images", str(tmp_path), "--format", "docx"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "--format 'html': choose one of csv, md, latex" in err[0] and "--format 'docx'" in err[1]


# ---------------------------------------------------------------------------------------------------------------
# A group run's subjects: reconstruct_test_subject<N>/


def group_run(tmp_path: Path, rng, reconstructed=(1, 2)) -> Path:
    run = tmp_path / "g_dec"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("modality: rgb\ndata:\n  subject: 1\n  subjects: [1, 2, 4]\n")
    for s in reconstructed:
        write_reconstructions(run / f"reconstruct_test_subject{s}", rng, f"g_dec subject {s}", s)
    return run


def test_group_subject_is_found_with_subject(rng, tmp_path):
    run = group_run(tmp_path, rng)
    assert reconstruction_file(run, 2) == run / "reconstruct_test_subject2" / NPZ
    with pytest.raises(Exception, match=r"several subjects .*reconstruct_test_subject1/, reconstruct_test_subject2/\)"
                                        r"; choose one with --subject N \(N one of 1, 2\)"):
        reconstruction_file(run)
    with pytest.raises(Exception, match=r"no reconstructions of subject 4 \(present: reconstruct_test_subject1/, "
                                        r"reconstruct_test_subject2/\); run `brainrecon reconstruct .* --subject 4`"):
        reconstruction_file(run, 4)
    with pytest.raises(Exception, match="reconstructions of subject 2, not --subject 1"):
        reconstruction_file(run / "reconstruct_test_subject2", 1)


def test_group_with_one_or_no_subject_reconstructed(rng, tmp_path):
    only = group_run(tmp_path / "a", rng, reconstructed=(2,))
    assert reconstruction_file(only) == only / "reconstruct_test_subject2" / NPZ
    none = group_run(tmp_path / "b", rng, reconstructed=())
    with pytest.raises(Exception, match=r"a run of subjects 1, 2, 4, none reconstructed yet; run `brainrecon "
                                        r"reconstruct .* --subject N` first"):
        reconstruction_file(none)
    single = tmp_path / "c" / "dec"
    write_reconstructions(single / "reconstruct_test", rng, "dec", 3)
    assert reconstruction_file(single) == reconstruction_file(single, 3) == single / "reconstruct_test" / NPZ
    with pytest.raises(Exception, match="reconstruct_test/ holds subject 3's"):
        reconstruction_file(single, 5)


def test_evaluate_and_classify_take_subject(rng, tmp_path, capsys):
    """Right after `reconstruct RUN --subject 2`, `evaluate RUN --subject 2` scores it; without --subject, one line
    listing the subjects' folders, before anything is computed or written."""
    run = group_run(tmp_path, rng)
    out = tmp_path / "ev"
    assert main(["evaluate", str(run), "--metric", "pixcorr", "--ways", "2", "--repeats", "5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "reconstruct_test_subject1/, reconstruct_test_subject2/" in err
    assert not out.exists()
    assert main(["evaluate", str(run), "--subject", "2", "--metric", "pixcorr", "--ways", "2", "--repeats", "5",
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "identification.csv")))
    assert {r["run"] for r in rows} == {"g_dec subject 2"} and {r["subject"] for r in rows} == {"2"}
    capsys.readouterr()
    assert main(["classify", str(run), "--class-images", str(tmp_path), "--out", str(tmp_path / "cl")]) == 2
    assert "choose one with --subject N" in capsys.readouterr().err
