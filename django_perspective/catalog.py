"""What the engine holds, as the guard needs it: table columns, features, view dimensions.

Read through probe sessions of the engine's own (one per thread: a session is only used
by the thread that made it), so a probe never touches a client's session. A view may be
read by any session that knows its id, but must be deleted by the session that made it:
Perspective 5.6 aborts the process when a session closes holding a view another deleted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from . import protocol, schema

TYPES = ("string", "date", "datetime", "integer", "float", "boolean")  # ColumnType 0-5
_DIMENSIONS = schema.BY_NAME["view_dimensions"].number  # answered by ViewDimensionsResp{1-4 uint32}


@dataclass(frozen=True, slots=True)
class Features:
    """The engine's filter operators and aggregates by column type, from get_features."""

    filter_ops: dict[str, frozenset[str]]
    aggregates: dict[str, dict[str, int]]  # name -> number of column arguments

    def ops_for(self, column_type: str | None) -> frozenset[str]:
        if column_type is None:  # an expression: its type is the engine's to find
            return frozenset().union(*self.filter_ops.values())
        return self.filter_ops.get(column_type, frozenset())

    def types_with(self, aggregate: str) -> frozenset[str]:
        """The column types the engine offers ``aggregate`` for."""
        return frozenset(kind for kind, options in self.aggregates.items() if aggregate in options)

    def aggregates_for(self, column_type: str | None) -> dict[str, int]:
        if column_type is None:
            merged: dict[str, int] = {}
            for options in self.aggregates.values():
                merged.update(options)
            return merged
        return self.aggregates.get(column_type, {})


@dataclass(frozen=True, slots=True)
class Dimensions:
    table_rows: int
    table_columns: int
    rows: int
    columns: int


