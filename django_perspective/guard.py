"""The per-connection guard: every decoded request is checked before the engine sees it.

Perspective's server is no security boundary, and its C++ engine trusts its input. The
guard takes a request decoded against the schema (``schema.py``) and checks it against
what this connection may do (``access.py``) and against the engine's state: columns exist
in the table or are the view's own expressions, filter operators and aggregates are the
engine's for the column's type, values have the column's type and a range the engine
accepts, viewports and row indices lie inside the view. What passes is encoded again
from the checked values, so nothing unchecked reaches the engine.

``check`` runs on the event loop; ``bind`` runs on the engine thread right before the
call, against the view's size at that moment.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from . import expressions as expression_policy
from .catalog import Catalog, Dimensions
from .schema import MAKE_PORT_RESP, NULL, Request, encode_envelope_body

# A filter value on a date or datetime column is milliseconds since the epoch; Perspective
# 5.6 crashes beyond about 1e17. JavaScript's own Date range is +/- 8.64e15 ms.
DATE_LIMIT = 8.64e15
UNARY_OPS = frozenset({"is null", "is not null"})
# Aggregates Perspective 5.6.1 offers for these column types but crashes on (found by
# fuzzing): the process segfaults once one of a grouped view's groups has no rows - at once
# for "high minus low" under a filter that matches nothing, at the next read after rows
# are removed for both; "avg" of a date expression fails the make_view and crashes the next
# poll. An expression's type is the engine's to find: asked right before make_view runs.
FLAT_ROLLUP = 1  # ViewConfig.group_rollup_mode: 0 rollup, 1 flat (leaves only), 2 total
BROKEN_AGGREGATES: dict[str, frozenset[str]] = {
    "high minus low": frozenset({"integer", "float"}),
    "avg": frozenset({"date", "datetime"}),
}
MULTI_OPS = frozenset({"in", "not in"})
MAX_TERMS = 256  # filters, sorts, group_by or split_by entries, aggregates per view
MAX_VALUES = 10_000  # values of one "in" filter
MAX_NAME = 1024  # characters of a view id or column name
MAX_SUBSCRIPTIONS = 1024
CSV_HEADER_LIMIT = 65536  # bytes of a CSV payload read for its header
# Reads that cost next to nothing whatever the table's size.
SMALL_READS = frozenset({
    "get_features", "table_schema", "table_size", "view_dimensions", "view_expression_schema",
    "view_get_config", "view_schema",
})
VIEWPORT_KINDS = frozenset({"view_to_arrow", "view_to_columns_string", "view_to_csv", "view_to_rows_string", "view_to_ndjson_string"})
CREATE_KINDS = frozenset({"make_table", "make_join_table"})
WRITE_KINDS = frozenset({"table_update", "table_remove", "table_replace", "table_delete"})
# Removing a subscription names the msg_id of the request that made it.
UNSUBSCRIBE = {
    "view_remove_on_update": "view_on_update",
    "view_remove_delete": "view_on_delete",
    "view_remove_on_remove": "view_on_remove",
    "table_remove_delete": "table_on_delete",
    "remove_hosted_tables_update": "get_hosted_tables",
}


class Refused(Exception):
    """A request the guard will not pass on; the message is the client's error text."""


@dataclass(slots=True)
class ViewState:
    """What a connection's view was made from, for checking the requests that name it."""

    table: str
    columns: frozenset[str]  # the table's columns and the view's expressions
    group_by: int
    split_by: int
    cells: int = 0  # rows x columns when grouped or split: what MAX_VIEW_CELLS counts
    probe: tuple[tuple[str, str], ...] = ()  # (expression, aggregate) its type allows or not
    flat: bool = False  # group_rollup_mode 1: leaves only, no tree to set a depth in


@dataclass(slots=True)
class Limits:
    max_views: int = 0
    max_view_cells: int = 0
    max_read_cells: int = 0
    max_ports: int = 0
    rate: float = 0
    burst: float = 0
    ttl: float = 5.0


