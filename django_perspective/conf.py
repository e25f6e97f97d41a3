"""The ``PERSPECTIVE`` settings dict, read at call time so ``override_settings`` works.

Every key is declared once here, with its default and the types it accepts; ``checks.py``
validates what a project sets against these declarations.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

MiB = 1024 * 1024


class Setting:
    """One key's default, and the types ``checks.py`` accepts for it (a number must be >= 0).

    No types: the key has a check of its own there (``ASSETS_URL``, ``WEBSOCKET_PATH``,
    ``DEFAULT_ACCESS``).
    """

    __slots__ = ("default", "types")

    def __init__(self, default: Any, *types: type | None) -> None:
        self.default = default
        self.types: tuple[type, ...] = tuple(type(None) if t is None else t for t in types)


SETTINGS: dict[str, Setting] = {
    # Module name looked up in every installed app for code-defined tables.
    "TABLES_MODULE": Setting("perspective_tables", str),
    # Host every code-defined table when the engine starts (first connection or first API
    # call) rather than when it is first opened.
    "HOST_ON_START": Setting(True, bool),
    # Incoming frames larger than this get a Perspective error; the engine never sees them.
    "MAX_REQUEST_SIZE": Setting(64 * MiB, int),
    # Largest response the ASGI server will deliver. ``None`` means "whatever daphne was
    # told": ``DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE``, else daphne's default of 1 MiB.
    # Anything larger is replaced by a Perspective error, because daphne would drop it
    # silently and leave the client waiting forever.
    "MAX_RESPONSE_SIZE": Setting(None, int, None),
    # Bytes of freed C heap the process keeps for the engine's next large reply rather than
    # return at once (glibc only, memory.tune; applied when the app loads, skipped when
    # MALLOC_* or GLIBC_TUNABLES set the allocator): a whole-table to_arrow then reuses warm
    # pages instead of faulting in fresh ones. The cost: blocks that grow are copied, not
    # remapped, so a large load peaks higher (a 200 MB CSV: +25-34%). All of it goes back when
    # the last connection closes. 0: the C library's defaults; 256 MiB suits bulk exports.
    "RETAIN_FREED_MEMORY": Setting(0, int),
    # Minimum seconds between two engine polls: updates arriving faster are batched into
    # one notification per view. 0 polls as soon as the engine is free.
    "POLL_INTERVAL": Setting(0.02, int, float),
    # Answer pure reads (listings, schema, size, view data) on a reader thread beside the
    # engine thread, so a small request does not wait for another client's heavy view
    # build. False: every call on the engine thread.
    "CONCURRENT_READS": Setting(True, bool),
    # A read of at most this many cells (or a schema, size or dimensions) is answered on
    # the event loop itself when the reader thread is free, no write waits and the engine
    # is not polling: two thread hand-offs less per viewport scroll. 0: always the reader.
    "INLINE_READ_CELLS": Setting(5000, int),
    # Seconds of engine time (engine and reader thread) one connection may use per minute;
    # past it its requests are refused with an error until its use drains. 0: no limit.
    "ENGINE_TIME_BUDGET": Setting(30, int, float),
    # Seconds after which a running engine call is logged (with its request and
    # connection) and /health/ answers 503, so a supervisor can restart the process.
    # 0: no watchdog.
    "ENGINE_CALL_TIMEOUT": Setting(60, int, float),
    # Directory URL serving perspective-anywidget.js and .css (same perspective-python
    # version); None serves them from the installed wheel through staticfiles.
    "ASSETS_URL": Setting(None),
    # Path the websocket consumer is routed at, if not django_perspective.routing's
    # "ws/perspective/" (e.g. mounted under a prefix); viewers connect there.
    "WEBSOCKET_PATH": Setting(None),
    # Read policy of tables that declare none (see access.py): "public", "authenticated",
    # "staff", "superuser", "group:<name>", "perm:<app.codename>".
    "DEFAULT_ACCESS": Setting("staff"),
    # Seconds a signed table token (?token=) stays valid.
    "TOKEN_MAX_AGE": Setting(3600, int, float),
    # Seconds a connection trusts an access decision before asking again; each open
    # connection also re-checks its user and its views' tables this often (at most twice
    # a second), closing with 4440 when the user is gone.
    "POLICY_CACHE_SECONDS": Setting(5.0, int, float),
    # Requests per second per connection (token bucket; RATE_BURST at once). 0: no limit.
    "RATE_LIMIT": Setting(200, int, float),
    "RATE_BURST": Setting(400, int, float),
    # Open views per connection; 0: no limit.
    "MAX_VIEWS": Setting(256, int),
    # Cells (rows x columns, measured right after make_view) a connection's grouped or
    # split views may hold together: such views copy and aggregate their table, about
    # 100 bytes a cell. An oversized view is deleted and refused. 0: no limit.
    "MAX_VIEW_CELLS": Setting(20_000_000, int),
    # Cells (rows x columns) one read of a view may return (to_arrow, to_columns_string,
    # to_csv, ...). 0: no limit.
    "MAX_READ_CELLS": Setting(50_000_000, int),
    # Ports (make_port) a connection may open on an editable table; read-only tables
    # answer make_port with the default port and allocate nothing. 0: no limit.
    "MAX_PORTS": Setting(16, int),
    # Open connections per user (per anonymous client address), per process; 0: no limit.
    # Anonymous connections whose address is unknown are not counted against it (proxies.py).
    "MAX_CONNECTIONS_PER_USER": Setting(64, int),
    # Proxies whose forwarding header names the real client (proxies.py): addresses or
    # networks ("127.0.0.1", "10.0.0.0/8") and "unix" for connections on a unix socket.
    "TRUSTED_PROXIES": Setting((), list, tuple),
    # The header a trusted proxy puts the client's address in (read from the right).
    "PROXY_HEADER": Setting("X-Forwarded-For", str),
    # Close a connection that sent nothing for this many seconds; 0: never.
    "IDLE_TIMEOUT": Setting(0, int, float),
    # Bytes of responses a connection may have waiting because its client reads too slowly;
    # past it the connection is closed with 4008 (a single larger response is still sent
    # when nothing else waits). 0: no limit.
    "MAX_OUTBOX_BYTES": Setting(64 * MiB, int),
    # Replicate changes to declared tables across processes (replication/): None follows
    # CHANNEL_LAYERS["default"] (on for channels_redis), False turns it off, a
    # "redis://..." URL uses that server.
    "REPLICATION": Setting(None, bool, str, None),
    # Changes kept in each table's Redis stream (approximate), for processes catching up.
    "REPLICATION_LOG_LENGTH": Setting(100_000, int),
    # Database tables (databases.py): connections per database (and threads running their
    # statements), seconds one statement may run (0: no limit), and rows one read of a view
    # may return (0: no limit).
    "DATABASE_POOL_SIZE": Setting(4, int),
    "DATABASE_STATEMENT_TIMEOUT": Setting(30.0, int, float),
    "DATABASE_MAX_ROWS": Setting(1_000_000, int),
    # DuckDB's buffer pool in this process (its memory_limit, e.g. "1GB"): DuckDB caches the
    # pages it scans up to it. None: DuckDB's default, 80% of the machine's memory.
    "DATABASE_DUCKDB_MEMORY_LIMIT": Setting(None, str, None),
}


DEFAULTS: dict[str, Any] = {key: setting.default for key, setting in SETTINGS.items()}


def get(key: str) -> Any:
    """Return one setting, falling back to its default."""
    return getattr(settings, "PERSPECTIVE", {}).get(key, DEFAULTS[key])


def max_response_size() -> int:
    """The outgoing message limit in bytes (0 for none)."""
    configured = get("MAX_RESPONSE_SIZE")
    if configured is not None:
        return int(configured)
    return int(getattr(settings, "DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE", MiB))
