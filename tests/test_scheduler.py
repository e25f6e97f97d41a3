"""The engine's scheduler: fair lanes, the poll rule, the budget and the watchdog, in-process."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

from django_perspective import schema
from django_perspective.engine import Engine, Lane
from django_perspective.scheduler import Budget


def wait_until(done: Callable[[], bool], seconds: float) -> None:
    """Poll ``done`` until it holds or ``seconds`` pass; the caller asserts what it expects."""
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.fixture
def engine():
    engine = Engine(poll_interval=0.05, concurrent_reads=True, call_timeout=0)
    yield engine
    engine.shutdown(timeout=10)


def test_the_engine_polls_a_server_side_update_before_the_next_make_view(engine):
    """Perspective alone hangs in server.poll() after update -> grouped make_view (in most
    runs of the issue's reproducer); without the engine's poll rule these rounds hang."""

    def rounds() -> list[int]:
        sizes = []
        for n in range(50):
            name = f"t{n}"
            engine.host(name, {"id": "integer", "side": "string", "price": "float"}, index="id")
            table = engine.open_table(name)  # no flush: the write path, as streams and api.update use
            v1 = table.view(group_by=["side"], columns=["price"])
            table.update([{"id": i, "side": "buy" if i % 2 else "sell", "price": 20.0} for i in range(5)])
            v2 = table.view(group_by=["side"], columns=["price"])
            engine.server.poll()
            sizes.append(v2.num_rows())
            v1.delete()
            v2.delete()
        return sizes

    assert engine.submit(rounds).result(timeout=60) == [3] * 50


def test_a_session_make_view_after_a_server_side_update_does_not_hang(engine):
    """The same order with the view made by a connection's session, as the consumer sends it."""
    import perspective

    answers: list[bytes] = []
    engine.run(lambda: engine.host("s", {"id": "integer", "side": "string", "price": "float"}, index="id"))
    session = engine.run(lambda: engine.new_session(lambda r: remote.handle_response(r)))
    lane = Lane(engine, label="test")
    remote = perspective.Client(lambda frame: lane.call(session.handle_request, bytes(frame)) or answers.append(frame))

    def remote_rounds() -> int:
        table = remote.open_table("s")
        for n in range(30):
            v1 = table.view(group_by=["side"], columns=["price"])
            engine.run(lambda n=n: engine.open_table("s").update([{"id": n, "side": f"side{n}", "price": 1.0}]))
            v2 = table.view(group_by=["side"], columns=["price"])
            assert v2.num_rows() == n + 2  # the total row and every side so far: it read the write
            v1.delete()
            v2.delete()
        return n

    worker = threading.Thread(target=lambda: answers.append(remote_rounds()))
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the engine hung"
    assert answers[-1] == 29


def test_another_lanes_backlog_delays_a_call_by_at_most_one_call(engine):
    order: list[str] = []
    gate = threading.Event()
    busy, bystander = Lane(engine, label="busy"), Lane(engine, label="bystander")
    busy.call(gate.wait, 5)  # hold the engine thread while both queue up
    for i in range(20):
        busy.call(lambda i=i: (time.sleep(0.01), order.append(f"busy {i}")))
    bystander.call(lambda: order.append("bystander"))
    gate.set()
    engine.run(lambda: None)
    wait_until(lambda: len(order) >= 21, 10)
    assert order.index("bystander") <= 1, order


def test_reads_take_turns_on_the_reader_thread_too(engine):
    order: list[str] = []
    gate = threading.Event()
    busy, bystander = Lane(engine, label="busy"), Lane(engine, label="bystander")
    busy.read(gate.wait, 5)
    time.sleep(0.05)  # the reader holds busy's first read
    for i in range(20):
        busy.read(lambda i=i: (time.sleep(0.01), order.append((f"busy {i}", threading.current_thread().name))))
    bystander.read(lambda: order.append(("bystander", threading.current_thread().name)))
    gate.set()
    wait_until(lambda: len(order) >= 21, 10)
    names = [name for name, _ in order]
    assert names.index("bystander") <= 1, names
    assert {thread for _, thread in order} == {"perspective-reader"}


def test_the_servers_own_work_keeps_its_order(engine):
    seen: list[int] = []
    futures = [engine.submit(seen.append, i) for i in range(500)]
    futures[-1].result(timeout=10)
    assert seen == list(range(500))


def test_a_read_waits_for_the_engine_thread_while_a_write_awaits_its_poll():
    engine = Engine(poll_interval=30, concurrent_reads=True, call_timeout=0)  # the pacer would wait 30 s
    try:
        engine.run(lambda: engine.host("w", [{"k": 1, "v": 1}], index="k"))
        engine.run(engine.flush)
        lane = Lane(engine, label="reader")
        threads: list[str] = []
        lane.read(lambda: threads.append(threading.current_thread().name))
        wait_until(lambda: bool(threads), 5)  # else the write below could overtake it
        engine.run(lambda: engine.open_table("w").update([{"k": 1, "v": 2}]))  # a server-side write, unpolled
        lane.read(lambda: threads.append(threading.current_thread().name))
        engine.run(lambda: None)
        wait_until(lambda: len(threads) >= 2, 5)
        assert threads == ["perspective-reader", "perspective-engine"]
    finally:
        engine.shutdown(timeout=10)


def test_a_connections_write_is_visible_to_its_next_read_without_waiting_for_the_pacer():
    import perspective

    engine = Engine(poll_interval=30, concurrent_reads=True, call_timeout=0)
    try:
        engine.run(lambda: engine.host("rw", [{"k": 0, "v": -1}], index="k"))
        session = engine.run(lambda: engine.new_session(lambda r: remote.handle_response(r)))
        lane = Lane(engine, label="writer")

        def send(frame: bytes) -> None:
            read = schema.is_read(schema.decode(bytes(frame)))
            (lane.read if read else lane.call)(session.handle_request, bytes(frame))

        remote = perspective.Client(send)
        result: list[int] = []

        def rounds() -> None:
            table = remote.open_table("rw")
            view = table.view(columns=["v"])
            for i in range(300):
                table.update([{"k": 0, "v": i}])
                result.append(int(view.to_columns()["v"][0] != i))

        worker = threading.Thread(target=rounds)
        worker.start()
        worker.join(60)
        assert len(result) == 300 and sum(result) == 0
    finally:
        engine.shutdown(timeout=10)


def test_the_budget_drains_and_names_the_setting():
    budget = Budget(6)  # 6 s per minute: 0.1 s drains per second
    assert budget.exceeded() is None
    budget.charge(6.5)
    message = budget.exceeded()
    assert message is not None and "ENGINE_TIME_BUDGET allows 6 s per minute" in message
    assert Budget(0).exceeded() is None
    budget._stamp -= 10  # ten seconds later 1 s has drained
    assert budget.exceeded() is None


def test_every_lane_call_is_charged_to_its_lane(engine):
    lane = Lane(engine, label="heavy", budget=0.06)  # 1 ms per second
    lane.call(time.sleep, 0.2)
    lane.read(time.sleep, 0.2)
    engine.run(lambda: None)
    wait_until(lambda: not lane.pending(), 5)
    assert lane.budget.used() >= 0.39
    assert "engine time budget exceeded" in (lane.over_budget() or "")


def test_the_watchdog_reports_a_call_past_the_timeout_with_its_request(caplog):
    engine = Engine(poll_interval=0, concurrent_reads=False, call_timeout=0.2)
    try:
        lane = Lane(engine, label="user=7 client=10.0.0.1:5000")

        def slow() -> None:
            from django_perspective.scheduler import note

            note(6, "orders")  # as Engine._request does for each request
            time.sleep(1.2)

        with caplog.at_level(logging.ERROR, logger="django_perspective.engine"):
            lane.call(slow)
            time.sleep(0.8)
            stalled = engine.stalled()
            assert stalled and "kind=6" in stalled[0]
            engine.run(lambda: None)
        assert engine.stalled() == []
        line = next(r.getMessage() for r in caplog.records if "engine call running" in r.getMessage())
        assert "kind=6 entity='orders'" in line and "user=7 client=10.0.0.1:5000" in line
    finally:
        engine.shutdown(timeout=10)


def test_a_stuck_engine_thread_does_not_keep_the_interpreter_alive():
    script = """
import threading, time
from django.conf import settings
settings.configure(PERSPECTIVE={"HOST_ON_START": False}, INSTALLED_APPS=[])
import django; django.setup()
from django_perspective import engine as engine_module
engine = engine_module.get_engine()
engine.submit(time.sleep, 3600)
# A non-daemon thread waits for the engine, as a sync view in Engine.run() would.
threading.Thread(target=lambda: engine.run(lambda: None)).start()
time.sleep(0.2)
print("exiting", flush=True)
"""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], check=False, timeout=60, capture_output=True, text=True)
    assert "exiting" in result.stdout
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    assert "exiting with an engine call still running" in result.stderr


