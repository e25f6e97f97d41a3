"""The request schema: every request Perspective 5.6 accepts, field by field.

Perspective's engine trusts its input: a float where a date is expected, a field repeated
where it reads the last copy, a varint where it expects a message, a viewport near 2**32 -
each has crashed the whole process. So a frame is never forwarded as it came: ``decode``
reads it completely against this schema (unknown fields, wrong wire types, a singular
field given twice, out-of-range integers and invalid UTF-8 are refused), and ``encode``
writes the request again from the decoded values. The engine only sees what was checked.

Field numbers are facts of ``perspective.proto`` (rust/perspective-client, 5.6.1), checked
against the frames perspective-python 5.6.1 sends. The update/replace/remove payload is the
one part not decoded: it is data, passed through as the bytes that arrived - checked to be
UTF-8 when it is CSV or JSON text (``perspective.proto`` declares those strings; the engine
took invalid UTF-8 as column names and then answered with frames no client can decode).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

from .protocol import ProtocolError, read_field, varint

UINT32_MAX = 2**32 - 1

VARINT, FIXED64, LEN = 0, 1, 2


class SchemaError(ProtocolError):
    """The frame is not a request this schema accepts; the message says which part."""


@dataclass(slots=True)
class Field:
    """One field: its name, scalar type or message, and whether it repeats.

    ``kind`` is one of ``uint32``, ``bool``, ``enum``, ``string``, ``data`` (bytes passed
    through undecoded), ``text`` (the same, checked to be UTF-8), ``double`` or ``message``. ``optional`` fields keep presence: they
    are re-encoded even when they hold the default value.
    """

    name: str
    kind: str
    message: Message | None = None
    repeated: bool = False
    optional: bool = False
    map: bool = False  # a protobuf map: repeated entries {1: key, 2: value}, decoded to a dict
    limit: int = UINT32_MAX  # the largest enum value or uint32
    wire: int = field(init=False)

    def __post_init__(self) -> None:
        self.wire = VARINT if self.kind in ("uint32", "bool", "enum") else FIXED64 if self.kind == "double" else LEN
        if self.kind == "bool":
            self.limit = 1


@dataclass(slots=True)
class Message:
    name: str
    fields: dict[int, Field] = field(default_factory=dict)
    oneofs: tuple[frozenset[int], ...] = ()
    in_oneof: frozenset[int] = frozenset()  # members of a oneof keep presence, like optionals
    order: tuple[tuple[Field, bytes, bool], ...] = ()  # for encoding: field, tag, keeps default

    def __post_init__(self) -> None:
        self.in_oneof = frozenset().union(*self.oneofs)
        self.order = tuple(
            (spec, varint(number << 3 | spec.wire), spec.optional or number in self.in_oneof)
            for number, spec in sorted(self.fields.items())
        )


def _msg(name: str, fields: dict[int, Field] | None = None, *oneofs: frozenset[int]) -> Message:
    return Message(name, fields or {}, tuple(oneofs))


def _u32(name: str, optional: bool = False) -> Field:
    return Field(name, "uint32", optional=optional)


def _str(name: str, repeated: bool = False) -> Field:
    return Field(name, "string", repeated=repeated)


def _enum(name: str, largest: int, optional: bool = False) -> Field:
    return Field(name, "enum", optional=optional, limit=largest)


def _sub(name: str, message: Message, repeated: bool = False, optional: bool = False) -> Field:
    return Field(name, "message", message=message, repeated=repeated, optional=optional)


def _map(name: str, value: Field) -> Field:
    entry = _msg(f"{name}_entry", {1: _str("key"), 2: value})
    return Field(name, "message", message=entry, repeated=True, map=True)


EMPTY = _msg("Empty")
NULL = 0  # google.protobuf.NullValue has one value

# Shared messages.
SCALAR = _msg(
    "Scalar",
    {1: Field("bool", "bool"), 4: Field("float", "double"), 6: _str("string"), 7: _enum("null", NULL)},
    frozenset({1, 4, 6, 7}),
)
VIEWPORT = _msg(
    "ViewPort",
    {
        1: _u32("start_row", True),
        2: _u32("start_col", True),
        3: _u32("end_row", True),
        4: _u32("end_col", True),
        5: Field("machine_column_names", "bool", optional=True),  # sent by the 5.6 viewer's charts
    },
)
FILTER = _msg("Filter", {1: _str("column"), 2: _str("op"), 3: _sub("value", SCALAR, repeated=True)})
SORT = _msg("Sort", {1: _str("column"), 2: _enum("op", 8)})
COLUMNS = _msg("Columns", {1: _str("columns", repeated=True)})
COLUMNS_UPDATE = _msg(
    "ColumnsUpdate", {1: _enum("default_columns", NULL), 2: _sub("columns", COLUMNS)}, frozenset({1, 2})
)
AGG_LIST = _msg("AggList", {1: _str("aggregations", repeated=True)})
VIEW_CONFIG = _msg(
    "ViewConfig",
    {
        1: _str("group_by", repeated=True),
        2: _str("split_by", repeated=True),
        3: _sub("columns", COLUMNS_UPDATE),
        4: _sub("filter", FILTER, repeated=True),
        5: _sub("sort", SORT, repeated=True),
        6: _map("expressions", _str("value")),
        7: _map("aggregates", _sub("value", AGG_LIST)),
        8: _enum("filter_op", 1),
        9: _u32("group_by_depth", True),
        10: _enum("group_rollup_mode", 2, True),
        # 11 windows: not accepted (no viewer needs it; its specs run arbitrary frames).
        12: _enum("split_rollup_mode", 2, True),
    },
)
KEY_TYPE = _msg("KeyTypePair", {1: _str("name"), 2: _enum("type", 5)})
SCHEMA = _msg("Schema", {1: _sub("schema", KEY_TYPE, repeated=True)})
TABLE_DATA = _msg(
    "MakeTableData",
    {
        1: _sub("from_schema", SCHEMA),
        2: Field("from_csv", "text"),
        3: Field("from_arrow", "data"),
        4: Field("from_rows", "text"),
        5: Field("from_cols", "text"),
        6: _str("from_view"),
        7: Field("from_ndjson", "text"),
    },
    frozenset({1, 2, 3, 4, 5, 6, 7}),
)
TABLE_OPTIONS = _msg(
    "MakeTableOptions", {1: _str("make_index_table"), 2: _u32("make_limit_table")}, frozenset({1, 2})
)
_FORMATTED = {1: _sub("viewport", VIEWPORT), 2: Field("id", "bool", optional=True),
              3: Field("index", "bool", optional=True), 4: Field("formatted", "bool", optional=True)}


@dataclass(frozen=True, slots=True)
class Kind:
    """A request type: its ``oneof`` field number in ``Request``, name, body and scope.

    ``scope`` says what ``entity_id`` names: ``global`` (nothing), ``table``, ``view``, or
    ``create`` (the new table's name). ``read`` requests change no engine state, the
    session's included, so they may run beside the engine thread.
    """

    number: int
    name: str
    body: Message
    scope: str
    read: bool = False


KINDS: dict[int, Kind] = {
    k.number: k
    for k in (
        Kind(3, "get_features", EMPTY, "global", read=True),
        Kind(4, "get_hosted_tables", _msg("GetHostedTablesReq", {1: Field("subscribe", "bool")}), "global"),
        Kind(5, "make_port", EMPTY, "table"),
        Kind(6, "make_view", _msg("TableMakeViewReq", {1: _str("view_id"), 2: _sub("config", VIEW_CONFIG)}), "table"),
        Kind(7, "table_schema", EMPTY, "table", read=True),
        Kind(8, "table_size", EMPTY, "table", read=True),
        Kind(10, "view_column_paths", _msg("ViewColumnPathsReq", {1: _u32("start_col", True), 2: _u32("end_col", True)}), "view", read=True),
        Kind(11, "view_delete", EMPTY, "view"),
        Kind(12, "view_dimensions", EMPTY, "view", read=True),
        Kind(13, "view_expression_schema", EMPTY, "view", read=True),
        Kind(14, "view_get_config", EMPTY, "view", read=True),
        Kind(15, "view_schema", EMPTY, "view", read=True),
        Kind(16, "view_to_arrow", _msg("ViewToArrowReq", {1: _sub("viewport", VIEWPORT), 2: Field("compression", "string", optional=True)}), "view", read=True),
        Kind(17, "server_system_info", EMPTY, "global", read=True),
        Kind(18, "view_collapse", _msg("ViewCollapseReq", {1: _u32("row_index")}), "view"),
        Kind(19, "view_expand", _msg("ViewExpandReq", {1: _u32("row_index")}), "view"),
        Kind(20, "view_get_min_max", _msg("ViewGetMinMaxReq", {1: _str("column_name")}), "view", read=True),
        Kind(21, "view_on_update", _msg("ViewOnUpdateReq", {1: _enum("mode", 0, True)}), "view"),
        Kind(22, "view_remove_on_update", _msg("ViewRemoveOnUpdateReq", {1: _u32("id")}), "view"),
        Kind(23, "view_set_depth", _msg("ViewSetDepthReq", {1: _u32("depth")}), "view"),
        Kind(24, "view_to_columns_string", _msg("ViewToColumnsStringReq", _FORMATTED), "view", read=True),
        Kind(25, "view_to_csv", _msg("ViewToCSVReq", {1: _sub("viewport", VIEWPORT)}), "view", read=True),
        Kind(26, "view_to_rows_string", _msg("ViewToRowsStringReq", _FORMATTED), "view", read=True),
        Kind(27, "make_table", _msg("MakeTableReq", {1: _sub("data", TABLE_DATA), 2: _sub("options", TABLE_OPTIONS, optional=True)}), "create"),
        Kind(28, "table_delete", _msg("TableDeleteReq", {1: Field("is_immediate", "bool")}), "table"),
        Kind(29, "table_on_delete", EMPTY, "table"),
        Kind(30, "table_remove_delete", _msg("TableRemoveDeleteReq", {1: _u32("id")}), "table"),
        Kind(31, "table_remove", _msg("TableRemoveReq", {1: _sub("data", TABLE_DATA)}), "table"),
        Kind(32, "table_replace", _msg("TableReplaceReq", {1: _sub("data", TABLE_DATA)}), "table"),
        Kind(33, "table_update", _msg("TableUpdateReq", {1: _sub("data", TABLE_DATA), 2: _u32("port_id")}), "table"),
        Kind(34, "view_on_delete", EMPTY, "view"),
        Kind(35, "view_remove_delete", _msg("ViewRemoveDeleteReq", {1: _u32("id")}), "view"),
        Kind(36, "view_to_ndjson_string", _msg("ViewToNdjsonStringReq", _FORMATTED), "view", read=True),
        Kind(37, "remove_hosted_tables_update", _msg("RemoveHostedTablesUpdateReq", {1: _u32("id")}), "global"),
        Kind(38, "make_join_table", _msg("MakeJoinTableReq", {1: _str("left_table_id"), 2: _str("right_table_id"), 3: _str("on_column"), 4: _enum("join_type", 2), 5: _str("right_on_column")}), "create"),
        Kind(39, "view_on_remove", EMPTY, "view"),
        Kind(40, "view_remove_on_remove", _msg("ViewRemoveOnRemoveReq", {1: _u32("id")}), "view"),
        Kind(41, "table_describe", _msg("TableDescribeReq", {1: _sub("config", VIEW_CONFIG)}), "table", read=True),
    )
}
BY_NAME: dict[str, Kind] = {k.name: k for k in KINDS.values()}

MSG_ID, ENTITY_ID = 1, 2
_MSG_ID_TAG, _ENTITY_ID_TAG = varint(MSG_ID << 3 | VARINT), varint(ENTITY_ID << 3 | LEN)


@dataclass(slots=True)
class Request:
    """A decoded request: the envelope and its body as plain values.

    ``body`` maps field names to values: ``int``/``bool``/``float``/``str``, ``bytes`` for
    data payloads, dicts for messages and maps, lists for repeated fields. An absent field
    is absent from the dict.
    """

    msg_id: int
    entity_id: str
    kind: Kind
    body: dict[str, Any]
    reply: bytes | None = None  # set by the guard: the answer, sent instead of running it

    @property
    def number(self) -> int:
        return self.kind.number


def decode(frame: bytes | memoryview) -> Request:
    """Decode a whole request frame against the schema; raise ``SchemaError`` if it is not one."""
    data = memoryview(frame) if not isinstance(frame, memoryview) else frame
    msg_id = 0
    entity_id = ""
    kind: Kind | None = None
    span = (0, 0)
    seen: set[int] = set()
    pos, end = 0, len(data)
    while pos < end:
        number, wire, value, pos = read_field(data, pos, end)
        if number in seen:
            raise SchemaError(f"Request field {number} appears twice")
        seen.add(number)
        if number == MSG_ID:
            msg_id = _check_uint(_expect(wire, VARINT, "Request.msg_id", value), "Request.msg_id")
        elif number == ENTITY_ID:
            entity_id = _utf8(data, _expect(wire, LEN, "Request.entity_id", value), "Request.entity_id")
        elif number in KINDS:
            if kind is not None:
                raise SchemaError("a request carries one body; this one has two")
            kind = KINDS[number]
            span = _expect(wire, LEN, kind.name, value)
        else:
            raise SchemaError(f"unknown request field {number}")
    if kind is None:
        raise SchemaError("no request body")
    return Request(msg_id, entity_id, kind, _decode_message(data, span[0], span[1], kind.body, kind.name, 0))


def encode(request: Request) -> bytes:
    """Encode ``request`` canonically: fields in number order, defaults left out.

    Parts are collected and joined once, so a large update payload is copied once.
    """
    return encode_envelope_body(request.msg_id, request.entity_id, request.kind.number, request.body, request.kind.body)


_ABSENT = object()
_MAX_DEPTH = 8  # ViewConfig nests four deep; nothing legitimate needs more


def _expect(wire: int, expected: int, where: str, value: Any) -> Any:
    if wire != expected:
        names = {VARINT: "a varint", FIXED64: "a 64-bit value", LEN: "length-delimited", 5: "a 32-bit value"}
        raise SchemaError(f"{where} must be {names[expected]}, not {names.get(wire, wire)}")
    return value


def _check_uint(value: int, where: str, limit: int = UINT32_MAX) -> int:
    if value > limit:
        raise SchemaError(f"{where} is {value}, more than its largest value {limit}")
    return value


def _utf8(data: memoryview, span: tuple[int, int], where: str) -> str:
    try:
        return str(data[span[0] : span[1]], "utf-8")
    except UnicodeDecodeError as exc:
        raise SchemaError(f"{where} is not UTF-8") from exc


def _decode_message(data: memoryview, pos: int, end: int, message: Message, where: str, depth: int) -> dict[str, Any]:
    if depth > _MAX_DEPTH:
        raise SchemaError(f"{where} nests too deep")
    out: dict[str, Any] = {}
    fields = message.fields
    while pos < end:
        number, wire, value, pos = read_field(data, pos, end)
        spec = fields.get(number)
        if spec is None:
            raise SchemaError(f"unknown field {number} in {where}")
        if wire != spec.wire:
            _expect(wire, spec.wire, f"{where}.{spec.name}", value)
        if spec.kind == "uint32" and value <= spec.limit:
            pass  # the common scalar, as it is
        else:
            value = _decode_value(data, value, spec, where, depth)
        name = spec.name
        if spec.map:
            entries = out.setdefault(name, {})
            key = value.get("key", "")
            if key in entries:
                raise SchemaError(f"{where}.{name} has the key {key!r} twice")
            entries[key] = value.get("value", _default(spec.message.fields[2]))
        elif spec.repeated:
            out.setdefault(name, []).append(value)
        elif name in out:
            raise SchemaError(f"{where}.{name} appears twice")
        else:
            out[name] = value
    for group in message.oneofs:
        present = [fields[n].name for n in group if fields[n].name in out]
        if len(present) > 1:
            raise SchemaError(f"{where} sets {' and '.join(present)}: only one is allowed")
    return out


def _decode_value(data: memoryview, value: Any, spec: Field, where: str, depth: int) -> Any:
    kind = spec.kind
    if kind == "uint32" or kind == "enum" or kind == "bool":
        if value > spec.limit:
            _check_uint(value, f"{where}.{spec.name}", spec.limit)
        return bool(value) if kind == "bool" else value
    if kind == "string":
        return _utf8(data, value, f"{where}.{spec.name}")
    if kind == "double":
        value = struct.unpack("<d", value.to_bytes(8, "little"))[0]
        if not math.isfinite(value):
            raise SchemaError(f"{where}.{spec.name} is {value}: only finite numbers are accepted")
        return value
    if kind == "data" or kind == "text":
        payload = data[value[0] : value[1]]
        if kind == "text":
            _utf8(data, value, f"{where}.{spec.name}")
        return payload
    assert spec.message is not None
    return _decode_message(data, value[0], value[1], spec.message, f"{where}.{spec.name}", depth + 1)


def _default(spec: Field) -> Any:
    if spec.kind == "message":
        return {}
    if spec.kind == "string":
        return ""
    if spec.kind == "double":
        return 0.0
    if spec.kind == "bool":
        return False
    return 0


def _encode_len_parts(parts: list[bytes | memoryview], tag: bytes, body: list[bytes | memoryview]) -> None:
    parts.append(tag + varint(sum(map(len, body))))
    parts.extend(body)


def _encode_message(values: dict[str, Any], message: Message) -> list[bytes | memoryview]:
    parts: list[bytes | memoryview] = []
    for spec, tag, keep_default in message.order:
        value = values.get(spec.name, _ABSENT)
        if value is _ABSENT:
            continue
        if spec.map:
            assert spec.message is not None
            for key, item in value.items():
                _encode_len_parts(parts, tag, _encode_message({"key": key, "value": item}, spec.message))
        elif spec.repeated:
            for item in value:
                _encode_value(parts, tag, spec, item)
        elif keep_default or value or spec.kind == "message":
            _encode_value(parts, tag, spec, value)
    return parts


def _encode_value(parts: list[bytes | memoryview], tag: bytes, spec: Field, value: Any) -> None:
    kind = spec.kind
    if kind == "uint32" or kind == "enum" or kind == "bool":
        parts.append(tag + varint(int(value)))
    elif kind == "string":
        raw = value.encode("utf-8")
        parts.append(tag + varint(len(raw)) + raw)
    elif kind == "double":
        parts.append(tag + struct.pack("<d", value))
    elif kind == "data" or kind == "text":
        parts.append(tag + varint(len(value)))
        parts.append(value)
    else:
        assert spec.message is not None
        _encode_len_parts(parts, tag, _encode_message(value, spec.message))


def decode_body(data: bytes | memoryview, span: tuple[int, int], message: Message) -> dict[str, Any]:
    """Decode one message of ``data`` (e.g. a response body) against ``message``."""
    view = data if isinstance(data, memoryview) else memoryview(data)
    return _decode_message(view, span[0], span[1], message, message.name, 0)


# The few responses the server itself reads.
TABLE_SCHEMA_RESP = _msg("TableSchemaResp", {1: _sub("schema", SCHEMA)})
MAKE_PORT_RESP = _msg("TableMakePortResp", {1: _u32("port_id")})
HOSTED_TABLE = _msg("HostedTable", {1: _str("entity_id"), 2: Field("index", "string", optional=True), 3: _u32("limit", True)})
HOSTED_TABLES_RESP = _msg("GetHostedTablesResp", {1: _sub("table_infos", HOSTED_TABLE, repeated=True)})


def encode_envelope_body(msg_id: int, entity_id: str, number: int, body: dict[str, Any], message: Message) -> bytes:
    """Encode a request or response envelope whose ``oneof`` field ``number`` is ``body``."""
    parts: list[bytes | memoryview] = []
    if msg_id:
        parts.append(_MSG_ID_TAG + varint(msg_id))
    if entity_id:
        raw = entity_id.encode("utf-8")
        parts.append(_ENTITY_ID_TAG + varint(len(raw)) + raw)
    _encode_len_parts(parts, varint(number << 3 | LEN), _encode_message(body, message))
    return b"".join(parts)


def ids(frame: bytes | memoryview) -> tuple[int, str]:
    """``(msg_id, entity_id)`` of a frame, as far as they can be read: to answer a refusal."""
    msg_id, entity_id = 0, ""
    data = memoryview(frame)
    pos, end = 0, len(data)
    try:
        while pos < end:
            number, wire, value, pos = read_field(data, pos, end)
            if number == MSG_ID and wire == VARINT and value <= UINT32_MAX:
                msg_id = value
            elif number == ENTITY_ID and wire == LEN:
                entity_id = str(data[value[0] : value[1]], "utf-8", "replace")
    except ProtocolError:
        pass
    return msg_id, entity_id


def is_read(request: Request) -> bool:
    """True for a request that changes no engine state, its session's included.

    A table listing is one too unless it subscribes.
    """
    if request.kind.name == "get_hosted_tables":
        return not request.body.get("subscribe")
    return request.kind.read
