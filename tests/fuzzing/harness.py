"""Drawn frames through the guard and a real engine in-process, and what must hold after.

The tables the fuzz targets, the view ids it may name, and ``Direct``: the consumer's own
receive -> decode -> check -> bind -> encode -> ``session.handle_request`` path with the
websocket taken away, every step on the engine thread, for throughput. A crash inside
Perspective kills this very process; everything else that goes wrong - a request left
unanswered, a malformed answer, a guard that raised instead of refusing, a bystander's
answer that changed, a view left behind - fails the example.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Generator
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, TypeVar

from django.contrib.auth.models import AnonymousUser

from django_perspective import access, presence, protocol, schema
from django_perspective.consumers import PerspectiveConsumer
from django_perspective.engine import Engine
from django_perspective.guard import UNSUBSCRIBE

from .frames import World
from .journal import Journal

T = TypeVar("T")

TABLE = "fuzz"
EDITABLE = "fuzz_edit"
OWN_VIEWS = ("v0", "v1", "v2", "v3", "v4", "v5")
CONTROL_VIEW = "ctl-view"
GONE_VIEW = "gone-view"

# Small limits, so the fuzz reaches each of them; no rate limit, so every frame reaches
# the guard and the engine rather than a refusal.
SETTINGS = {
    "DEFAULT_ACCESS": "public",
    "HOST_ON_START": False,
    "RATE_LIMIT": 0,
    "MAX_VIEWS": 5,
    "MAX_VIEW_CELLS": 3000,
    "MAX_READ_CELLS": 400,
    "MAX_PORTS": 3,
    "MAX_CONNECTIONS_PER_USER": 0,
    "POLL_INTERVAL": 0,
}

# Requests whose answer may come later or never: subscriptions answer on the event, a
# lazy table delete when the table's last view closes.
DEFERRED = frozenset(UNSUBSCRIBE.values()) | {"table_delete"}
CONTROL_CONFIG = {"columns": {"columns": {"columns": ["i", "s", "f"]}}, "filter": [{"column": "i", "op": "<", "value": [{"float": 5.0}]}]}


def table_rows(count: int = 40) -> list[dict[str, Any]]:
    """Every column type, nulls, non-ASCII names and values, extremes inside the table."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        {
            "i": k,
            "s": ("a", "b", "ü名", "", None)[k % 5],
            "f": (0.5 * k, -0.0, 1e300, None, -2.5e-300)[k % 5],
            "d": date(2024, 1, 1) + timedelta(days=k * 11),
            "dt": start + timedelta(hours=k * 7),
            "b": (True, False, None)[k % 3],
            "名 x": k % 3,
        }
        for k in range(count)
    ]


def editable_rows() -> list[dict[str, Any]]:
    return [{"id": k, "v": k * 1.5, "name": f"n{k}", "when": date(2024, 2, 1 + k)} for k in range(10)]


def host(engine: Engine) -> None:
    """Host the fuzz tables (engine thread) and declare who may read and write them."""
    engine.host(TABLE, table_rows(), index="i")
    engine.host(EDITABLE, editable_rows(), index="id")
    access.declare(TABLE, "public")
    access.declare(EDITABLE, "public", editable="public", expressions=False)


def payloads(engine: Engine) -> tuple[bytes, ...]:
    """Update data as a client sends it: this table's rows, another table's, a bad Arrow."""
    import pyarrow as pa

    client = engine.client
    found = [client.open_table(name).view().to_arrow() for name in (EDITABLE, TABLE)]
    sink = pa.BufferOutputStream()
    dictionary = pa.table({"id": pa.array([1, 2]).dictionary_encode(), "v": [1.0, 2.0]})
    with pa.ipc.new_stream(sink, dictionary.schema) as writer:
        writer.write_table(dictionary)
    found.append(sink.getvalue().to_pybytes())
    return tuple(found)