@dataclass
class Guard:
    """What one connection has done and may do; access decisions are cached for ``ttl``.

    ``owned`` is the engine's map of every open view id to its guard: a view id belongs to
    its connection from the make_view that claims it until the engine has deleted the view.
    """

    can_read: Callable[[str], Awaitable[bool]]
    can_update: Callable[[str], Awaitable[bool]]
    catalog: Catalog
    owned: dict[str, Guard]
    expressions: Callable[[str], expression_policy.Policy] = lambda name: "safe"
    # Told (event loop) when a fresh decision finds a table with open views unreadable, so
    # they are deleted then - not only at the next re-validation - and stop getting updates.
    on_unreadable: Callable[[str], None] | None = None
    limits: Limits = field(default_factory=Limits)
    client_tables: bool = False
    views: dict[str, ViewState] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)
    subscriptions: dict[int, tuple[str, str]] = field(default_factory=dict)
    # View id -> table, for views deleted because their table became unreadable for this
    # connection (``revoke``): calls on them fail like calls on a missing table.
    revoked: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _tokens: float = 0.0
    _stamp: float = field(default_factory=time.monotonic)
    _read: dict[str, tuple[bool, float]] = field(default_factory=dict)
    _update: dict[str, tuple[bool, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.limits.burst = self.limits.burst or self.limits.rate
        self._tokens = self.limits.burst

    async def readable(self, name: str) -> bool:
        if name in self.created:
            return True
        allowed = await self._cached(self._read, self.can_read, name)
        if not allowed and self.on_unreadable is not None and name in self.tables():
            self.on_unreadable(name)
        return allowed

    async def updatable(self, name: str) -> bool:
        if name in self.created:
            return True
        return await self._cached(self._update, self.can_update, name)

    async def _cached(self, cache: dict[str, tuple[bool, float]], ask: Callable[[str], Awaitable[bool]], name: str) -> bool:
        now = time.monotonic()
        hit = cache.get(name)
        if hit is not None and hit[1] > now:
            return hit[0]
        allowed = await ask(name)
        cache[name] = (allowed, now + self.limits.ttl)
        return allowed

    def _take(self) -> bool:
        rate = self.limits.rate
        if not rate:
            return True
        now = time.monotonic()
        self._tokens = min(self.limits.burst, self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def check(self, request: Request, columns: Callable[[str], Awaitable[dict[str, str] | None]]) -> str | None:
        """Return why ``request`` is refused, or None; may normalise ``request.body``.

        ``columns(table)`` returns the table's column types (None: no such table).
        """
        if not self._take():
            return f"rate limit: more than {self.limits.rate:g} requests per second"
        try:
            await self._check(request, columns)
        except Refused as exc:
            return str(exc)
        if request.kind.name in UNSUBSCRIBE:
            del self.subscriptions[request.body.get("id", 0)]
        return None

    async def _check(self, request: Request, columns: Callable[[str], Awaitable[dict[str, str] | None]]) -> None:
        kind = request.kind
        name = request.entity_id
        body = request.body
        if kind.name in UNSUBSCRIBE:
            self._subscribed(kind.name, body.get("id", 0))
        if kind.scope == "global":
            if kind.name == "get_hosted_tables" and body.get("subscribe"):
                self._subscribe(request, name)
            return
        if kind.scope == "view":
            if name in self.revoked:
                raise Refused(self._revoked(name, kind.name))
            view = self.views.get(name)
            if view is None:
                raise Refused(f"View not found: {name!r}")
            if not await self.readable(view.table):
                raise Refused(f"Unknown table {view.table!r}")
            self._check_view_request(request, view)
            return
        if kind.scope == "create":
            await self._check_create(request, columns)
            return
        if not await self.readable(name):
            raise Refused(f"Unknown table {name!r}")
        table = await columns(name)
        if table is None:
            raise Refused(f"Unknown table {name!r}")
        if kind.name == "make_view":
            self._check_make_view(request, name, table)
        elif kind.name == "table_describe":
            self._check_config(body.get("config", {}), name, table)
        elif kind.name == "make_port":
            if not await self.updatable(name):
                # The viewer asks for a port on load; a reader never writes through one, so
                # it gets the table's default port and the engine allocates nothing.
                request.reply = encode_envelope_body(request.msg_id, name, kind.number, {}, MAKE_PORT_RESP)
                return
            if self.limits.max_ports and len(self.ports) >= self.limits.max_ports:
                raise Refused(f"too many ports: at most {self.limits.max_ports} per connection")
        elif kind.name == "table_on_delete":
            self._subscribe(request, name)
        elif kind.name in WRITE_KINDS:
            await self._check_write(request, name, table)

    def _subscribe(self, request: Request, entity: str) -> None:
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise Refused(f"too many subscriptions: at most {MAX_SUBSCRIPTIONS} per connection")
        self.subscriptions[request.msg_id] = (request.kind.name, entity)

    def _subscribed(self, kind: str, ident: int) -> None:
        held = self.subscriptions.get(ident)
        if held is None or held[0] != UNSUBSCRIBE[kind]:
            raise Refused(f"no subscription {ident} to remove")

    def _check_view_request(self, request: Request, view: ViewState) -> None:
        name = request.kind.name
        body = request.body
        if name in ("view_on_update", "view_on_delete", "view_on_remove"):
            self._subscribe(request, request.entity_id)
        elif name in ("view_collapse", "view_expand"):
            if not view.group_by:
                raise Refused(f"{name[5:]} needs a view with group_by")
        elif name == "view_set_depth":
            if view.flat:
                # Found by fuzzing: set_depth on a flat grouped view with no rows (a filter
                # that matches nothing, or rows removed) segfaults Perspective 5.6.1.
                raise Refused("set_depth is not available on a flat view (group_rollup_mode 1): it has no levels")
            if body.get("depth", 0) > view.group_by:
                raise Refused(f"depth {body.get('depth', 0)} is deeper than the view's {view.group_by} group_by levels")
        elif name == "view_get_min_max":
            if body.get("column_name", "") not in view.columns:
                raise Refused(f"no column {body.get('column_name', '')!r} in this view")
        elif name == "view_column_paths":
            _ordered(body, "start_col", "end_col")
        elif name in VIEWPORT_KINDS:
            viewport = body.get("viewport", {})
            _ordered(viewport, "start_row", "end_row")
            _ordered(viewport, "start_col", "end_col")
            if name == "view_to_arrow" and body.get("compression") not in (None, "lz4", "zstd"):
                raise Refused(f"unknown compression {body['compression']!r}: use lz4 or zstd")

    def _check_make_view(self, request: Request, table: str, columns: dict[str, str]) -> None:
        view_id = request.body.get("view_id", "")
        if not view_id or len(view_id) > MAX_NAME:
            raise Refused("make_view needs a view id of 1 to 1024 characters")
        if self.limits.max_views and len(self.views) >= self.limits.max_views:
            raise Refused(f"too many open views: at most {self.limits.max_views} per connection")
        config = request.body.setdefault("config", {})
        probe: list[tuple[str, str]] = []
        known = self._check_config(config, table, columns, probe)
        with self._lock:
            if view_id in self.owned:
                raise Refused(f"view id {view_id!r} is already in use")
            self.owned[view_id] = self
            self.views[view_id] = ViewState(
                table,
                known,
                len(config.get("group_by", ())),
                len(config.get("split_by", ())),
                probe=tuple(probe),
                flat=config.get("group_rollup_mode") == FLAT_ROLLUP,
            )

    def _check_config(
        self, config: dict[str, Any], table: str, columns: dict[str, str], probe: list[tuple[str, str]] | None = None
    ) -> frozenset[str]:
        """Check a ViewConfig against the table; return the names a view of it may use.

        ``probe`` collects the aggregates on expressions that only the expression's type
        allows or not (see ``bind_make_view``).
        """
        exprs: dict[str, str] = config.get("expressions", {})
        reason = expression_policy.check(self.expressions(table), exprs)
        if reason:
            raise Refused(reason)
        types: dict[str, str | None] = {**columns, **{alias: None for alias in exprs}}
        features = self.catalog.features()
        for key in ("group_by", "split_by"):
            names = config.get(key, [])
            _count(names, key)
            for column in names:
                _known(types, column, key)
        selected = config.get("columns", {}).get("columns", {}).get("columns", [])
        _count(selected, "columns", len(types) + MAX_TERMS)
        for column in selected:
            if column:  # the viewer sends "" for an empty column slot
                _known(types, column, "columns")
        terms = config.get("filter", [])
        _count(terms, "filter")
        for term in terms:
            _check_filter(term, types, features.ops_for(types.get(term.get("column", ""))))
        sorts = config.get("sort", [])
        _count(sorts, "sort")
        sorted_by: set[str] = set()
        for sort in sorts:
            column = sort.get("column", "")
            _known(types, column, "sort")
            if column in sorted_by:
                # Found by fuzzing: a grouped view sorted by one column twice, a column sort
                # ("col asc", "col desc") then a row sort, corrupts Perspective 5.6.1's heap.
                raise Refused(f"sort: column {column!r} is sorted twice")
            sorted_by.add(column)
        aggregates: dict[str, dict[str, Any]] = config.get("aggregates", {})
        _count(aggregates, "aggregates", len(types) + MAX_TERMS)
        for column, agg in aggregates.items():
            _known(types, column, "aggregates")
            spec = agg.get("aggregations", [])
            allowed = features.aggregates_for(types[column])
            if spec and spec[0] in BROKEN_AGGREGATES:
                broken = BROKEN_AGGREGATES[spec[0]]
                if types[column] in broken or types[column] is None and broken >= features.types_with(spec[0]):
                    raise Refused(_broken(spec[0], types[column], column))
                if types[column] is None and probe is not None:
                    probe.append((column, spec[0]))
            if not spec or spec[0] not in allowed:
                raise Refused(f"aggregate {spec[0] if spec else ''!r} is not available for column {column!r}")
            if len(spec) - 1 != allowed[spec[0]]:
                raise Refused(f"aggregate {spec[0]!r} takes {allowed[spec[0]]} column argument(s)")
            for argument in spec[1:]:
                _known(types, argument, f"aggregate {spec[0]!r}")
        depth = config.get("group_by_depth")
        if depth is not None and depth > len(config.get("group_by", ())):
            config["group_by_depth"] = len(config.get("group_by", ()))
        return frozenset(types)

    async def _check_create(self, request: Request, columns: Callable[[str], Awaitable[dict[str, str] | None]]) -> None:
        name = request.entity_id
        if not self.client_tables:
            verb = "join" if request.kind.name == "make_join_table" else "make_table"
            raise Refused(f"{verb} is not allowed: tables are created on the server")
        if not name or len(name) > MAX_NAME:
            raise Refused("a new table needs a name of 1 to 1024 characters")
        if await columns(name) is not None:
            raise Refused(f"a table named {name!r} already exists")
        body = request.body
        if request.kind.name == "make_join_table":
            for side in ("left_table_id", "right_table_id"):
                if not await self.readable(body.get(side, "")) or await columns(body.get(side, "")) is None:
                    raise Refused(f"Unknown table {body.get(side, '')!r}")
        else:
            if "from_view" in body.get("data", {}):
                # Found by fuzzing: the new table keeps the engine bound to the view's id;
                # once the view is deleted and its id made again, closing the session aborts
                # Perspective 5.6.1 ("View not found").
                raise Refused("make_table from a view is not allowed: send the view's rows instead")
            arrow = body.get("data", {}).get("from_arrow")
            if arrow is not None:
                _check_new_arrow(arrow)
        self.created.add(name)

    async def _check_write(self, request: Request, name: str, columns: dict[str, str]) -> None:
        kind = request.kind.name
        if kind == "table_delete" and name in self.created:
            return
        if kind in ("table_delete", "table_replace", "table_remove") and name not in self.created:
            raise Refused(f"table {name!r} is read-only: {kind[6:]} is not allowed")
        if not await self.updatable(name):
            raise Refused(f"table {name!r} is read-only: update is not allowed")
        data = request.body.get("data", {})
        if "from_view" in data or "from_schema" in data:
            raise Refused(f"{kind[6:]} takes rows, not a schema or a view")
        if "from_csv" in data:
            # Found by fuzzing: CSV rows with a column the table lacks, holding text, abort
            # Perspective 5.6.1 (std::invalid_argument from stoll) on update and replace.
            extra = [column for column in _csv_header(data["from_csv"]) if column not in columns]
            if extra:
                raise Refused(f"{kind[6:]}: the CSV has columns the table lacks: {', '.join(map(repr, extra[:5]))}")
        port = request.body.get("port_id", 0)
        if port and port not in self.ports:
            raise Refused(f"port {port} was not made by this connection")

    def bind(self, request: Request, dims: Dimensions | None) -> str | None:
        """Check a view request against the view's size now (engine thread); clamp ranges."""
        name = request.kind.name
        if dims is None:
            return f"View not found: {request.entity_id!r}"
        body = request.body
        if name in VIEWPORT_KINDS:
            viewport = body.setdefault("viewport", {})
            rows = _clamp(viewport, "start_row", "end_row", dims.rows)
            cols = _clamp(viewport, "start_col", "end_col", dims.columns)
            cells = rows * max(cols, 1)
            limit = self.limits.max_read_cells
            if limit and cells > limit:
                return (
                    f"this read covers {rows} rows x {cols} columns = {cells} cells: at most {limit} per "
                    "request (PERSPECTIVE['MAX_READ_CELLS']); ask for a smaller viewport"
                )
        elif name == "view_column_paths":
            _clamp(body, "start_col", "end_col", dims.columns)
        elif name in ("view_collapse", "view_expand"):
            index = body.get("row_index", 0)
            if index >= dims.rows:
                return f"row_index {index} is outside the view's {dims.rows} rows"
        return None

    def bind_make_view(self, request: Request) -> str | None:
        """Before make_view runs (engine thread): what only the engine's typing of the
        view's expressions shows. A refused view's id is released."""
        view_id = request.body.get("view_id", "")
        view = self.views.get(view_id)
        if view is None or not view.probe:
            return None
        sources = request.body.get("config", {}).get("expressions", {})
        found = self.catalog.expression_types(view.table, {alias: sources[alias] for alias, _ in view.probe})
        for alias, aggregate in view.probe:
            if found.get(alias) in BROKEN_AGGREGATES[aggregate]:
                self.release(view_id)
                return _broken(aggregate, found[alias], alias)
        return None

    def admit_view(self, view_id: str, dims: Dimensions | None) -> str | None:
        """After make_view ran (engine thread): None to keep the view, else why it goes."""
        if dims is None:
            self.release(view_id)
            return ""
        view = self.views.get(view_id)
        if view is None or not (view.group_by or view.split_by):
            return None
        view.cells = dims.rows * dims.columns
        limit = self.limits.max_view_cells
        held = sum(v.cells for v in list(self.views.values()))
        if limit and held > limit:
            return (
                f"this view has {dims.rows} rows x {dims.columns} columns = {view.cells} cells, and this "
                f"connection's grouped and split views would hold {held}: at most {limit} "
                "(PERSPECTIVE['MAX_VIEW_CELLS']); group by columns with fewer distinct values, or "
                "close other views"
            )
        return None

    def release(self, view_id: str) -> None:
        """The engine has deleted ``view_id`` (engine thread): its id is free again.

        Its cached size goes too (found by fuzzing): the next view under the id was checked
        against the old one's columns, and a column range clamped to them made Perspective
        5.6.1 allocate without bound.
        """
        self.catalog.forget_view(view_id)
        with self._lock:
            self.views.pop(view_id, None)
            if self.owned.get(view_id) is self:
                del self.owned[view_id]
            for ident, (_kind, entity) in list(self.subscriptions.items()):
                if entity == view_id:
                    del self.subscriptions[ident]

    def release_all(self) -> None:
        """The connection's session has closed, and with it all its views."""
        with self._lock:
            for view_id in self.views:
                self.catalog.forget_view(view_id)
                if self.owned.get(view_id) is self:
                    del self.owned[view_id]
            self.views.clear()

    def revoke(self, table: str) -> list[str]:
        """``table`` became unreadable: mark this connection's views on it revoked; their ids.

        Any thread. The caller deletes them in the engine (which ``release``s them); from
        now on calls on them fail like calls on a missing table, whatever the policy says
        later. The cached decisions about the table are dropped too.
        """
        with self._lock:
            ids = [view_id for view_id, view in self.views.items() if view.table == table and view_id not in self.revoked]
            self.revoked.update(dict.fromkeys(ids, table))
        self._read.pop(table, None)
        self._update.pop(table, None)
        return ids

    def _revoked(self, view_id: str, kind: str) -> str:
        """A revoked view fails like its missing table; deleting it forgets it."""
        table = self.revoked.pop(view_id) if kind == "view_delete" else self.revoked[view_id]
        return f"Unknown table {table!r}"

    def forget(self) -> None:
        """Drop every cached access decision: the next check asks the policies again."""
        self._read.clear()
        self._update.clear()

    def tables(self) -> set[str]:
        """The tables this connection has views on (not revoked)."""
        with self._lock:
            return {view.table for view_id, view in self.views.items() if view_id not in self.revoked}

    def views_on(self, table: str) -> list[str]:
        """This connection's views of ``table``."""
        with self._lock:
            return [view_id for view_id, view in self.views.items() if view.table == table]

    async def filter_hosted_tables(self, body: dict[str, Any]) -> bool:
        """Drop the tables this connection may not read from a decoded listing; True if any."""
        infos = body.get("table_infos", [])
        kept = [info for info in infos if await self.readable(info.get("entity_id", ""))]
        body["table_infos"] = kept
        return len(kept) != len(infos)


def _csv_header(payload: Any) -> list[str]:
    """The column names in the first record of CSV ``payload`` (UTF-8, checked by the schema)."""
    head = str(payload[:CSV_HEADER_LIMIT], "utf-8", "ignore")
    if len(payload) > CSV_HEADER_LIMIT and "\n" not in head:
        raise Refused(f"the CSV's header is longer than {CSV_HEADER_LIMIT} bytes")
    try:
        return next(csv.reader(io.StringIO(head)), [])
    except csv.Error:
        return []  # not CSV the engine can read: it refuses it


def _check_new_arrow(payload: Any) -> None:
    """Refuse an Arrow table Perspective 5.6.1 cannot be created from without crashing.

    A dictionary-encoded integer column segfaults the engine when a table is made from it
    (updates of an existing table are refused by the engine itself). Only the schema is read.
    """
    try:
        import pyarrow as pa
    except ImportError as exc:  # cannot look inside: fail closed
        raise Refused("make_table from Arrow needs pyarrow on the server to check the data") from exc
    buffer = pa.py_buffer(payload)
    try:
        arrow_schema = pa.ipc.open_stream(buffer).schema
    except (pa.ArrowException, OSError):  # a short stream raises OSError
        try:
            arrow_schema = pa.ipc.open_file(buffer).schema
        except (pa.ArrowException, OSError):
            return  # not Arrow: the engine refuses it
    for column in arrow_schema:
        if _dictionary_of_integers(column.type):
            raise Refused(
                f"column {column.name!r} is dictionary-encoded integers ({column.type}): "
                "Perspective 5.6.1 crashes on it; send the plain values"
            )


def _dictionary_of_integers(arrow_type: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        return pa.types.is_integer(arrow_type.value_type) or _dictionary_of_integers(arrow_type.value_type)
    return any(_dictionary_of_integers(arrow_type.field(i).type) for i in range(arrow_type.num_fields))


def _broken(aggregate: str, column_type: str | None, column: str) -> str:
    of = f"the {column_type} column {column!r}" if column_type else f"the expression {column!r}"
    return f"aggregate {aggregate!r} is not available for {of}: Perspective 5.6.1 crashes on it when a group has no rows"


def _known(types: dict[str, str | None], column: str, where: str) -> None:
    if column not in types:
        raise Refused(f"{where}: no column {column!r} in this table")


def _count(items: Any, where: str, limit: int = MAX_TERMS) -> None:
    if len(items) > limit:
        raise Refused(f"{where}: {len(items)} entries, at most {limit}")


def _ordered(span: dict[str, int], start: str, end: str) -> None:
    if start in span and end in span and span[start] > span[end]:
        raise Refused(f"{start} {span[start]} is after {end} {span[end]}")


def is_small_read(request: Request, dims: Dimensions | None, max_cells: int) -> bool:
    """A read whose cost is known to be small: metadata, or a window of at most ``max_cells``.

    ``dims`` is the view's size if known; a window of a view of unknown size is not small.
    """
    name = request.kind.name
    if name in SMALL_READS:
        return True
    if name not in VIEWPORT_KINDS or dims is None:
        return False
    viewport = request.body.get("viewport", {})
    rows = _bounds(viewport, "start_row", "end_row", dims.rows)
    cols = _bounds(viewport, "start_col", "end_col", dims.columns)
    return (rows[1] - rows[0]) * max(cols[1] - cols[0], 1) <= max_cells


def _bounds(span: dict[str, int], start: str, end: str, size: int) -> tuple[int, int]:
    """``start``/``end`` brought inside ``0..size`` (``span`` itself untouched)."""
    last = min(span.get(end, size), size)
    return min(span.get(start, 0), last), last


def _clamp(span: dict[str, int], start: str, end: str, size: int) -> int:
    """Bring ``start``/``end`` inside ``0..size``; return how many they cover."""
    first, last = _bounds(span, start, end, size)
    if end in span or last != size:
        span[end] = last
    if start in span:
        span[start] = first
    return last - first


def _check_filter(term: dict[str, Any], types: dict[str, str | None], ops: frozenset[str]) -> None:
    column = term.get("column", "")
    _known(types, column, "filter")
    op = term.get("op", "")
    if op not in ops:
        raise Refused(f"filter operator {op!r} is not available for column {column!r}")
    values: list[dict[str, Any]] = term.get("value", [])
    if op in UNARY_OPS:
        if any(v and "null" not in v for v in values):
            raise Refused(f"filter operator {op!r} takes no value")
        term["value"] = [{"null": NULL}]  # what Perspective's clients send
        return
    if not values or (len(values) > 1 and op not in MULTI_OPS):
        raise Refused(f"filter operator {op!r} on {column!r} needs {'values' if op in MULTI_OPS else 'one value'}")
    if len(values) > MAX_VALUES:
        raise Refused(f"filter {op!r} on {column!r}: {len(values)} values, at most {MAX_VALUES}")
    column_type = types[column]
    for value in values:
        _check_value(value, column, column_type)


def _check_value(value: dict[str, Any], column: str, column_type: str | None) -> None:
    if "float" in value:
        number = value["float"]
        if column_type in ("string", "boolean"):
            raise Refused(f"filter on {column_type} column {column!r} needs a {column_type}, not a number")
        if column_type in ("date", "datetime", None) and abs(number) > DATE_LIMIT:
            raise Refused(f"filter value {number:g} on {column!r} is out of range (at most {DATE_LIMIT:g})")
    elif "string" in value:
        if column_type in ("integer", "float", "boolean"):
            raise Refused(f"filter on {column_type} column {column!r} needs a {'boolean' if column_type == 'boolean' else 'number'}, not a string")
    elif "bool" in value:
        if column_type not in ("boolean", None):
            raise Refused(f"filter on {column_type} column {column!r} needs a {'number' if column_type in ('integer', 'float') else column_type}, not a boolean")
    else:
        raise Refused(f"filter on {column!r} needs a value")
