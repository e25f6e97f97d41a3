"""The two RFC 6455 frames this app's server launches handle themselves.

A request from a client is usually one whole, masked, final binary frame per read, and a
reply from us is one unmasked binary frame. ``serve.py`` (daphne) and ``uvicorn_ws.py``
(uvicorn) take these two cases off their websocket library's general path, which parses
frames in Python and copies payloads into frames; every other frame - partial, fragmented,
control, text, compressed, over a limit - stays with the library.
"""

from __future__ import annotations

import struct

# Replies up to this size go out with their header in one write; larger ones after it, as
# they are, so the transport sends the rest from the same bytes object, uncopied.
COALESCE_BYTES = 64 * 1024


def frame_header(length: int) -> bytes:
    """The header of one unmasked, final, binary frame of ``length`` bytes."""
    if length < 126:
        return bytes((0x82, length))
    if length < 1 << 16:
        return struct.pack("!BBH", 0x82, 126, length)
    return struct.pack("!BBQ", 0x82, 127, length)


def one_binary_frame(data: bytes, *limits: int) -> bytes | None:
    """The unmasked payload if ``data`` is exactly one whole, final, masked binary frame with
    a minimally encoded length within every positive limit in ``limits``; None if not."""
    size = len(data)
    if size < 6 or data[0] != 0x82 or not data[1] & 0x80:  # FIN, no reserved bits, opcode 2; masked
        return None
    length, start = data[1] & 0x7F, 2
    if length == 126:
        length, start = int.from_bytes(data[2:4], "big"), 4
        if length < 126:
            return None
    elif length == 127:
        length, start = int.from_bytes(data[2:10], "big"), 10
        if length < 1 << 16:
            return None
    if start + 4 + length != size:
        return None
    for limit in limits:
        if 0 < limit < length:
            return None
    mask = data[start : start + 4]
    masked = int.from_bytes(data[start + 4 :], "little")
    key = int.from_bytes(mask * (length // 4 + 1), "little") & ((1 << (8 * length)) - 1)
    return (masked ^ key).to_bytes(length, "little")
