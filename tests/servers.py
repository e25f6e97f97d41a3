"""Real server processes and perspective's own client over a real websocket, for e2e tests.

The helpers are the public ``django_perspective.testing`` ones; these wrappers only default
them to this repository: the example project's ASGI app, ``tests.settings``, run from the root.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from django_perspective import testing
from django_perspective.client import connect  # noqa: F401  (the tests' client is the product's)
from django_perspective.testing import MAX_MESSAGE, free_port, wait_for_port  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
APP = "example_project.asgi:application"
SETTINGS = "tests.settings"


def rss_kib(pid: int) -> int:
    """Resident memory of process ``pid``, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class DaphneProcess(testing.DaphneProcess):
    """A daphne process serving the example project (``tests.settings`` unless told otherwise)."""

    def __init__(self, log_path: Path, *, app: str = APP, settings: str = SETTINGS, **options: Any) -> None:
        super().__init__(log_path, app=app, settings=settings, cwd=ROOT, **options)


def migrate(env: dict[str, str], settings: str = SETTINGS) -> None:
    testing.migrate(env, settings=settings, cwd=ROOT)


def make_user(env: dict[str, str], username: str, *, settings: str = SETTINGS, **options: Any) -> str:
    """Create a user in the server's database and return a session cookie value for it."""
    return testing.make_user(env, username, settings=settings, cwd=ROOT, **options)


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``manage.py *args`` in a process of its own, on the database and media ``env`` names."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def django_script(env: dict[str, str], body: str, stdin: str = "") -> str:
    """Run ``body`` after ``django.setup()`` in a process of its own; its last line of output."""
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + body],
        input=stdin,
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
