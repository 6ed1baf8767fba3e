"""fetch-data against a loopback HTTP server serving small files and tarballs made here."""

import hashlib
import io
import json
import tarfile
import time

import pytest
from typer.testing import CliRunner

from brainrecon.cli import app, fetch_plan, fetch_screen
from brainrecon.data import archive, download, remote
from brainrecon.errors import UserError
from brainrecon.simulation.serve import FileServer
from brainrecon.sources import god_fetch, release_files

FILES = {"images_112.npz": b"stimuli" * 10000, "sbj_1.npz": b"one" * 500, "sbj_3.npz": b"three" * 500,
         "sbj_2.npz": b"2", "sbj_4.npz": b"4", "sbj_5.npz": b"5"}


def tarball(members: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def server():
    with FileServer(FILES) as s:
        yield s


@pytest.fixture(autouse=True)
def no_retries(monkeypatch):
    monkeypatch.setenv("BRAINRECON_FETCH_RETRIES", "0")


def cli(*args):
    return CliRunner().invoke(app, ["fetch-data", "--yes", *args])


def test_each_source_declares_its_files():
    entries = release_files.entries()
    assert len(entries) == 17 and {e.group for e in entries} == set(release_files.GROUPS)
    assert len(god_fetch.entries()) == 5 and set(fetch_screen.GROUPS) == {*release_files.GROUPS, "god-h5", "nsd"}
    entries += god_fetch.entries()
    assert all(e.sha256 is None for e in entries)     # unknown: trusted on first use, never invented
    sized = {e.name: e for e in entries if e.size is not None}   # only MiDaS's (from its published tensor shapes)
    assert set(sized) == {"model-f6b98070.pt", "model-small-70d6b9c8.pt"} and all(e.approx for e in sized.values())


def test_first_download_locks_hashes_and_second_run_downloads_nothing(server, tmp_path):
    r = cli("--data-dir", str(tmp_path), "--base-url", server.url, "--only", "stimuli")
    assert r.exit_code == 0, r.output
    assert "Terms" in r.output and "ImageNet" in r.output
    lock = json.loads((tmp_path / download.LOCK).read_text())
    assert lock["files"]["images_112.npz"]["sha256"] == hashlib.sha256(FILES["images_112.npz"]).hexdigest()
    r2 = cli("--data-dir", str(tmp_path), "--base-url", server.url, "--only", "stimuli")
    assert r2.exit_code == 0 and server.downloads("images_112.npz") == 1 and "Terms" not in r2.output


def test_corruption_is_caught_by_verify_and_by_the_next_fetch(server, tmp_path):
    cli("--data-dir", str(tmp_path), "--base-url", server.url, "--only", "stimuli")
    (tmp_path / "images_112.npz").write_bytes(b"corrupt")
    v = cli("--data-dir", str(tmp_path), "--verify", "--only", "stimuli")
    assert v.exit_code == 2 and "mismatch" in v.output
    r = cli("--data-dir", str(tmp_path), "--base-url", server.url, "--only", "stimuli")
    assert r.exit_code == 2 and "does not match the lock hash" in r.output
    assert not (tmp_path / "images_112.npz").exists() and list(tmp_path.glob("images_112.npz.bad-*"))


def test_registry_hash_takes_precedence(server, tmp_path):
    reg = tmp_path / "known.txt"
    reg.write_text("# group: stimuli\nimages_112.npz sha256:" + "0" * 64 + "\n")
    r = cli("--data-dir", str(tmp_path / "d"), "--base-url", server.url, "--only", "stimuli", "--registry", str(reg))
    assert r.exit_code == 2 and "registry hash" in r.output
    assert not (tmp_path / "d/images_112.npz").exists()


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/evil-absolute.txt"])
def test_unsafe_tar_members_are_refused(tmp_path, member):
    tarpath = tmp_path / "a.tar.gz"
    tarpath.write_bytes(tarball({"val/n1/ok.JPEG": b"x", member: b"evil"}))
    with pytest.raises(UserError, match="refused"):
        archive.extract(tarpath, tmp_path / "out")
    assert not (tmp_path / "out/val").exists() and not (tmp_path / "evil.txt").exists()


def test_archives_unpack_into_the_data_layout_once(server, tmp_path):
    server.files["imagenet_val.tar.gz"] = tarball({"val/n01/a.JPEG": b"img"})
    r = cli("--data-dir", str(tmp_path), "--base-url", server.url, "--only", "imagenet")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "imagenet/val/n01/a.JPEG").read_bytes() == b"img"
    assert archive.extract(tmp_path / "imagenet_val.tar.gz", tmp_path / "imagenet") is False   # idempotent


