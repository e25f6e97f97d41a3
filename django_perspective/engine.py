"""The per-process Perspective engine: one ``perspective.Server``, one engine thread.

Every call into a Perspective server blocks its thread, and concurrent calls from several
threads have been reported to leave a table's last update invisible. So every call that
changes anything - session requests that make or delete views, server-side updates,
table creation, polls - runs on a single engine thread, in the order it was submitted.
Requests that only read may run on one reader thread beside it (``Lane``), so a small
read does not wait for another client's heavy view build. Async code awaits the engine;
sync code waits for it; code already on the engine thread runs inline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import perspective

from . import conf, protocol
from .catalog import Catalog
from .data import encode

T = TypeVar("T")

logger = logging.getLogger("django_perspective.engine")


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


class Engine:
    """Owns one Perspective server, the thread every change runs on and the reader thread."""

    def __init__(self, poll_interval: float | None = None, concurrent_reads: bool | None = None) -> None:
        self.poll_interval = conf.get("POLL_INTERVAL") if poll_interval is None else poll_interval
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perspective-engine")
        if concurrent_reads is None:
            concurrent_reads = conf.get("CONCURRENT_READS")
        # Pure reads may run on this one reader thread while the engine thread builds another
        # connection's view; everything that writes or polls stays on the engine thread.
        self._readers = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="perspective-reader") if concurrent_reads else None
        )
        self._thread_id: int | None = None
        self._poll_lock = threading.Lock()
        self._poll_pending = False
        self._last_poll = 0.0
        self._starting = False  # start() has begun: it runs once
        self._ready = False  # start() has finished: the tables it hosts are listed
        self._poll_wanted = threading.Event()
        threading.Thread(target=self._pacer, name="perspective-poll-pacer", daemon=True).start()
        self._exclusive = threading.Lock()  # reader threads read only outside exclusive()
        # Every view id open on this server -> the guard of the connection that owns it
        # (see guard.py): an id is free only once the engine has deleted its view.
        self.views: dict[str, Any] = {}
        self.server: perspective.Server
        self.client: perspective.Client
        self.run(self._init)

    def _init(self) -> None:
        self._thread_id = threading.get_ident()
        self.server = perspective.Server(on_poll_request=self._on_poll_request)
        self.client = self.server.new_local_client()
        self.catalog = Catalog(self.server)
        # Requests the local client would block on (a lazy delete waits for the table's
        # last view to close: on this thread, forever) go through this session instead.
        self._control = self.server.new_session(self._on_control_response)
        self._control_ids = itertools.count(1)

    def on_engine_thread(self) -> bool:
        return threading.get_ident() == self._thread_id

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue ``fn(*args)`` on the engine thread; never blocks the caller."""
        return self._executor.submit(fn, *args)

    def submit_read(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue a pure read on a reader thread (the engine thread when there are none).

        Only for requests that change nothing (see ``protocol.READ_ONLY``), and only through
        a ``Lane``, which keeps each connection's calls in order.
        """
        if self._readers is None:
            return self._executor.submit(fn, *args)
        return self._readers.submit(self._read, fn, *args)

    def _read(self, fn: Callable[..., T], *args: Any) -> T:
        with self._exclusive:
            return fn(*args)

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
        return self._executor.submit(fn, *args).result()

    async def arun(self, fn: Callable[..., T], *args: Any) -> T:
        """Await ``fn(*args)`` on the engine thread without blocking the event loop."""
        if self.on_engine_thread():
            return fn(*args)
        return await asyncio.wrap_future(self._executor.submit(fn, *args))

    def _on_control_response(self, response: bytes) -> None:
        envelope = protocol.parse_envelope(response)
        logger.debug("table %r freed (request %s)", envelope.entity_id, envelope.msg_id)

    def _on_poll_request(self, _server: Any) -> None:
        # Perspective asks for a poll after each update; one poll per interval applies
        # everything that arrived meanwhile and sends one notification per view.
        with self._poll_lock:
            if self._poll_pending:
                return
            self._poll_pending = True
        if self._last_poll + self.poll_interval <= time.monotonic():
            self._submit_flush()
        else:
            self._poll_wanted.set()

    def _pacer(self) -> None:
        """Submit the deferred poll once the interval since the last one has passed."""
        while True:
            self._poll_wanted.wait()
            self._poll_wanted.clear()
            delay = self._last_poll + self.poll_interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if not self._submit_flush():
                return

    def _submit_flush(self) -> bool:
        try:
            self._executor.submit(self.flush)
        except RuntimeError:  # the engine shut down
            return False
        return True

    def flush(self) -> None:
        """Apply pending updates now (engine thread only).

        Server-side reads call this first so Python code reads its own writes; websocket
        sessions see updates at the next scheduled poll, within ``POLL_INTERVAL``.
        """
        with self._poll_lock:
            if not self._poll_pending:
                return
            self._poll_pending = False
            self._last_poll = time.monotonic()
        self.server.poll()
        self.catalog.polled()

    @property
    def ready(self) -> bool:
        """True once ``start`` has hosted its tables (reads may then run beside the engine)."""
        return self._ready

    def new_session(self, callback: Callable[[bytes], None]) -> Any:
        """Open a Perspective session; ``callback`` gets its responses.

        Engine thread, or a reader thread once the engine has started: a new session
        touches no table, so a viewer connecting during a heavy query is not kept waiting.
        """
        if not self._ready and not self.on_engine_thread():
            raise RuntimeError("the engine starts on its own thread: open the first session there")
        self.start()
        return self.server.new_session(callback)

    def close_session(self, session: Any) -> None:
        """Close a session, deleting its views and subscriptions (engine thread only)."""
        session.close()

    def start(self) -> None:
        """Host the tables the ``on_start`` hooks know, once per engine, on first use."""
        if self._starting:
            return
        self._starting = True
        for hook in list(_start_hooks):
            hook(self)
        self._ready = True

    def shutdown(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._executor.submit(self._control.close)
            self._executor.submit(self.catalog.close)
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        self._executor.shutdown(wait=True)  # queued session closes still run
        self._poll_wanted.set()  # the pacer finds the executor shut and exits

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
        """Stop hosting ``name`` (engine thread only); open views keep it until they close.

        The table disappears from listings at once. ``Table.delete(lazy=True)`` would block
        this thread until the last view closes - and views close on this thread - so the
        delete is sent as a request, answered (and logged) when Perspective frees the table.
        """
        if name not in self.client.get_hosted_table_names():
            raise TableNotFound(name)
        self._control.handle_request(protocol.table_delete_request(next(self._control_ids), name))
        self.catalog.forget(name)


class Lane:
    """One connection's calls into the engine, answered in the order they were sent.

    A read runs on a reader thread only while none of the connection's other calls is in
    flight; any other call waits for the connection's reads to finish, then runs on the
    engine thread. So a client never races itself (a view read cannot overtake the
    ``make_view`` before it), while its small reads no longer queue behind another client's
    heavy view build.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._reads = 0
        self._calls = 0
        self._held: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()

    def read(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``, a pure read, after the connection's earlier calls."""
        with self._lock:
            if not self._calls and not self._held:
                self._reads += 1
                self._engine.submit_read(self._run_read, fn, args)
                return
        self.call(fn, *args)

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` on the engine thread after the connection's earlier calls."""
        with self._lock:
            if self._reads:
                self._held.append((fn, args))
                return
            self._calls += 1
        self._engine.submit(self._run_call, fn, args)

    def _run_read(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        finally:
            with self._lock:
                self._reads -= 1
                if not self._reads:
                    while self._held:  # in order, under the lock: nothing can slip between
                        self._calls += 1
                        self._engine.submit(self._run_call, *self._held.popleft())

    def _run_call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        finally:
            with self._lock:
                self._calls -= 1


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
