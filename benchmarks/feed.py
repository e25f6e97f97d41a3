"""The fan-out producer, shared by every server: ``rate`` updates a second for ``seconds``."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .data import tick_batch

_tasks: set[asyncio.Task[Any]] = set()


async def run_feed(
    update: Callable[[bytes], Awaitable[None] | None], seconds: float, rate: float, rows: int
) -> None:
    """Call ``update`` on a fixed schedule (no catch-up bursts when the server falls behind)."""
    start = time.monotonic()
    count = int(seconds * rate)
    for seq in range(count):
        delay = start + seq / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        result = update(tick_batch(seq, rows))
        if inspect.isawaitable(result):
            await result


def start_feed(
    update: Callable[[bytes], Awaitable[None] | None], seconds: float, rate: float, rows: int
) -> None:
    """Run the feed in the background on the running loop (kept referenced until done)."""
    task = asyncio.get_running_loop().create_task(run_feed(update, seconds, rate, rows))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
