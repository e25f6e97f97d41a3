"""The engine host: one thread for every call, batching polls, the table API."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import override_settings

from django_perspective import api
from django_perspective.engine import Engine, TableNotFound, get_engine


@pytest.fixture
def engine():
    engine = Engine(poll_interval=0.0)
    yield engine
    engine.shutdown()


def _watch(engine: Engine, name: str) -> tuple[list[int], object]:
    """Subscribe a view of ``name`` to updates; record the thread each notification runs on."""
    threads: list[int] = []

    def subscribe():
        view = engine.client.open_table(name).view()
        view.on_update(lambda *args: threads.append(threading.get_ident()))
        return view

    return threads, engine.run(subscribe)


def test_every_call_from_every_kind_of_caller_runs_on_the_engine_thread(engine):
    engine.run(lambda: engine.host("t", {"k": "integer", "v": "integer"}, index="k"))
    engine_thread = engine.run(threading.get_ident)
    notified, view = _watch(engine, "t")
    seen: set[int] = set()

    def writer(worker: int) -> None:
        for i in range(50):
            key = worker * 1000 + i
            engine.run(lambda: (seen.add(threading.get_ident()), engine.client.open_table("t").update([{"k": key, "v": key}])))

    async def async_writer() -> None:
        for i in range(50):
            await engine.arun(lambda i=i: (seen.add(threading.get_ident()), engine.client.open_table("t").update([{"k": 99000 + i, "v": i}])))

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(writer, w) for w in range(8)]
        asyncio.run(async_writer())
        for future in futures:
            future.result()

    assert seen == {engine_thread}
    assert notified and set(notified) == {engine_thread}
    # Nothing lost: every key of every writer is visible, the last ones included.
    rows = engine.run(lambda: view.to_columns())
    assert len(rows["k"]) == 8 * 50 + 50
    assert {7049, 99049} <= set(rows["k"])


def test_the_engine_thread_may_call_the_engine_without_deadlock(engine):
    assert engine.run(lambda: engine.run(lambda: 42)) == 42


def test_polls_batch_a_burst_of_updates_into_few_notifications():
    engine = Engine(poll_interval=0.05)
    try:
        engine.run(lambda: engine.host("t", {"k": "integer"}, index="k"))
        notified, view = _watch(engine, "t")
        table = engine.run(lambda: engine.client.open_table("t"))
        for i in range(1000):
            engine.submit(table.update, [{"k": i}])
        engine.run(lambda: None)
        engine.run(engine.server.poll)
        assert engine.run(view.num_rows) == 1000
        assert 1 <= len(notified) < 100
    finally:
        engine.shutdown()


def test_replace_keeps_views_of_the_same_shape_and_refuses_a_new_index_under_them(engine):
    engine.run(lambda: engine.host("t", [{"k": 1, "v": "a"}], index="k"))
    view = engine.run(lambda: engine.client.open_table("t").view())
    engine.run(lambda: engine.host("t", [{"k": 2, "v": "b"}, {"k": 3, "v": "c"}], index="k", replace=True))
    engine.run(engine.server.poll)
    assert engine.run(view.to_columns) == {"k": [2, 3], "v": ["b", "c"]}
    with pytest.raises(Exception, match="Cannot delete table with views"):
        engine.run(lambda: engine.host("t", [{"v": "x"}], index="v", replace=True))
    with pytest.raises(ValueError, match="already hosted"):
        engine.run(lambda: engine.host("t", [{"k": 9}], index="k"))


def test_deleting_a_table_with_open_views_hides_it_at_once_and_frees_it_with_the_last_view(engine):
    # Perspective's own lazy delete blocks until the views close; on the engine thread
    # (where views close) that was a deadlock.
    engine.run(lambda: engine.host("t", [{"k": 1}], index="k"))
    view = engine.run(lambda: engine.client.open_table("t").view())
    done = engine.submit(engine.delete, "t")
    done.result(timeout=5)
    assert "t" not in engine.run(engine.client.get_hosted_table_names)
    assert engine.run(view.to_records) == [{"k": 1}]  # open views keep reading
    with pytest.raises(Exception, match="already exists"):
        engine.run(lambda: engine.host("t", [{"k": 2}], index="k"))
    engine.run(view.delete)
    engine.run(lambda: engine.host("t", [{"k": 2}], index="k"))
    assert engine.run(lambda: engine.client.open_table("t").view().to_records()) == [{"k": 2}]
    with pytest.raises(TableNotFound):
        engine.run(engine.delete, "missing")


def test_dates_datetimes_and_decimals_load_with_their_types(engine):
    import datetime as dt
    from decimal import Decimal

    engine.run(
        lambda: engine.host(
            "typed",
            [{"d": dt.date(2024, 2, 29), "ts": dt.datetime(2024, 2, 29, 12, 30), "n": Decimal("1.25"), "b": True, "i": 3, "s": "x"}],
        )
    )
    schema = engine.run(lambda: engine.client.open_table("typed").schema())
    assert schema == {"d": "date", "ts": "datetime", "n": "float", "b": "boolean", "i": "integer", "s": "string"}


@override_settings(PERSPECTIVE={"HOST_ON_START": False})
def test_public_api_from_sync_async_and_threads():
    table = api.host_table("api-test", [{"id": 1, "x": 1.5}], index="id", replace=True)
    try:
        table.update([{"id": 2, "x": 2.5}])
        asyncio.run(api.aupdate("api-test", [{"id": 3, "x": 3.5}]))
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: api.update("api-test", [{"id": 10 + i, "x": 0.0}]), range(4)))
        api.remove("api-test", [1])
        assert table.size() == 6
        assert [r["id"] for r in table.to_records(sort=[["id", "asc"]])] == [2, 3, 10, 11, 12, 13]
        assert "api-test" in api.hosted_tables()
        assert api.get_table("api-test").index() == "id"
    finally:
        api.delete_table("api-test")
    with pytest.raises(TableNotFound):
        api.get_table("api-test")
    assert get_engine().run(get_engine().client.get_hosted_table_names).count("api-test") == 0


def test_perspective_asks_for_a_poll_after_every_request_with_no_pending_flag_of_its_own():
    # The engine drops the poll request a read makes (it would wake two threads to apply
    # nothing). That is safe only while Perspective asks again after the next request
    # whether or not it was polled in between; if an upgrade adds a flag of its own, this fails.
    import perspective

    asked: list[int] = []
    server = perspective.Server(on_poll_request=lambda _server: asked.append(1))
    table = server.new_local_client().table({"a": [1, 2, 3]}, name="t")
    for request in (table.size, table.schema, table.size, lambda: table.update({"a": [4]})):
        asked.clear()
        request()
        assert asked, "no poll request after a request that followed an unpolled one"
    server.poll()
    assert table.size() == 4


def test_server_side_updates_still_reach_views_after_reads_dropped_their_poll_requests():
    engine = Engine(poll_interval=0.02)
    try:
        engine.run(lambda: engine.host("t", {"k": "integer"}, index="k"))
        notified, view = _watch(engine, "t")
        for _ in range(20):
            engine.run(lambda: engine.client.open_table("t").size())  # reads: no poll asked
        engine.run(lambda: engine.client.open_table("t").update([{"k": 1}]))  # the paced poll
        for _ in range(100):
            if notified:
                break
            time.sleep(0.02)
        assert notified, "a server-side update was never polled after reads"
        assert engine.run(lambda: view.num_rows()) == 1
    finally:
        engine.shutdown()
