"""Pytest plugin: run Perspective's own client tests against a server over a websocket.

Perspective's table tests make their clients with ``perspective.Server().new_local_client()``,
mostly at import time. Loaded with ``-p tests.perspective_remote`` and
``PERSPECTIVE_REMOTE_URL`` set, this plugin replaces ``perspective.Server`` before any test
module is imported, so every such client is perspective's own synchronous ``Client``
speaking the wire protocol over a websocket of its own to that URL. It runs in a pytest
subprocess (``tests/test_perspective_suite.py``): the suite patches ``json`` and ``TZ``
process-wide and keeps module-level clients, which must not leak into our own tests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import deque
from typing import Any

import perspective
import websockets

from django_perspective import protocol
from django_perspective.client import default_origin

logger = logging.getLogger("tests.perspective_remote")

URL = os.environ.get("PERSPECTIVE_REMOTE_URL", "")


class _Loop:
    """One event loop on a daemon thread carrying every client's websocket."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="remote-clients", daemon=True).start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)


_loop: _Loop | None = None


class _Dispatcher:
    """Hands one connection's responses to its client in order, off the event loop.

    In-process, Perspective runs a callback (``on_update``...) inside the call that caused
    it, so the call returns after the callback did - and the suite's callbacks make
    blocking calls of their own. Here one thread delivers responses in order; when a
    callback sends a request, a helper delivers just the replies to the callback's own
    requests until it returns, and everything else waits for it, as in-process.
    """

    def __init__(self) -> None:
        self.client: perspective.Client | None = None
        self._cond = threading.Condition()
        self._inbox: deque[bytes] = deque()
        self._nested: set[int] = set()  # msg_ids of requests sent from inside a callback
        self._helping = False
        self._thread = threading.Thread(target=self._run, name="remote-dispatch", daemon=True)
        self._thread.start()

    def put(self, message: bytes) -> None:
        with self._cond:
            self._inbox.append(message)
            self._cond.notify_all()

    def sending(self, frame: bytes) -> None:
        if threading.current_thread() is not self._thread:
            return
        msg_id = protocol.parse_envelope(frame).msg_id
        with self._cond:
            self._nested.add(msg_id)
            if not self._helping:
                self._helping = True
                threading.Thread(target=self._help, name="remote-callback-replies", daemon=True).start()
            self._cond.notify_all()

    def _deliver(self, message: bytes) -> None:
        assert self.client is not None
        self.client.handle_response(message)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._inbox:
                    self._cond.wait()
                message = self._inbox.popleft()
            self._deliver(message)
            with self._cond:
                self._helping = False
                self._nested.clear()
                self._cond.notify_all()

    def _take_nested(self) -> bytes | None:
        for message in self._inbox:
            if protocol.parse_response(message).msg_id in self._nested:
                self._inbox.remove(message)
                return message
        return None

    def _help(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._helping:
                        return
                    message = self._take_nested()
                    if message is not None:
                        break
                    self._cond.wait()
            self._deliver(message)


def remote_client(url: str) -> perspective.Client:
    """A synchronous Perspective client on its own websocket to ``url``."""
    global _loop
    if _loop is None:
        _loop = _Loop()
    loop = _loop

    async def open_socket() -> websockets.ClientConnection:
        return await websockets.connect(url, max_size=None, origin=default_origin(url), open_timeout=30)

    ws = loop.run(open_socket())
    dispatcher = _Dispatcher()

    def send(frame: bytes) -> None:
        dispatcher.sending(bytes(frame))
        # Scheduled in order on one loop: frames leave in the order the client made them.
        asyncio.run_coroutine_threadsafe(ws.send(bytes(frame)), loop.loop)

    client = dispatcher.client = perspective.Client(send)

    async def pump() -> None:
        try:
            async for message in ws:
                dispatcher.put(message)
        except websockets.ConnectionClosed as exc:
            logger.warning("remote connection closed: %s", exc)

    asyncio.run_coroutine_threadsafe(pump(), loop.loop)
    return client


class RemoteServer:
    """Stands in for ``perspective.Server``: each client is a new connection to ``URL``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def new_local_client(self) -> perspective.Client:
        return remote_client(URL)


if URL:
    perspective.Server = RemoteServer  # type: ignore[misc]
