"""A Python client for a django-perspective server: perspective's ``AsyncClient`` over
``websockets``, with the Origin header Channels' origin check wants and reconnection.

::

    async for conn in reconnecting("wss://example.com/ws/perspective/", origin="https://example.com"):
        table = await conn.client.open_table("ticks")
        view = await table.view()
        await view.on_update(on_update)
        await conn.wait_closed()      # then the loop reconnects, with backoff
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import perspective
import websockets

logger = logging.getLogger("django_perspective.client")


class Connection:
    """One websocket and the ``perspective.AsyncClient`` speaking over it."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.sent: list[bytes] = []
        self.client = perspective.AsyncClient(self._send)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _send(self, frame: bytes) -> None:
        self.sent.append(frame)
        await self.ws.send(frame)

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for message in self.ws:
                await self.client.handle_response(message)

    async def wait_closed(self) -> None:
        await self.ws.wait_closed()

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    async def close(self) -> None:
        self._reader.cancel()
        await self.ws.close()


def default_origin(url: str) -> str:
    """The Origin a browser on the same host would send (``AllowedHostsOriginValidator``)."""
    parts = urlsplit(url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return f"{scheme}://{parts.netloc}"


@contextlib.asynccontextmanager
async def connect(
    url: str,
    *,
    origin: str | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    open_timeout: float = 30,
    unix_socket: str | None = None,
) -> AsyncIterator[Connection]:
    """Connect once; replies of any size are accepted (``max_size=None``).

    ``unix_socket``: reach a server listening there (``daphne -u``); ``url`` still names
    the host and path the server sees.
    """
    if token:
        url += ("&" if "?" in url else "?") + f"token={token}"
    async with websockets.connect(
        url,
        max_size=None,
        origin=origin or default_origin(url),
        additional_headers=headers,
        open_timeout=open_timeout,
        **({"unix": True, "path": unix_socket} if unix_socket else {}),
    ) as ws:
        conn = Connection(ws)
        try:
            yield conn
        finally:
            conn._reader.cancel()


async def reconnecting(
    url: str,
    *,
    initial_delay: float = 0.25,
    max_delay: float = 10.0,
    **options: object,
) -> AsyncIterator[Connection]:
    """Yield a fresh connection each time one can be made, backing off between attempts.

    The caller re-opens its tables and views on each yielded connection; when its body
    returns (or the socket drops) the next attempt starts.
    """
    delay = initial_delay
    while True:
        try:
            async with connect(url, **options) as conn:  # type: ignore[arg-type]
                delay = initial_delay
                yield conn
        except (OSError, websockets.InvalidHandshake, websockets.ConnectionClosed, TimeoutError) as exc:
            logger.info("perspective connection to %s failed: %s", url, exc)
        await asyncio.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, max_delay)
