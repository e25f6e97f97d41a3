"""A health endpoint for load balancers: is this process's engine answering?"""

from __future__ import annotations

import asyncio

from django.http import HttpRequest, JsonResponse

from . import presence
from .engine import get_engine


async def health(request: HttpRequest) -> JsonResponse:
    """200 with counts when the engine answers within 5 s, 503 when it does not.

    Async so a busy engine never ties up Django's sync thread; reports counts, not table
    names, because it is usually reachable without login.
    """
    engine = get_engine()
    try:
        tables = await asyncio.wait_for(engine.arun(lambda: len(engine.table_names())), 5)
    except TimeoutError:
        return JsonResponse({"engine": "busy", "connections": presence.count()}, status=503)
    return JsonResponse({"engine": "ok", "tables": tables, "connections": presence.count()})
