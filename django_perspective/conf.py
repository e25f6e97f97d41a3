"""The ``PERSPECTIVE`` settings dict, read at call time so ``override_settings`` works.

Every key has a default here; ``checks.py`` validates what a project sets.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

MiB = 1024 * 1024

DEFAULTS: dict[str, Any] = {
    # Module name looked up in every installed app for code-defined tables.
    "TABLES_MODULE": "perspective_tables",
    # Host every code-defined table when the engine starts (first connection or first API
    # call) rather than when it is first opened.
    "HOST_ON_START": True,
    # Incoming frames larger than this get a Perspective error; the engine never sees them.
    "MAX_REQUEST_SIZE": 64 * MiB,
    # Largest response the ASGI server will deliver. ``None`` means "whatever daphne was
    # told": ``DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE``, else daphne's default of 1 MiB.
    # Anything larger is replaced by a Perspective error, because daphne would drop it
    # silently and leave the client waiting forever.
    "MAX_RESPONSE_SIZE": None,
    # Minimum seconds between two engine polls: updates arriving faster are batched into
    # one notification per view. 0 polls as soon as the engine is free.
    "POLL_INTERVAL": 0.02,
    # Answer pure reads (listings, schema, size, view data) on a reader thread beside the
    # engine thread, so a small request does not wait for another client's heavy view
    # build. False: every call on the engine thread.
    "CONCURRENT_READS": True,
    # Directory URL serving perspective-anywidget.js and .css (same perspective-python
    # version); None serves them from the installed wheel through staticfiles.
    "ASSETS_URL": None,
    # Path the websocket consumer is routed at, if not django_perspective.routing's
    # "ws/perspective/" (e.g. mounted under a prefix); viewers connect there.
    "WEBSOCKET_PATH": None,
    # Read policy of tables that declare none (see access.py): "public", "authenticated",
    # "staff", "superuser", "group:<name>", "perm:<app.codename>".
    "DEFAULT_ACCESS": "staff",
    # Seconds a signed table token (?token=) stays valid.
    "TOKEN_MAX_AGE": 3600,
    # Seconds a connection trusts an access decision before asking again.
    "POLICY_CACHE_SECONDS": 5.0,
    # Requests per second per connection (token bucket; RATE_BURST at once). 0: no limit.
    "RATE_LIMIT": 200,
    "RATE_BURST": 400,
    # Open views per connection; 0: no limit.
    "MAX_VIEWS": 256,
    # Cells (rows x columns, measured right after make_view) a connection's grouped or
    # split views may hold together: such views copy and aggregate their table, about
    # 100 bytes a cell. An oversized view is deleted and refused. 0: no limit.
    "MAX_VIEW_CELLS": 20_000_000,
    # Cells (rows x columns) one read of a view may return (to_arrow, to_columns_string,
    # to_csv, ...). 0: no limit.
    "MAX_READ_CELLS": 50_000_000,
    # Ports (make_port) a connection may open on an editable table; read-only tables
    # refuse make_port. 0: no limit.
    "MAX_PORTS": 16,
    # Open connections per user (per anonymous client address), per process; 0: no limit.
    "MAX_CONNECTIONS_PER_USER": 64,
    # Close a connection that sent nothing for this many seconds; 0: never.
    "IDLE_TIMEOUT": 0,
    # Bytes of responses a connection may have waiting because its client reads too slowly;
    # past it the connection is closed with 4008 (a single larger response is still sent
    # when nothing else waits). 0: no limit.
    "MAX_OUTBOX_BYTES": 64 * MiB,
    # Replicate changes to declared tables across processes (replication.py): None follows
    # CHANNEL_LAYERS["default"] (on for channels_redis), False turns it off, a
    # "redis://..." URL uses that server.
    "REPLICATION": None,
    # Changes kept in each table's Redis stream (approximate), for processes catching up.
    "REPLICATION_LOG_LENGTH": 100_000,
}


def get(key: str) -> Any:
    """Return one setting, falling back to its default."""
    return getattr(settings, "PERSPECTIVE", {}).get(key, DEFAULTS[key])


def max_response_size() -> int:
    """The outgoing message limit in bytes (0 for none)."""
    configured = get("MAX_RESPONSE_SIZE")
    if configured is not None:
        return int(configured)
    return int(getattr(settings, "DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE", MiB))
