"""ZeroGPU's start-up check, as a Space runs it: `spaces` (pinned in requirements-dev.txt) in ZeroGPU mode, its
device API played by a local server that answers 200 and records every request. A Space whose process never sends
`POST /startup-report` is stopped ("No @spaces.GPU function detected during startup")."""

from __future__ import annotations

import ast
import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from helpers import ROOT, local_client, start_app

from food101_core.bundle import load_bundle


class DeviceAPI(BaseHTTPRequestHandler):
    """Answers 200 with `{}` to anything, and records (method, path)."""

    seen: ClassVar[list[tuple[str, str]]] = []

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.command, self.path))
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def device_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), DeviceAPI)
    DeviceAPI.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", DeviceAPI.seen
    server.shutdown()


def test_zerogpu_gets_its_start_up_report_and_the_app_answers(tiny_bundle, device_api):
    from gradio_client import handle_file

    pytest.importorskip("spaces")
    url_api, seen = device_api
    env = {"SPACES_ZERO_GPU": "true", "SPACES_ZERO_DEVICE_API_URL": url_api, "PYTHONUNBUFFERED": "1"}
    proc, url = start_app(["--run", str(tiny_bundle)], env=env)
    try:
        assert ("POST", "/startup-report") in seen  # sent inside launch(), before the app answered
        b = load_bundle(tiny_bundle)
        label, verdict, _ = local_client(url).predict(
            handle_file(str(b.original_image(1))), False, "stage3", api_name="/predict"
        )
        assert label["label"] in b.class_names and "predicted in" in verdict
        assert [s for s in seen if s[1].startswith("/schedule")] == []  # no GPU slot asked for a prediction
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_without_zerogpu_nothing_is_reported(tiny_bundle, device_api):
    url_api, seen = device_api
    proc, url = start_app(["--run", str(tiny_bundle)], env={"SPACES_ZERO_DEVICE_API_URL": url_api})
    try:
        assert json.loads(urllib.request.urlopen(url + "config", timeout=10).read())
        assert seen == []
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def gpu_decorators() -> list[str]:
    """Every `@spaces.GPU` (called or not) in the app's code."""
    found = []
    for path in [ROOT / "app.py", *(ROOT / "food101_core").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            for d in getattr(node, "decorator_list", []):
                target = d.func if isinstance(d, ast.Call) else d
                if isinstance(target, ast.Attribute) and target.attr == "GPU":
                    found.append(f"{path.relative_to(ROOT)}:{node.name}")
    return found


def test_exactly_one_gpu_function_and_spaces_comes_first():
    assert gpu_decorators() == ["food101_core/app/zerogpu.py:accelerator"]
    first = next(n for n in ast.parse((ROOT / "app.py").read_text()).body if isinstance(n, ast.Try | ast.Import))
    assert isinstance(first, ast.Try) and first.body[0].names[0].name == "spaces"
    readme = (ROOT / "README.md").read_text().split("---")[1]
    assert 'python_version: "3.12"' in readme or 'python_version: "3.10"' in readme  # what ZeroGPU runs
