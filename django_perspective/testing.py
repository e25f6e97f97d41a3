"""Test your own tables and policies the way this project tests its own.

Two ways in, both with perspective's own Python client, so a test sees exactly what a viewer
would:

- ``connect_in_process(user=...)``: the consumer in the test's process through Channels'
  ``WebsocketCommunicator``, on this process's engine and database. Fast; the user goes in
  the scope directly, so no login is needed. Needs database access
  (``pytest.mark.django_db(transaction=True)``: policy checks run on another thread).
- ``DaphneProcess``: a real daphne process serving the project's ASGI application on a free
  port, with ``login()`` to make a user and a session in the server's database and
  ``connect()`` to open perspective's client on it with that session's cookie.

See README "Testing your tables".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import perspective
from channels.testing import WebsocketCommunicator

from .consumers import PerspectiveConsumer
from .engine import Engine
from .tokens import make_token

if TYPE_CHECKING:
    from .client import Connection

WEBSOCKET_PATH = "/ws/perspective/"
MAX_MESSAGE = 256 * 1024 * 1024


class InProcessClient:
    """perspective's ``AsyncClient`` talking to a consumer through a ``WebsocketCommunicator``.

    ``client`` is the perspective client; ``sent`` every frame it sent and ``received``
    every frame it got, in order.
    """

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self.sent: list[bytes] = []
        self.received: list[bytes] = []
        self.client = perspective.AsyncClient(self._send)
        self._pump = asyncio.get_running_loop().create_task(self._read())

    async def _send(self, frame: bytes) -> None:
        self.sent.append(frame)
        await self.communicator.send_to(bytes_data=frame)

    async def _read(self) -> None:
        while True:
            message = await self.communicator.output_queue.get()
            if message["type"] != "websocket.send":
                return
            self.received.append(message["bytes"])
            await self.client.handle_response(message["bytes"])


@contextlib.asynccontextmanager
async def connect_in_process(
    *,
    user: Any = None,
    tables: list[str] | None = None,
    engine: Engine | None = None,
    application: Any = None,
    path: str = WEBSOCKET_PATH,
) -> AsyncIterator[InProcessClient]:
    """Connect to the consumer in this process, as ``user`` (anonymous when None).

    ``tables``: names a signed token grants (as ``{% perspective_viewer token=True %}``
    would). ``engine``: an engine of the test's own instead of this process's.
    ``application``: an ASGI app to connect to instead of ``PerspectiveConsumer`` (your
    subclass, or your whole router: then ``user`` only counts if no auth middleware
    replaces it).
    """
    if tables is not None:
        path += ("&" if "?" in path else "?") + "token=" + make_token(tables, user)
    app = application or PerspectiveConsumer.as_asgi(engine=engine)
    communicator = WebsocketCommunicator(app, path)
    if user is not None:
        communicator.scope["user"] = user
    accepted, code = await communicator.connect()
    if not accepted:
        raise ConnectionRefusedError(f"the consumer refused the connection (close code {code})")
    conn = InProcessClient(communicator)
    try:
        yield conn
    finally:
        conn._pump.cancel()
        await communicator.disconnect()


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Return once something listens on ``port``; raise if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def _asgi_target(settings_module: str, cwd: Path, env: dict[str, str]) -> str:
    """``module:attribute`` of ``ASGI_APPLICATION`` in the server's own settings."""
    result = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.ASGI_APPLICATION)"],
        cwd=cwd,
        env={**env, "DJANGO_SETTINGS_MODULE": settings_module},
        check=True,
        capture_output=True,
        text=True,
    )
    module, _, attribute = result.stdout.strip().rpartition(".")
    return f"{module}:{attribute}"


