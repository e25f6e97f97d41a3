"""The per-process Perspective engine: one ``perspective.Server``, one engine thread.

Every call into a Perspective server blocks its thread, and concurrent calls from several
threads have been reported to leave a table's last update invisible. So every call that
changes anything - session requests that make or delete views, server-side updates,
table creation, polls - runs on a single engine thread; requests that only read may run
on one reader thread beside it. Work is queued per connection (``Lane``; the server's own
work is one more lane, in order) and served least-loaded first (``scheduler.py``), so one
client's backlog cannot starve another.

Polls are paced (``POLL_INTERVAL``) so a stream's updates reach viewers in batches, but
every request passes one rule (``Engine._request``): a request that is not a write runs
only once the writes before it are polled. So a client reads its own writes, and the
order update -> make_view -> poll, which hangs Perspective 5.6.1 for ever, cannot happen.
A watchdog reports calls running past ``ENGINE_CALL_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import perspective

from . import conf, memory, presence, protocol, scheduler, schema
from .catalog import Catalog
from .data import encode

T = TypeVar("T")

# Requests that change no engine state: the poll Perspective asks for after each one has
# nothing to apply, and answering it would wake two threads per read.
READS = frozenset(number for number, kind in schema.KINDS.items() if kind.read)

logger = logging.getLogger("django_perspective.engine")

EXIT_GRACE = 5.0  # seconds a running engine call may take to finish once the process exits


class TableNotFound(LookupError):
    """No table is hosted under that name."""


StartHook = Callable[["Engine"], None]
MissingTableHook = Callable[["Engine", str], bool]

# Set from ``AppConfig.ready()`` by the modules that know which tables exist (tables.py,
# publishing.py): the engine hosts them without importing those modules.
_start_hooks: list[StartHook] = []
_missing_table_hooks: list[MissingTableHook] = []


def on_start(hook: StartHook) -> None:
    """Run ``hook(engine)`` on the engine thread when an engine starts: it hosts its tables."""
    if hook not in _start_hooks:
        _start_hooks.append(hook)


def on_missing_table(hook: MissingTableHook) -> None:
    """Ask ``hook(engine, name)`` to host ``name`` when it is opened but not hosted; True if it did."""
    if hook not in _missing_table_hooks:
        _missing_table_hooks.append(hook)


class Session:
    """A connection's Perspective session: its requests pass the engine's poll rule.

    While a write of its own is handled, its replies are held back until the poll after
    it has run, so the notifications it causes (``on_update``, ``on_remove``) reach the
    client before the write resolves - the order of Perspective's in-process client.
    """

    def __init__(self, engine: Engine, callback: Callable[[bytes], None]) -> None:
        self._engine = engine
        self._callback = callback
        self._held: list[bytes] | None = None
        self.raw = engine.server.new_session(self._on_response)

    def _on_response(self, response: bytes) -> None:
        if self._held is not None:
            self._held.append(response)
        else:
            self._callback(response)

    def handle_request(self, frame: bytes, decoded: tuple[int, str] | None = None) -> None:
        """Run ``frame``; ``decoded`` is its (type number, entity) if the caller knows them."""
        self._engine._request(self.raw, frame, client=self, decoded=decoded)

    def write_then_poll(self, frame: bytes) -> None:
        self._held = []
        try:
            self.raw.handle_request(frame)
        finally:
            held, self._held = self._held, None
            try:
                self._engine._poll()
            finally:
                for response in held:
                    self._callback(response)

    def close(self) -> None:
        # Perspective's session holds our callback and we hold it: a cycle through an object
        # Python's collector cannot see into. Drop our side, or every closed connection
        # (with whatever replies its consumer still queued) stays in memory.
        raw, self.raw = self.raw, None
        self._callback = _dropped
        raw.close()


def _dropped(_response: bytes) -> None:
    """The callback of a closed session: late replies have nobody to go to."""


class Engine:
    """Owns one Perspective server, the engine and reader threads and their lanes."""

    def __init__(
        self,
        poll_interval: float | None = None,
        concurrent_reads: bool | None = None,
        call_timeout: float | None = None,
    ) -> None:
        self.poll_interval = conf.get("POLL_INTERVAL") if poll_interval is None else poll_interval
        self.call_timeout = conf.get("ENGINE_CALL_TIMEOUT") if call_timeout is None else call_timeout
        if concurrent_reads is None:
            concurrent_reads = conf.get("CONCURRENT_READS")
        self._exclusive = threading.Lock()  # reader threads read only outside exclusive()
        self._poll_lock = threading.Lock()
        self._poll_requested = False  # Perspective asked for a poll (it does after every request)
        self._writes_pending = False  # a write was handled since the last poll
        self._last_poll = 0.0
        self._polling = False  # the engine thread is inside server.poll()
        self._reading = threading.local()  # .now: this thread runs a read (its poll request is moot)
        self._closed = False
        self._worker = scheduler.Worker("perspective-engine", chore=self._paced_poll)
        # Pure reads may run on this one reader thread while the engine thread builds another
        # connection's view; everything that writes or polls stays on the engine thread.
        self._reader = (
            scheduler.Worker("perspective-reader", admit=self._reader_admit, guard=self._exclusive)
            if concurrent_reads
            else None
        )
        self._server_lane = scheduler.Lane(self._route, label="server")
        self._starting = False  # start() has begun: it runs once
        self._ready = False  # start() has finished: the tables it hosts are listed
        self._poll_wanted = threading.Event()
        threading.Thread(target=self._pacer, name="perspective-poll-pacer", daemon=True).start()
        if self.call_timeout:
            threading.Thread(target=self._watch, name="perspective-watchdog", daemon=True).start()
        # Every view id open on this server -> the guard of the connection that owns it
        # (see guard.py): an id is free only once the engine has deleted its view.
        self.views: dict[str, Any] = {}
        # Called on the engine thread with a table's name just before ``delete``: each open
        # connection deletes its views on the table through its own session.
        self.before_delete: set[Callable[[str], None]] = set()
        self.server: perspective.Server
        self.client: perspective.Client
        self.run(self._init)

    def _init(self) -> None:
        self.server = perspective.Server(on_poll_request=self._on_poll_request)
        # The server's own client goes through a session of ours rather than
        # new_local_client(), so its requests pass the same poll rule as the connections'.
        self._local = self.server.new_session(self._on_local_response)
        self.client = perspective.Client(self._local_request)
        self.catalog = Catalog(self.server)
        # Requests the local client would block on (a lazy delete waits for the table's
        # last view to close: on this thread, forever) go through this session instead.
        self._control = self.server.new_session(self._on_control_response)
        self._control_ids = itertools.count(1)

    def on_engine_thread(self) -> bool:
        return threading.get_ident() == self._worker.ident

    def _route(self, task: scheduler.Task) -> scheduler.Worker:
        # A read goes to the reader thread only while no write waits for its poll.
        if task.read and self._reader is not None and not self._writes_pending:
            return self._reader
        return self._worker

    def _reader_admit(self, _task: scheduler.Task) -> scheduler.Worker | None:
        return self._worker if self._writes_pending else None

    def read_now(self, lane: scheduler.Lane, fn: Callable[..., Any], *args: Any) -> bool:
        """Run a cheap read on the calling thread (the event loop) if nothing could make it wait.

        Only while no write waits for its poll, the engine thread is not polling and the
        reader's lock comes free within half a millisecond (the reader finishing a small
        read; never a multi-step change): so the read runs as it would on the reader, minus
        two thread hand-offs and the GIL's ping-pong. False: queue it as usual.
        """
        if self._reader is None or self._writes_pending or self._polling:
            return False
        if not self._exclusive.acquire(timeout=0.0005):
            return False
        try:
            return not self._writes_pending and lane.run_here(fn, *args)
        finally:
            self._exclusive.release()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue ``fn(*args)`` on the engine thread, in the server's lane; never blocks."""
        return self._server_lane.submit(fn, *args)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold reads off while the engine thread makes several changes that belong together.

        Reads run beside the engine thread; a listing between a table's delete and its
        re-creation would report it missing.
        """
        with self._exclusive:
            yield

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the engine thread and wait for its result."""
        if self.on_engine_thread():
            return fn(*args)
        return self.submit(fn, *args).result()

    async def arun(self, fn: Callable[..., T], *args: Any) -> T:
        """Await ``fn(*args)`` on the engine thread without blocking the event loop."""
        if self.on_engine_thread():
            return fn(*args)
        return await asyncio.wrap_future(self.submit(fn, *args))

    def _request(
        self, session: Any, frame: bytes, *, client: Session | None = None, decoded: tuple[int, str] | None = None
    ) -> None:
        """Hand one request to Perspective under the poll rule.

        A write marks a poll pending; a connection's write (``client``) is polled at once
        (its next read sees it, its notifications come first), a server-side write waits
        for the paced poll, so streams keep their batching. Anything else that touches a
        table first polls pending writes: never update -> make_view -> poll.
        """
        if decoded is None:
            try:
                envelope = protocol.parse_envelope(frame)
                decoded = (envelope.kind, envelope.entity_id)
            except protocol.ProtocolError:
                decoded = (0, "")
        kind = decoded[0]
        write = kind in protocol.WRITES
        engine_thread = self.on_engine_thread()
        if self._writes_pending and engine_thread and not write and kind not in protocol.TABLELESS:
            self._poll()
        scheduler.note(*decoded)
        if write:
            self._writes_pending = True
            if client is not None and engine_thread:
                client.write_then_poll(frame)
                return
        if kind in READS:
            self._reading.now = True
            try:
                session.handle_request(frame)
            finally:
                self._reading.now = False
            return
        session.handle_request(frame)

    def _local_request(self, frame: bytes) -> None:
        self._request(self._local, bytes(frame))

    def _on_local_response(self, response: bytes) -> None:
        self.client.handle_response(response)

    def _on_control_response(self, response: bytes) -> None:
        envelope = protocol.parse_response(response)
        logger.debug("table %r freed (request %s)", envelope.entity_id, envelope.msg_id)

    def _on_poll_request(self, _server: Any) -> None:
        # Perspective asks for a poll after each request, on the thread that made it; one
        # poll per interval applies everything that arrived meanwhile and sends one
        # notification per view. A read's request is dropped unless a write waits anyway:
        # Perspective asks again after the next request, polled or not (test_engine pins it).
        if getattr(self._reading, "now", False) and not self._writes_pending:
            return
        with self._poll_lock:
            if self._poll_requested:
                return
            self._poll_requested = True
        if self._last_poll + self.poll_interval <= time.monotonic():
            self._worker.poke()
        else:
            self._poll_wanted.set()

    def _pacer(self) -> None:
        """Ask for the deferred poll once the interval since the last one has passed."""
        while not self._closed:
            self._poll_wanted.wait()
            self._poll_wanted.clear()
            delay = self._last_poll + self.poll_interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._worker.poke()

    def _paced_poll(self) -> None:
        if self._poll_requested or self._writes_pending:
            self._poll()

    def _poll(self) -> None:
        with self._poll_lock:
            wrote, self._writes_pending = self._writes_pending, False
            self._poll_requested = False
            self._last_poll = time.monotonic()
        self._polling = True
        try:
            self.server.poll()
        finally:
            self._polling = False
        if wrote:  # a poll after reads alone changes no view's size
            self.catalog.polled()

    def flush(self) -> None:
        """Apply pending writes now (engine thread only).

        Every request does this first (``_request``); Python code calls it before reading
        a ``Table`` so it reads its own writes.
        """
        if self._writes_pending:
            self._poll()

    def _watch(self) -> None:
        """Log each call that runs past ``call_timeout`` once, with what it is and whose."""
        while not self._closed:
            time.sleep(min(1.0, self.call_timeout / 4))
            for worker in self._workers():
                running = worker.running
                if running is not None and not running.reported and running.seconds() > self.call_timeout:
                    running.reported = True
                    logger.error(
                        "engine call running for %.1f s (ENGINE_CALL_TIMEOUT is %g s) on %s: %s, connection %s",
                        running.seconds(),
                        self.call_timeout,
                        worker.name,
                        running.describe(),
                        running.lane,
                    )

    def _workers(self) -> list[scheduler.Worker]:
        return [self._worker] if self._reader is None else [self._worker, self._reader]

    def stalled(self) -> list[str]:
        """The calls running longer than ``ENGINE_CALL_TIMEOUT`` now (for /health/)."""
        out = []
        for worker in self._workers():
            running = worker.running
            if running is not None and self.call_timeout and running.seconds() > self.call_timeout:
                out.append(f"{worker.name}: {running.describe()} for {running.seconds():.0f} s")
        return out

    def busy(self) -> bool:
        return any(worker.running is not None for worker in self._workers())

    @property
    def ready(self) -> bool:
        """True once ``start`` has hosted its tables (reads may then run beside the engine)."""
        return self._ready

    def new_session(self, callback: Callable[[bytes], None]) -> Session:
        """Open a Perspective session; ``callback`` gets its responses.

        Engine thread, or a reader thread once the engine has started: a new session
        touches no table, so a viewer connecting during a heavy query is not kept waiting.
        """
        if not self._ready and not self.on_engine_thread():
            raise RuntimeError("the engine starts on its own thread: open the first session there")
        self.start()
        return Session(self, callback)

    def close_session(self, session: Session) -> None:
        """Close a session, deleting its views and subscriptions (engine thread only).

        After the last connection's, freed memory goes back to the OS (``memory.trim``).
        """
        self.flush()
        session.close()
        if not presence.count():
            memory.trim()

    def start(self) -> None:
        """Host the tables the ``on_start`` hooks know, once per engine, on first use."""
        if self._starting:
            return
        self._starting = True
        for hook in list(_start_hooks):
            hook(self)
        self._ready = True

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Run the queued calls (session closes among them), then stop the threads.

        Returns False when a call is still running after ``timeout``: its daemon thread is
        left behind rather than waited for.
        """
        with contextlib.suppress(RuntimeError):
            self.submit(self._control.close)
            self.submit(self.catalog.close)
            self.submit(self._local.close)
        done = self._reader is None or self._reader.stop(timeout)
        done = self._worker.stop(timeout) and done
        self._closed = True
        self._poll_wanted.set()  # the pacer wakes and exits
        return done

    def table_names(self) -> list[str]:
        """The names of the hosted tables (engine or reader thread)."""
        return list(self.client.get_hosted_table_names())

    async def columns(self, name: str) -> dict[str, str] | None:
        """Column name -> type of table ``name`` (None: not hosted), for the guard.

        Cached until the table is deleted or created again; a miss asks on the engine
        thread, where a declared table not hosted yet is offered to the hooks.
        """
        known = self.catalog.cached_columns(name)
        if known is not None:
            return known
        return await self.arun(self._columns, name)

    def _columns(self, name: str) -> dict[str, str] | None:
        known = self.catalog.columns(name)
        if known is None and any(hook(self, name) for hook in list(_missing_table_hooks)):
            known = self.catalog.columns(name)
        return known

    def open_table(self, name: str, *, flush: bool = False) -> perspective.Table:
        """Perspective's table ``name`` (engine thread only); ``TableNotFound`` if nobody hosts it.

        A name not hosted yet is offered to the ``on_missing_table`` hooks (a declared table
        is hosted on first use). ``flush`` applies pending updates first, so a read sees the
        writes before it; writes leave it off, so updates stay batched per ``POLL_INTERVAL``.
        """
        if flush:
            self.flush()
        if name not in self.client.get_hosted_table_names() and not any(
            hook(self, name) for hook in list(_missing_table_hooks)
        ):
            raise TableNotFound(name)
        return self.client.open_table(name)

    def host(
        self,
        name: str,
        data: Any,
        *,
        index: str | None = None,
        limit: int | None = None,
        replace: bool = False,
        schema: dict[str, str] | None = None,
    ) -> perspective.Table:
        """Host ``data`` as table ``name`` (engine thread only).

        With ``replace``, an existing table of the same index and limit (and ``schema``, if
        given) has its rows replaced in place, so connected viewers keep their views;
        otherwise it is deleted and created again. ``schema`` types the columns up front,
        for rows that cannot show their types (none, or dates as strings).
        """
        payload, fmt = encode(data)
        if name in self.client.get_hosted_table_names():
            if not replace:
                raise ValueError(f"a table named {name!r} is already hosted")
            table = self.client.open_table(name)
            same_schema = schema is None or table.schema() == schema
            if table.get_index() == index and table.get_limit() == limit and same_schema:
                if isinstance(payload, dict):  # a schema: no rows, the columns stay typed
                    table.clear()
                else:
                    table.replace(payload, format=fmt)
                return table
            with self.exclusive():
                table.delete()  # raises while views are open: the index cannot change under them
                return self._create(name, payload, fmt, index, limit, schema)
        return self._create(name, payload, fmt, index, limit, schema)

    def _create(
        self,
        name: str,
        payload: Any,
        fmt: str | None,
        index: str | None,
        limit: int | None,
        schema: dict[str, str] | None,
    ) -> perspective.Table:
        self.catalog.forget(name)
        if schema is None:
            return self.client.table(payload, name=name, index=index, limit=limit, format=fmt)
        table = self.client.table(schema, name=name, index=index, limit=limit)
        if not isinstance(payload, dict):
            table.update(payload, format=fmt)
        return table

    def delete(self, name: str) -> None:
        """Stop hosting ``name`` and delete the connections' views on it (engine thread only).

        The connections delete their views first (``before_delete``), so the table is freed
        at once and the name can be hosted again; only views held by server-side code keep
        it until they close. A session's ``close()`` would not free a table deleted under
        its views, and a view deleted through another session aborts the process when its
        own session closes, so each view goes through its own session.
        ``Table.delete(lazy=True)`` would block this thread until the last view closes - and
        views close on this thread - so the delete is sent as a request, answered (and
        logged) when Perspective frees the table.
        """
        if name not in self.client.get_hosted_table_names():
            raise TableNotFound(name)
        with self.exclusive():  # no read on one of those views runs meanwhile
            for withdraw in list(self.before_delete):
                try:
                    withdraw(name)
                except Exception:  # one broken connection must not keep the table
                    logger.exception("could not delete a connection's views on %r", name)
            self._control.handle_request(protocol.table_delete_request(next(self._control_ids), name))
        self.catalog.forget(name)


class Lane(scheduler.Lane):
    """One connection's calls into the engine, answered in the order they were sent.

    Reads (``read``) run on the reader thread when no write waits for its poll, other
    calls (``call``) on the engine thread; one at a time, so a client never races itself
    (a view read cannot overtake the ``make_view`` before it). ``over_budget`` says when
    the connection has used more than ``ENGINE_TIME_BUDGET`` seconds of engine time in a
    minute.
    """

    def __init__(self, engine: Engine, *, label: str = "", budget: float | None = None) -> None:
        if budget is None:
            budget = conf.get("ENGINE_TIME_BUDGET")
        super().__init__(engine._route, label=label, budget=budget)
        self._engine = engine

    def read_now(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Run a cheap read here and now when the engine is free for it (``Engine.read_now``)."""
        return self._engine.read_now(self, fn, *args)