def world(engine: Engine) -> World:
    def build() -> World:
        catalog = engine.catalog
        names = (TABLE, EDITABLE)
        tables = {name: catalog.columns(name) or {} for name in names}
        policies = {name: access.expressions_for(name) for name in names}
        return World(tables, catalog.features(), OWN_VIEWS, (CONTROL_VIEW,), (GONE_VIEW,), payloads(engine), policies)

    return engine.run(build)


def answer_id(frame: bytes) -> int:
    """The msg_id of a response; fails unless it is a well-formed Response."""
    msg_id, bodies = 0, 0
    for number, wire, value in protocol.iter_fields(frame):
        if number == protocol.MSG_ID:
            assert wire == 0, frame
            msg_id = value
        elif number == protocol.ENTITY_ID:
            assert wire == 2, frame
        else:
            assert wire == 2, frame
            bodies += 1
    assert bodies <= 1, frame  # notifications carry no body at all
    return msg_id


def expects_answer(frame: bytes, msg_id: int) -> bool:
    """Must the frame sent as ``msg_id`` be answered at once, under that id?"""
    if schema.ids(frame)[0] != msg_id:
        return False
    try:
        return schema.decode(frame).kind.name not in DEFERRED
    except protocol.ProtocolError:
        return True


def request(msg_id: int, entity: str, kind: str, body: dict[str, Any] | None = None) -> bytes:
    spec = schema.BY_NAME[kind]
    return schema.encode(schema.Request(msg_id, entity, spec, body or {}))


class Findings(logging.Handler):
    """Errors the consumer logged: a guard or engine call that raised is a bug found."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))

    def take(self) -> list[str]:
        found, self.records = self.records, []
        return found


def watch(logger_name: str = "django_perspective") -> Findings:
    """Collect the app's errors; keep its per-refusal warnings out of a million-frame log."""
    handler = Findings()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.setLevel(logging.ERROR)
    return handler


class _Immediate:
    """The consumer's event loop, for code that is already where the answer goes."""

    @staticmethod
    def call_soon_threadsafe(fn: Callable[..., Any], *args: Any) -> None:
        fn(*args)

    @staticmethod
    def create_task(coroutine: Coroutine[Any, Any, T]) -> _Done[T]:
        return _Done(_drive(coroutine))


class _Done(Generic[T]):
    """A task that has already finished: awaiting it gives its value."""

    def __init__(self, value: T) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, T]:
        return self.value
        yield  # a generator: awaiting finishes at once


class _InlineLane:
    """Runs each call at once: the caller is on the engine thread."""

    @staticmethod
    def read(fn: Callable[..., Any], *args: Any) -> None:
        fn(*args)

    call = read

    @staticmethod
    def over_budget() -> str | None:
        return None  # the fuzzer measures the guard, not the engine time budget


class _Counted:
    """A session that counts the frames the engine itself received."""

    def __init__(self, session: Any, counts: Counter[str]) -> None:
        self.session = session
        self.counts = counts

    def handle_request(self, frame: bytes, decoded: tuple[int, str] | None = None) -> None:
        self.counts["engine"] += 1
        self.counts[f"engine {schema.KINDS[protocol.parse_envelope(frame).kind].name}"] += 1
        self.session.handle_request(frame, decoded)

    def close(self) -> None:
        self.session.close()


def _shape(reason: str) -> str:
    """A refusal without the names and numbers in it: what the run's counts group by."""
    return re.sub(r"\d+", "N", re.sub(r"'[^']*'|\"[^\"]*\"", "'X'", reason))[:60]


def _sync(fn: Callable[[str], bool]) -> Callable[[str], Awaitable[bool]]:
    async def ask(name: str) -> bool:
        return fn(name)

    return ask


def _drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits (every await here completes at once)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise AssertionError("the consumer waited outside the engine thread")


