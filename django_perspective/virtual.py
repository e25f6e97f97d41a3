"""The websocket consumer for database tables (``databases.py``), at its own path.

Perspective's features are per server: a client asks ``get_features`` once per connection
and offers those operators and aggregates for every table it opens. The in-memory engine
and the database handler advertise different ones, so database tables are served at
``ws/perspective/db/`` and the viewer tag picks that path for them. The frame path is the
same as the in-memory consumer's - decode, guard, lane, bind, encode - with a per-connection
database session (``databases.Link``) standing in for the engine: this connection's user
scopes every statement, and the guard checks against the handler's advertised features.
"""

from __future__ import annotations

from typing import Any

from . import databases, schema
from .consumers import PerspectiveConsumer
from .engine import get_engine


class DatabaseConsumer(PerspectiveConsumer):
    """Serves the declared database tables only; refuses view ids the SQL side would not take."""

    async def connect(self) -> None:
        # The registry's database tables are declared when the engine starts (publishing).
        engine = get_engine()
        if not engine.ready:
            await engine.arun(engine.start)
        self.engine = databases.Link(databases.executor())
        await super().connect()

    def _open_session(self) -> None:
        if not self._closed:
            self.session = self._engine.new_session(self._on_response, self.scope.get("user"))

    async def check_request(self, request: schema.Request) -> str | None:
        kind = request.kind.name
        if kind == "make_view":
            view_id = request.body.get("view_id", "")
            if not databases.VIEW_ID.fullmatch(view_id):
                return f"view id {view_id!r} is refused: letters, digits, _ and - only, at most 128"
        if request.kind.scope == "table" and not databases.is_database_table(request.entity_id):
            return f"Unknown table {request.entity_id!r}"
        return await super().check_request(request)

    def _is_small(self, request: schema.Request) -> bool:
        return False  # a statement's cost is the database's to know: never on the event loop

    def log_context(self, **fields: Any) -> dict[str, Any]:
        return super().log_context(database=True, **fields)