def test_server_down_is_one_line_exit_2(tmp_path):
    r = cli("--data-dir", str(tmp_path), "--base-url", "http://127.0.0.1:9/v1", "--only", "stimuli")
    assert r.exit_code == 2 and "--base-url" in r.output and "http://127.0.0.1:9/v1/images_112.npz" in r.output
    assert len(r.output.strip().splitlines()) >= 1 and "Traceback" not in r.output


def test_interrupted_download_leaves_no_complete_looking_file_and_resumes(server, tmp_path):
    server.truncate.add("images_112.npz")
    r = cli("--data-dir", str(tmp_path), "--base-url", server.url, "--only", "stimuli")
    assert r.exit_code == 2
    assert not (tmp_path / "images_112.npz").exists()
    partial = (tmp_path / "images_112.npz.part").stat().st_size
    assert 0 < partial < len(FILES["images_112.npz"])
    server.truncate.clear()
    r = cli("--data-dir", str(tmp_path), "--base-url", server.url, "--only", "stimuli")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "images_112.npz").read_bytes() == FILES["images_112.npz"]
    assert server.requests[-1][1] == f"bytes={partial}-"      # resumed with Range


def test_only_and_subjects_select(server, tmp_path):
    r = cli("--data-dir", str(tmp_path), "--base-url", server.url, "--only", "fmri", "--subjects", "1,3")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.glob("sbj_*.npz")) == ["sbj_1.npz", "sbj_3.npz"]
    entries = release_files.select(["vgg", "model-f6b98070.pt"], [1])
    assert len(entries) == 6 and all(e.key.startswith("imagenet_rgbd/") for e in entries if e.group == "vgg")
    with pytest.raises(UserError, match="neither a group"):
        fetch_screen.select(["bogus"], None, None)


def test_list_shows_sizes_offline_and_from_the_server(server, tmp_path):
    """--list: MiDaS's declared estimates when no server answers (the tests reach no network); the server's sizes
    with --base-url; nothing created either way."""
    data = tmp_path / "d"
    r = CliRunner().invoke(app, ["fetch-data", "--data-dir", str(data), "--list"])
    assert r.exit_code == 0 and "sbj_5.npz" in r.output and "missing" in r.output, r.output
    assert "~422.3 MB" in r.output and "~85.6 MB" in r.output and "?" in r.output
    r = CliRunner().invoke(app, ["fetch-data", "--data-dir", str(data), "--list", "--only", "fmri", "--base-url",
                                 server.url])
    assert r.exit_code == 0 and "1.5 kB" in r.output and "2.5 kB" in r.output and "?" not in r.output, r.output
    assert not data.exists()


def test_dry_run_shows_sizes_total_and_destination_and_creates_nothing(server, tmp_path):
    """Sizes the declarations do not know come from the server (HEAD); a file whose size the server does not say
    shows `?` and makes the total a lower bound; MiDaS's estimate is replaced by the server's answer."""
    server.files["model-small-70d6b9c8.pt"] = b"m" * 2_500_000
    server.files["model-f6b98070.pt"] = b"L" * 10
    server.hide_size.update({"model-f6b98070.pt", "sbj_3.npz"})
    data = tmp_path / "new" / "data"
    r = CliRunner().invoke(app, ["fetch-data", "--data-dir", str(data), "--base-url", server.url, "--dry-run",
                                 "--only", "stimuli", "--only", "fmri", "--subjects", "1,3", "--only", "midas"])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert f"5 file(s) to download into {data}" in out and "a new folder" in out
    assert "images_112.npz 70.0 kB" in out and "sbj_1.npz 1.5 kB" in out and "sbj_3.npz ? " in out
    assert "model-small-70d6b9c8.pt 2.5 MB" in out and "model-f6b98070.pt ~422.3 MB" in out   # server silent
    assert f"<- {server.url}/images_112.npz" in out
    assert "total: at least 424.8 MB (1 file(s) of unknown size: the server did not say; the total is a lower bound;" \
        " ~: an estimate)" in out
    assert "free space at the destination" in out
    assert ("sbj_1.npz", None, "HEAD") in server.requests and server.downloads("sbj_1.npz") == 0
    assert not (tmp_path / "new").exists()
    server.hide_size.clear()
    r = CliRunner().invoke(app, ["fetch-data", "--data-dir", str(data), "--base-url", server.url, "--dry-run",
                                 "--only", "stimuli"])
    assert "total: 70.0 kB" in " ".join(r.output.split()) and not (tmp_path / "new").exists()