class Unplugged(PerspectiveConsumer):
    """A consumer without a websocket: its own request path, answers collected in a list.

    Built on the engine thread and driven there; access is the real policy of the declared
    tables, asked directly instead of through ``database_sync_to_async``.
    """

    def __init__(self, engine: Engine, counts: Counter[str], client_tables: bool = False) -> None:
        super().__init__(engine=engine)
        self.client_tables = client_tables
        self.scope = {"type": "websocket", "query_string": b"", "client": ("fuzz", 0), "user": AnonymousUser()}
        self._engine = engine
        self._loop = _Immediate()  # type: ignore[assignment]
        self._closed = self._too_slow = False
        self._max_request = 0
        self._lane = _InlineLane()  # type: ignore[assignment]
        self.answers: list[bytes] = []
        self._subscriptions = {}
        self._inline_cells, self._loop_thread, self._replies = 0, None, None  # every read through the lane
        assert _drive(self._admit()) == 0
        user = self.scope["user"]
        self.guard.can_read = _sync(lambda name: access.can_read(user, name))
        self.guard.can_update = _sync(lambda name: access.can_update(user, name))
        self.session = _Counted(engine.new_session(self._on_response), counts)

    def _enqueue(self, response: bytes) -> None:
        self.answers.append(response)

    def refuse(self, msg_id: int, entity_id: str, reason: str, kind: str = "") -> None:
        self.session.counts[f"refused {kind or '(undecoded)'}: {_shape(reason)}"] += 1
        super().refuse(msg_id, entity_id, reason, kind)

    def send(self, frame: bytes) -> None:
        self._last_seen = time.monotonic()
        _drive(self.receive(bytes_data=frame))

    def close(self) -> None:
        self._close_session()
        self._closed = True


def _present() -> None:
    """Count the harness as a connection of its own, so no ``Unplugged`` is the process's
    first: the first starts the code-defined tables' streams, which need an event loop."""

    async def enter() -> None:
        presence.enter("fuzz-harness")

    if not presence.count():
        asyncio.run(enter())  # the streams' tasks end with this loop: the fuzz tables have none


class Direct:
    """One engine, its fuzz tables, a control connection holding a view; examples run here.

    An example is a list of frames for one fresh connection (``client_tables`` says whether
    it may create tables), closed at the end: sessions closing with odd views is where
    Perspective aborted before.
    """

    def __init__(self, journal: Journal | None = None) -> None:
        _present()
        self.engine = Engine(poll_interval=0, concurrent_reads=False)
        self.engine.run(host, self.engine)
        self.world = world(self.engine)
        self.counts: Counter[str] = Counter()
        self.findings = watch()
        self.journal = journal
        self.engine.run(self._open_control)

    def _open_control(self) -> None:
        gone = Unplugged(self.engine, Counter())
        gone.send(request(1, TABLE, "make_view", {"view_id": GONE_VIEW}))
        gone.send(request(2, GONE_VIEW, "view_delete"))
        gone.close()
        self.control = Unplugged(self.engine, Counter())
        self.control.send(request(1, TABLE, "make_view", {"view_id": CONTROL_VIEW, "config": CONTROL_CONFIG}))
        self.baseline = self._control_answer()
        assert b"ctl-view" in self.baseline and protocol.parse_envelope(self.baseline).kind != protocol.SERVER_ERROR

    def _control_answer(self) -> bytes:
        self.control.answers.clear()
        self.control.send(request(7, CONTROL_VIEW, "view_to_columns_string"))
        (answer,) = self.control.answers
        return answer

    def run(self, frames: list[bytes], client_tables: bool, answers: Callable[[bytes], None] | None = None) -> None:
        """One connection's frames, then its close and the checks; ``answers`` sees its answers."""
        self.engine.run(self._run, frames, client_tables, answers)

    def _run(self, frames: list[bytes], client_tables: bool, answers: Callable[[bytes], None] | None) -> None:
        counts = self.counts
        if self.journal is not None:
            self.journal.example(client_tables)
        conn = Unplugged(self.engine, counts, client_tables)
        expected: dict[int, bytes] = {}
        for msg_id, data in enumerate(frames, 1):
            if self.journal is not None:
                self.journal.frame(data)
            counts["frames"] += 1
            if expects_answer(data, msg_id):
                expected[msg_id] = data
            conn.send(data)
        conn.close()
        if answers is not None:
            for answer in conn.answers:
                answers(answer)
        answered = {answer_id(answer) for answer in conn.answers}
        counts["errors"] += sum(protocol.parse_envelope(a).kind == protocol.SERVER_ERROR for a in conn.answers if _has_body(a))
        missing = sorted(set(expected) - answered)
        assert not missing, f"no answer to {[expected[m].hex() for m in missing]}"
        problems = self.findings.take()
        assert not problems, problems
        assert set(self.engine.views) == {CONTROL_VIEW}, f"views left behind: {sorted(self.engine.views)}"
        assert self._control_answer() == self.baseline, "the control connection's view changed"


