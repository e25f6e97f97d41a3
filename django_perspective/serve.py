"""Daphne with a shorter path for binary replies: ``python -m django_perspective.serve``.

It takes daphne's own command line (``daphne.cli``, every option) and runs daphne's own
``Server``; only the websocket protocol class differs, a subclass of daphne's that changes
two things on open, uncompressed connections:

- a binary message is framed here (RFC 6455: FIN, opcode 2, the length, no mask from a
  server) and handed to the socket at once when Twisted holds nothing unsent for it, instead
  of through autobahn's ``sendMessage`` (which copies the payload into the frame and formats
  its debug log arguments whether or not anything logs them) and a reactor turn for Twisted's
  deferred write. A large payload is written as it is: never copied on its way out;
- a read that is exactly one whole masked binary frame (the usual request) is unmasked
  and handed to daphne's ``onMessage`` here; autobahn's frame parser, in Python, and its
  ``dataReceived``, which formats debug log arguments for every read, see everything else.

Everything else - the handshake, frame parsing and masking, pings, close, limits, TLS
endpoints (which keep autobahn's whole path) - is daphne's and autobahn's. The consumer finds the
protocol behind daphne's ``send`` (``backpressure.server_protocol``) and calls
``send_binary`` directly when it is there.
"""

from __future__ import annotations

import sys
from typing import Any

from daphne import cli, server, ws_protocol
from twisted.internet import tcp

from . import websocket

class WebSocketProtocol(ws_protocol.WebSocketProtocol):
    """Daphne's websocket protocol with a direct path for binary messages."""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802  (autobahn's interface)
        if not self._one_binary_frame(data):
            self._dataReceived(data)

    def _one_binary_frame(self, data: bytes) -> bool:
        """Deliver ``data`` if it is exactly one whole, final, masked binary frame; False if not.

        The usual request: one frame per read. Anything else - a partial or second frame,
        a control or text frame, reserved bits, a length not minimally encoded, a frame
        over the size limits, bytes autobahn holds already, a fragmented message under way,
        compression - goes to autobahn, which parses (and refuses) it by the RFC.
        """
        if (
            self.state != self.STATE_OPEN
            or self.data
            or self.current_frame is not None
            or self.inside_message
            or self._perMessageCompress is not None
        ):
            return False
        payload = websocket.one_binary_frame(data, self.maxFramePayloadSize, self.maxMessagePayloadSize)
        if payload is None:
            return False
        self.onMessage(payload, True)
        return True

    def sendMessage(self, payload: bytes, isBinary: bool = False, fragmentSize: int | None = None,  # noqa: N802,N803
                    sync: bool = False, doNotCompress: bool = False) -> None:
        if isBinary and fragmentSize is None and not sync and self.send_binary(payload):
            return
        super().sendMessage(payload, isBinary, fragmentSize, sync, doNotCompress)

    def send_binary(self, payload: bytes) -> bool:
        """Send ``payload`` as one binary message if the direct path applies; False if not.

        It applies while the connection is open, with no compression, fragmentation or
        queued frames of autobahn's, over TCP or a unix socket (not TLS), within the message size limit;
        otherwise the caller goes through ``sendMessage`` as usual.
        """
        if (
            self.state != self.STATE_OPEN
            or self._perMessageCompress is not None
            or self.send_state != self.SEND_STATE_GROUND
            or self.send_queue
            or self.autoFragmentSize
            or 0 < self.maxMessagePayloadSize < len(payload)
            or not isinstance(self.transport, tcp.Connection)  # TCP or a unix socket; TLS is not
        ):
            return False
        transport = self.transport
        if not transport.connected or transport.disconnecting:
            return True  # gone: autobahn drops such a send too
        header = websocket.frame_header(len(payload))
        if transport.dataBuffer or transport._tempDataBuffer:
            # Twisted holds bytes not yet sent: append behind them, in order.
            transport.write(header)
            transport.write(payload)
            return True
        small = len(payload) <= websocket.COALESCE_BYTES
        data = header + payload if small else header
        try:
            sent = transport.socket.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return True  # the connection is breaking; Twisted's read side will see it
        if sent < len(data):
            transport.write(data[sent:])
        if not small:
            transport.write(payload)  # one bytes object: Twisted sends it in slices, uncopied
        return True


class Server(server.Server):
    """Daphne's server, its websocket connections served by ``WebSocketProtocol`` above."""

    def run(self) -> None:
        from twisted.internet import reactor

        # The factory is made inside run(), before the reactor starts accepting connections.
        reactor.callWhenRunning(self._use_protocol)
        super().run()

    def _use_protocol(self) -> None:
        self.ws_factory.protocol = WebSocketProtocol


class CommandLineInterface(cli.CommandLineInterface):
    server_class = Server


def main(argv: list[str] | None = None) -> None:
    CommandLineInterface().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