def test_sizes_follow_redirects_and_servers_without_head(server):
    assert remote.remote_size(f"{server.root}/redirect/images_112.npz") == 70_000
    server.no_head.add("sbj_3.npz")
    assert remote.remote_size(f"{server.url}/sbj_3.npz") == 2_500               # a one-byte ranged GET instead
    server.hide_size.add("sbj_1.npz")
    assert remote.remote_size(f"{server.url}/sbj_1.npz") is None
    assert remote.remote_size("http://127.0.0.1:9/v1/x") is None                 # nobody there


def test_terms_must_be_accepted_and_a_refusal_leaves_no_folder(server, tmp_path, monkeypatch):
    data = tmp_path / "d"
    r = CliRunner().invoke(app, ["fetch-data", "--data-dir", str(data), "--base-url", server.url,
                                 "--only", "stimuli"])
    assert r.exit_code == 2 and "--yes" in r.output and "70.0 kB" in r.output and not data.exists()
    monkeypatch.setattr(fetch_screen, "ask", lambda question: "n")
    r = CliRunner().invoke(app, ["fetch-data", "--data-dir", str(data), "--base-url", server.url,
                                 "--only", "stimuli"])
    assert r.exit_code == 2 and "terms not accepted" in r.output and not data.exists()
    monkeypatch.setattr(fetch_screen, "ask", lambda question: "y")
    r = CliRunner().invoke(app, ["fetch-data", "--data-dir", str(data), "--base-url", server.url,
                                 "--only", "stimuli"])
    assert r.exit_code == 0 and (data / "images_112.npz").exists()
    assert json.loads((data / download.LOCK).read_text())["terms_accepted"]


