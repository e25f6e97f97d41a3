"""Replication in one process against a real Redis: configuration, the write path, snapshots."""

from __future__ import annotations

import time

import pytest
import redis

import django_perspective as dp
from django_perspective.replication import selection
from django_perspective.replication.changes import parse_id
from django_perspective.replication.config import redis_config
from django_perspective.replication.stream import Replicator
from django_perspective.tables import TableSpec, declared

from .services import REDIS_URL, redis_prefix

NAME = "repl_unit"


def layer(hosts: list, **config) -> dict:
    return {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": hosts, **config}}}


@pytest.mark.parametrize(
    ("layers", "setting", "expected"),
    [
        ({"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}, None, None),
        (layer(["redis://h:1/2"]), None, ({"url": "redis://h:1/2"}, "asgi")),
        (layer([("h", 7)], prefix="app"), None, ({"host": "h", "port": 7}, "app")),
        (layer([{"address": "redis://h:1", "password": "p"}]), True, ({"url": "redis://h:1", "password": "p"}, "asgi")),
        (layer(["redis://h:1/2"]), False, None),
        ({"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}, "redis://x:9/3", ({"url": "redis://x:9/3"}, "asgi")),
    ],
)
def test_replication_follows_the_default_channel_layer(settings, layers, setting, expected):
    settings.CHANNEL_LAYERS = layers
    settings.PERSPECTIVE = {"REPLICATION": setting}
    assert redis_config() == expected


def test_stream_ids_order_numerically():
    assert parse_id(b"1700000000000-10") > parse_id("1700000000000-9") > parse_id("999-0")


@pytest.fixture
def replicated(settings):
    with redis_prefix() as env:
        settings.CHANNEL_LAYERS = layer([REDIS_URL], prefix=env["REDIS_PREFIX"])
        declared.register(TableSpec(NAME, lambda: {"id": [1, 2], "v": [1.0, 2.0]}, index="id", access="public"))
        try:
            yield redis.Redis.from_url(REDIS_URL), selection.active_replicator()
        finally:
            selection.reset()
            declared.withdraw(NAME)
            if NAME in dp.hosted_tables():
                dp.delete_table(NAME)


def test_changes_go_through_the_stream_and_are_read_back_at_once(replicated):
    client, replicator = replicated
    table = dp.get_table(NAME)  # hosting it makes this process a replica
    dp.update(NAME, [{"id": 3, "v": 3.0}])
    dp.remove(NAME, [1])
    assert {row["id"]: row["v"] for row in table.to_records()} == {2: 2.0, 3: 3.0}
    assert client.xlen(replicator.log_key(NAME)) == 2
    table.replace([{"id": 9, "v": 9.0}])
    assert table.to_records() == [{"id": 9, "v": 9.0}]


async def test_async_writers_are_replicated_too(replicated):
    client, replicator = replicated
    await dp.aupdate(NAME, [{"id": 5, "v": 5.0}])  # nothing hosted yet: only published
    assert client.xlen(replicator.log_key(NAME)) == 1
    table = dp.get_table(NAME)  # hosts from the loader, replays the log
    await dp.aremove(NAME, [2])
    rows = {row["id"] for row in table.to_records()}
    assert rows == {1, 5}


def test_a_late_replica_catches_up_from_a_peer_snapshot(replicated):
    client, replicator = replicated
    dp.get_table(NAME)
    dp.update(NAME, [{"id": 4, "v": 4.0}])
    newcomer = Replicator(*redis_config())
    try:
        newcomer.follow(NAME)  # no mark: it asks the live replica for a snapshot
        deadline = time.monotonic() + 5
        while not newcomer.replicas[NAME].caught_up and time.monotonic() < deadline:
            time.sleep(0.02)
        snapshot_id = client.hget(replicator.snapshot_key(NAME), "id")
        assert snapshot_id is not None
        assert newcomer.replicas[NAME].last == parse_id(snapshot_id)
        assert replicator.replicas[NAME].last >= parse_id(snapshot_id)
    finally:
        newcomer.stop()


@pytest.mark.django_db(transaction=True)
def test_a_live_table_catches_up_from_its_database_off_the_engine_thread(replicated):
    import threading

    from django_perspective import live
    from tests.liveapp.models import Order

    client, replicator = replicated
    Order.objects.create(customer="ann")
    table = live.follow_queryset("repl_live", Order.objects.all(), fields=["id", "customer"])
    try:
        Order.objects.update(customer="bob")  # no signal: the table still says ann
        source = live.live_table("repl_live")
        threads = []
        read = source.records
        source.records = lambda pks=None: threads.append(threading.current_thread().name) or read(pks)
        replicator.replicas["repl_live"].caught_up = False  # as after a trimmed gap
        deadline = time.monotonic() + 5
        while not (threads and replicator.replicas["repl_live"].caught_up) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert threads == ["perspective-replication"]
        assert [row["customer"] for row in table.to_records()] == ["bob"]
    finally:
        live.unfollow("repl_live")
        dp.delete_table("repl_live")


def test_a_replication_setting_that_cannot_work_is_reported(settings):
    from django_perspective.checks import check_settings

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.PERSPECTIVE = {"REPLICATION": True}
    assert [error.id for error in check_settings()] == ["django_perspective.W020"]
    settings.PERSPECTIVE = {"REPLICATION": "redis://127.0.0.1:6379/0", "MAX_OUTBOX_BYTES": 1024}
    assert check_settings() == []
