"""Perspective's protobuf wire format: varints, fields and the envelope of a frame.

Every websocket frame is one ``Request`` or ``Response`` message
(``rust/perspective-client/perspective.proto``): ``msg_id`` (field 1), ``entity_id``
(field 2) and one ``oneof`` body (its field number). This module reads and writes those
primitives and answers errors; which requests exist and what they may carry is the
request schema's (``schema.py``). Responses are only walked at the top level, so reading
one costs microseconds even when it is many megabytes.
"""

from __future__ import annotations

from dataclasses import dataclass

MSG_ID = 1
ENTITY_ID = 2
SERVER_ERROR = 50

_VARINT = 0
_FIXED64 = 1
_LEN = 2
_FIXED32 = 5


class ProtocolError(ValueError):
    """The bytes are not a well-formed Perspective envelope."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """The routing part of a Perspective request or response frame.

    ``kind`` is the field number of the ``oneof`` body (``0`` when there is none) and
    ``body`` its ``(start, end)`` offsets in the frame, so callers can decode nested fields
    without another copy.
    """

    msg_id: int
    entity_id: str
    kind: int
    body: tuple[int, int]


def read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode one base-128 varint at ``pos``; return ``(value, next_pos)``."""
    end = len(data)
    if pos < end and data[pos] < 0x80:  # one byte: tags and small values, without the loop's call
        return data[pos], pos + 1
    return _varint_within(data, pos, end)


