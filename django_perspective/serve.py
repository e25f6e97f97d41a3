"""Daphne with a shorter path for binary replies: ``python -m django_perspective.serve``.

It takes daphne's own command line (``daphne.cli``, every option) and runs daphne's own
``Server``; only the websocket protocol class differs, a subclass of daphne's that changes
two things on open, uncompressed connections:

- a binary message is framed here (RFC 6455: FIN, opcode 2, the length, no mask from a
  server) and handed to the socket at once when Twisted holds nothing unsent for it, instead
  of through autobahn's ``sendMessage`` (which copies the payload into the frame and formats
  its debug log arguments whether or not anything logs them) and a reactor turn for Twisted's
  deferred write. A large payload is written as it is: never copied on its way out;
- autobahn's ``dataReceived`` formats debug log arguments for every chunk read; here it
  does not.

Everything else - the handshake, frame parsing and masking, pings, close, limits, TLS
endpoints (which keep autobahn's path) - is daphne's and autobahn's. The consumer finds the
protocol behind daphne's ``send`` (``backpressure.daphne_protocol``) and calls
``send_binary`` directly when it is there.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

from daphne import cli, server, ws_protocol
from twisted.internet import tcp

# Payloads up to this size go out with their header in one send; larger ones after it,
# as they are, so Twisted can write the rest from the same bytes object.
COALESCE_BYTES = 64 * 1024


def frame_header(length: int) -> bytes:
    """The header of one unmasked, final, binary frame of ``length`` bytes."""
    if length < 126:
        return bytes((0x82, length))
    if length < 1 << 16:
        return struct.pack("!BBH", 0x82, 126, length)
    return struct.pack("!BBQ", 0x82, 127, length)


class WebSocketProtocol(ws_protocol.WebSocketProtocol):
    """Daphne's websocket protocol with a direct path for binary messages."""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802  (autobahn's interface)
        self._dataReceived(data)

    def sendMessage(self, payload: bytes, isBinary: bool = False, fragmentSize: int | None = None,  # noqa: N802,N803
                    sync: bool = False, doNotCompress: bool = False) -> None:
        if isBinary and fragmentSize is None and not sync and self.send_binary(payload):
            return
        super().sendMessage(payload, isBinary, fragmentSize, sync, doNotCompress)

    def send_binary(self, payload: bytes) -> bool:
        """Send ``payload`` as one binary message if the direct path applies; False if not.

        It applies while the connection is open, with no compression, fragmentation or
        queued frames of autobahn's, over plain TCP, and within the message size limit;
        otherwise the caller goes through ``sendMessage`` as usual.
        """
        if (
            self.state != self.STATE_OPEN
            or self._perMessageCompress is not None
            or self.send_state != self.SEND_STATE_GROUND
            or self.send_queue
            or self.autoFragmentSize
            or 0 < self.maxMessagePayloadSize < len(payload)
            or type(self.transport) is not tcp.Server
        ):
            return False
        transport = self.transport
        if not transport.connected or transport.disconnecting:
            return True  # gone: autobahn drops such a send too
        header = frame_header(len(payload))
        if transport.dataBuffer or transport._tempDataBuffer:
            # Twisted holds bytes not yet sent: append behind them, in order.
            transport.write(header)
            transport.write(payload)
            return True
        small = len(payload) <= COALESCE_BYTES
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
