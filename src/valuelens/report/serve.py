"""``valuelens view DIR``: the report and the run's result files over HTTP on 127.0.0.1.

The report is rendered from the tables on every request for ``/``, so a run
still in progress shows what has finished so far, and nothing is written to
DIR (read-only media work). Only ``/``, ``/report.html``, ``/run.json`` and
files under ``results/`` are served; anything else, including paths that
leave DIR, is a 404. Decision: the stdlib server bound to the loopback
address only — the report may hold a model's raw answers, and there is no
authentication to put in front of it.
"""

from __future__ import annotations

import mimetypes
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .load import report_data
from .render import render

HOST = "127.0.0.1"
_TYPES = {".parquet": "application/vnd.apache.parquet", ".csv": "text/csv; charset=utf-8",
          ".json": "application/json; charset=utf-8", ".html": "text/html; charset=utf-8"}


def _content_type(path: Path) -> str:
    return _TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def resolve(out_dir: Path, url_path: str) -> Path | None:
    """The file a request path names inside ``out_dir``, or None when it is not one that is served."""
    rel = unquote(urlsplit(url_path).path).lstrip("/")
    if rel == "run.json":
        cand = out_dir / "run.json"
    elif rel.startswith("results/"):
        cand = out_dir / rel
    else:
        return None
    root = (out_dir / ("results" if rel.startswith("results/") else "")).resolve()
    try:
        real = cand.resolve()
    except (OSError, RuntimeError):
        return None
    if real != root and root not in real.parents:
        return None
    return real if real.is_file() else None


def make_server(out_dir: Path, port: int = 0) -> ThreadingHTTPServer:
    """A server for ``out_dir`` on 127.0.0.1 (``port`` 0: a free one; see ``server.server_port``)."""
    out_dir = Path(out_dir)
    report_data(out_dir)  # a directory that is no run fails here, with the report's own one-line error

    class Handler(BaseHTTPRequestHandler):
        server_version = "valuelens-view"

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
            pass  # the terminal shows the URL, not one line per request

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            path = urlsplit(self.path).path
            if path in ("/", "/report.html"):
                try:
                    body = render(report_data(out_dir)).encode("utf-8")
                except Exception as e:  # noqa: BLE001 - one line in the browser, the server goes on
                    first = str(e).splitlines()[0] if str(e) else type(e).__name__
                    self._send(HTTPStatus.INTERNAL_SERVER_ERROR, f"report failed: {first}\n".encode(),
                               "text/plain; charset=utf-8")
                    return
                self._send(HTTPStatus.OK, body, _TYPES[".html"])
                return
            file = resolve(out_dir, self.path)
            if file is None:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
                return
            self._send(HTTPStatus.OK, file.read_bytes(), _content_type(file))

        do_HEAD = do_GET

    return ThreadingHTTPServer((HOST, port), Handler)
