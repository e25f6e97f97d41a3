"""Hypothesis strategies for Perspective request frames, generated from ``schema.KINDS``.

A frame is drawn in three steps: a request type from ``KINDS`` (so a type added to the
schema is fuzzed without touching this file), values for its body from the type's
``Message`` descriptors, and a wire encoding of those values. The values are
protobuf-valid but semantically odd: columns the table lacks, values of the wrong type,
extreme integers and floats, empty and non-ASCII strings, view ids of other connections or
of deleted views. Fields the guard gives a meaning (a column, a filter operator, a view
id) mostly draw from what the engine really holds, so the semantic checks are reached, and
a ViewConfig is often a realistic one over the table's real columns. The encoding may then
break the wire format on purpose: repeated, unknown or reordered fields, wrong wire types,
invalid UTF-8, out-of-range varints, non-finite doubles, a second body, truncation.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from django_perspective import schema
from django_perspective.catalog import Features
from django_perspective.protocol import varint
from django_perspective.schema import FIXED64, LEN, VARINT, Field, Kind, Message

FIXED32, GROUP_START, GROUP_END = 5, 3, 4

UINTS = (0, 1, 2, 3, 4, 7, 39, 40, 41, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1)
WIDE = (2**32, 2**32 + 1, 2**63, 2**64 - 1, 2**70)  # 2**70: a varint longer than 64 bits
FLOATS = (
    0.0, -0.0, 1.0, -1.0, 0.5, 3.0, 1e300, -1e300, 1.7976931348623157e308, 5e-324, -5e-324,
    2.2250738585072014e-308, 8.64e15, 8.64e15 + 1, -8.64e15 - 1, 1e17, 1e20, 2.0**53, 2.0**63,
    1704067200000.0, math.nan, math.inf, -math.inf,
)
NONFINITE_BITS = (0x7FF8000000000000, 0x7FF0000000000001, 0xFFF8000000000000, 0x7FF0000000000000, 0xFFF0000000000000)
TEXTS = (
    "", " ", "ü", "名前", "\x00", "\n", "😀", "a" * 1500, "'", '"', "\\", "null", "NaN",
    "2024-01-01", "2024-13-45", "2024-01-01T00:00:00.000Z", "1e300", "-0",
)
CRASHED_AGGREGATES = ("avg", "high minus low")
BAD_UTF8 = (b"\xff", b"\xc3", b"a\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\x80")
ALIASES = ("e0", "e1", "名 e", "")
COMPRESSIONS = ("lz4", "zstd", "", "gzip", "LZ4", "snappy")

# ExprTK sources: ordinary ones, broken ones, and loop-ish ones the "safe" policy refuses
# (or must not confuse with loop words inside strings and column names).
EXPRESSIONS = (
    '"i" * 2', '"f" + 1', "concat(\"s\", 'x')", "bucket(\"dt\", 'M')", "bucket(\"d\", 'Y')",
    'if ("f" > 1) { 1 } else { 0 }', 'var x := 1; x + "i"', 'upper("s")', 'length("s")',
    "1 / 0", "sqrt(-1)", "'abc'", "now()", "today()", '"名 x" * 1.5', 'inrange(1, "i", 10)',
    '"nosuch" + 1', "", "((((", "1 +", "'unterminated", '"i" > 3 and "b"', "order(\"s\", 'a', 'b')",
    "match(\"s\", '.*')", "search(\"s\", '(a+)+$')", "replace_all(\"s\", 'a', 'aa')",
    'percent_of("i", 3)', 'max("i", "f", 1e300)', "x := 5", "true", "null", "date(2024, 1, 1)",
    "datetime(8640000000000001)", "integer(1e300)", "float('x')", 'string("d")',
    "var s := 'a'; s := s + s; s", '"dt" - "d"', 'bucket("f", 0)', 'bucket("i", -1)',
)
LOOPISH = (
    "for (var i := 0; i < 10; i += 1) { i }", "var x := 0; while (x < 5) { x += 1 }; x",
    "repeat 1; until (true)", "var v[3] := {1, 2, 3}; sum(v)", "FOR (var i := 0; i < 2; i += 1) { 1 }",
    "break", "continue", "'for' + 'while'", '"for"', 'switch { case "i" > 1: 1; default: 0; }',
    "~{1; 2; 3}", "return [1]", "[*] { case 1 > 0: 1; }", "while(true){}",
)
PAYLOAD_TEXTS = (
    b"", b"id,v,name\n1,2.5,x\n", b"\xff\xfe,,\n\"", b'[{"id": 1, "v": 1e308}]', b'[{"id": "x"}]', b"{}",
    b"[", b"null", b'{"id": [1, 2], "v": [1.5, null]}', b'{"id":1}\n{"id":2}', b'[{"nosuch": 1}]',
)


@dataclass(eq=False)
class World:
    """What the fuzzed connection can name: tables and their columns, view ids, payloads."""

    tables: dict[str, dict[str, str]]
    features: Features
    own_views: tuple[str, ...]  # ids the fuzzed connection's make_view claims
    foreign_views: tuple[str, ...]  # ids another connection holds
    gone_views: tuple[str, ...]  # ids made and deleted before
    payloads: tuple[bytes, ...] = ()  # data for update/replace/make_table: Arrow, CSV, JSON
    expressions: dict[str, Any] = field(default_factory=dict)  # table -> its expressions policy
    union: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.union = {name: kind for columns in self.tables.values() for name, kind in columns.items()}


class Node:
    """One encoded message: ``[number, wire, value]`` entries, values nested as Nodes.

    ``value`` is an int for varint and fixed-width fields (the raw bits), bytes or a Node
    for length-delimited ones. ``message`` is None for the Request envelope.
    """

    __slots__ = ("entries", "message")

    def __init__(self, message: Message | None, entries: list[list[Any]]) -> None:
        self.message = message
        self.entries = entries

    def nodes(self) -> list[Node]:
        found = [self]
        for _number, _wire, value in self.entries:
            if isinstance(value, Node):
                found.extend(value.nodes())
        return found


MSG_ID_SLOT = object()  # where the harness puts its own msg_id


@dataclass
class Frame:
    """A drawn request: its kind, encoding tree and what breaks it; ``render`` writes it."""

    kind: str
    tree: Node
    msg_id: int | None = None  # a fixed (odd) msg_id; None takes the harness's
    cut: int | None = None  # truncate the encoding to this many bytes
    broken: tuple[str, ...] = ()

    def render(self, msg_id: int) -> bytes:
        data = _serialize(self.tree, msg_id if self.msg_id is None else self.msg_id)
        return data if self.cut is None else data[: self.cut % max(len(data), 1)]


def _serialize(node: Node, msg_id: int) -> bytes:
    out = bytearray()
    for number, wire, value in node.entries:
        out += varint(number << 3 | wire)
        if value is MSG_ID_SLOT:
            value = msg_id
        if wire == VARINT:
            out += varint(value)
        elif wire == FIXED64:
            out += value.to_bytes(8, "little")
        elif wire == FIXED32:
            out += value.to_bytes(4, "little")
        elif wire == LEN:
            payload = _serialize(value, msg_id) if isinstance(value, Node) else value
            out += varint(len(payload)) + payload
    return bytes(out)


def tree(values: dict[str, Any], message: Message) -> Node:
    """Encode decoded-style ``values`` (as ``schema.decode`` returns them) as a Node."""
    entries: list[list[Any]] = []
    for number, spec in sorted(message.fields.items()):
        if spec.name not in values:
            continue
        value = values[spec.name]
        if spec.map:
            assert spec.message is not None
            for key, item in value.items():
                entries.append([number, LEN, tree({"key": key, "value": item}, spec.message)])
        elif spec.repeated:
            entries.extend(_entry(number, spec, item) for item in value)
        else:
            entries.append(_entry(number, spec, value))
    return Node(message, entries)


def _entry(number: int, spec: Field, value: Any) -> list[Any]:
    kind = spec.kind
    if kind in ("uint32", "enum", "bool"):
        return [number, VARINT, int(value)]
    if kind == "string":
        return [number, LEN, value.encode("utf-8")]
    if kind == "double":
        return [number, FIXED64, struct.unpack("<Q", struct.pack("<d", value))[0]]
    if kind in ("data", "text"):
        return [number, LEN, bytes(value)]
    assert spec.message is not None
    return [number, LEN, tree(value, spec.message)]


def envelope(kind: Kind, entity: str, body: dict[str, Any]) -> Node:
    entries: list[list[Any]] = [[schema.MSG_ID, VARINT, MSG_ID_SLOT]]
    if entity:
        entries.append([schema.ENTITY_ID, LEN, entity.encode("utf-8")])
    entries.append([kind.number, LEN, tree(body, kind.body)])
    return Node(None, entries)


def weighted(*options: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """``one_of`` with weights: the first options are the likely ones."""
    options = tuple((weight, strategy) for weight, strategy in options if weight)
    total = sum(weight for weight, _ in options)

    @st.composite
    def pick(draw: st.DrawFn) -> Any:
        n = draw(st.integers(0, total - 1))
        for weight, strategy in options:
            if n < weight:
                return draw(strategy)
            n -= weight
        raise AssertionError("unreachable")

    return pick()


def texts() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(TEXTS), st.text(max_size=12))


def uints() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(UINTS), st.integers(0, 64))


def doubles() -> st.SearchStrategy[float]:
    return st.one_of(st.sampled_from(FLOATS), st.floats(), st.floats(-1e13, 1e13))


CORRUPTIONS = ("duplicate", "unknown", "wire", "utf8", "wide", "nonfinite", "oneof2", "truncate", "two_bodies", "no_body")

Hint = Callable[["FrameStrategies", str | None], st.SearchStrategy[Any]]


def _memo(build: Callable[..., st.SearchStrategy[Any]]) -> Callable[..., st.SearchStrategy[Any]]:
    """Build a strategy once per arguments: building is the slow part of drawing."""

    def cached(self: FrameStrategies, *args: Any) -> st.SearchStrategy[Any]:
        key = (build.__name__, *(a.name if isinstance(a, Message) else a for a in args))
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = build(self, *args)
        return found

    return cached


class FrameStrategies:
    """Strategies for one ``World``: ``frame()`` for any request, ``make_view()`` for views."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._cache: dict[tuple[Any, ...], st.SearchStrategy[Any]] = {}
        self.kinds = tuple(schema.KINDS.values())
        # make_view and describe carry the ViewConfig, view requests need a live view: draw
        # them more often than the rest.
        self._kind_weights = tuple(
            6 if k.name in ("make_view", "table_describe") else 2 if k.scope == "view" else 1 for k in self.kinds
        )

    def columns(self, table: str | None) -> dict[str, str]:
        return self.world.tables.get(table or "") or self.world.union

    @_memo
    def column(self, table: str | None) -> st.SearchStrategy[str]:
        return weighted(
            (6, st.sampled_from(sorted(self.columns(table)))),
            (1, st.sampled_from(sorted(self.world.union) + list(ALIASES))),
            (1, texts()),
        )

    @_memo
    def view_id(self) -> st.SearchStrategy[str]:
        world = self.world
        # Examples make their views under the first ids (``make_view``): naming those finds
        # a live view more often than not.
        return weighted(
            (8, st.just(world.own_views[0])),
            (4, st.sampled_from(world.own_views[:3])),
            (2, st.sampled_from(world.own_views)),
            (1, st.sampled_from(world.foreign_views)),
            (1, st.sampled_from(world.gone_views)),
            (1, st.one_of(texts(), st.sampled_from(sorted(world.tables)))),
        )

    @_memo
    def table_name(self) -> st.SearchStrategy[str]:
        return weighted(
            (8, st.sampled_from(sorted(self.world.tables))),
            (1, st.one_of(texts(), st.sampled_from(("nosuch", *self.world.own_views)))),
        )

    @_memo
    def entity(self, scope: str) -> st.SearchStrategy[str]:
        if scope == "view":
            return self.view_id()
        if scope == "table":
            return self.table_name()
        if scope == "create":
            # made-N soon exist (tables outlive connections): fresh names reach the data checks.
            return weighted(
                (4, st.sampled_from(("made-0", "made-1", "made-2"))),
                (2, st.integers(3, 10**9).map(lambda n: f"made-{n}")),
                (1, st.sampled_from(sorted(self.world.tables))),
                (1, texts()),
            )
        return weighted((8, st.just("")), (1, texts()))

    @_memo
    def body(self, message: Message, table: str | None) -> st.SearchStrategy[dict[str, Any]]:
        """Values for ``message`` from its descriptor: oneofs, optional and repeated fields."""
        values = {number: self.value(message, spec, table) for number, spec in message.fields.items()}
        groups = [st.sampled_from((0, *sorted(group))) for group in message.oneofs]
        order = sorted(message.fields.items())
        # A field the guard gives a meaning is there most of the time, others half the time.
        likely = weighted((7, st.just(True)), (1, st.just(False)))
        present = {number: likely if _hint_for(message, spec) else st.booleans() for number, spec in order}

        @st.composite
        def draw_body(draw: st.DrawFn) -> dict[str, Any]:
            chosen = {draw(group) for group in groups}
            out: dict[str, Any] = {}
            for number, spec in order:
                if number in message.in_oneof:
                    if number not in chosen:
                        continue
                elif not draw(present[number]):
                    continue
                out[spec.name] = draw(values[number])
            return out

        return draw_body()

    def value(self, message: Message, spec: Field, table: str | None) -> st.SearchStrategy[Any]:
        """A whole field's value: a list for a repeated field, a dict for a map."""
        hint = _hint_for(message, spec)
        if hint is not None:
            return hint(self, table)
        if spec.map:
            assert spec.message is not None
            entry = spec.message
            keys = self.value(entry, entry.fields[1], table)
            return st.dictionaries(keys, self.value(entry, entry.fields[2], table), max_size=3)
        item = self.scalar(spec, table)
        return st.lists(item, max_size=4) if spec.repeated else item

    def scalar(self, spec: Field, table: str | None) -> st.SearchStrategy[Any]:
        kind = spec.kind
        if kind == "uint32":
            return uints()
        if kind == "enum":
            return weighted((8, st.integers(0, spec.limit)), (1, st.sampled_from(UINTS)))
        if kind == "bool":
            return st.booleans()
        if kind == "string":
            return texts()
        if kind == "double":
            return doubles()
        if kind in ("data", "text"):
            return self.payload()
        assert spec.message is not None
        return self.body(spec.message, table)

    @_memo
    def payload(self) -> st.SearchStrategy[bytes]:
        return st.one_of(st.sampled_from(self.world.payloads + PAYLOAD_TEXTS), st.binary(max_size=48))

    @_memo
    def expression(self, table: str | None, valid: bool = False) -> st.SearchStrategy[str]:
        """ExprTK source over the table's columns; ``valid``: none the "safe" policy refuses."""
        names = sorted(self.columns(table))
        ops = st.sampled_from(("+", "-", "*", "/", "%", "^", ">", "==", "and", "||"))
        quoted = st.sampled_from(names).map(lambda n: f'"{n}"')
        operand = st.one_of(quoted, doubles().map(repr), st.sampled_from(("'x'", "true", "null")))
        return weighted(
            (4, st.sampled_from(EXPRESSIONS)),
            (2, st.builds(lambda a, op, b: f"{a} {op} {b}", quoted, ops, operand)),
            (0 if valid else 2, st.sampled_from(LOOPISH)),
            (0 if valid else 1, texts()),
        )

    @_memo
    def scalar_value(self, column_type: str | None, valid: bool = False) -> st.SearchStrategy[dict[str, Any]]:
        """A filter value of the column's type (``valid``: one the guard accepts), else
        mostly of the column's type and sometimes of another."""

        def number(strategy: st.SearchStrategy[float]) -> st.SearchStrategy[dict[str, Any]]:
            return strategy.map(lambda x: {"float": x})

        finite = st.one_of(st.sampled_from([x for x in FLOATS if math.isfinite(x)]), st.floats(allow_nan=False, allow_infinity=False))
        strings = texts().map(lambda s: {"string": s})
        booleans = st.booleans().map(lambda b: {"bool": b})
        dates = st.sampled_from(TEXTS[13:18]).map(lambda s: {"string": s})
        in_range = st.one_of(number(st.floats(0, 4e12)), number(st.sampled_from([x for x in FLOATS if abs(x) <= 8.64e15])), dates)
        typed = {
            "date": in_range if valid else st.one_of(in_range, number(doubles())),
            "integer": number(finite if valid else doubles()),
            "float": number(finite if valid else doubles()),
            "string": strings,
            "boolean": booleans,
        }
        typed["datetime"] = typed["date"]
        anything = st.one_of(number(doubles()), strings, booleans, st.just({"null": 0}), st.just({}))
        if valid:
            return typed.get(column_type, st.one_of(number(st.floats(-8.64e15, 8.64e15)), strings, booleans))
        if column_type not in typed:
            return anything
        return weighted((5, typed[column_type]), (1, anything))

    def _types(self, table: str | None, aliases: tuple[str, ...]) -> dict[str, str | None]:
        return {**self.columns(table), **{alias: None for alias in aliases}}

    @_memo
    def filter_term(self, table: str | None, aliases: tuple[str, ...], valid: bool = False) -> st.SearchStrategy[dict[str, Any]]:
        """One filter over the table's columns and the view's expressions ``aliases``."""
        features = self.world.features
        every_op = sorted(features.ops_for(None))
        types = self._types(table, aliases)
        names = st.sampled_from(sorted(types))
        column = names if valid else weighted((8, names), (1, texts()))

        def op_for(kind: str | None) -> st.SearchStrategy[str]:
            own = st.sampled_from(sorted(features.ops_for(kind)) or every_op)
            return own if valid else weighted((8, own), (1, st.sampled_from(every_op)), (1, texts()))

        ops = {kind: op_for(kind) for kind in set(types.values())}
        odd_op = weighted((8, st.sampled_from(every_op)), (1, texts()))
        nulls = st.sampled_from(([], [{"null": 0}], [{}]))

        @st.composite
        def term(draw: st.DrawFn) -> dict[str, Any]:
            name = draw(column)
            column_type = types.get(name)
            op = draw(ops[column_type] if name in types else odd_op)
            value = self.scalar_value(column_type, valid)
            if op in ("is null", "is not null"):
                values = draw(nulls) if valid or draw(st.booleans()) else [draw(value)]
            elif op in ("in", "not in"):
                values = draw(st.lists(value, min_size=int(valid), max_size=4))
            elif valid:
                values = [draw(value)]
            else:
                values = draw(weighted((8, st.lists(value, min_size=1, max_size=1)), (1, st.lists(value, max_size=3))))
            return {"column": name, "op": op, "value": values}

        return term()

    @_memo
    def aggregate(self, column_type: str | None, pick: st.SearchStrategy[str], valid: bool = False) -> st.SearchStrategy[dict[str, Any]]:
        """An AggList for a column of ``column_type``: the engine's name, the right arguments."""
        allowed = self.world.features.aggregates_for(column_type)
        # The ones that crashed the engine on some column types, more often than their share.
        suspects = [name for name in CRASHED_AGGREGATES if name in allowed]
        known = weighted((8, st.sampled_from(sorted(allowed))), (len(suspects), st.sampled_from(suspects or [""])))
        names = known if valid else weighted((8, known), (1, texts()))

        @st.composite
        def agg(draw: st.DrawFn) -> dict[str, Any]:
            name = draw(names)
            arity = allowed.get(name, 0) if valid or draw(st.integers(0, 7)) else draw(st.integers(0, 3))
            return {"aggregations": [name, *(draw(pick) for _ in range(arity))]}

        return agg()

    @_memo
    def view_config(self, table: str | None, valid: bool = False) -> st.SearchStrategy[dict[str, Any]]:
        """A realistic ViewConfig over ``table``'s real columns and its own expressions;
        ``valid``: one the guard passes on (values may still be extreme for the engine)."""
        allowed = not (valid and self.world.expressions.get(table or "") is False)
        expressions = weighted(
            (2, st.just({})),
            (int(allowed), st.dictionaries(st.sampled_from(("e0", "e1", "e2")), self.expression(table, valid), min_size=1, max_size=2)),
        )

        @st.composite
        def config(draw: st.DrawFn) -> dict[str, Any]:
            exprs = draw(expressions)
            out = draw(self._config_parts(table, tuple(sorted(exprs)), valid))
            if exprs or draw(st.booleans()):
                out["expressions"] = exprs
            return out

        return config()

    @_memo
    def _config_parts(self, table: str | None, aliases: tuple[str, ...], valid: bool) -> st.SearchStrategy[dict[str, Any]]:
        types = self._types(table, aliases)
        names = sorted(types)
        pick = st.sampled_from(names)
        aggregates = {name: self.aggregate(types[name], pick, valid) for name in names}
        depth = st.integers(0, 3)
        parts = {
            "group_by": st.lists(pick, max_size=2, unique=True),
            "split_by": st.lists(pick, max_size=2, unique=True),
            "columns": st.one_of(
                st.just({"default_columns": 0}),
                st.lists(st.one_of(pick, st.just("")), max_size=len(names)).map(lambda c: {"columns": {"columns": c}}),
            ),
            "filter": st.lists(self.filter_term(table, aliases, valid), max_size=3),
            "sort": st.lists(
                st.fixed_dictionaries({"column": pick, "op": st.integers(0, 8)}),
                max_size=2,
                unique_by=(lambda sort: sort["column"]) if valid else None,
            ),
            "filter_op": st.integers(0, 1),
            "group_by_depth": depth if valid else st.one_of(depth, st.sampled_from(UINTS)),
            "group_rollup_mode": st.integers(0, 2),
            "split_rollup_mode": st.integers(0, 2),
        }
        aggregated = st.lists(pick, max_size=3, unique=True)

        @st.composite
        def config(draw: st.DrawFn) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for key, strategy in parts.items():
                if draw(st.booleans()):
                    out[key] = draw(strategy)
            if draw(st.booleans()):
                out["aggregates"] = {name: draw(aggregates[name]) for name in draw(aggregated)}
            return out

        return config()

    @_memo
    def make_view(self, number: int = 0) -> st.SearchStrategy[Frame]:
        """The example's ``number``-th make_view, for its later frames to use: a real table,
        mostly own id ``number``, a config the guard mostly passes on, rarely broken."""
        kind = schema.BY_NAME["make_view"]
        tables = sorted(self.world.tables)
        ids = weighted((9, st.just(self.world.own_views[number])), (1, self.view_id()))
        configs = {
            name: weighted((6, self.view_config(name, True)), (2, self.view_config(name)), (1, self.body(schema.VIEW_CONFIG, name)))
            for name in tables
        }
        entity = weighted((12, st.sampled_from(tables)), (1, self.table_name()))

        def contents(draw: st.DrawFn, _kind: Kind) -> tuple[str, dict[str, Any]]:
            table = draw(entity)
            return table, {"view_id": draw(ids), "config": draw(configs.get(table, configs[tables[0]]))}

        return self._frame(st.just(kind), 60, contents)

    @_memo
    def frame(self, kind: str | None = None) -> st.SearchStrategy[Frame]:
        """A request of any type (or of ``kind``), broken on the wire one time in three."""
        kinds = st.just(schema.BY_NAME[kind]) if kind else _weighted_choice(self.kinds, self._kind_weights)
        tables = self.world.tables

        def contents(draw: st.DrawFn, kind: Kind) -> tuple[str, dict[str, Any]]:
            entity = draw(self.entity(kind.scope))
            table = entity if kind.scope == "table" and entity in tables else None
            return entity, draw(self.body(kind.body, table))

        return self._frame(kinds, 14, contents)

    def _frame(
        self, kinds: st.SearchStrategy[Kind], clean: int, contents: Callable[[st.DrawFn, Kind], tuple[str, dict[str, Any]]]
    ) -> st.SearchStrategy[Frame]:
        broken = weighted(
            (clean, st.just(())),
            (2, st.just(("shuffle",))),
            (5, st.lists(st.sampled_from(CORRUPTIONS), min_size=1, max_size=2).map(tuple)),
        )
        odd_msg_id = weighted((24, st.none()), (1, st.sampled_from((0, 1, 2**32 - 1) + WIDE)))

        @st.composite
        def frame(draw: st.DrawFn) -> Frame:
            kind = draw(kinds)
            node = envelope(kind, *contents(draw, kind))
            how = draw(broken)
            cut = None
            for one in how:
                if one == "truncate":
                    cut = draw(st.integers(0, 2**16))
                else:
                    _corrupt(draw, node, one)
            return Frame(kind.name, node, draw(odd_msg_id), cut, how)

        return frame()


