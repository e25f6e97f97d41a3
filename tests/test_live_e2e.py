"""Live model tables over a real daphne process and PostgreSQL, seen by perspective's client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from .live_helpers import until
from .servers import DaphneProcess, connect
from .services import post, postgres_database

pytestmark = pytest.mark.e2e

SETTINGS = "tests.settings_live"


@pytest.fixture(scope="module")
def orders_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneProcess]:
    with postgres_database(SETTINGS) as env:
        log = tmp_path_factory.mktemp("live") / "daphne.log"
        server = DaphneProcess(log, env={**env, "LIVE_TABLES": "1"}, settings=SETTINGS).start()
        try:
            yield server
        finally:
            server.stop()


def by_customer(rows: list[dict]) -> dict[str, dict]:
    return {row["customer"]: row for row in rows}


async def test_saves_deletes_rollbacks_and_filter_moves_reach_a_viewer(orders_server):
    url = orders_server.http_url + "/live/orders/"

    async def orm(**body) -> dict:
        return await asyncio.to_thread(post, url, body)

    async with connect(orders_server.ws_url) as conn:
        table = await conn.client.open_table("open_orders")
        assert table.get_index() == "id"
        assert await table.schema() == {"id": "integer", "customer": "string", "status": "string", "amount": "float", "placed": "date"}
        view = await table.view()
        notifications: list[int] = []
        await view.on_update(lambda *args: notifications.append(1))

        ann = (await orm(op="create", customer="ann", amount=1.5, placed="2024-05-01"))["id"]
        rows = await until(view, lambda rows: "ann" in by_customer(rows))
        assert by_customer(rows)["ann"]["id"] == ann and by_customer(rows)["ann"]["amount"] == 1.5

        await orm(op="update", id=ann, amount=2.25)
        rows = await until(view, lambda rows: by_customer(rows)["ann"]["amount"] == 2.25)
        assert by_customer(rows)["ann"]["amount"] == 2.25

        await orm(op="update", id=ann, status="closed")  # leaves the filter
        assert await until(view, lambda rows: not rows) == []
        await orm(op="update", id=ann, status="open")  # comes back
        assert list(by_customer(await until(view, lambda rows: len(rows) == 1))) == ["ann"]

        await orm(op="rollback", id=ann)  # creates "ghost", renames and closes ann, rolls back
        await orm(op="create", customer="marker")
        rows = await until(view, lambda rows: "marker" in by_customer(rows))
        assert set(by_customer(rows)) == {"ann", "marker"}
        assert by_customer(rows)["ann"]["status"] == "open"

        await orm(op="delete", id=ann)
        assert set(by_customer(await until(view, lambda rows: len(rows) == 1))) == {"marker"}

        await orm(op="bulk", count=3)  # bulk_create sends no signal: the view calls refresh()
        rows = await until(view, lambda rows: len(rows) == 4)
        assert set(by_customer(rows)) == {"marker", "bulk0", "bulk1", "bulk2"}
        assert notifications