def test_the_lane_with_the_least_recent_engine_time_goes_next(engine):
    order: list[str] = []
    heavy, light = Lane(engine, label="heavy"), Lane(engine, label="light")
    heavy.call(time.sleep, 0.1)  # holds the engine thread while both queue up
    for i in range(10):
        heavy.call(lambda i=i: (time.sleep(0.03), order.append(f"heavy {i}")))
    for i in range(5):
        light.call(lambda i=i: order.append(f"light {i}"))
    wait_until(lambda: len(order) >= 15, 10)
    # Round-robin would interleave them; by load, the light lane's calls all go first.
    assert order[:5] == [f"light {i}" for i in range(5)], order


def test_a_stream_of_new_lanes_does_not_starve_a_lane_that_used_the_engine(engine):
    # By load alone every newcomer (load 0) went before a lane that had used 0.2 s, for as
    # long as newcomers kept coming: test_leaks' cycles waited over 60 s and the server grew
    # to 12 GB. Waiting counts now: the loaded lane goes once it has waited about its load.
    heavy = Lane(engine, label="heavy")
    heavy.call(time.sleep, 0.2)
    served = threading.Event()
    heavy.call(served.set)
    started = time.monotonic()
    newcomers = 0
    while not served.is_set() and time.monotonic() - started < 4:
        Lane(engine, label=f"new {newcomers}").call(time.sleep, 0.02)  # faster than served
        newcomers += 1
        time.sleep(0.01)
    waited = time.monotonic() - started
    assert served.is_set(), f"starved for {waited:.1f} s behind {newcomers} new lanes"
    assert waited < 1.6, f"served after {waited:.1f} s behind {newcomers} new lanes"


