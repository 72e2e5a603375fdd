"""scripts/generate_anomaly.py against a local HTTP server standing in for an ALB."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
SCRIPT = [sys.executable, str(Path(__file__).resolve().parents[2] / "scripts" / "generate_anomaly.py")]


class Handler(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        Handler.seen.append(self.path)
        status = 500 if self.path == "/boom" else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def alb() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Handler.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_it_sends_the_load_and_reports_what_came_back(alb) -> None:
    done = subprocess.run([*SCRIPT, alb, "--requests", "60", "--concurrency", "4", "--path", "/",
                           "--path", "/boom"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "requests: 60 in" in done.stdout
    responses = next(line for line in done.stdout.splitlines() if line.startswith("responses: "))
    counts = dict(part.split() for part in responses.removeprefix("responses: ").split(", "))
    assert set(counts) == {"2xx", "5xx"} and sum(map(int, counts.values())) == 60
    assert "errors: none" in done.stdout
    assert sorted(set(Handler.seen)) == ["/", "/boom"] and len(Handler.seen) == 60


def test_an_address_that_does_not_answer_exits_1() -> None:
    done = subprocess.run([*SCRIPT, "http://127.0.0.1:9", "--requests", "3", "--concurrency", "1",
                           "--timeout", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "errors: ConnectError 3" in done.stdout


def test_a_bad_address_is_a_usage_error() -> None:
    done = subprocess.run([*SCRIPT, "my-alb"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "is not an http(s) address" in done.stderr
