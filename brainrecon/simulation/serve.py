"""A loopback HTTP file server for `fetch-data --base-url`: serves a folder's files (or bytes in memory) by their last
path segment, as the release's download URLs name them, with HEAD (Content-Length), Range requests (206), redirects
(`/redirect/<name>` answers 302 to `/v1/<name>`) and, for fault tests, deliberate truncation, delay, sizes left unsaid
and HEAD refused. Binds 127.0.0.1 only."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class FileServer:
    """`FileServer(folder_or_dict)`; `.url` is the base URL (`http://127.0.0.1:<port>/v1`), `.root` the server's;
    `.shutdown()` stops it. `.requests` lists (name, Range header, method) of every request; each GET waits `.delay`
    seconds; names in `.truncate` are cut in half, names in `.hide_size` are sent without their size (no
    Content-Length), names in `.no_head` are refused HEAD (405)."""

    def __init__(self, files: Path | dict[str, bytes | Path], port: int = 0):
        if isinstance(files, (str, Path)):
            files = {p.name: p for p in sorted(Path(files).iterdir()) if p.is_file()}
        self.files = dict(files)
        self.truncate: set[str] = set()
        self.hide_size: set[str] = set()
        self.no_head: set[str] = set()
        self.requests: list[tuple[str, str | None, str]] = []
        self.delay = 0.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _body(self) -> bytes | None:
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append((name, self.headers.get("Range"), self.command))
                if self.path.startswith("/redirect/"):
                    self.send_response(302)
                    self.send_header("Location", f"/v1/{name}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                item = server.files.get(name)
                if item is None or (self.command == "HEAD" and name in server.no_head):
                    self.send_error(404 if item is None else 405)
                    return None
                return item if isinstance(item, bytes) else Path(item).read_bytes()

            def _size(self, name: str, size: int) -> None:
                if name not in server.hide_size:
                    self.send_header("Content-Length", str(size))

            def do_HEAD(self):
                data = self._body()
                if data is not None:
                    self.send_response(200)
                    self._size(self.path.rsplit("/", 1)[-1], len(data))
                    self.send_header("Accept-Ranges", "bytes")
                    self.end_headers()

            def do_GET(self):
                time.sleep(server.delay)
                data = self._body()
                if data is None:
                    return
                name = self.path.rsplit("/", 1)[-1]
                rng = self.headers.get("Range")
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= len(data) and start:
                    self.send_response(416)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = data[start:]
                self.send_response(206 if start else 200)
                self._size(name, len(body))
                self.end_headers()
                if name in server.truncate:
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.root = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"{self.root}/v1"
        # a short poll: shutdown() waits for the next one (the default 0.5 s adds up over a test pass)
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def downloads(self, name: str) -> int:
        """Whole-file GETs of `name` (not the one-byte size probes)."""
        return sum(1 for n, rng, method in self.requests if n == name and method == "GET" and rng != "bytes=0-0")

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