_engine: Engine | None = None
_engine_lock = threading.Lock()


def current_engine() -> Engine | None:
    """This process's engine if one was created; never creates one."""
    return _engine


def get_engine() -> Engine:
    """Return this process's engine, creating it on first use."""
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = Engine()
    return _engine


def reset_engine() -> None:
    """Drop this process's engine and every table it hosts (for tests)."""
    global _engine
    with _engine_lock:
        if _engine is not None:
            _engine.shutdown()
        _engine = None


def _exit_now_if_stuck() -> None:
    """At interpreter exit: a call stuck in the engine must not keep the process alive.

    The engine threads are daemons, but other threads may wait for the engine (a sync
    view in ``run``) and Perspective's own threads are joined at exit. After a grace
    period for the running call, leave at once.
    """
    engine = _engine
    if engine is None:
        return
    deadline = time.monotonic() + EXIT_GRACE
    while engine.busy() and time.monotonic() < deadline:
        time.sleep(0.05)
    if engine.busy():
        logger.error("exiting with an engine call still running: %s", "; ".join(engine.stalled()) or "busy")
        logging.shutdown()
        os._exit(1)


# Runs before Python joins non-daemon threads (concurrent.futures' workers among them),
# which would wait for ever on a thread blocked in Engine.run().
_register = getattr(threading, "_register_atexit", None)
if _register is not None:
    _register(_exit_now_if_stuck)
else:  # pragma: no cover - CPython has it since 3.9
    import atexit

    atexit.register(_exit_now_if_stuck)
