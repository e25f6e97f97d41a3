"""Let a connection know when its client has stopped reading, so replies wait with us.

Daphne's ``send`` never waits: it writes into Twisted's transport buffer, which grows
without bound when a client stops reading its socket. Twisted pauses a registered push
producer once that buffer passes its high-water mark (64 KiB) and resumes it when the
socket has drained; a ``Gate`` is such a producer, registered on the connection behind
daphne's ``send`` with Twisted's public ``registerProducer``. While it is shut, responses
stay in the consumer's outbox, where ``MAX_OUTBOX_BYTES`` bounds them. Servers whose
``send`` itself waits for the socket (uvicorn) need no gate.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any


class Gate:
    """Open while the transport accepts more bytes (Twisted ``IPushProducer``)."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()

    def pauseProducing(self) -> None:  # noqa: N802  (Twisted's interface)
        self.open.clear()

    def resumeProducing(self) -> None:  # noqa: N802
        self.open.set()

    def stopProducing(self) -> None:  # noqa: N802  (connection lost: let the writer finish)
        self.open.set()


def daphne_protocol(send: Any) -> Any:
    """The autobahn protocol behind daphne's ``send``: ``partial(server.handle_reply, protocol)``,
    possibly wrapped by Channels' session middleware (``InstanceSessionWrapper.real_send``)."""
    for _ in range(8):
        if isinstance(send, functools.partial):
            return send.args[0] if send.args else None
        send = getattr(getattr(send, "__self__", None), "real_send", None)
        if send is None:
            return None
    return None


def gate_for(send: Any) -> Gate | None:
    """A gate on daphne's transport behind ``send``, or None under other servers."""
    transport = getattr(daphne_protocol(send), "transport", None)
    if transport is None:
        return None
    # After the upgrade, Twisted's HTTPChannel is still the transport's producer and passes
    # pause/resume on to a producer registered with it; register there, else on the transport.
    consumer = getattr(transport, "producer", None)
    if not hasattr(consumer, "registerProducer"):
        consumer = transport
    gate = Gate()
    try:
        consumer.registerProducer(gate, True)
    except RuntimeError:  # another producer already feeds this connection
        return None
    return gate
