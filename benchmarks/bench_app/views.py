"""``POST /feed``: starts the fan-out producer on the server's event loop."""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from django_perspective.api import HostedTable

from ..data import TICKS
from ..feed import start_feed


@csrf_exempt
@require_POST
async def feed(request: HttpRequest) -> JsonResponse:
    spec = json.loads(request.body)
    start_feed(HostedTable(TICKS).aupdate, spec["seconds"], spec["rate"], spec["rows"])
    return JsonResponse({"started": True})
