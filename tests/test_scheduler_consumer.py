"""The scheduler seen through the consumer in-process: listing notifications and the budget."""

from __future__ import annotations

import asyncio
import time

import perspective
import pytest
from django.test import override_settings

from django_perspective import access
from django_perspective.engine import Engine

from .test_consumer import connected

pytestmark = pytest.mark.django_db(transaction=True)

SETTINGS = {"DEFAULT_ACCESS": "staff", "HOST_ON_START": False, "POLL_INTERVAL": 0.02, "RATE_LIMIT": 0}


async def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return predicate()


async def test_hosted_tables_notifications_fire_only_for_tables_the_connection_may_read():
    with override_settings(PERSPECTIVE=SETTINGS):
        engine = Engine()
        try:
            access.declare("open-1", "public")
            access.declare("open-2", "public")
            access.declare("closed-1", "staff")
            await engine.arun(lambda: engine.host("open-1", [{"x": 1}]))
            async with connected(engine) as anonymous:
                fired: list[float] = []
                await anonymous.client.on_hosted_tables_update(lambda *_: fired.append(time.monotonic()))
                assert await anonymous.client.get_hosted_table_names() == ["open-1"]

                await engine.arun(lambda: engine.host("closed-1", [{"x": 1}]))
                await asyncio.sleep(0.5)  # Perspective notifies at once; the consumer must drop it
                assert fired == []

                await engine.arun(lambda: engine.host("open-2", [{"x": 1}]))
                assert await wait_for(lambda: len(fired) == 1)
                assert sorted(await anonymous.client.get_hosted_table_names()) == ["open-1", "open-2"]

                await engine.arun(lambda: engine.delete("closed-1"))
                await asyncio.sleep(0.5)
                assert len(fired) == 1
                await engine.arun(lambda: engine.delete("open-2"))
                assert await wait_for(lambda: len(fired) == 2)
                assert await anonymous.client.get_hosted_table_names() == ["open-1"]
        finally:
            engine.shutdown()


async def test_a_connection_over_its_engine_time_budget_is_refused_with_its_msg_id():
    with override_settings(PERSPECTIVE={**SETTINGS, "DEFAULT_ACCESS": "public", "ENGINE_TIME_BUDGET": 0.5}):
        engine = Engine()
        try:
            rows = [{"id": i, "s": f"name {i}", "x": i * 0.5} for i in range(200_000)]
            await engine.arun(lambda: engine.host("heavy", rows, index="id"))
            async with connected(engine) as hog, connected(engine) as other:
                table = await (hog.client.open_table("heavy"))
                view = await table.view()
                refused = None
                started = time.monotonic()
                while time.monotonic() - started < 30:
                    try:
                        await view.to_csv()
                    except perspective.PerspectiveError as exc:
                        refused = str(exc)
                        break
                assert refused is not None and "engine time budget exceeded" in refused
                assert "ENGINE_TIME_BUDGET allows 0.5 s per minute" in refused
                # The refusal answered that call only: the connection stays up, and another
                # connection is served as usual.
                with pytest.raises(perspective.PerspectiveError, match="engine time budget"):
                    await table.size()
                assert await (await other.client.open_table("heavy")).size() == 200_000
        finally:
            engine.shutdown()