class Catalog:
    """Cached facts about one ``perspective.Server``; safe to call from any engine thread."""

    def __init__(self, server: Any) -> None:
        self._server = server
        self._local = threading.local()
        self._sessions: list[Any] = []
        self._columns: dict[str, dict[str, str]] = {}
        # A view's size changes only when the engine polls (with ``on_poll_request`` set,
        # updates wait for the poll) or when its own session expands or collapses it.
        self.polls = 0
        self._dimensions: dict[str, tuple[int, Dimensions]] = {}
        self._features: Features | None = None

    def _ask(self, entity_id: str, kind: int, frame: bytes = b"") -> tuple[bytes, int, tuple[int, int]]:
        """Send a body-less request (or ``frame``) through this thread's probe session:
        (answer, kind, body)."""
        local = self._local
        if getattr(local, "session", None) is None:
            local.answers = []
            local.session = self._server.new_session(local.answers.append)
            self._sessions.append(local.session)
        answers = local.answers
        answers.clear()
        local.session.handle_request(frame or protocol.encode_envelope(1, entity_id, kind, b""))
        answer = answers[-1]
        pos, end = 0, len(answer)
        while pos < end:
            number, _wire, value, pos = protocol.read_field(answer, pos, end)
            if number > protocol.ENTITY_ID:
                return answer, number, value  # type: ignore[return-value]
        return answer, 0, (end, end)

    def close(self) -> None:
        """Close the probe sessions (the engine is shutting down)."""
        while self._sessions:
            self._sessions.pop().close()

    def columns(self, table: str) -> dict[str, str] | None:
        """Column name -> type of ``table``, or None when no such table is hosted."""
        known = self._columns.get(table)
        if known is not None:
            return known
        answer, kind, body = self._ask(table, schema.BY_NAME["table_schema"].number)
        if kind == protocol.SERVER_ERROR:
            return None
        decoded = schema.decode_body(answer, body, schema.TABLE_SCHEMA_RESP)
        pairs = decoded.get("schema", {}).get("schema", [])
        columns = {pair.get("name", ""): TYPES[pair.get("type", 0)] for pair in pairs}
        self._columns[table] = columns
        return columns

    def cached_columns(self, table: str) -> dict[str, str] | None:
        return self._columns.get(table)

    def forget(self, table: str) -> None:
        """Drop what is cached about ``table`` (it was deleted or created again)."""
        self._columns.pop(table, None)

    def features(self) -> Features:
        if self._features is None:
            answer, _kind, body = self._ask("", schema.BY_NAME["get_features"].number)
            self._features = _features(answer, body)
        return self._features

    def polled(self) -> None:
        """The engine has polled: every view's size may have changed."""
        self.polls += 1

    def forget_view(self, view_id: str) -> None:
        self._dimensions.pop(view_id, None)

    def known_dimensions(self, view_id: str) -> Dimensions | None:
        """The view's size if already known since the last poll; never asks the engine."""
        known = self._dimensions.get(view_id)
        return known[1] if known is not None and known[0] == self.polls else None

    def dimensions(self, view_id: str) -> Dimensions | None:
        """The view's current size, or None when no such view exists."""
        polls = self.polls
        known = self.known_dimensions(view_id)
        if known is not None:
            return known
        found = self._probe_dimensions(view_id)
        if found is not None:
            self._dimensions[view_id] = (polls, found)
        return found

    def expression_types(self, table: str, expressions: dict[str, str]) -> dict[str, str]:
        """Alias -> the type the engine gives each of ``expressions`` on ``table``.

        Asked with a describe, which makes no view: those it cannot type are left out.
        """
        describe = schema.BY_NAME["table_describe"]
        frame = schema.encode(schema.Request(1, table, describe, {"config": {"expressions": expressions}}))
        answer, kind, body = self._ask(table, describe.number, frame)
        if kind != describe.number:
            return {}
        types: dict[str, str] = {}
        for number, _wire, span in protocol.iter_fields(answer, *body):
            if number == 1:  # TableDescribeResp.expression_schema: repeated KeyTypePair
                pair = schema.decode_body(answer, span, schema.KEY_TYPE)
                types[pair.get("name", "")] = TYPES[pair.get("type", 0)]
        return types

    def _probe_dimensions(self, view_id: str) -> Dimensions | None:
        answer, kind, body = self._ask(view_id, _DIMENSIONS)
        if kind == protocol.SERVER_ERROR:
            return None
        sizes = [0, 0, 0, 0, 0]
        for number, _wire, value in protocol.iter_fields(answer, *body):
            if number <= 4:
                sizes[number] = value
        return Dimensions(sizes[1], sizes[2], sizes[3], sizes[4])


def _features(data: bytes, body: tuple[int, int]) -> Features:
    # GetFeaturesResp: 6 map<ColumnType, {1 repeated op}>, 7 map<ColumnType, {1 repeated
    # {1 name, 2 packed repeated arg type}}>.
    filter_ops: dict[str, frozenset[str]] = {}
    aggregates: dict[str, dict[str, int]] = {}
    for number, wire, value in protocol.iter_fields(data, *body):
        if wire != 2 or number not in (6, 7):
            continue
        column_type, options = TYPES[0], (value[0], value[0])
        for enumber, _ewire, evalue in protocol.iter_fields(data, *value):
            if enumber == 1:
                column_type = TYPES[evalue]
            elif enumber == 2:
                options = evalue
        if number == 6:
            filter_ops[column_type] = frozenset(
                str(data[s:e], "utf-8") for n, _w, (s, e) in protocol.iter_fields(data, *options) if n == 1
            )
        else:
            found: dict[str, int] = {}
            for n, _w, span in protocol.iter_fields(data, *options):
                if n != 1:
                    continue
                name, args = "", 0
                for an, _aw, avalue in protocol.iter_fields(data, *span):
                    if an == 1:
                        name = str(data[avalue[0] : avalue[1]], "utf-8")
                    elif an == 2:
                        args = avalue[1] - avalue[0]  # packed enums below 128: one byte each
                found[name] = args
            aggregates[column_type] = found
    return Features(filter_ops, aggregates)
