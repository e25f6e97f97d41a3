"""Uvicorn with a shorter path for binary messages: ``python -m django_perspective.uvicorn_ws``.

It runs uvicorn's own command line (every option) with ``--ws`` set to the protocol class
below, a subclass of uvicorn's default websocket protocol (``websockets-sansio``), so
``uvicorn --ws django_perspective.uvicorn_ws:WebSocketProtocol`` is the same thing. On
open, uncompressed connections it changes two things:

- a read that is exactly one whole masked binary frame (the usual request), arriving while
  the websockets parser waits at a frame boundary, is unmasked here and queued for the
  application as uvicorn queues it, instead of going through the parser's generators;
- a binary reply is framed here and written to the transport as it is (a large payload is
  never copied), instead of through ``Frame.serialize`` and a join.

Everything else - the handshake, other frames, pings and keepalive, close, limits, flow
control (the consumer waits on ``writable`` before each direct send, as uvicorn's ``send``
does) - is uvicorn's and websockets'. The consumer finds this protocol behind uvicorn's
``send`` (``backpressure.server_protocol``) and calls ``send_binary`` directly.
"""

from __future__ import annotations

import sys

from uvicorn.main import main as uvicorn_main
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State
from websockets.streams import StreamReader

from . import websocket

PROTOCOL = "django_perspective.uvicorn_ws:WebSocketProtocol"
_AT_EOF = StreamReader.at_eof.__code__


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """Uvicorn's websocket protocol with a direct path for binary messages."""

    def data_received(self, data: bytes) -> None:
        if not self._one_binary_frame(data):
            super().data_received(data)

    def _at_frame_boundary(self) -> bool:
        """True when websockets holds no bytes and its parser waits for a new frame."""
        conn = self.conn
        if conn.state is not State.OPEN or conn.reader.buffer or conn.expect_continuation_frame:
            return False
        waiting = conn.parser
        while waiting.gi_yieldfrom is not None:
            waiting = waiting.gi_yieldfrom
        return waiting.gi_code is _AT_EOF

    def _one_binary_frame(self, data: bytes) -> bool:
        """Queue ``data``'s message if it is exactly one whole, final, masked binary frame."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.initial_response is not None
            or self.conn.extensions
            or not self._at_frame_boundary()
        ):
            return False
        conn = self.conn
        payload = websocket.one_binary_frame(data, conn.max_message_size or 0, conn.max_fragment_size or 0)
        if payload is None:
            return False
        self.queue.put_nowait({"type": "websocket.receive", "bytes": payload})
        if not self.read_paused:  # as uvicorn does: read on once the application has taken it
            self.read_paused = True
            self.transport.pause_reading()
        return True

    def send_binary(self, payload: bytes) -> bool:
        """Send ``payload`` as one binary message if the direct path applies; False if not.

        The caller has waited on ``writable``. It applies while the connection is open, with
        no extension, no close sent and nothing of websockets' own waiting to be written.
        """
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or self.conn.state is not State.OPEN
            or self.conn.extensions
            or self.conn.writes
        ):
            return False
        transport = self.transport
        if transport.is_closing():
            return True  # gone: uvicorn's own send would raise ClientDisconnected
        header = websocket.frame_header(len(payload))
        if len(payload) <= websocket.COALESCE_BYTES:
            transport.write(header + payload)
        else:
            transport.write(header)
            transport.write(payload)
        return True


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    uvicorn_main.main(args=["--ws", PROTOCOL, *args], prog_name="python -m django_perspective.uvicorn_ws")


if __name__ == "__main__":
    main()
