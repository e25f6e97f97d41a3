"""The stream protocol: append changes to a table's Redis stream, and follow the streams.

One ``Replicator`` per process appends (``XADD``) and runs one listener thread that reads the
followed streams (``XREAD``) from each replica's last applied id, applies the entries in id
order (``apply.py``), and catches a replica up when it starts or finds its position trimmed
away: a reload from its database, or a snapshot a peer writes to a Redis key on request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from django.db import connections

from .. import conf
from ..data import encode
from ..engine import current_engine, get_engine
from .apply import Entries, apply_entries, load_snapshot, take_snapshot
from .changes import SNAPSHOT_REQUEST, EntryId, format_id, parse_id
from .config import connect, redis  # redis is None without redis-py; a Replicator needs it

logger = logging.getLogger("django_perspective.replication")

READ_BLOCK_MS = 100
READ_COUNT = 1000
SNAPSHOT_WAIT = 3.0  # seconds a newcomer waits for a peer's snapshot before replaying the log
SNAPSHOT_BUSY_WAIT = 60.0  # ...or longer while a peer holds the lock and is writing it
SNAPSHOT_TTL = 600
WRITE_WAIT = 10.0  # seconds a writer waits for its own replica to apply its change
GAP_CHECK_INTERVAL = 5.0


@dataclass
class Replica:
    """This process's copy of one table: how far it has read its stream, and who waits."""

    name: str
    from_source: Callable[[], Any] | None  # reloads the table from its database, if it has one (listener thread)
    last: EntryId = (0, 0)
    caught_up: bool = False  # reading the stream on from ``last``; else catching up first
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
        self.redis = connect(options)
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
            replica.last, replica.caught_up = mark, True
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
            if not replica.caught_up:
                self._catch_up(replica, now)
            elif now - replica.checked > GAP_CHECK_INTERVAL:
                self._check_gap(replica, now)
        positions = {self.log_key(r.name): format_id(r.last) for r in replicas if r.caught_up}
        if not positions:
            self._wake.wait(0.05)
            self._wake.clear()
            return
        for key, entries in self.redis.xread(positions, count=READ_COUNT, block=READ_BLOCK_MS) or []:
            name = key.decode()[len(self.prefix) + len(":log:"):]
            replica = self.replicas.get(name)
            if replica is not None and replica.caught_up:
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
            replica.caught_up, replica.request = False, None

    def _catch_up(self, replica: Replica, now: float) -> None:
        if replica.from_source is not None:
            mark = self.mark(replica.name)
            try:
                replica.from_source()  # the query runs here; only the hosting on the engine thread
            finally:
                connections.close_all()  # this thread's: the listener keeps no connection open
            self._mark_caught_up(replica, mark, now)
        elif replica.request is None:
            if not self.redis.exists(self.log_key(replica.name)):
                self._mark_caught_up(replica, (0, 0), now)
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
            engine = get_engine()
            snapshot = encode(arrow)  # a peer's Arrow is checked like every other load, off the engine thread
            engine.run(load_snapshot, engine, replica.name, snapshot)
            self._mark_caught_up(replica, parse_id(snapshot_id), now)
            logger.info("replication: %r caught up from a snapshot", replica.name)
        elif self.redis.exists(self._snapshot_lock(replica.name, replica.request)):
            replica.deadline = max(replica.deadline, min(now + 1.0, now + SNAPSHOT_BUSY_WAIT))
        elif now > replica.deadline:
            logger.info("replication: no snapshot of %r from a peer; replaying its log", replica.name)
            self._mark_caught_up(replica, (0, 0), now)
        else:
            self._stop.wait(0.02)

    def _mark_caught_up(self, replica: Replica, last: EntryId, now: float) -> None:
        replica.request, replica.caught_up, replica.checked = None, True, now
        replica.applied(last)

    def _snapshot_lock(self, name: str, request: EntryId) -> str:
        return f"{self.prefix}:snaplock:{name}:{format_id(request)}"

    def _apply(self, replica: Replica, entries: Entries) -> None:
        """Apply entries in order on the engine thread; answer snapshot requests between them."""
        engine = get_engine()
        batch: Entries = []
        for entry_id, fields in entries:
            batch.append((entry_id, fields))
            if fields.get(b"op") == SNAPSHOT_REQUEST:
                engine.run(apply_entries, engine, replica.name, batch)
                replica.applied(parse_id(entry_id))
                batch = []
                self._answer(replica, parse_id(entry_id))
        if batch:
            engine.run(apply_entries, engine, replica.name, batch)
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
        engine = get_engine()
        arrow = engine.run(take_snapshot, engine, replica.name)
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping={"id": format_id(request), "arrow": arrow})
            pipe.expire(key, SNAPSHOT_TTL)
            pipe.execute()
        logger.info("replication: wrote a %d-byte snapshot of %r", len(arrow), replica.name)


def _on_engine_thread() -> bool:
    engine = current_engine()
    return engine is not None and engine.on_engine_thread()