@pytest.mark.parametrize("args, message", [
    (["--subjects", "9"], "--subjects 9: GOD has subjects 1-5"),
    (["--only", "god-h5", "--subjects", "2,6"], "GOD has subjects 1-5, not 6"),
    (["--only", "nsd", "--subjects", "9"], "NSD has subjects 1-8"),
    (["--only", "stimuli", "--subjects", "3"], "--subjects applies to"),
    (["--only", "fmri", "--sessions", "1-3"], "--sessions applies to --only nsd"),
], ids=["god-9", "god-h5-6", "nsd-9", "no-subject-group", "sessions-without-nsd"])
def test_bad_subjects_are_one_line_and_leave_no_folder(server, tmp_path, args, message):
    data = tmp_path / "d"
    r = CliRunner().invoke(app, ["fetch-data", "--yes", "--data-dir", str(data), "--base-url", server.url, *args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and not data.exists()


def test_next_line_names_the_subject_fetched(server, tmp_path):
    r = cli("--data-dir", str(tmp_path), "--base-url", server.url, "--only", "fmri", "--subjects", "1")
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert f"Next: `brainrecon train-encoder --data-dir {tmp_path} --modality rgb --subject 1`" in out
    r = cli("--data-dir", str(tmp_path), "--base-url", server.url, "--only", "stimuli")
    assert "Next:" not in r.output                                   # nothing fetched that a command trains on
    server.files["Subject2.h5"] = b"bdata"
    r = cli("--data-dir", str(tmp_path), "--base-url", server.url, "--only", "god-h5", "--subjects", "2")
    assert r.exit_code == 0 and "figshare article 7387130" in r.output, r.output   # its own terms, asked once
    assert f"Next: `brainrecon convert-god --subject 2 --images PHOTOS --data-dir {tmp_path}`" in \
        " ".join(r.output.split())


def test_data_layer_imports_no_source_module():
    """brainrecon.data (L2) knows no source, no screen and no trainer: not at module level, not inside a function
    (tests/test_layers.py holds the whole layer order; this names what fetching used to reach for)."""
    import ast
    from pathlib import Path

    import brainrecon.data
    folder = Path(brainrecon.data.__file__).parent
    forbidden = ("brainrecon.sources", "brainrecon.cli", "brainrecon.train")
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"
    assert (folder / "download.py").is_file() and (folder / "archive.py").is_file()


def test_god_h5_group_is_per_subject_and_only_when_named():
    god = [e for part in fetch_screen.select(["god-h5"], "3,5", None) for e in part.entries]
    assert [e.name for e in god] == ["Subject3.h5", "Subject5.h5"]
    assert all(e.url.startswith("https://ndownloader.figshare.com/files/") for e in god)
    assert not any(e.group == "god-h5" for part in fetch_screen.select(["all"], None, None) for e in part.entries)
    assert any("figshare" in source for source in god_fetch.TERMS.items)


@pytest.mark.parametrize("folder", ["existing", "new"])
def test_two_fetches_on_one_data_folder(server, tmp_path, folder):
    """The second fetch-data stops at once naming the first (pid, command); the first ends well; every file and
    brainrecon-lock.json are intact. In a new folder too: the second's failure removes nothing of the first's."""
    import os
    import subprocess
    import sys
    server.delay = 0.5
    data = tmp_path if folder == "existing" else tmp_path / "new" / "data"
    cmd = [sys.executable, "-m", "brainrecon", "fetch-data", "--yes", "--data-dir", str(data), "--base-url",
           server.url, "--only", "stimuli", "--only", "fmri", "--subjects", "1,2,3,4,5"]
    env = {**os.environ, "BRAINRECON_FETCH_RETRIES": "0"}
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while not (data / "data.lock").exists():
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.02)
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert second.returncode == 2, second.stderr
    message = " ".join(second.stderr.split())
    assert "another process is writing into this data folder" in message and f"pid {first.pid}" in message and \
        "brainrecon fetch-data" in message, message
    lock = json.loads((data / download.LOCK).read_text())
    for name, content in FILES.items():
        assert hashlib.sha256((data / name).read_bytes()).hexdigest() == hashlib.sha256(content).hexdigest()
        assert lock["files"][name]["sha256"] == hashlib.sha256(content).hexdigest()
    assert not (data / "data.lock").exists()


def test_nsd_group_downloads_the_tree_convert_nsd_reads(tmp_path):
    """fetch-data --only nsd against the loopback server: NSD terms first (--yes required), sizes shown, every file
    of the subject's sessions in the bucket's layout, locked by sha256; convert-nsd then runs on what came."""
    from brainrecon.sources.nsd import files
    from tests.nsd_writer import write_mini_nsd
    mini = write_mini_nsd(tmp_path / "source" / "nsd")
    wanted = files.subject_files(1, [1, 2, 3])
    served = {}
    for path in wanted:
        p = mini.root / path
        served[path.rsplit("/", 1)[-1]] = p.read_bytes() if p.exists() else b"absent in the mini tree"
    s = FileServer(served)
    try:
        data = tmp_path / "data"
        args = ["fetch-data", "--only", "nsd", "--subjects", "1", "--sessions", "1-3", "--data-dir", str(data),
                "--base-url", s.url]
        refused = CliRunner().invoke(app, args)
        assert refused.exit_code == 2 and "Natural Scenes Dataset" in refused.output and "forms.gle" in refused.output
        assert "17 file(s) to download" in refused.output and "--yes" in refused.output
        assert not data.exists()                                         # refused: no folder made
        result = CliRunner().invoke(app, args + ["--yes"])
        assert result.exit_code == 0, result.output
        lock = json.loads((data / download.LOCK).read_text())
        assert lock["nsd_terms_accepted"] and "terms_accepted" not in lock
        for path in wanted:
            got = (data / "nsd" / path).read_bytes()
            assert got == served[path.rsplit("/", 1)[-1]]
            assert lock["files"][f"nsd/{path}"]["sha256"] == hashlib.sha256(got).hexdigest()
        again = CliRunner().invoke(app, args + ["--yes"])
        assert again.exit_code == 0 and s.downloads("betas_session01.hdf5") == 1
    finally:
        s.shutdown()
    for path in wanted:  # what the mini tree lacks came as placeholders: remove them, as absent optional files
        if not (mini.root / path).exists():
            (data / "nsd" / path).unlink()
    from brainrecon.sources.nsd.convert import NsdOptions, convert_nsd
    record = convert_nsd(NsdOptions(subject=1, nsd_dir=data / "nsd", out=data / "nsd_subj01", resolution=16))
    assert record["sessions"] == [1, 2, 3] and (data / "nsd_subj01" / "sbj_1.npz").exists()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dry_run_against_a_closed_port_says_unreachable_and_fails(tmp_path):
    port = closed_port()
    data = tmp_path / "new"
    r = CliRunner().invoke(app, ["fetch-data", "--dry-run", "--data-dir", str(data), "--base-url",
                                 f"http://127.0.0.1:{port}/v1", "--only", "fmri"])
    out = " ".join(r.output.split())
    assert r.exit_code == 2, r.output
    assert f"could not reach 127.0.0.1:{port} (connection refused)" in out and "no size above comes from" in out
    assert "the server did not say" not in out and "at least 0 B" not in out and "total: unknown" in out
    assert "Traceback" not in out and not data.exists()


def test_dry_run_names_the_files_whose_server_was_not_reached(server, tmp_path, monkeypatch):
    """One server answers, the other is down: the plan stands (exit 0) and names the files it could not size."""
    port = closed_port()
    monkeypatch.setattr(release_files, "RELEASE_URL", server.url)
    monkeypatch.setattr(release_files, "MIDAS_URL", f"http://127.0.0.1:{port}/v2_1")
    r = CliRunner().invoke(app, ["fetch-data", "--dry-run", "--data-dir", str(tmp_path / "d"), "--only", "stimuli",
                                 "--only", "midas"])
    out = " ".join(r.output.split())
    assert r.exit_code == 0, r.output
    assert "images_112.npz 70.0 kB" in out and "model-f6b98070.pt ~422.3 MB" in out
    assert f"could not reach 127.0.0.1:{port} (connection refused): no size from it for model-f6b98070.pt, " \
        "model-small-70d6b9c8.pt" in out
    assert "the server did not say" not in out


def test_a_plan_larger_than_the_free_space_warns_before_the_terms(server, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple
    asked = []

    def disk_usage(path):
        asked.append(path)
        return namedtuple("usage", "total used free")(10**9, 10**9 - 50_000, 50_000)
    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    data = tmp_path / "new" / "d"
    r = CliRunner().invoke(app, ["fetch-data", "--data-dir", str(data), "--base-url", server.url, "--only",
                                 "stimuli"])                 # no --yes: the terms are asked after the plan
    out = " ".join(r.output.split())
    assert r.exit_code == 2 and not data.exists()
    assert f"warning: not enough free space: this needs 70.0 kB and {tmp_path} has 50.0 kB free, 20.0 kB short" in out
    assert out.index("warning: not enough free space") < out.index("Terms of the data sources")
    assert asked and all(p == tmp_path for p in asked)          # the nearest folder that exists
    server.files["imagenet_val.tar.gz"] = b"t" * 30_000          # kept and unpacked beside itself: counted twice
    r = CliRunner().invoke(app, ["fetch-data", "--dry-run", "--data-dir", str(data), "--base-url", server.url,
                                 "--only", "imagenet"])
    assert "this needs 60.0 kB (the downloads, and about as much again to unpack" in " ".join(r.output.split())
    monkeypatch.setattr(shutil, "disk_usage", lambda path: namedtuple("usage", "total used free")(1, 0, 10**9))
    r = CliRunner().invoke(app, ["fetch-data", "--dry-run", "--data-dir", str(data), "--base-url", server.url,
                                 "--only", "stimuli"])
    assert r.exit_code == 0 and "warning" not in r.output


def cells(text: str) -> list[str]:
    """The cells of a rich table's body rows, stripped."""
    return [c.strip() for line in text.splitlines() if line.startswith("│") for c in line.strip("│").split("│")]


def test_list_at_80_columns_cuts_no_cell(tmp_path):
    """Every file the release, GOD and NSD subject 1 declare, listed at 80 columns: the file names wrap, no other
    cell is shortened (no `…`), and nothing is cut to one character."""
    import io

    from rich.console import Console

    from brainrecon.data.download import Lock
    parts = fetch_screen.select(["all"], None, None) + fetch_screen.select(["god-h5"], None, None) + \
        fetch_screen.select(["nsd"], "1", "1-3")
    entries = [e for p in parts for e in p.entries]
    assert max(len(e.key) for e in entries) > 80
    console = Console(width=80, file=io.StringIO())
    fetch_screen.show_list(entries, tmp_path, Lock(tmp_path), None, False, console)
    text = console.file.getvalue()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    body = cells(text)
    assert body.count("missing") == len(entries) and all(len(c) != 1 or c == "?" for c in body), text
    for group in {e.group for e in entries}:
        assert group in body
    wide = Console(width=200, file=io.StringIO())          # wide enough: every column, one line per file
    fetch_screen.show_list(entries, tmp_path, Lock(tmp_path), None, False, wide)
    assert "present" in wide.file.getvalue() and all(e.key in cells(wide.file.getvalue()) for e in entries)


def test_list_at_80_columns_from_the_command(tmp_path, monkeypatch):
    from brainrecon.cli import common
    monkeypatch.setattr(common.out_console, "width", 80)
    r = CliRunner().invoke(app, ["fetch-data", "--data-dir", str(tmp_path / "d"), "--list"])
    assert r.exit_code == 0 and "…" not in r.output, r.output
    assert "vgg" in cells(r.output) and "midas" in cells(r.output) and "~422.3 MB" in cells(r.output)


@pytest.mark.parametrize("fault", ["http-error", "checksum"])
def test_a_failed_download_leaves_no_new_folder(server, tmp_path, fault):
    """The first file comes, the second fails (the server has no such file / its hash is wrong): the new folder and
    the parents made for it are removed, and the error says so."""
    args = ["--only", "fmri", "--subjects", "1,3"]
    if fault == "http-error":
        del server.files["sbj_3.npz"]
    else:
        reg = tmp_path / "known.txt"
        reg.write_text("sbj_3.npz sha256:" + "0" * 64 + "\n")
        args += ["--registry", str(reg)]
    data = tmp_path / "new" / "data"
    r = cli("--data-dir", str(data), "--base-url", server.url, *args)
    assert r.exit_code == 2 and server.downloads("sbj_1.npz") == 1, r.output
    assert f"the new folder {tmp_path / 'new'} was removed" in " ".join(r.output.split())
    assert not (tmp_path / "new").exists()


def test_a_failed_download_into_an_existing_folder_keeps_the_folder(server, tmp_path):
    """Nothing that was there is touched; the empty sub-folder and the file-less lock this run made go."""
    data = tmp_path / "mine"
    data.mkdir()
    (data / "notes.txt").write_text("mine")
    r = cli("--data-dir", str(data), "--base-url", server.url, "--only", "vgg")     # the server has no VGG
    assert r.exit_code == 2 and "was removed" not in r.output, r.output
    assert sorted(p.name for p in data.iterdir()) == ["notes.txt"] and (data / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("folder", ["typo", "empty"])
def test_verify_on_a_folder_that_is_not_a_data_folder_fails_in_one_line(tmp_path, folder):
    data = tmp_path / folder
    if folder == "empty":
        data.mkdir()
        (data / "holiday.jpg").write_bytes(b"x")
    r = CliRunner().invoke(app, ["fetch-data", "--verify", "--data-dir", str(data)])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert ("does not exist" if folder == "typo" else "holds none of the 17 file(s) of --only all") in r.output
    assert (folder == "typo") != data.exists()


def test_the_screen_names_no_source():
    """fetch_screen (and its plan) iterate over the declared sources: no source module, group or command is
    written in them."""
    import ast
    from pathlib import Path

    from brainrecon.sources.fetch_sources import SOURCES
    text = "\n".join(Path(m.__file__).read_text() for m in (fetch_screen, fetch_plan))
    modules = {n.module for n in ast.walk(ast.parse(text)) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in modules if m.startswith("brainrecon.sources")} - {"brainrecon.sources.fetch_sources"}
    for group in fetch_screen.GROUPS:
        assert f'"{group}"' not in text and f"'{group}'" not in text
    strings = " ".join(n.value for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Constant)
                       and isinstance(n.value, str))
    assert not [w for w in ("convert-", "train-encoder", "GOD", "NSD", "figshare") if w in strings]
    assert [s.groups for s in SOURCES] == [release_files.GROUPS, ("god-h5",), ("nsd",)]
