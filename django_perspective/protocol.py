"""Just enough of Perspective's protobuf wire format to route, refuse and answer frames.

Every websocket frame is one ``Request`` or ``Response`` message
(``rust/perspective-client/perspective.proto``). The consumer only needs the envelope:
``msg_id`` (field 1), ``entity_id`` (field 2) and which ``oneof`` body is set (its field
number). A top-level varint/length walk gives all three without generated code and without
copying the body, so it costs microseconds even on a multi-megabyte frame.
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
    result = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise ProtocolError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtocolError("varint longer than 64 bits")


def iter_fields(data: bytes | memoryview, start: int = 0, end: int | None = None):
    """Yield ``(field_number, wire_type, value)`` for each field between ``start`` and ``end``.

    ``value`` is the integer for varints and fixed-width fields and a ``(start, end)`` pair
    of offsets for length-delimited ones.
    """
    pos = start
    end = len(data) if end is None else end
    while pos < end:
        tag, pos = read_varint(data, pos)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise ProtocolError("field number 0")
        if wire == _VARINT:
            value, pos = read_varint(data, pos)
        elif wire == _LEN:
            length, pos = read_varint(data, pos)
            if pos + length > end:
                raise ProtocolError("truncated length-delimited field")
            value = (pos, pos + length)
            pos += length
        elif wire == _FIXED64:
            if pos + 8 > end:
                raise ProtocolError("truncated fixed64 field")
            value = int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        elif wire == _FIXED32:
            if pos + 4 > end:
                raise ProtocolError("truncated fixed32 field")
            value = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        else:
            raise ProtocolError(f"unsupported wire type {wire}")
        yield field, wire, value


def parse_envelope(data: bytes | memoryview) -> Envelope:
    """Read ``msg_id``, ``entity_id`` and the body's field number from a frame."""
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
    if not kind:
        # Perspective 5.6 aborts the whole process on an empty frame: never pass one on.
        raise ProtocolError("no request body")
    return Envelope(msg_id, entity_id, kind, body)


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
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

# Requests that read and change nothing: features (3), system info (17), a table's schema
# (7), size (8) and describe (41), a view's reads (10, 12-16 with 16 to_arrow, 20 min_max,
# 24-26 with 24 the datagrid's to_columns_string, 36). Everything else - views made or
# deleted, subscriptions, expand/collapse, writes - keeps the engine thread.
READ_ONLY = frozenset({3, 7, 8, 10, 12, 13, 14, 15, 16, 17, 20, 24, 25, 26, 36, 41})
HOSTED_TABLES = 4


def is_read(request: Envelope) -> bool:
    """True for a request that changes no state in the engine, its session included.

    A table listing is one too unless it subscribes (a body with ``subscribe`` set).
    """
    if request.kind == HOSTED_TABLES:
        return request.body[0] == request.body[1]
    return request.kind in READ_ONLY


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


MAKE_VIEW = 6
_VIEW_CONFIG = 2
_FILTER = 4
_UNARY_FILTER_OPS = frozenset({"is null", "is not null"})


def check_make_view(data: bytes | memoryview, body: tuple[int, int]) -> str | None:
    """Return why a ``make_view`` body would be unsafe to pass on, or None.

    Perspective 5.6 crashes the whole process (SIGSEGV) on a filter term with a binary
    operator and no value - a frame its own clients never send but any socket can.
    """
    for field, wire, config in iter_fields(data, *body):
        if field != _VIEW_CONFIG or wire != _LEN:
            continue
        for cfield, cwire, term in iter_fields(data, *config):
            if cfield != _FILTER or cwire != _LEN:
                continue
            op = ""
            values = 0
            for tfield, twire, value in iter_fields(data, *term):
                if tfield == 2 and twire == _LEN:
                    op = bytes(data[value[0] : value[1]]).decode("utf-8", "replace")
                elif tfield == 3:
                    values += 1
            if not values and op not in _UNARY_FILTER_OPS:
                return f"filter operator {op!r} needs a value"
    return None