def _varint_within(data: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    """A varint that must end by ``end`` (a field never runs past its message)."""
    # Every request's msg_id is a random 32-bit number, five bytes: this loop is hot.
    result = 0
    shift = 0
    while pos < end:
        byte = data[pos]
        pos += 1
        if byte < 0x80:
            return result | byte << shift, pos
        result |= (byte & 0x7F) << shift
        shift += 7
        if shift > 63:
            raise ProtocolError("varint longer than 64 bits")
    raise ProtocolError("truncated varint")


def read_field(data: bytes | memoryview, pos: int, end: int) -> tuple[int, int, int | tuple[int, int], int]:
    """Read the field at ``pos``: ``(field_number, wire_type, value, next_pos)``.

    ``value`` is the integer for varints and fixed-width fields (the raw bits) and a
    ``(start, end)`` pair of offsets for length-delimited ones.
    """
    # One-byte tags, values and lengths are the rule: read them here, not in read_varint.
    tag = data[pos] if pos < end else 0x80
    if tag < 0x80:
        pos += 1
    else:
        tag, pos = _varint_within(data, pos, end)
    field, wire = tag >> 3, tag & 7
    if field == 0:
        raise ProtocolError("field number 0")
    value: int | tuple[int, int]
    if wire == _VARINT:
        value = data[pos] if pos < end else 0x80
        if value < 0x80:
            pos += 1
        else:
            value, pos = _varint_within(data, pos, end)
    elif wire == _LEN:
        length = data[pos] if pos < end else 0x80
        if length < 0x80:
            pos += 1
        else:
            length, pos = _varint_within(data, pos, end)
        if pos + length > end:
            raise ProtocolError("truncated length-delimited field")
        value = (pos, pos + length)
        pos += length
    elif wire in (_FIXED64, _FIXED32):
        width = 8 if wire == _FIXED64 else 4
        if pos + width > end:
            raise ProtocolError(f"truncated fixed{width * 8} field")
        value = int.from_bytes(data[pos : pos + width], "little")
        pos += width
    else:
        raise ProtocolError(f"unsupported wire type {wire}")
    return field, wire, value, pos


def iter_fields(data: bytes | memoryview, start: int = 0, end: int | None = None):
    """Yield ``(field_number, wire_type, value)`` for each field between ``start`` and ``end``."""
    pos = start
    end = len(data) if end is None else end
    while pos < end:
        field, wire, value, pos = read_field(data, pos, end)
        yield field, wire, value


def parse_response(data: bytes | memoryview) -> Envelope:
    """Read a response's envelope; ``kind`` is 0 for a body-less one (a notification).

    Perspective notifies subscribers (``on_hosted_tables_update``) with a Response that
    carries only the subscription's ``msg_id``.
    """
    msg_id = 0
    entity_id = ""
    kind = 0
    body = (0, 0)
    for field, wire, value in iter_fields(data):
        if field == MSG_ID and wire == _VARINT:
            msg_id = value
        elif field == ENTITY_ID and wire == _LEN:
            try:
                entity_id = bytes(data[value[0] : value[1]]).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ProtocolError("entity_id is not UTF-8") from exc
        elif wire == _LEN:
            if kind:
                raise ProtocolError("more than one request body")
            kind, body = field, value
        else:
            raise ProtocolError(f"unexpected field {field} in envelope")
    return Envelope(msg_id, entity_id, kind, body)


def parse_envelope(data: bytes | memoryview) -> Envelope:
    """Read ``msg_id``, ``entity_id`` and the body's field number from a request frame."""
    envelope = parse_response(data)
    if not envelope.kind:
        # Perspective 5.6 aborts the whole process on an empty frame: never pass one on.
        raise ProtocolError("no request body")
    return envelope


_SMALL = [bytes((n,)) for n in range(0x80)]  # the one-byte varints: tags, small values


def varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _SMALL[value]
    out = []
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_len(field: int, payload: bytes) -> bytes:
    return varint(field << 3 | _LEN) + varint(len(payload)) + payload


def encode_envelope(msg_id: int, entity_id: str, kind: int, body: bytes) -> bytes:
    """Encode a request or response: ``msg_id``, ``entity_id`` and the ``oneof`` field ``kind``.

    Default values (0, "") are left out, as protobuf itself does.
    """
    out = bytearray()
    if msg_id:
        out += varint(MSG_ID << 3 | _VARINT) + varint(msg_id)
    if entity_id:
        out += encode_len(ENTITY_ID, entity_id.encode("utf-8"))
    out += encode_len(kind, body)
    return bytes(out)


def error_response(msg_id: int, entity_id: str, message: str) -> bytes:
    """Encode ``Response{msg_id, entity_id, server_error{message}}``.

    Perspective's clients reject exactly the call with this ``msg_id``, with ``message`` as
    the error text; any other ``msg_id`` would leave the call waiting forever.
    """
    return encode_envelope(msg_id, entity_id, SERVER_ERROR, encode_len(1, message.encode("utf-8")))


TABLE_DELETE = 28
# Requests that change a table: make_table, delete, remove, replace (and clear), update,
# join. The engine polls what they leave pending before any other request runs.
WRITES = frozenset({27, 28, 31, 32, 33, 38})
# Requests that touch no table: features, listings (and their subscription), system info.
TABLELESS = frozenset({3, 4, 17, 37})


def table_delete_request(msg_id: int, name: str) -> bytes:
    """Encode ``Request{msg_id, entity_id=name, table_delete{}}``: a lazy delete.

    The empty body asks Perspective to hide the table now and free it when its last view
    closes (``is_immediate`` unset).
    """
    return encode_envelope(msg_id, name, TABLE_DELETE, b"")


def with_msg_id(data: bytes, msg_id: int) -> bytes:
    """Return ``data`` with its ``msg_id`` replaced; used to replay captured frames."""
    out = bytearray(varint(MSG_ID << 3 | _VARINT) + varint(msg_id))
    for field, wire, value in iter_fields(data):
        if field == MSG_ID:
            continue
        if wire == _LEN:
            out += encode_len(field, bytes(data[value[0] : value[1]]))
        elif wire == _VARINT:
            out += varint(field << 3 | _VARINT) + varint(value)
        else:
            raise ProtocolError("fixed-width fields are not used in envelopes")
    return bytes(out)
