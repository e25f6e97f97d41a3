"""Keep every process's copy of a declared table identical, through a Redis stream per table.

``update`` / ``remove`` / ``replace`` on a declared table (``perspective_table``,
``live_model_table``, ``live.follow_queryset``) append the change to the stream
``<prefix>:perspective:log:<name>`` (``XADD``); Redis gives the entry an id that orders it
against every other process's changes. Each process that hosts the table runs one listener
thread that reads the stream from the last id it applied (``XREAD``) and applies the entries
through the engine thread in id order: every replica applies every change exactly once,
in the same order, including its own (the writer waits until its replica has applied the
entry, so a process still reads its own writes).

A process that starts, or comes back after Redis was unreachable and the stream was
trimmed past its position, catches up:

- tables backed by the database (live model tables) note the stream's last id, reload the
  queryset, and apply what follows that id (rows are pushed whole and keyed, so applying a
  change the reload already saw is harmless);
- other tables append a snapshot request to the stream; one process that is up to date
  (an ``SET NX`` lock elects it) stores ``view.to_arrow()`` with the request's id in the
  key ``<prefix>:perspective:snap:<name>``, and the newcomer loads it and reads on from
  that id. Snapshots live in a Redis key, not in a channel-layer message, so the channel
  layer's message size limit does not apply. With no process to answer, the newcomer keeps
  its loader's rows and replays the whole retained stream.

Why a stream rather than channel-layer groups: ``group_send`` is at-most-once (a full
channel drops messages silently), does not order messages from different senders, and
keeps no history for a late joiner; a stream has all three. Replication is on when
``CHANNEL_LAYERS["default"]`` is a channels_redis layer (its first host and its ``prefix``
are reused) or ``PERSPECTIVE["REPLICATION"]`` is a Redis URL; ``InMemoryChannelLayer`` is
per-process, so updates stay local there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

try:
    import redis
except ImportError:  # pragma: no cover - redis-py comes with the "redis" extra
    redis = None  # type: ignore[assignment]

from django.db import connections

from . import conf
from .data import encode

logger = logging.getLogger("django_perspective.replication")

UPDATE, REMOVE, REPLACE, SNAPSHOT_REQUEST = b"u", b"r", b"p", b"s"
READ_BLOCK_MS = 100
READ_COUNT = 1000
SNAPSHOT_WAIT = 3.0  # seconds a newcomer waits for a peer's snapshot before replaying the log
SNAPSHOT_BUSY_WAIT = 60.0  # ...or longer while a peer holds the lock and is writing it
SNAPSHOT_TTL = 600
WRITE_WAIT = 10.0  # seconds a writer waits for its own replica to apply its change
GAP_CHECK_INTERVAL = 5.0

EntryId = tuple[int, int]


def parse_id(value: bytes | str) -> EntryId:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def format_id(value: EntryId) -> str:
    return f"{value[0]}-{value[1]}"


def redis_config() -> tuple[dict[str, Any], str] | None:
    """``(redis.Redis kwargs, key prefix)`` for replication, or None when it is off."""
    from django.conf import settings

    setting = conf.get("REPLICATION")
    if setting is False or redis is None:
        return None
    layer = getattr(settings, "CHANNEL_LAYERS", {}).get("default", {})
    layer_config = layer.get("CONFIG", {})
    prefix = layer_config.get("prefix", "asgi")
    if isinstance(setting, str):
        return {"url": setting}, prefix
    if not layer.get("BACKEND", "").startswith("channels_redis."):
        return None
    host = (layer_config.get("hosts") or [("localhost", 6379)])[0]
    if isinstance(host, str):
        return {"url": host}, prefix
    if isinstance(host, dict):
        options = dict(host)
        return ({"url": options.pop("address"), **options} if "address" in options else options), prefix
    return {"host": host[0], "port": host[1]}, prefix


def _connect(options: dict[str, Any]) -> redis.Redis:
    options = {"socket_connect_timeout": 5, "health_check_interval": 30, **options}
    url = options.pop("url", None)
    return redis.Redis.from_url(url, **options) if url else redis.Redis(**options)


def serialize(data: Any) -> tuple[bytes | str, str]:
    """A change's payload and Perspective format name ("" lets Perspective detect Arrow/CSV)."""
    payload, fmt = encode(data)
    if isinstance(payload, (bytes, str)):
        return payload, fmt or ""
    if hasattr(payload, "to_arrow"):  # polars
        payload = payload.to_arrow()
    elif hasattr(payload, "to_records"):  # pandas
        import pyarrow as pa

        payload = pa.Table.from_pandas(payload, preserve_index=False)
    if hasattr(payload, "schema") and hasattr(payload, "to_batches"):
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, payload.schema) as writer:
            writer.write_table(payload)
        return sink.getvalue().to_pybytes(), ""
    raise TypeError(f"a replicated change cannot carry a {type(payload).__name__}")


