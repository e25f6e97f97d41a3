"""Real server processes and perspective's own client over a real websocket, for e2e tests.

The helpers are the public ``django_perspective.testing`` ones; these wrappers only default
them to this repository: the example project's ASGI app, ``tests.settings``, run from the root.
"""

from __future__ import annotations

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
