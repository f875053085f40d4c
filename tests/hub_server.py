"""A stand-in for the Hugging Face Hub's file endpoint, to test the Hub path offline: it serves a folder as one model
repo at one commit (`HF_ENDPOINT=http://127.0.0.1:PORT`) and records every file it sends.

Only what `hf_hub_download` asks of the Hub: `HEAD` and `GET /{owner}/{name}/resolve/{revision}/{path}`, answered
with the headers the real Hub sends (`X-Repo-Commit`, `ETag`, `Content-Length`).
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class HubServer:
    """`with HubServer(folder, "owner/name") as hub:` serves `folder`; `hub.sent` lists (path, bytes) per GET."""

    def __init__(self, folder: Path, repo_id: str):
        self.folder, self.repo_id = Path(folder), repo_id
        self.sent: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> HubServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def files(self) -> list[str]:
        with self._lock:
            return [p for p, _ in self.sent]

    def bytes_sent(self) -> int:
        with self._lock:
            return sum(n for _, n in self.sent)

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _file(self) -> tuple[str, Path] | None:
                prefix = f"/{hub.repo_id}/resolve/"
                path = unquote(self.path.split("?")[0])
                if not path.startswith(prefix):
                    return None
                rel = path[len(prefix) :].split("/", 1)[1]  # after the revision
                target = (hub.folder / rel).resolve()
                if hub.folder.resolve() not in target.parents or not target.is_file():
                    return None
                return rel, target

            def _headers(self, target: Path) -> None:
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(target.read_bytes()).hexdigest()}"')
                self.send_header("Content-Length", str(target.stat().st_size))
                self.end_headers()

            def do_HEAD(self) -> None:
                found = self._file()
                if found is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self._headers(found[1])

            def do_GET(self) -> None:
                found = self._file()
                if found is None:
                    self.send_error(404)
                    return
                rel, target = found
                data = target.read_bytes()
                self.send_response(200)
                self._headers(target)
                self.wfile.write(data)
                with hub._lock:
                    hub.sent.append((rel, len(data)))

            def log_message(self, *args) -> None:
                pass

        return Handler