@dataclass
class Replica:
    """This process's copy of one table: how far it has read its stream, and who waits."""

    name: str
    from_source: Callable[[], Any] | None  # reloads the table from its database, if it has one (listener thread)
    last: EntryId = (0, 0)
    live: bool = False
    request: EntryId | None = None
    deadline: float = 0.0
    checked: float = 0.0
    waiters: list[tuple[EntryId, Future[None]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def applied(self, last: EntryId) -> None:
        with self.lock:
            self.last = last
            done = [f for entry, f in self.waiters if entry <= last]
            self.waiters = [(e, f) for e, f in self.waiters if e > last]
        for waiter in done:
            if not waiter.done():
                waiter.set_result(None)

    def waiter(self, entry: EntryId) -> Future[None]:
        future: Future[None] = Future()
        with self.lock:
            if entry <= self.last:
                future.set_result(None)
            else:
                self.waiters.append((entry, future))
        return future

    def release(self) -> None:
        """No longer followed: writers waiting on this replica carry on."""
        with self.lock:
            waiters, self.waiters = self.waiters, []
        for _, waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class Replicator:
    """One per process: publishes changes and runs the listener thread that applies them."""

    def __init__(self, options: dict[str, Any], prefix: str) -> None:
        self.redis = _connect(options)
        self.prefix = f"{prefix}:perspective"
        self.maxlen = conf.get("REPLICATION_LOG_LENGTH") or None
        self.replicas: dict[str, Replica] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._own_requests: set[EntryId] = set()

    def log_key(self, name: str) -> str:
        return f"{self.prefix}:log:{name}"

    def snapshot_key(self, name: str) -> str:
        return f"{self.prefix}:snap:{name}"

    def append(self, name: str, op: bytes, payload: bytes | str = b"", fmt: str = "") -> EntryId:
        entry = self.redis.xadd(
            self.log_key(name),
            {"op": op, "data": payload, "fmt": fmt},
            maxlen=self.maxlen,
            approximate=True,
        )
        return parse_id(entry)

    def publish(self, name: str, op: bytes, payload: bytes | str, fmt: str) -> None:
        """Append a change and wait until this process's replica (if any) has applied it."""
        entry = self.append(name, op, payload, fmt)
        replica = self.replicas.get(name)
        if replica is None or _on_engine_thread():
            return  # nothing to wait for, or waiting would deadlock the engine thread
        try:
            replica.waiter(entry).result(WRITE_WAIT)
        except TimeoutError:
            logger.warning("change to %r not applied locally after %ss", name, WRITE_WAIT)

    async def apublish(self, name: str, op: bytes, payload: bytes | str, fmt: str) -> None:
        entry = await asyncio.to_thread(self.append, name, op, payload, fmt)
        replica = self.replicas.get(name)
        if replica is None:
            return
        try:
            await asyncio.wait_for(asyncio.wrap_future(replica.waiter(entry)), WRITE_WAIT)
        except TimeoutError:
            logger.warning("change to %r not applied locally after %ss", name, WRITE_WAIT)

    def mark(self, name: str) -> EntryId:
        """The id of the stream's last entry: a reload from the source covers everything up to it."""
        last = self.redis.xrevrange(self.log_key(name), count=1)
        return parse_id(last[0][0]) if last else (0, 0)

    def follow(self, name: str, from_source: Callable[[], Any] | None = None, mark: EntryId | None = None) -> None:
        """Keep the hosted table ``name`` in step with its stream from now on.

        ``mark``: the table was just loaded from its source after the stream stood at that
        id. Without it the listener catches up (snapshot or reload) before reading on.
        """
        replica = Replica(name, from_source)
        if mark is not None:
            replica.last, replica.live = mark, True
        with self._lock:
            old = self.replicas.get(name)
            self.replicas[name] = replica
            if self._thread is None:
                self._thread = threading.Thread(target=self._listen, name="perspective-replication", daemon=True)
                self._thread.start()
        if old is not None:
            old.release()
        self._wake.set()

    def unfollow(self, name: str) -> None:
        with self._lock:
            replica = self.replicas.pop(name, None)
        if replica is not None:
            replica.release()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        for name in list(self.replicas):
            self.unfollow(name)
        self.redis.close()

    def _listen(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            try:
                self._step()
                delay = 0.1
            except redis.RedisError as exc:
                logger.warning("replication: Redis unavailable (%s); retrying in %.1fs", exc, delay)
                for replica in list(self.replicas.values()):
                    replica.checked = 0.0  # look for a trimmed gap once Redis is back
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
            except Exception:  # a bad entry or a broken engine call must not stop replication
                logger.exception("replication listener failed; continuing")
                self._stop.wait(0.5)

    def _step(self) -> None:
        now = time.monotonic()
        replicas = list(self.replicas.values())  # follow() may add one meanwhile
        for replica in replicas:
            if not replica.live:
                self._catch_up(replica, now)
            elif now - replica.checked > GAP_CHECK_INTERVAL:
                self._check_gap(replica, now)
        live = {self.log_key(r.name): format_id(r.last) for r in replicas if r.live}
        if not live:
            self._wake.wait(0.05)
            self._wake.clear()
            return
        for key, entries in self.redis.xread(live, count=READ_COUNT, block=READ_BLOCK_MS) or []:
            name = key.decode()[len(self.prefix) + len(":log:"):]
            replica = self.replicas.get(name)
            if replica is not None and replica.live:
                self._apply(replica, entries)

    def _check_gap(self, replica: Replica, now: float) -> None:
        """Entries this replica has not read were trimmed away: catch up again."""
        replica.checked = now
        try:
            info = self.redis.xinfo_stream(self.log_key(replica.name))
        except redis.ResponseError:  # no such stream yet
            return
        deleted = info.get("max-deleted-entry-id") or b"0-0"
        if parse_id(deleted) > replica.last:
            logger.warning("replication: %r missed trimmed changes; catching up", replica.name)
            replica.live, replica.request = False, None

    def _catch_up(self, replica: Replica, now: float) -> None:
        if replica.from_source is not None:
            mark = self.mark(replica.name)
            try:
                replica.from_source()  # the query runs here; only the hosting on the engine thread
            finally:
                connections.close_all()  # this thread's: the listener keeps no connection open
            self._go_live(replica, mark, now)
        elif replica.request is None:
            if not self.redis.exists(self.log_key(replica.name)):
                self._go_live(replica, (0, 0), now)
                return
            replica.request = self.append(replica.name, SNAPSHOT_REQUEST)
            self._own_requests.add(replica.request)
            replica.deadline = now + SNAPSHOT_WAIT
        else:
            self._await_snapshot(replica, now)

    def _await_snapshot(self, replica: Replica, now: float) -> None:
        key = self.snapshot_key(replica.name)
        snapshot_id = self.redis.hget(key, "id")
        if snapshot_id is not None and parse_id(snapshot_id) >= replica.request:
            snapshot_id, arrow = self.redis.hmget(key, ["id", "arrow"])
            engine = _engine()
            engine.run(lambda: engine._table(replica.name).replace(arrow))
            self._go_live(replica, parse_id(snapshot_id), now)
            logger.info("replication: %r caught up from a snapshot", replica.name)
        elif self.redis.exists(self._snapshot_lock(replica.name, replica.request)):
            replica.deadline = max(replica.deadline, min(now + 1.0, now + SNAPSHOT_BUSY_WAIT))
        elif now > replica.deadline:
            logger.info("replication: no snapshot of %r from a peer; replaying its log", replica.name)
            self._go_live(replica, (0, 0), now)
        else:
            self._stop.wait(0.02)

    def _go_live(self, replica: Replica, last: EntryId, now: float) -> None:
        replica.request, replica.live, replica.checked = None, True, now
        replica.applied(last)

    def _snapshot_lock(self, name: str, request: EntryId) -> str:
        return f"{self.prefix}:snaplock:{name}:{format_id(request)}"

    def _apply(self, replica: Replica, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Apply entries in order on the engine thread; answer snapshot requests between them."""
        engine = _engine()
        batch: list[tuple[bytes, dict[bytes, bytes]]] = []
        for entry_id, fields in entries:
            batch.append((entry_id, fields))
            if fields.get(b"op") == SNAPSHOT_REQUEST:
                engine.run(_apply_batch, engine, replica.name, batch)
                replica.applied(parse_id(entry_id))
                batch = []
                self._answer(replica, parse_id(entry_id))
        if batch:
            engine.run(_apply_batch, engine, replica.name, batch)
            replica.applied(parse_id(batch[-1][0]))

    def _answer(self, replica: Replica, request: EntryId) -> None:
        if request in self._own_requests:
            return
        key = self.snapshot_key(replica.name)
        current = self.redis.hget(key, "id")
        if current is not None and parse_id(current) >= request:
            return
        if not self.redis.set(self._snapshot_lock(replica.name, request), 1, nx=True, ex=int(SNAPSHOT_BUSY_WAIT)):
            return
        engine = _engine()
        arrow = engine.run(lambda: _to_arrow(engine, replica.name))
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping={"id": format_id(request), "arrow": arrow})
            pipe.expire(key, SNAPSHOT_TTL)
            pipe.execute()
        logger.info("replication: wrote a %d-byte snapshot of %r", len(arrow), replica.name)


def _apply_batch(engine: Any, name: str, batch: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
    from .engine import TableNotFound

    try:
        table = engine._table(name)
    except TableNotFound:
        logger.warning("replication: %r is not hosted here; %d changes skipped", name, len(batch))
        return
    for _, fields in batch:
        op, data, fmt = fields.get(b"op"), fields.get(b"data", b""), fields.get(b"fmt", b"").decode() or None
        try:
            if op == UPDATE:
                table.update(data.decode() if fmt else data, **({"format": fmt} if fmt else {}))
            elif op == REMOVE:
                table.remove(json.loads(data))
            elif op == REPLACE:
                table.replace(data.decode() if fmt else data, **({"format": fmt} if fmt else {}))
        except Exception:  # one bad change must not stop the ones after it
            logger.exception("replication: could not apply a change to %r", name)


def _to_arrow(engine: Any, name: str) -> bytes:
    view = engine.table(name).view()
    try:
        return view.to_arrow()
    finally:
        view.delete()


def _engine() -> Any:
    from .engine import get_engine

    return get_engine()


def _on_engine_thread() -> bool:
    from . import engine

    return engine._engine is not None and engine._engine.on_engine_thread()


_replicator: Replicator | None = None
_replicator_lock = threading.Lock()
_config_key: Any = None


def get() -> Replicator | None:
    """This process's replicator, or None when replication is off."""
    global _replicator, _config_key
    config = redis_config()
    if config is None:
        return None
    key = repr(config)
    if _replicator is None or _config_key != key:
        with _replicator_lock:
            if _replicator is None or _config_key != key:
                if _replicator is not None:
                    _replicator.stop()
                _replicator, _config_key = Replicator(*config), key
    return _replicator


def for_table(name: str) -> Replicator | None:
    """The replicator changes to ``name`` go through: declared tables, with replication on."""
    from .live import followed
    from .tables import registry

    return get() if name in registry.specs or followed(name) else None


def reset() -> None:
    """Stop replicating (tests)."""
    global _replicator, _config_key
    with _replicator_lock:
        if _replicator is not None:
            _replicator.stop()
        _replicator, _config_key = None, None


def hosting(name: str) -> Callable[[], None] | None:
    """Call just before loading a declared table; call what it returns once it is hosted.

    For a live model table this notes the stream's position before the database is read,
    so the changes committed while it loads are applied after it.
    """
    replicator = for_table(name)
    if replicator is None:
        return None
    from .live import source

    table = source(name)
    mark: EntryId | None = None
    try:
        if table is not None:
            mark = replicator.mark(name)
        elif not replicator.redis.exists(replicator.log_key(name)):
            mark = (0, 0)  # nothing was ever changed: the loader's rows are everyone's rows
    except redis.RedisError as exc:  # the listener catches up once Redis answers
        logger.warning("replication: Redis unavailable while hosting %r: %s", name, exc)
    if table is None:
        return lambda: replicator.follow(name, None, mark)
    return lambda: replicator.follow(name, lambda: table.reload(_engine()), mark)
