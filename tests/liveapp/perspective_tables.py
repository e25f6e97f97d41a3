"""Tables for the live and replication tests; declared only when ``LIVE_TABLES`` is set."""

from __future__ import annotations

import os

from django_perspective.live import live_model_table
from django_perspective.tables import perspective_table

from .models import Order

KEYS = 300

if os.environ.get("LIVE_TABLES"):
    live_model_table(
        "open_orders",
        Order.objects.filter(status="open"),
        fields=["id", "customer", "status", "amount", "placed"],
        access="public",
    )

    @perspective_table("replicated", index="id", access="public")
    def replicated() -> dict[str, list]:
        return {"id": list(range(10)), "value": [0.0] * 10, "label": ["seed"] * 10}

    @perspective_table("appended", access="public")
    def appended() -> dict[str, list]:
        """No index: every update adds rows, so a change applied twice shows."""
        return {"n": [-1]}
