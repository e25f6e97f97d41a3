"""Applying stream entries and snapshots to this process's tables, on the engine thread."""

from __future__ import annotations

import json
import logging

from ..data import Encoded
from ..engine import Engine, TableNotFound
from .changes import REMOVE, REPLACE, UPDATE

logger = logging.getLogger("django_perspective.replication")

Entries = list[tuple[bytes, dict[bytes, bytes]]]


def apply_entries(engine: Engine, name: str, entries: Entries) -> None:
    """Apply ``entries`` to table ``name`` in order (engine thread); one bad change skips alone."""
    try:
        table = engine.open_table(name)
    except TableNotFound:
        logger.warning("replication: %r is not hosted here; %d changes skipped", name, len(entries))
        return
    for _, fields in entries:
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


def load_snapshot(engine: Engine, name: str, snapshot: Encoded) -> None:
    """Replace ``name``'s rows with a peer's snapshot, already checked by ``encode`` (engine thread)."""
    engine.open_table(name).replace(snapshot.payload, format=snapshot.format)


def take_snapshot(engine: Engine, name: str) -> bytes:
    """``name``'s rows as Arrow, every pending update applied (engine thread)."""
    view = engine.open_table(name, flush=True).view()
    try:
        return view.to_arrow()
    finally:
        view.delete()