def test_a_small_read_runs_on_the_calling_thread_only_when_nothing_could_make_it_wait():
    engine = Engine(poll_interval=30, concurrent_reads=True, call_timeout=0)  # writes stay unpolled
    try:
        engine.run(lambda: engine.host("n", [{"k": 1, "v": 1}], index="k"))
        engine.run(engine.flush)
        lane, other = Lane(engine, label="a"), Lane(engine, label="b")
        ran: list[str] = []

        def here() -> None:
            ran.append(threading.current_thread().name)

        assert lane.read_now(here) and ran == ["MainThread"]
        lane.call(time.sleep, 0.3)  # the lane's own call first: never overtaken
        assert not lane.read_now(here)
        other.read(time.sleep, 0.3)  # the reader is busy past the short wait for its lock
        time.sleep(0.05)
        assert not other.read_now(here) and not Lane(engine, label="c").read_now(here)
        time.sleep(0.4)
        engine.run(lambda: engine.open_table("n").update([{"k": 1, "v": 2}]))  # unpolled write
        assert not Lane(engine, label="d").read_now(here)
        engine.run(engine.flush)
        assert Lane(engine, label="e").read_now(here)
        assert ran == ["MainThread", "MainThread"]
    finally:
        engine.shutdown(timeout=10)


def test_a_read_run_here_is_charged_and_what_it_queued_runs_after_it(engine):
    lane = Lane(engine, label="here")
    order: list[str] = []

    def read() -> None:
        lane.call(lambda: order.append(threading.current_thread().name))
        time.sleep(0.05)
        order.append("read")

    assert lane.run_here(read)
    engine.run(lambda: None)
    wait_until(lambda: len(order) >= 2, 5)
    assert order == ["read", "perspective-engine"]
    assert lane.budget.used() >= 0.04


def test_view_sizes_stay_known_across_polls_that_follow_reads_alone(engine):
    engine.run(lambda: engine.host("k", [{"k": n, "v": n} for n in range(10)], index="k"))
    session = engine.run(lambda: engine.new_session(lambda _r: None))
    frame = schema.encode(schema.Request(1, "k", schema.BY_NAME["make_view"], {"view_id": "kv", "config": {}}))
    engine.run(session.handle_request, frame)
    engine.run(engine.flush)
    assert engine.run(engine.catalog.dimensions, "kv").rows == 10
    engine.run(engine._poll)  # nothing written: the size cannot have changed
    assert engine.catalog.known_dimensions("kv").rows == 10
    engine.run(lambda: engine.open_table("k").update([{"k": 99, "v": 0}]))
    engine.run(engine.flush)
    assert engine.catalog.known_dimensions("kv") is None
    assert engine.run(engine.catalog.dimensions, "kv").rows == 11


def test_only_metadata_and_windows_of_known_small_size_count_as_small_reads():
    from django_perspective.catalog import Dimensions
    from django_perspective.guard import is_small_read

    def request(kind: str, body: dict) -> schema.Request:
        return schema.Request(1, "v", schema.BY_NAME[kind], body)

    dims = Dimensions(1_000_000, 5, 1_000_000, 10)
    window = {"viewport": {"start_row": 100, "end_row": 150}}
    assert is_small_read(request("view_to_columns_string", window), dims, 500)
    assert not is_small_read(request("view_to_columns_string", window), dims, 499)
    assert not is_small_read(request("view_to_columns_string", window), None, 10**9)  # size unknown
    assert not is_small_read(request("view_to_arrow", {}), dims, 5000)  # the whole view
    assert not is_small_read(request("view_get_min_max", {"column_name": "v"}), dims, 10**9)  # a scan
    assert is_small_read(request("view_schema", {}), None, 1)
