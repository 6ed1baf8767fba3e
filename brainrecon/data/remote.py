"""What is known of the files before a download: each one's size (on disk, in the lock, declared, or asked of the
server), which servers could not be reached, and the free space at the destination."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

from brainrecon.data.download import Entry, Lock

SIZE_TIMEOUT = 10.0


@dataclass
class Probe:
    """What a server said of one URL before a download: its size, or that it could not be reached."""
    size: int | None
    unreached: str | None = None
    """`host:port (why)` when no answer came (refused, no such host, timed out); None when the server answered."""


def _unreached(err: requests.exceptions.RequestException, url: str) -> str:
    """`host:port (why)` of a failed connection, naming the host that failed (a redirect's target, if it was)."""
    parts = urlsplit(err.request.url if getattr(err, "request", None) is not None else url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    text = str(err)
    why = ("no answer in time" if isinstance(err, requests.exceptions.Timeout)
           else "connection refused" if "refused" in text
           else "host name not resolved" if "resolve" in text or "Name or service" in text
           else "TLS failed" if isinstance(err, requests.exceptions.SSLError) else "no connection")
    return f"{parts.hostname}:{port} ({why})"


def probe(url: str, timeout: float = SIZE_TIMEOUT) -> Probe:
    """The size the server gives for `url` (HEAD, following redirects; else a one-byte ranged GET, for servers such
    as pre-signed storage links that answer only GET); None when it does not say, with `unreached` set when it could
    not be reached at all."""
    plain, timeout = {"Accept-Encoding": "identity"}, (min(5.0, timeout), timeout)   # (connect, read)
    try:
        r = requests.head(url, allow_redirects=True, timeout=timeout, headers=plain)
        if r.ok and r.headers.get("Content-Length", "").isdigit():
            return Probe(int(r.headers["Content-Length"]))
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as err:
        return Probe(None, _unreached(err, url))    # nobody answers: no second try
    except requests.exceptions.RequestException:
        pass
    try:
        with requests.get(url, headers={**plain, "Range": "bytes=0-0"}, stream=True, timeout=timeout) as r:
            total = r.headers.get("Content-Range", "").rpartition("/")[2]
            if r.status_code == 206 and total.isdigit():
                return Probe(int(total))
            if r.status_code == 200 and r.headers.get("Content-Length", "").isdigit():
                return Probe(int(r.headers["Content-Length"]))
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as err:
        return Probe(None, _unreached(err, url))
    except requests.exceptions.RequestException:
        pass
    return Probe(None)


def remote_size(url: str, timeout: float = SIZE_TIMEOUT) -> int | None:
    """The size the server gives for `url`, or None when it does not say or cannot be reached."""
    return probe(url, timeout).size


@dataclass
class Size:
    """One file's size before a download, and where it came from."""
    bytes: int | None
    how: str
    """present (on disk) | lock (recorded at download) | declared | approx (an estimate) | server | unknown"""
    unreached: str | None = None
    """`host:port (why)` when the server was asked and could not be reached (an estimate is then kept)."""


def sizes(entries: list[Entry], root: Path, lock: Lock, base_url: str | None, ask: bool = True) -> list[Size]:
    """Each entry's size before a download: the file on disk, else the lock, else the declaration; an estimate or an
    unknown size is asked of the server (in parallel) when `ask`. One file of each host is asked first: a host that
    cannot be reached is not asked again for its other files."""
    out = []
    for e in entries:
        path = Path(root) / e.key
        if path.is_file():
            out.append(Size(path.stat().st_size, "present"))
        elif lock.size(e) is not None:
            out.append(Size(lock.size(e), "lock"))
        elif e.size is not None:
            out.append(Size(e.size, "approx" if e.approx else "declared"))
        else:
            out.append(Size(None, "unknown"))
    pending = [i for i, s in enumerate(out) if s.how in ("approx", "unknown")]
    if not (ask and pending):
        return out
    urls = {i: entries[i].source_url(base_url) for i in pending}
    first = {}
    for i in pending:
        first.setdefault(urlsplit(urls[i]).netloc, i)
    with ThreadPoolExecutor(max_workers=min(8, len(pending))) as pool:
        answers = dict(zip(first.values(), pool.map(lambda i: probe(urls[i]), first.values())))
        down = {host: answers[i].unreached for host, i in first.items() if answers[i].unreached}
        rest = [i for i in pending if i not in answers and urlsplit(urls[i]).netloc not in down]
        answers.update(zip(rest, pool.map(lambda i: probe(urls[i]), rest)))
    for i in pending:
        answer = answers.get(i) or Probe(None, down[urlsplit(urls[i]).netloc])
        if answer.size is not None:
            out[i] = Size(answer.size, "server")
        elif answer.unreached:
            out[i].unreached = answer.unreached
    return out


def existing_parent(path: Path) -> Path:
    """The nearest folder of `path` (itself or a parent) that exists: where a new folder's bytes would go."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_space(path: Path) -> int:
    """Free bytes on the file system `path` would be written to (its nearest existing parent)."""
    return shutil.disk_usage(existing_parent(path)).free