def _has_body(frame: bytes) -> bool:
    return any(number > protocol.ENTITY_ID for number, _w, _v in protocol.iter_fields(frame))


class TablesConsumer(PerspectiveConsumer):
    """A consumer whose clients may create tables and write the ones they made."""

    client_tables = True


class Channels:
    """The same examples through the real consumer over Channels' WebsocketCommunicator.

    The engine keeps its reader thread, so reads and view builds run as in production. A
    control connection - perspective's own client - holds a view whose answer must never
    change. Build it inside a running event loop.
    """

    path = "/ws/perspective/"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        engine.run(host, engine)
        self.findings = watch()
        self.counts: Counter[str] = Counter()

    async def open(self) -> None:
        from channels.testing import WebsocketCommunicator

        from ..test_consumer import InProcessClient

        gone = WebsocketCommunicator(PerspectiveConsumer.as_asgi(engine=self.engine), self.path)
        assert (await gone.connect())[0]
        conn = InProcessClient(gone)
        view = await (await conn.client.open_table(TABLE)).view()
        gone_id = next(iter(self.engine.views))
        await view.delete()
        conn._pump.cancel()
        await gone.disconnect()
        self.control_socket = WebsocketCommunicator(PerspectiveConsumer.as_asgi(engine=self.engine), self.path)
        assert (await self.control_socket.connect())[0]
        self.control = InProcessClient(self.control_socket)
        table = await self.control.client.open_table(TABLE)
        self.control_view = await table.view(columns=["i", "s", "f"], filter=[["i", "<", 5]])
        self.baseline = await self.control_view.to_columns()
        assert self.baseline["i"] == [0, 1, 2, 3, 4]
        self.control_ids = set(self.engine.views)
        base = world(self.engine)
        self.world = World(
            base.tables, base.features, OWN_VIEWS, tuple(self.control_ids), (gone_id,), base.payloads, base.expressions
        )

    async def run(self, frames: list[bytes], client_tables: bool, timeout: float = 20) -> None:
        import asyncio

        from channels.testing import WebsocketCommunicator

        consumer = TablesConsumer if client_tables else PerspectiveConsumer
        socket = WebsocketCommunicator(consumer.as_asgi(engine=self.engine), self.path)
        assert (await socket.connect())[0]
        expected = {}
        for msg_id, data in enumerate(frames, 1):
            self.counts["frames"] += 1
            if expects_answer(data, msg_id):
                expected[msg_id] = data
            await socket.send_input({"type": "websocket.receive", "bytes": data})
        answered: set[int] = set()
        deadline = asyncio.get_running_loop().time() + timeout
        while not set(expected) <= answered:
            left = deadline - asyncio.get_running_loop().time()
            assert left > 0, f"no answer in {timeout} s to {[expected[m].hex() for m in sorted(set(expected) - answered)]}"
            try:
                message = await socket.receive_output(left)
            except TimeoutError:
                continue
            assert message["type"] == "websocket.send", message
            answered.add(answer_id(message["bytes"]))
        await socket.disconnect()
        for _ in range(int(timeout * 50)):  # the session closes on the engine thread, with its views
            if set(self.engine.views) == self.control_ids:
                break
            await asyncio.sleep(0.02)
        problems = self.findings.take()
        assert not problems, problems
        assert set(self.engine.views) == self.control_ids, f"views left behind: {sorted(self.engine.views)}"
        assert await asyncio.wait_for(self.control_view.to_columns(), timeout) == self.baseline

    async def close(self) -> None:
        self.control._pump.cancel()
        await self.control_socket.disconnect()
