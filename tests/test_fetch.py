"""fetch-data against a loopback HTTP server serving small files and tarballs made here."""

import hashlib
import io
import json
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from brainrecon.cli import app
from brainrecon.data import fetch
from brainrecon.errors import UserError

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


class Server:
    def __init__(self, files):
        self.files, self.truncate, self.requests, self.delay = dict(files), set(), [], 0.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append((name, self.headers.get("Range")))
                time.sleep(server.delay)
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name]
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if name in server.truncate:
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def downloads(self, name):
        return sum(1 for n, _ in self.requests if n == name)


@pytest.fixture
def server():
    s = Server(FILES)
    yield s
    s.httpd.shutdown()


@pytest.fixture(autouse=True)
def no_retries(monkeypatch):
    monkeypatch.setenv("BRAINRECON_FETCH_RETRIES", "0")


def cli(*args):
    return CliRunner().invoke(app, ["fetch-data", "--yes", *args])


def test_registry_lists_every_release_file():
    entries = fetch.load_registry()
    assert len(entries) == 22 and {e.group for e in entries} == set(fetch.GROUPS) - {"nsd"}  # nsd: built per subject
    assert all(e.sha256 is None for e in entries)     # unknown: trusted on first use, never invented


def test_first_download_locks_hashes_and_second_run_downloads_nothing(server, tmp_path):
    r = cli("--data-dir", str(tmp_path), "--base-url", server.url, "--only", "stimuli")
    assert r.exit_code == 0, r.output
    assert "Terms" in r.output and "ImageNet" in r.output
    lock = json.loads((tmp_path / fetch.LOCK).read_text())
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
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tarball({"val/n1/ok.JPEG": b"x", member: b"evil"}))
    with pytest.raises(UserError, match="refused"):
        fetch.extract(archive, tmp_path / "out")
    assert not (tmp_path / "out/val").exists() and not (tmp_path / "evil.txt").exists()


def test_archives_unpack_into_the_data_layout_once(server, tmp_path):
    server.files["imagenet_val.tar.gz"] = tarball({"val/n01/a.JPEG": b"img"})
    r = cli("--data-dir", str(tmp_path), "--base-url", server.url, "--only", "imagenet")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "imagenet/val/n01/a.JPEG").read_bytes() == b"img"
    assert fetch.extract(tmp_path / "imagenet_val.tar.gz", tmp_path / "imagenet") is False   # idempotent


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
    entries = fetch.select(fetch.load_registry(), ["vgg", "model-f6b98070.pt"], "1")
    assert len(entries) == 6 and all(e.key.startswith("imagenet_rgbd/") for e in entries if e.group == "vgg")
    with pytest.raises(UserError, match="neither a group"):
        fetch.select(fetch.load_registry(), ["bogus"], "1")


def test_list_and_dry_run(server, tmp_path):
    r = CliRunner().invoke(app, ["fetch-data", "--data-dir", str(tmp_path), "--list"])
    assert r.exit_code == 0 and "sbj_5.npz" in r.output and "missing" in r.output
    d = CliRunner().invoke(app, ["fetch-data", "--data-dir", str(tmp_path), "--dry-run", "--only", "midas"])
    assert d.exit_code == 0 and "model-f6b98070.pt" in d.output and not list(tmp_path.glob("*.pt"))


def test_terms_must_be_accepted(server, tmp_path):
    r = CliRunner().invoke(app, ["fetch-data", "--data-dir", str(tmp_path), "--base-url", server.url,
                                 "--only", "stimuli"])
    assert r.exit_code == 2 and "--yes" in r.output and not (tmp_path / "images_112.npz").exists()


def test_god_h5_group_is_per_subject_and_only_when_named():
    entries = fetch.load_registry()
    god = fetch.select(entries, ["god-h5"], "3,5")
    assert [e.name for e in god] == ["Subject3.h5", "Subject5.h5"]
    assert all(e.url.startswith("https://ndownloader.figshare.com/files/") for e in god)
    assert not any(e.group == "god-h5" for e in fetch.select(entries, ["all"], "1,2,3,4,5"))
    assert any("figshare" in source for source in fetch.TERMS)


def test_two_fetches_on_one_data_folder(server, tmp_path):
    """The second fetch-data stops at once naming the first (pid, command); the first ends well; every file and
    brainrecon-lock.json are intact."""
    import os
    import subprocess
    import sys
    server.delay = 0.5
    cmd = [sys.executable, "-m", "brainrecon", "fetch-data", "--yes", "--data-dir", str(tmp_path), "--base-url",
           server.url, "--only", "stimuli", "--only", "fmri", "--subjects", "1,2,3,4,5"]
    env = {**os.environ, "BRAINRECON_FETCH_RETRIES": "0"}
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while not (tmp_path / "data.lock").exists():
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.02)
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert second.returncode == 2, second.stderr
    message = " ".join(second.stderr.split())
    assert "another process is writing into this data folder" in message and f"pid {first.pid}" in message and \
        "brainrecon fetch-data" in message, message
    lock = json.loads((tmp_path / fetch.LOCK).read_text())
    for name, data in FILES.items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
        assert lock["files"][name]["sha256"] == hashlib.sha256(data).hexdigest()
    assert not (tmp_path / "data.lock").exists()


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
    s = Server(served)
    try:
        data = tmp_path / "data"
        args = ["fetch-data", "--only", "nsd", "--subjects", "1", "--sessions", "1-3", "--data-dir", str(data),
                "--base-url", s.url]
        refused = CliRunner().invoke(app, args)
        assert refused.exit_code == 2 and "Natural Scenes Dataset" in refused.output and "forms.gle" in refused.output
        assert "NSD: 17 files to download" in refused.output and "--yes" in refused.output
        result = CliRunner().invoke(app, args + ["--yes"])
        assert result.exit_code == 0, result.output
        lock = json.loads((data / fetch.LOCK).read_text())
        assert lock["nsd_terms_accepted"] and "terms_accepted" not in lock
        for path in wanted:
            got = (data / "nsd" / path).read_bytes()
            assert got == served[path.rsplit("/", 1)[-1]]
            assert lock["files"][f"nsd/{path}"]["sha256"] == hashlib.sha256(got).hexdigest()
        again = CliRunner().invoke(app, args + ["--yes"])
        assert again.exit_code == 0 and s.downloads("betas_session01.hdf5") == 1
    finally:
        s.httpd.shutdown()
    for path in wanted:  # what the mini tree lacks came as placeholders: remove them, as absent optional files
        if not (mini.root / path).exists():
            (data / "nsd" / path).unlink()
    from brainrecon.sources.nsd.convert import NsdOptions, convert_nsd
    record = convert_nsd(NsdOptions(subject=1, nsd_dir=data / "nsd", out=data / "nsd_subj01", resolution=16))
    assert record["sessions"] == [1, 2, 3] and (data / "nsd_subj01" / "sbj_1.npz").exists()
