"""Let a connection know when its client has stopped reading, so replies wait with us.

Daphne's ``send`` never waits: it writes into Twisted's transport buffer, which grows
without bound when a client stops reading its socket. Twisted pauses a registered push
producer once that buffer passes its high-water mark (64 KiB) and resumes it when the
socket has drained; a ``Gate`` is such a producer, registered on the connection behind
daphne's ``send`` with Twisted's public ``registerProducer``. While it is shut, responses
stay in the consumer's outbox, where ``MAX_OUTBOX_BYTES`` bounds them. Uvicorn's ``send``
waits for the socket itself, on its protocol's ``writable`` event; a direct send past it
(``uvicorn_ws.py``) waits on the same event, as this module's gate.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any


class Gate:
    """Open while the transport accepts more bytes (Twisted ``IPushProducer``)."""

    def __init__(self, event: asyncio.Event | None = None) -> None:
        self.open = event if event is not None else asyncio.Event()
        if event is None:
            self.open.set()

    def pauseProducing(self) -> None:  # noqa: N802  (Twisted's interface)
        self.open.clear()

    def resumeProducing(self) -> None:  # noqa: N802
        self.open.set()

    def stopProducing(self) -> None:  # noqa: N802  (connection lost: let the writer finish)
        self.open.set()


def server_protocol(send: Any) -> Any:
    """The server's protocol object behind ASGI ``send``, through Channels' session
    middleware (``InstanceSessionWrapper.real_send``): daphne's autobahn protocol
    (``send`` is ``partial(server.handle_reply, protocol)``) or uvicorn's websocket protocol
    (``send`` is its bound method); None if neither."""
    for _ in range(8):
        if isinstance(send, functools.partial):
            return send.args[0] if send.args else None
        owner = getattr(send, "__self__", None)
        inner = getattr(owner, "real_send", None)
        if inner is None:
            return owner
        send = inner
    return None


def gate_for(send: Any) -> Gate | None:
    """A gate on the transport behind ``send``: Twisted's (daphne) or uvicorn's ``writable``."""
    protocol = server_protocol(send)
    writable = getattr(protocol, "writable", None)
    if isinstance(writable, asyncio.Event):
        return Gate(writable)
    transport = getattr(protocol, "transport", None)
    if transport is None:
        return None
    # After the upgrade, Twisted's HTTPChannel is still the transport's producer and passes
    # pause/resume on to a producer registered with it; register there, else on the transport.
    consumer = getattr(transport, "producer", None)
    if not hasattr(consumer, "registerProducer"):
        consumer = transport
    if not hasattr(consumer, "registerProducer"):  # not Twisted
        return None
    gate = Gate()
    try:
        consumer.registerProducer(gate, True)
    except RuntimeError:  # another producer already feeds this connection
        return None
    return gate
