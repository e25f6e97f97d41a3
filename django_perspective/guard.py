"""The per-connection guard: every request frame is classified and checked before the engine.

Perspective's server is no security boundary: any session may create, overwrite or delete
tables, list every table, and read or delete another session's views by id. The guard
keeps each connection to what its user may do, by request type (the ``oneof`` field
number of the request, see ``protocol.py``), and fails closed on types it does not know.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from . import protocol

# Request field numbers (rust/perspective-client/perspective.proto, 5.6).
GLOBAL = frozenset({3, 4, 17, 37})  # features, hosted tables, system info, unsubscribe
TABLE_READ = frozenset({5, 7, 8, 9, 29, 30, 41})  # port, schema, size, validate, on/remove delete, describe
MAKE_VIEW = protocol.MAKE_VIEW
VIEW = frozenset({10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22, 23, 24, 25, 26, 34, 35, 36, 39, 40})
VIEW_DELETE = 11
TABLE_UPDATE = frozenset({33})
WRITE_NAMES = {27: "make_table", 28: "delete", 31: "remove", 32: "replace", 33: "update", 38: "join"}
CREATE = frozenset({27, 38})  # the entity is the new table's name
HOSTED_TABLES = protocol.HOSTED_TABLES


class Guard:
    """What one connection has done and may do; decisions are cached for ``ttl`` seconds."""

    def __init__(
        self,
        *,
        can_read: Callable[[str], Awaitable[bool]],
        can_update: Callable[[str], Awaitable[bool]],
        claimed: set[str] | None = None,
        max_views: int = 0,
        rate: float = 0,
        burst: float = 0,
        ttl: float = 5.0,
    ) -> None:
        self._can_read = can_read
        self._can_update = can_update
        self.views: set[str] = set()
        # View ids open in this process, every connection's: Perspective 5.6 aborts the
        # process when a session holding a duplicated view id closes.
        self.claimed = set() if claimed is None else claimed
        self.max_views = max_views
        self.rate = rate
        self.burst = burst or rate
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self.ttl = ttl
        self._read: dict[str, tuple[bool, float]] = {}
        self._update: dict[str, tuple[bool, float]] = {}

    async def readable(self, name: str) -> bool:
        return await self._cached(self._read, self._can_read, name)

    async def updatable(self, name: str) -> bool:
        return await self._cached(self._update, self._can_update, name)

    async def _cached(self, cache: dict[str, tuple[bool, float]], check: Callable[[str], Awaitable[bool]], name: str) -> bool:
        now = time.monotonic()
        hit = cache.get(name)
        if hit is not None and hit[1] > now:
            return hit[0]
        allowed = await check(name)
        cache[name] = (allowed, now + self.ttl)
        return allowed

    def _take(self) -> bool:
        if not self.rate:
            return True
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def check(self, request: protocol.Envelope, frame: bytes) -> str | None:
        """Return why ``request`` is refused, or None to let it through."""
        if not self._take():
            return f"rate limit: more than {self.rate:g} requests per second"
        kind = request.kind
        name = request.entity_id
        if kind in GLOBAL:
            return None
        if kind in VIEW:
            if name not in self.views:
                return f"View not found: {name!r}"
            if kind == VIEW_DELETE:
                self.views.discard(name)
                self.claimed.discard(name)
            return None
        if kind in CREATE:
            return f"{WRITE_NAMES[kind]} is not allowed: tables are created on the server"
        if kind == MAKE_VIEW or kind in TABLE_READ or kind in TABLE_UPDATE or kind in WRITE_NAMES:
            if not await self.readable(name):
                return f"Unknown table {name!r}"
        if kind == MAKE_VIEW:
            if self.max_views and len(self.views) >= self.max_views:
                return f"too many open views: at most {self.max_views} per connection"
            view_id = _first_string(frame, request.body)
            if not view_id:
                return "make_view without a view id"
            if view_id in self.claimed:
                return f"view id {view_id!r} is already in use"
            self.views.add(view_id)
            self.claimed.add(view_id)
            return None
        if kind in TABLE_READ:
            return None
        if kind in TABLE_UPDATE and await self.updatable(name):
            return None
        if kind in WRITE_NAMES or kind in TABLE_UPDATE:
            return f"table {name!r} is read-only: {WRITE_NAMES[kind]} is not allowed"
        return f"request type {kind} is not allowed"

    def release(self) -> None:
        """Give this connection's view ids back (its session is closing, with its views)."""
        self.claimed.difference_update(self.views)
        self.views.clear()

    async def filter_hosted_tables(self, response: bytes, body: tuple[int, int]) -> bytes:
        """Drop the tables this connection may not read from a hosted-tables answer."""
        kept = bytearray()
        removed = False
        for field, wire, value in protocol.iter_fields(response, *body):
            if field == 1 and wire == 2:
                name = _first_string(response, value)
                if not await self.readable(name):
                    removed = True
                    continue
                kept += protocol.encode_len(1, response[value[0] : value[1]])
        if not removed:
            return response
        return response[: body[0] - _header_length(response, body)] + protocol.encode_len(HOSTED_TABLES, bytes(kept))


def _first_string(data: bytes, span: tuple[int, int]) -> str:
    for field, wire, value in protocol.iter_fields(data, *span):
        if field == 1 and wire == 2:
            return bytes(data[value[0] : value[1]]).decode("utf-8", "replace")
    return ""


def _header_length(data: bytes, body: tuple[int, int]) -> int:
    """Bytes of the one-byte tag and the length prefix in front of the body."""
    return 1 + len(protocol.varint(body[1] - body[0]))
