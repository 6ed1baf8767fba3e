"""fetch-data: the public release, downloaded with pooch; verified, resumable, unpacked safely.

Hashes are not published, so they are trusted on first use: the first complete download records sha256 and size
in `brainrecon-lock.json` in the data folder and every later run verifies against it. A `--registry FILE` with
known hashes takes precedence. A mismatch moves the bad file aside and stops with expected vs actual.
Downloads go to `<name>.part` (resumed with HTTP Range when the server allows it) and only a complete, verified
file is moved into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tarfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path, PurePosixPath

import pooch
import requests

from brainrecon.atomic import write_text_atomic
from brainrecon.errors import UserError
from brainrecon.train import runlock

pooch.get_logger().setLevel("WARNING")  # our own progress bars and summary say what happens
GROUPS = ("stimuli", "rgbd", "fmri", "imagenet", "depth", "vgg", "midas", "god-h5", "nsd")
PER_SUBJECT = {"fmri": lambda name: int(name[4:-4]), "god-h5": lambda name: int(name[7:-3])}  # sbj_N.npz, SubjectN.h5
LOCK = "brainrecon-lock.json"
SUBDIR = {"vgg": "imagenet_rgbd", "nsd": "nsd"}
ARCHIVE_TARGET = {"imagenet": "imagenet", "depth": "imagenet_depth"}
TERMS = {
    "GOD fMRI (Horikawa & Kamitani 2017, OpenNeuro ds001246)":
        "released under CC0 on OpenNeuro; cite Horikawa & Kamitani, Nat. Commun. 2017.",
    "GOD preprocessed fMRI, BData HDF5 (figshare article 7387130, Kamitani lab)":
        "the lab's public release of the same data (figshare; see its licence there); cite Horikawa & Kamitani, "
        "Nat. Commun. 2017.",
    "ImageNet images (stimuli, imagenet_val, depth maps)":
        "ImageNet terms of access: non-commercial research and educational use only (image-net.org/download).",
    "Release files (WeizmannVision/SelfSuperReconst v1: npz, VGG checkpoints)":
        "distributed by the authors under an academic, non-commercial licence; cite Gaziv & Irani 2021 and "
        "Gaziv, Beliy, Granot et al. 2022.",
    "MiDaS v2.1 checkpoints (intel-isl/MiDaS)": "MIT licence; cite Ranftl et al., TPAMI 2022.",
}
NSD_TERMS = {
    "Natural Scenes Dataset (Allen et al. 2022, naturalscenesdataset.org)":
        "access requires agreeing to the NSD Terms and Conditions "
        "(https://cvnlab.slite.page/p/IB6BSeW_7o/Terms-and-Conditions) and submitting the NSD Data Access form "
        "(https://forms.gle/xue2bCdM9LaFNMeb7) first; the data may not be redistributed; cite Allen et al., "
        "Nat. Neurosci. 25:116, 2022. brainrecon cannot check that you did: accepting here says you have.",
    "COCO images in the NSD stimulus brick": "the COCO terms of use (cocodataset.org/#termsofuse); the images "
        "keep their Flickr licences.",
}


@dataclass
class Entry:
    name: str
    group: str
    sha256: str | None
    url: str

    @property
    def key(self) -> str:
        """Path inside the data folder."""
        sub = SUBDIR.get(self.group)
        return f"{sub}/{self.name}" if sub else self.name


def load_registry(path: Path | None = None) -> list[Entry]:
    """Parse a registry file (`name sha256:<hex>|- url` lines under `# group: <name>` headers)."""
    text = Path(path).read_text() if path else resources.files("brainrecon.data").joinpath("registry.txt").read_text()
    entries, group = [], None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
            continue
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2:
            raise UserError(f"{path}: line {n} must read `name sha256:<hex> [url]`, found {line!r}")
        name, digest = parts[0], parts[1]
        if digest != "-" and not (digest.startswith("sha256:") and len(digest) == 71):
            raise UserError(f"{path}: line {n}: hash must be sha256:<64 hex> or -, found {digest!r}")
        entries.append(Entry(name, group or "", None if digest == "-" else digest[7:].lower(),
                             parts[2] if len(parts) > 2 else ""))
    return entries


def merged_registry(registry: Path | None) -> list[Entry]:
    """The shipped registry, with hashes (and URLs) from a user registry taking precedence."""
    entries = load_registry()
    if registry:
        user = {e.name: e for e in load_registry(registry)}
        for e in entries:
            if e.name in user:
                e.sha256 = user[e.name].sha256 or e.sha256
                e.url = user[e.name].url or e.url
    return entries


def select(entries: list[Entry], only: list[str], subjects: str) -> list[Entry]:
    try:
        wanted_subjects = {int(s) for s in subjects.split(",") if s.strip()}
    except ValueError:
        raise UserError(f"--subjects {subjects!r} must be numbers separated by commas, e.g. 1,3") from None
    names = {e.name for e in entries}
    for o in only:
        if o != "all" and o not in GROUPS and o not in names:
            raise UserError(f"--only {o!r} is neither a group ({', '.join(GROUPS)}, all) nor a release file name")
    out = []
    for e in entries:
        if ("all" in only and e.group != "god-h5") or e.group in only or e.name in only:
            if e.group in PER_SUBJECT and e.name not in only and PER_SUBJECT[e.group](e.name) not in wanted_subjects:
                continue
            out.append(e)
    return out


def nsd_entries(subjects: str, sessions: str | None) -> list[Entry]:
    """The NSD files convert-nsd reads, for each subject (--sessions: part of a subject), from NSD's public bucket.
    Their hashes are not published either: trusted on first use and locked like the release files."""
    from brainrecon.sources.nsd import files
    try:
        wanted = sorted({int(s) for s in subjects.split(",") if s.strip()})
    except ValueError:
        raise UserError(f"--subjects {subjects!r} must be numbers separated by commas, e.g. 1,2") from None
    paths: dict[str, None] = {}
    for subject in wanted:
        for path in files.subject_files(subject, files.parse_sessions(sessions, subject)):
            paths.setdefault(path)
    return [Entry(path, "nsd", None, f"{files.BUCKET_URL}/{path}") for path in paths]


def approx_bytes(e: Entry) -> int | None:
    """The size to show before a download: known for NSD's files (from the volume sizes), else unknown."""
    if e.group != "nsd":
        return None
    from brainrecon.sources.nsd import files
    subject = next((int(part[4:]) for part in e.name.split("/") if part.startswith("subj")), 1)
    return files.approx_size(e.name, subject)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Lock:
    """brainrecon-lock.json: sha256, size and source of every file fetched, and whether the terms were accepted."""

    def __init__(self, root: Path):
        self.path = Path(root) / LOCK
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {"files": {}}

    def expected(self, e: Entry) -> tuple[str | None, str]:
        if e.sha256:
            return e.sha256, "registry"
        rec = self.data["files"].get(e.key)
        return (rec["sha256"], "lock") if rec else (None, "")

    def record(self, e: Entry, path: Path, digest: str, url: str) -> None:
        self.data["files"][e.key] = {"sha256": digest, "size": path.stat().st_size, "url": url,
                                     "fetched": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self.save()

    def save(self) -> None:
        write_text_atomic(self.path, json.dumps(self.data, indent=2))


class ResumableDownloader:
    """A pooch downloader: streams into `<final>.part`, resuming with an HTTP Range request when the server allows."""

    def __init__(self, final: Path, progress=None, timeout: float = 60):
        self.part = Path(str(final) + ".part")
        self.progress, self.timeout = progress, timeout

    def __call__(self, url: str, output_file, pooch_obj=None, check_only: bool = False):
        have = self.part.stat().st_size if self.part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as r:
            if r.status_code == 416:                    # already complete
                r.close()
            else:
                r.raise_for_status()
                if have and r.status_code != 206:       # server ignored Range: start over
                    have = 0
                total = int(r.headers.get("Content-Length", 0)) + have
                if self.progress is not None:
                    self.progress.total, self.progress.n = total or None, have
                with open(self.part, "ab" if have else "wb") as f:
                    for chunk in r.iter_content(1 << 14):
                        f.write(chunk)
                        if self.progress is not None:
                            self.progress.update(len(chunk))
                if total and self.part.stat().st_size != total:
                    raise requests.exceptions.ChunkedEncodingError(
                        f"connection closed after {self.part.stat().st_size} of {total} bytes")
        os.replace(self.part, output_file)


class RichBar:
    """pooch's progress-bar protocol (update / reset / close / total) on a rich Progress task."""

    def __init__(self, progress, description: str):
        self.progress, self.task, self.n, self.total = progress, progress.add_task(description, total=None), 0, None

    def update(self, k: int):
        self.n += k
        self.progress.update(self.task, completed=self.n, total=self.total)

    def reset(self):
        self.n = 0

    def close(self):
        self.progress.update(self.task, completed=self.n, total=self.n)


def safe_members(archive: Path, target: Path) -> list[tarfile.TarInfo]:
    """All members, after refusing the archive if any would land outside `target` (absolute, `..`, escaping link)."""
    target = target.resolve()
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    for m in members:
        p = PurePosixPath(m.name)
        dest = (target / m.name).resolve()
        bad = p.is_absolute() or ".." in p.parts or not str(dest).startswith(str(target))
        if m.issym() or m.islnk():
            link = PurePosixPath(m.linkname)
            link_dest = (target / (PurePosixPath(m.name).parent / link if m.issym() else link)).resolve()
            bad = bad or link.is_absolute() or not str(link_dest).startswith(str(target))
        if bad:
            raise UserError(f"{archive}: member {m.name!r} would be written outside {target}; the archive was refused "
                            "and nothing was extracted; delete it and fetch it again from a trusted source")
        if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            raise UserError(f"{archive}: member {m.name!r} is a special file; the archive was refused")
    return members


def extract(archive: Path, target: Path) -> bool:
    """Unpack once (a marker records success); refuse unsafe archives entirely. Returns True if it extracted."""
    marker = target / f".extracted-{archive.name}"
    if marker.exists():
        return False
    target.mkdir(parents=True, exist_ok=True)
    members = safe_members(archive, target)
    with tarfile.open(archive) as tar:
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(target, members=members, **kwargs)
    marker.write_text(datetime.now(timezone.utc).isoformat())
    return True


def fetch_one(e: Entry, root: Path, base_url: str | None, lock: Lock, progress=None, retries: int = 3) -> str:
    """Make sure one file is present and verified. Returns what happened: present | downloaded."""
    path = root / e.key
    url = base_url.rstrip("/") + "/" + e.name if base_url else e.url
    expected, source = lock.expected(e)
    if path.exists():
        if expected:
            actual = sha256(path)
            if actual != expected:
                aside = path.with_name(path.name + f".bad-{int(time.time())}")
                os.replace(path, aside)
                raise UserError(f"{path}: sha256 {actual} does not match the {source} hash {expected}; the file was "
                                f"moved to {aside.name}; run fetch-data again to download it afresh")
        else:
            lock.record(e, path, sha256(path), "placed by hand")
        return "present"
    path.parent.mkdir(parents=True, exist_ok=True)
    fetcher = pooch.create(path=root, base_url="", registry={e.key: f"sha256:{expected}" if expected else None},
                           urls={e.key: url}, retry_if_failed=retries, env=None)
    bar = RichBar(progress, e.name) if progress is not None else None
    try:
        fetcher.fetch(e.key, downloader=ResumableDownloader(path, bar), progressbar=False)
    except ValueError as err:                       # pooch's hash mismatch after download
        raise UserError(f"{url}: downloaded file does not match the {source} hash ({str(err).splitlines()[0]}); "
                        "try again or use another --base-url") from None
    except (requests.exceptions.RequestException, OSError) as err:
        raise UserError(f"{url}: download failed ({type(err).__name__}: {str(err)[:120]}); check the network, "
                        f"pass --base-url MIRROR, or place the file by hand at {path}") from None
    if bar is not None:
        bar.close()
    lock.record(e, path, sha256(path), url)
    return "downloaded"


def unpack(e: Entry, root: Path) -> bool:
    if e.group in ARCHIVE_TARGET and (root / e.key).exists():
        return extract(root / e.key, root / ARCHIVE_TARGET[e.group])
    return False


def status_rows(entries: list[Entry], root: Path, lock: Lock, rehash: bool) -> list[dict]:
    rows = []
    for e in entries:
        path = root / e.key
        expected, source = lock.expected(e)
        size = path.stat().st_size if path.exists() else lock.data["files"].get(e.key, {}).get("size")
        if not path.exists():
            state = "missing"
        elif not expected:
            state = "unverified"
        elif rehash:
            state = "ok" if sha256(path) == expected else "mismatch"
        else:
            state = f"locked ({source})"
        rows.append({"file": e.key, "group": e.group, "size": size, "present": path.exists(), "state": state,
                     "approx": approx_bytes(e)})
    return rows


def accept_terms(lock: Lock, yes: bool, console, key: str = "terms_accepted", terms: dict | None = None) -> None:
    if lock.data.get(key):
        return
    console.print("[bold]Terms of the data sources[/] (shown once, before the first download):")
    for source, text in (terms or TERMS).items():
        console.print(f"  - {source}: {text}")
    if not yes:
        if not sys.stdin.isatty():
            raise UserError("the data terms above must be accepted: re-run with --yes to accept them")
        if input("Accept these terms? [y/N] ").strip().lower() not in ("y", "yes"):
            raise UserError("terms not accepted; nothing was downloaded")
    lock.data[key] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    lock.save()


def show_sizes(todo: list[Entry], console) -> None:
    """Before a download starts: how much NSD data it is (the release files' sizes are not known in advance)."""
    nsd = [e for e in todo if e.group == "nsd"]
    if not nsd:
        return
    sizes = {e.name: approx_bytes(e) or 0 for e in nsd}
    betas = [n for n in sizes if "betas_session" in n]
    parts = [f"{len(betas)} betas sessions at ~{sizes[betas[0]] / 1e9:.1f} GB each"] if betas else []
    parts += [f"the stimulus brick ~{sizes[n] / 1e9:.0f} GB" for n in sizes if n.endswith("nsd_stimuli.hdf5")]
    console.print(f"NSD: {len(nsd)} files to download, about {sum(sizes.values()) / 1e9:.1f} GB "
                  f"({', '.join(parts) or 'small files'}); check the free space first")


def run_cli(root: Path, only: list[str], subjects: str, base_url: str | None, registry: Path | None, list_: bool,
            verify: bool, dry_run: bool, yes: bool, console, sessions: str | None = None) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
    from rich.table import Table
    root = Path(root)
    lock = Lock(root)
    entries = select(merged_registry(registry), [o for o in only if o != "nsd"], subjects) \
        if only != ["nsd"] else []
    if "nsd" in only:
        entries += nsd_entries(subjects, sessions)
    elif sessions:
        raise UserError("--sessions applies to --only nsd")
    if list_ or verify:
        table = Table(title=f"release files in {root}", title_justify="left")
        for c in ("file", "group", "size", "present", "state"):
            table.add_column(c, no_wrap=True)
        rows = status_rows(entries, root, lock, rehash=verify)
        for r in rows:
            size = r["size"] or r.get("approx")
            table.add_row(r["file"], r["group"], (f"{size / 1e6:.1f} MB" if r["size"] else f"~{size / 1e6:.0f} MB")
                          if size else "?",
                          "yes" if r["present"] else "no", r["state"])
        console.print(table)
        if verify and any(r["state"] == "mismatch" for r in rows):
            raise UserError("some files do not match their recorded sha256 (see the table); delete them and run "
                            "fetch-data again")
        return
    if dry_run:
        todo = [e for e in entries if not (root / e.key).exists()]
        for e in entries:
            where = base_url.rstrip("/") + "/" + e.name if base_url else e.url
            console.print(f"{'download' if e in todo else 'verify  '} {e.key}  <- {where}")
        show_sizes(todo, console)
        return
    # every option checked above: only now is the data folder made (a failed command leaves no new folder)
    root.mkdir(parents=True, exist_ok=True)
    # one writer per data folder: a second fetch-data (or convert-god) stops at once, naming this one
    with runlock.hold_data(root):
        lock = Lock(root)  # read under the lock: what another fetch recorded before us is kept
        todo = [e for e in entries if not (root / e.key).exists()]
        show_sizes(todo, console)
        if any(e.group != "nsd" for e in todo):
            accept_terms(lock, yes, console)
        if any(e.group == "nsd" for e in todo):
            accept_terms(lock, yes, console, "nsd_terms_accepted", NSD_TERMS)
        retries = int(os.environ.get("BRAINRECON_FETCH_RETRIES", 3))
        done = []
        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                      console=console, transient=True) as progress:
            for e in entries:
                done.append((e, fetch_one(e, root, base_url, lock, progress, retries)))
                unpack(e, root)
    for e, what in done:
        console.print(f"{what:10s} {e.key}")
    console.print(f"data folder {root} now holds {sum(1 for _ in root.iterdir())} entries. Next: "
                  f"`brainrecon train-encoder --data-dir {root} --modality rgbd --subject 3`")
