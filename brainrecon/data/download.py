"""The download library under fetch-data: what a file entry and a source are, the lock of sha256s, resumable download
(the sizes asked before a download: brainrecon.data.remote).

It knows no source: each source (the authors' release, the public GOD sources, NSD) declares its files, their sizes
where known, its terms and its next command in its own module (a `Source`), and the CLI puts them on the screen.

Hashes are not published, so they are trusted on first use: the first complete download records sha256 and size
in `brainrecon-lock.json` in the data folder and every later run verifies against it. A `--registry FILE` with
known hashes takes precedence. A mismatch moves the bad file aside and stops with expected vs actual.
Downloads go to `<name>.part` (resumed with HTTP Range when the server allows it) and only a complete, verified
file is moved into place. A size the declaration does not know is asked of the server before anything is fetched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import pooch
import requests

from brainrecon.atomic import write_text_atomic
from brainrecon.errors import UserError

pooch.get_logger().setLevel("WARNING")  # the CLI's own progress bars and summary say what happens
LOCK = "brainrecon-lock.json"


@dataclass
class Entry:
    """One file of a source: where it comes from, where it goes in the data folder, what is known of it."""
    name: str
    """File name (or path inside the source, e.g. NSD's bucket path); also what a --base-url mirror serves."""
    group: str
    url: str
    sha256: str | None = None
    size: int | None = None
    """Bytes, as the publisher documents them (None: unknown, asked of the server)."""
    approx: bool = False
    """True when `size` is an estimate (from the data's shape), not the file's byte count."""
    folder: str = ""
    """Sub-folder of the data folder the file goes into ("" = the data folder itself)."""
    unpack_to: str | None = None
    """An archive: the sub-folder it is unpacked into."""
    subject: int | None = None

    @property
    def key(self) -> str:
        """Path inside the data folder."""
        return f"{self.folder}/{self.name}" if self.folder else self.name

    def source_url(self, base_url: str | None) -> str:
        return base_url.rstrip("/") + "/" + self.name if base_url else self.url


@dataclass(frozen=True)
class Terms:
    """A source's terms, shown once before its first download; accepting them is recorded in the lock under `key`."""
    key: str
    items: dict = field(default_factory=dict)
    """source -> its terms, one line each."""


@dataclass(frozen=True, eq=False)
class Source:
    """What one source gives fetch-data, declared in the source's own module: the screen iterates over these and
    names no source itself."""
    terms: Terms
    groups: tuple[str, ...]
    """The --only names of its groups."""
    files: Callable[[], list[Entry]]
    """The files --only can name one by one (by Entry.name)."""
    take: Callable[[list[str], list[int] | None, str | None], list[Entry]]
    """(the --only names it answers to, --subjects (None: not given) and --sessions) -> the files to fetch."""
    next_step: Callable[[Path, list[Entry]], str | None]
    """(data folder, the files fetched) -> the command that uses them, or None."""
    dataset: str = ""
    """Whose subjects --subjects numbers ("GOD", "NSD"), for the refusal of a subject it lacks."""
    subjects: tuple[int, ...] = ()
    subject_groups: tuple[str, ...] = ()
    """Its groups that --subjects applies to."""
    in_all: bool = False
    """`--only all` takes it (the others only when named)."""
    needs_subjects: str = ""
    """Set: --subjects must be given for it, and this is the refusal that says so."""
    sessions: bool = False
    """--sessions applies to it."""


def fetched_subject(entries: list[Entry], group: str) -> int | None:
    """A subject whose files of `group` are among `entries`: 3 (the papers' subject) if it is, else the first."""
    subjects = sorted({e.subject for e in entries if e.group == group and e.subject is not None})
    return (3 if 3 in subjects else subjects[0]) if subjects else None


def read_registry(path: Path) -> dict[str, tuple[str | None, str]]:
    """A registry file (`name sha256:<hex>|- [url]` lines; `#` comments): name -> (sha256 or None, url or "")."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--registry {path}: file not found")
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2:
            raise UserError(f"{path}: line {n} must read `name sha256:<hex> [url]`, found {line!r}")
        name, digest = parts[0], parts[1]
        if digest != "-" and not (digest.startswith("sha256:") and len(digest) == 71):
            raise UserError(f"{path}: line {n}: hash must be sha256:<64 hex> or -, found {digest!r}")
        out[name] = (None if digest == "-" else digest[7:].lower(), parts[2] if len(parts) > 2 else "")
    return out


def apply_registry(entries: list[Entry], path: Path | None) -> list[Entry]:
    """Hashes (and URLs) from a user registry take precedence over the declarations."""
    if path:
        known = read_registry(path)
        for e in entries:
            if e.name in known:
                digest, url = known[e.name]
                e.sha256, e.url = digest or e.sha256, url or e.url
    return entries


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Lock:
    """brainrecon-lock.json: sha256, size and source of every file fetched, and which terms were accepted.
    Reading it creates nothing."""

    def __init__(self, root: Path):
        self.path = Path(root) / LOCK
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {"files": {}}

    def expected(self, e: Entry) -> tuple[str | None, str]:
        if e.sha256:
            return e.sha256, "registry"
        rec = self.data["files"].get(e.key)
        return (rec["sha256"], "lock") if rec else (None, "")

    def size(self, e: Entry) -> int | None:
        return self.data["files"].get(e.key, {}).get("size")

    def record(self, e: Entry, path: Path, digest: str, url: str) -> None:
        self.data["files"][e.key] = {"sha256": digest, "size": path.stat().st_size, "url": url,
                                     "fetched": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self.save()

    def accepted(self, terms: Terms) -> bool:
        return bool(self.data.get(terms.key))

    def accept(self, terms: Terms) -> None:
        self.data[terms.key] = datetime.now(timezone.utc).isoformat(timespec="seconds")
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


def fetch_one(e: Entry, root: Path, base_url: str | None, lock: Lock, bar=None, retries: int = 3) -> str:
    """Make sure one file is present and verified. Returns what happened: present | downloaded.
    `bar`: pooch's progress-bar protocol (update / reset / close / total), or None."""
    path = root / e.key
    url = e.source_url(base_url)
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


def state(e: Entry, root: Path, lock: Lock, rehash: bool) -> str:
    """missing | unverified | ok | mismatch | locked (registry|lock): what --list and --verify show."""
    path = Path(root) / e.key
    expected, source = lock.expected(e)
    if not path.exists():
        return "missing"
    if not expected:
        return "unverified"
    if rehash:
        return "ok" if sha256(path) == expected else "mismatch"
    return f"locked ({source})"


def make_folder(root: Path) -> Path | None:
    """Make `root` and its missing parents, one level at a time. Returns the topmost folder this call made (None when
    `root` was there): what a failed download may remove."""
    missing, folder = [], Path(root).absolute()
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    top = None
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue                                # made by another process just now: not ours
        except OSError as e:
            raise UserError(f"{root}: cannot create this folder ({e.strerror}); choose another --data-dir") from None
        top = top or folder
    return top


@contextlib.contextmanager
def leaves_no_trace(root: Path, entries: list[Entry], made_here: Path | None) -> Iterator[None]:
    """A download that fails leaves no new folder: `made_here` (make_folder's answer), when set, is removed with all
    it holds, and the error says so. Entered while holding the data folder's lock (only its holder removes anything).
    An existing folder is never removed, and of what this run made in it only what holds nothing of use goes: the
    empty sub-folders, a lock that records no file; the files completed and verified there stay (recorded in the
    lock), and so does a cut-off `.part`, which the next run resumes. Ctrl-C keeps everything, so that the same
    command resumes."""
    root = Path(root).absolute()
    made = {d for e in entries for d in (root / e.key).parents if root in d.parents and not d.exists()}
    made |= {root / e.unpack_to for e in entries if e.unpack_to and not (root / e.unpack_to).exists()}
    lock_made = not (root / LOCK).exists()
    try:
        yield
    except Exception as err:
        if made_here is None:
            if lock_made and (root / LOCK).exists() and not Lock(root).data["files"]:
                (root / LOCK).unlink()
            for folder in sorted(made, key=lambda d: len(d.parts), reverse=True):    # deepest first
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
        partial = any((root / e.key).exists() or Path(f"{root / e.key}.part").exists() for e in entries)
        shutil.rmtree(made_here, ignore_errors=True)
        if isinstance(err, UserError):
            keep = " (to keep partial downloads for a resume, make the folder first)" if partial else ""
            raise UserError(f"{err}; the new folder {made_here} was removed{keep}") from None
        raise
