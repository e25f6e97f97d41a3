"""A health endpoint for load balancers: is this process's engine answering?"""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse

from . import presence
from .access import can_read
from .engine import get_engine


async def health(request: HttpRequest) -> JsonResponse:
    """200 with counts when the engine answers within 5 s, 503 when it does not.

    503 also while an engine call runs past ``ENGINE_CALL_TIMEOUT``: Perspective has been
    seen to hang for ever, and only a restart brings the process back. Async so a busy
    engine never ties up Django's sync thread; reports counts, not table names, because
    it is usually reachable without login - and counts only the tables the requester may
    read, as its own listing would show them.
    """
    engine = get_engine()
    stalled = engine.stalled()
    if stalled:
        return JsonResponse({"engine": "stalled", "calls": len(stalled), "connections": presence.count()}, status=503)
    try:
        names = await asyncio.wait_for(engine.arun(engine.table_names), 5)
    except TimeoutError:
        return JsonResponse({"engine": "busy", "connections": presence.count()}, status=503)
    user = await request.auser() if hasattr(request, "auser") else None
    tables = await sync_to_async(_readable)(user, names)
    return JsonResponse({"engine": "ok", "tables": tables, "connections": presence.count()})


def _readable(user: Any, names: list[str]) -> int:
    return sum(can_read(user, name) for name in names)