def _hint_for(message: Message, spec: Field) -> Hint | None:
    hint = HINTS.get((message.name, spec.name))
    if hint is None and spec.kind == "uint32":
        hint = HINTS.get(("*", spec.name))
    return hint


def _weighted_choice(items: tuple[Any, ...], weights: tuple[int, ...]) -> st.SearchStrategy[Any]:
    expanded = [item for item, weight in zip(items, weights) for _ in range(weight)]
    return st.sampled_from(expanded)


def _unknown_numbers(message: Message | None) -> list[int]:
    known = set(schema.KINDS) | {schema.MSG_ID, schema.ENTITY_ID} if message is None else set(message.fields)
    return [n for n in (1, 2, 3, 4, 5, 6, 9, 11, 13, 15, 16, 42, 50, 99, 2**29 - 1) if n not in known]


def _corrupt(draw: st.DrawFn, root: Node, how: str) -> None:
    """Break ``root`` in place one way (see ``CORRUPTIONS``); a no-op where it cannot apply."""
    if how == "shuffle":
        for node in root.nodes():
            node.entries = draw(st.permutations(node.entries))
        return
    if how in ("two_bodies", "no_body"):
        if how == "no_body":
            root.entries = [e for e in root.entries if e[0] in (schema.MSG_ID, schema.ENTITY_ID)]
        else:
            other = draw(st.sampled_from(sorted(schema.KINDS)))
            root.entries.append([other, LEN, Node(schema.KINDS[other].body, [])])
        return
    node = draw(st.sampled_from(root.nodes()))
    entries = node.entries
    if how == "duplicate" and entries:
        entries.insert(draw(st.integers(0, len(entries))), list(draw(st.sampled_from(entries))))
    elif how == "unknown" or (how == "duplicate" and not entries):
        number = draw(st.sampled_from(_unknown_numbers(node.message)))
        wire = draw(st.sampled_from((VARINT, FIXED64, LEN, FIXED32)))
        value = {VARINT: 1, FIXED64: 0, FIXED32: 0, LEN: b"x"}[wire]
        entries.insert(draw(st.integers(0, len(entries))), [number, wire, value])
    elif how == "wire" and entries:
        entry = draw(st.sampled_from(entries))
        wire = draw(st.sampled_from([w for w in (VARINT, FIXED64, LEN, FIXED32, GROUP_START, GROUP_END) if w != entry[1]]))
        old = entry[2]
        as_int = 0 if old is MSG_ID_SLOT else old if isinstance(old, int) else len(old) if isinstance(old, bytes) else len(old.entries)
        entry[1] = wire
        entry[2] = {VARINT: as_int, FIXED64: as_int & (2**64 - 1), FIXED32: as_int & 0xFFFFFFFF, LEN: varint(as_int)}.get(wire, 0)
    elif how == "utf8":
        strings = [e for e in entries if e[1] == LEN and isinstance(e[2], bytes)]
        if strings:
            draw(st.sampled_from(strings))[2] = draw(st.sampled_from(BAD_UTF8))
    elif how == "wide":
        ints = [e for e in entries if e[1] == VARINT]
        if ints:
            draw(st.sampled_from(ints))[2] = draw(st.sampled_from(WIDE))
    elif how == "nonfinite":
        doubles_ = [e for e in entries if e[1] == FIXED64]
        if doubles_:
            draw(st.sampled_from(doubles_))[2] = draw(st.sampled_from(NONFINITE_BITS))
    elif how == "oneof2" and node.message is not None and node.message.oneofs:
        group = draw(st.sampled_from(node.message.oneofs))
        number = draw(st.sampled_from(sorted(group)))
        spec = node.message.fields[number]
        entries.append(_entry(number, spec, {} if spec.kind == "message" else b"" if spec.kind == "data" else schema._default(spec)))


