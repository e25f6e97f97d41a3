"""Real server processes and perspective's own client over a real websocket, for e2e tests.

The helpers are the public ``django_perspective.testing`` ones; these wrappers only default
them to this repository: the example project's ASGI app, ``tests.settings``, run from the root.
"""

from __future__ import annotations

import os
import subprocess
import sys
import html
import re
import urllib.error
import urllib.parse
import urllib.request
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from django_perspective import testing
from django_perspective.client import connect  # noqa: F401  (the tests' client is the product's)
from django_perspective.testing import MAX_MESSAGE, free_port, wait_for_port  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
APP = "example_project.asgi:application"
SETTINGS = "tests.settings"
# The ways to run daphne a test compares: this app's launch of it, and daphne's own command.
LAUNCHERS = ["django_perspective.serve", "daphne"]


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


class UvicornProcess(DaphneProcess):
    """The same app under uvicorn: through this app's protocol (``launcher`` is
    ``django_perspective.uvicorn_ws``, the default) or ``"uvicorn"`` itself."""

    def __init__(self, log_path: Path, *, launcher: str = "django_perspective.uvicorn_ws", **options: Any) -> None:
        super().__init__(log_path, launcher=launcher, **options)

    def start(self) -> UvicornProcess:
        app = self.app or testing._asgi_target(self.settings, self.cwd, self.env)
        # uvicorn accepts permessage-deflate unless told not to; daphne and Tornado decline it.
        cmd = [sys.executable, "-m", self.launcher, "--host", "127.0.0.1", "--port", str(self.port),
               "--lifespan", "off", "--log-level", "warning", "--ws-per-message-deflate", "false"]
        if self.max_message is not None:
            cmd += ["--ws-max-size", str(self.max_message)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([*cmd, app], cwd=self.cwd, env=self.env, stdout=log, stderr=log)
        wait_for_port(self.port, proc=self.proc)
        return self


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


def run_django(env: dict[str, str], script: str, settings: str = SETTINGS) -> str:
    """Run ``script`` against the server's database (after ``django.setup()``); its last output line."""
    return testing.run_script(env, script, settings, ROOT)


class AdminBrowser:
    """Just enough of a browser to run admin actions: cookies kept, CSRF token sent."""

    def __init__(self, base_url: str, session_key: str) -> None:
        self.base_url = base_url
        self.cookies: dict[str, str] = {"sessionid": session_key}

    def _open(self, path: str, data: dict[str, str] | None = None) -> tuple[int, str, str]:
        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base_url + path, data=body)
        request.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        try:
            response = urllib.request.build_opener(NoRedirect).open(request, timeout=120)
        except urllib.error.HTTPError as exc:  # the 302 after a POST
            response = exc
        for header in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return response.status, response.read().decode(), response.headers.get("Location", "")

    def action(self, action: str, pk: int, changelist: str = "/admin/django_perspective/publishedtable/") -> list[str]:
        """Run ``action`` on row ``pk`` from the changelist; the messages the admin shows after."""
        status, page, _ = self._open(changelist)
        assert status == 200, page[:500]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = {"csrfmiddlewaretoken": token, "action": action, "_selected_action": str(pk), "index": "0", "select_across": "0"}
        status, page, location = self._open(changelist, form)
        assert status == 302, page[:500]
        status, page, _ = self._open(location or changelist)
        return [html.unescape(m) for m in re.findall(r'<li class="(?:success|warning|error)">(.*?)</li>', page, re.S)]
