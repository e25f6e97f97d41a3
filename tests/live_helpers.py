"""Waiting on a remote view until its rows satisfy a test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def until(view: Any, predicate: Callable[[list[dict]], bool], timeout: float = 15.0) -> list[dict]:
    """Poll ``view.to_records()`` until ``predicate(rows)``; the last rows if it never holds."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await view.to_records()
        if predicate(rows) or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)