def _columns_list(s: FrameStrategies, table: str | None) -> st.SearchStrategy[list[str]]:
    return st.lists(s.column(table), max_size=3)


def _make_view_config(s: FrameStrategies, table: str | None) -> st.SearchStrategy[dict[str, Any]]:
    return weighted((3, s.view_config(table)), (1, s.body(schema.VIEW_CONFIG, table)))


def _filter_values(s: FrameStrategies, table: str | None) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(s.scalar_value(None), max_size=3)


def _aggregations(s: FrameStrategies, table: str | None) -> st.SearchStrategy[list[str]]:
    return s.aggregate(None, s.column(table)).map(lambda agg: agg["aggregations"]) | st.just([])


def _subscription_id(s: FrameStrategies, table: str | None) -> st.SearchStrategy[int]:
    # Subscriptions are named by the msg_id of the request that made them: the harness
    # numbers each example's frames from 1.
    return weighted((6, st.integers(0, 40)), (1, st.sampled_from(UINTS)))


# (message name, field name) -> the strategy for that field's whole value; "*" matches
# the uint32 field of that name in any message. Fields without a hint get a strategy from their descriptor alone.
HINTS: dict[tuple[str, str], Hint] = {
    ("TableMakeViewReq", "view_id"): lambda s, t: s.view_id(),
    ("TableMakeViewReq", "config"): _make_view_config,
    ("TableDescribeReq", "config"): _make_view_config,
    ("ViewConfig", "group_by"): _columns_list,
    ("ViewConfig", "split_by"): _columns_list,
    ("Columns", "columns"): lambda s, t: st.lists(st.one_of(s.column(t), st.just("")), max_size=5),
    ("Filter", "column"): lambda s, t: s.column(t),
    ("Filter", "op"): lambda s, t: weighted((6, st.sampled_from(sorted(s.world.features.ops_for(None)))), (1, texts())),
    ("Filter", "value"): _filter_values,
    ("Sort", "column"): lambda s, t: s.column(t),
    ("expressions_entry", "key"): lambda s, t: st.sampled_from(ALIASES),
    ("expressions_entry", "value"): lambda s, t: s.expression(t),
    ("aggregates_entry", "key"): lambda s, t: s.column(t),
    ("AggList", "aggregations"): _aggregations,
    ("ViewGetMinMaxReq", "column_name"): lambda s, t: s.column(t),
    ("ViewToArrowReq", "compression"): lambda s, t: st.one_of(st.sampled_from(COMPRESSIONS), texts()),
    ("MakeJoinTableReq", "left_table_id"): lambda s, t: s.table_name(),
    ("MakeJoinTableReq", "right_table_id"): lambda s, t: s.table_name(),
    ("MakeJoinTableReq", "on_column"): lambda s, t: s.column(None),
    ("MakeJoinTableReq", "right_on_column"): lambda s, t: s.column(None),
    ("MakeTableData", "from_view"): lambda s, t: s.view_id(),
    ("MakeTableOptions", "make_index_table"): lambda s, t: s.column(None),
    ("KeyTypePair", "name"): lambda s, t: s.column(None),
    ("TableUpdateReq", "port_id"): lambda s, t: weighted((6, st.integers(0, 6)), (1, st.sampled_from(UINTS))),
    ("*", "id"): _subscription_id,
}


def examples(
    strategies: FrameStrategies, max_frames: int = 20, kind: str | None = None
) -> st.SearchStrategy[tuple[bool, list[bytes]]]:
    """One connection's frames: whether it may create tables, a few make_views, then anything
    (with ``kind``: mostly requests of that type).

    Frames are numbered from 1 as msg_ids, unless one drew an odd msg_id of its own.
    """

    def render(parts: tuple[bool, list[Frame], list[Frame]]) -> tuple[bool, list[bytes]]:
        client_tables, views, rest = parts
        return client_tables, [f.render(n) for n, f in enumerate(views + rest, 1)]

    views = st.integers(1, 3).flatmap(lambda n: st.tuples(*(strategies.make_view(i) for i in range(n))).map(list))
    return st.tuples(
        st.booleans(),
        views,
        st.lists(
            weighted((3, strategies.frame(kind)), (1, strategies.frame())) if kind else strategies.frame(),
            min_size=1,
            max_size=max_frames,
        ),
    ).map(render)