class DaphneProcess:
    """A daphne process serving the project's ASGI application on a free loopback port.

    It reads its own settings (``settings``, default: this process's
    ``DJANGO_SETTINGS_MODULE``) with ``env`` added to the environment: point its database
    at one it shares with the test, or make users through ``login()``, which runs in the
    server's environment. ``app`` defaults to the settings' ``ASGI_APPLICATION``.
    ``launcher`` is the module run with ``python -m``: daphne through this app's launch
    (``django_perspective.serve``), or ``"daphne"`` itself. Use it as a context manager, or
    ``start()`` and ``stop()``.
    """

    def __init__(
        self,
        log_path: Path | None = None,
        *,
        env: dict[str, str] | None = None,
        app: str | None = None,
        settings: str | None = None,
        max_message: int | None = MAX_MESSAGE,
        port: int | None = None,
        cwd: Path | None = None,
        unix_socket: Path | None = None,
        launcher: str = "django_perspective.serve",
    ) -> None:
        self.port = port or free_port()
        self.launcher = launcher
        self.unix_socket = unix_socket  # listen there too, as behind a proxy (``daphne -u``)
        self.log_path = log_path or Path(tempfile.mkdtemp(prefix="daphne-")) / "daphne.log"
        self.cwd = cwd or Path.cwd()
        self.settings = settings or os.environ["DJANGO_SETTINGS_MODULE"]
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": self.settings,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(self.cwd), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.app = app
        self.max_message = max_message
        self.proc: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{WEBSOCKET_PATH}"

    def start(self) -> DaphneProcess:
        app = self.app or _asgi_target(self.settings, self.cwd, self.env)
        cmd = [sys.executable, "-m", self.launcher, "-b", "127.0.0.1", "-p", str(self.port)]
        if self.max_message is not None:
            cmd += ["--websocket-max-message-size", str(self.max_message)]
        if self.unix_socket is not None:
            cmd += ["-u", str(self.unix_socket)]
        cmd.append(app)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.cwd, env=self.env, stdout=log, stderr=log)
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> DaphneProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def migrate(self) -> None:
        """Run ``migrate`` against the server's database."""
        migrate(self.env, settings=self.settings, cwd=self.cwd)

    def login(self, username: str, **options: Any) -> str:
        """Make ``username`` in the server's database and return a session key for it (see ``make_user``)."""
        return make_user(self.env, username, settings=self.settings, cwd=self.cwd, **options)

    def connect(
        self, *, session: str | None = None, token: str | None = None, cookie_name: str = "sessionid"
    ) -> contextlib.AbstractAsyncContextManager[Connection]:
        """Open perspective's client on the server, signed in with ``session`` (from ``login``).

        Over the ``websockets`` package (``pip install "django-perspective[testing]"``).
        """
        from .client import connect

        headers = {"Cookie": f"{cookie_name}={session}"} if session else None
        return connect(self.ws_url, token=token, headers=headers)


def migrate(env: dict[str, str], settings: str | None = None, cwd: Path | None = None) -> None:
    """Run ``manage.py migrate`` (from ``cwd``) with ``env`` and ``settings``."""
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v0"],
        cwd=cwd or Path.cwd(),
        env={**os.environ, **({"DJANGO_SETTINGS_MODULE": settings} if settings else {}), **env},
        check=True,
    )


def run_script(env: dict[str, str], script: str, settings: str | None = None, cwd: Path | None = None) -> str:
    """Run ``script`` after ``django.setup()`` in a subprocess with the server's settings; its last output line.

    So it reads and writes the server's database whatever the test's own settings say.
    """
    cwd = cwd or Path.cwd()
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + script],
        cwd=cwd,
        env={
            **os.environ,
            **({"DJANGO_SETTINGS_MODULE": settings} if settings else {}),
            "PYTHONPATH": str(cwd),
            **env,
        },
        check=True,
        capture_output=True,
        text=True,
    )
    lines = result.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def make_user(
    env: dict[str, str],
    username: str,
    *,
    staff: bool = False,
    superuser: bool = False,
    groups: tuple[str, ...] = (),
    password: str | None = None,
    settings: str | None = None,
    cwd: Path | None = None,
) -> str:
    """Create a user in the database ``settings`` and ``env`` point at; return a session key for it.

    Runs in a subprocess with the server's settings (``run_script``), so the user lands in
    the server's database whatever the test's own settings say. Send the key as the
    ``sessionid`` cookie, or sign in through the project's login page with ``password``.
    """
    script = f"""
from django.contrib.auth import get_user_model, SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY
from django.contrib.auth.models import Group
from django.contrib.sessions.backends.db import SessionStore
user, _ = get_user_model().objects.get_or_create(
    username={username!r}, defaults={{"is_staff": {staff or superuser!r}, "is_superuser": {superuser!r}}}
)
for name in {list(groups)!r}:
    user.groups.add(Group.objects.get_or_create(name=name)[0])
if {password!r} is not None:
    user.set_password({password!r})
    user.save()
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.save()
print(session.session_key)
"""
    return run_script(env, script, settings, cwd)
