"""The servers under test, each a subprocess on a free loopback port, all hosting the same tables."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import ROOT, free_port, wait_for_port

MAX_MESSAGE = 1024 * 1024 * 1024
OURS_WS = "/ws/perspective/"
ASGI_APP = "example_project.asgi:application"


@dataclass
class ServerProcess:
    """One server under test: how to start it and where its websocket lives."""

    key: str
    label: str
    ws_path: str
    argv: list[str]
    rows: int
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.ws_path}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, log_dir: Path) -> None:
        env = {
            **os.environ,
            "DJANGO_SQLITE_PATH": str(log_dir / "bench.sqlite3"),
            "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
            "BENCH_ROWS": str(self.rows),
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
        argv = [a.format(port=self.port, rows=self.rows) for a in self.argv]
        with open(log_dir / f"{self.key}.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *argv], cwd=ROOT, env=env, stdout=log, stderr=log
            )
        wait_for_port(self.port, timeout=300, proc=self.proc)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)


UVICORN_OPTIONS = ["--host", "127.0.0.1", "--port", "{port}", "--lifespan", "off", "--no-access-log",
                   "--log-level", "warning", "--ws-per-message-deflate", "false"]


def servers(rows: int) -> list[ServerProcess]:
    """(a) Perspective's Tornado handler, (b) our consumer under daphne, (c) under uvicorn."""
    size = str(MAX_MESSAGE)
    return [
        ServerProcess(
            "tornado",
            "Perspective Tornado handler",
            "/websocket",
            ["-m", "benchmarks.tornado_server", "--port", "{port}", "--rows", "{rows}"],
            rows,
        ),
        ServerProcess(
            "daphne",
            "django-perspective on daphne (python -m django_perspective.serve)",
            OURS_WS,
            ["-m", "django_perspective.serve", "-b", "127.0.0.1", "-p", "{port}",
             "--websocket-max-message-size", size, ASGI_APP],
            rows,
        ),
        ServerProcess(
            "daphne-stock",
            "django-perspective on daphne's own command",
            OURS_WS,
            ["-m", "daphne", "-b", "127.0.0.1", "-p", "{port}",
             "--websocket-max-message-size", size, ASGI_APP],
            rows,
        ),
        ServerProcess(
            "uvicorn",
            "django-perspective on uvicorn (python -m django_perspective.uvicorn_ws)",
            OURS_WS,
            # uvicorn accepts permessage-deflate by default: it made bulk replies 3.1x slower.
            ["-m", "django_perspective.uvicorn_ws", *UVICORN_OPTIONS, "--ws-max-size", size, ASGI_APP],
            rows,
        ),
        ServerProcess(
            "uvicorn-stock",
            "django-perspective on uvicorn's own command",
            OURS_WS,
            ["-m", "uvicorn", *UVICORN_OPTIONS, "--ws-max-size", size, ASGI_APP],
            rows,
        ),
    ]
