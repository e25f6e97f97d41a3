"""The consumer in-process, through Channels' WebsocketCommunicator and a real engine."""

from __future__ import annotations

import asyncio

import perspective
import pytest
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from django_perspective import presence, protocol, schema
from django_perspective.consumers import CLOSE_UNSUPPORTED_DATA, PerspectiveConsumer
from django_perspective.engine import Engine
from django_perspective.testing import InProcessClient, connect_in_process  # noqa: F401  (test_fuzz)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def engine():
    with override_settings(PERSPECTIVE={"DEFAULT_ACCESS": "public", "HOST_ON_START": False, "POLL_INTERVAL": 0}):
        engine = Engine()
        engine.run(lambda: engine.host("probe", [{"id": i, "x": i * 1.5} for i in range(10)], index="id"))
        yield engine
        engine.shutdown()


def connected(engine: Engine):
    """An in-process perspective client on ``engine`` (django_perspective.testing)."""
    return connect_in_process(engine=engine)


async def test_requests_are_answered_by_the_engine(engine):
    async with connected(engine) as conn:
        assert await conn.client.get_hosted_table_names() == ["probe"]
        table = await conn.client.open_table("probe")
        view = await table.view(columns=["x"], filter=[["id", ">=", 5]])
        assert await view.to_columns() == {"x": [7.5, 9.0, 10.5, 12.0, 13.5]}


async def test_a_text_frame_closes_with_unsupported_data(engine):
    communicator = WebsocketCommunicator(PerspectiveConsumer.as_asgi(engine=engine), "/ws/perspective/")
    await communicator.connect()
    await communicator.send_to(text_data="hello")
    assert await communicator.receive_output(5) == {"type": "websocket.close", "code": CLOSE_UNSUPPORTED_DATA}
    await communicator.disconnect()


async def test_a_malformed_frame_gets_an_error_and_the_connection_keeps_working(engine):
    async with connected(engine) as conn:
        # An empty frame would abort the process inside Perspective 5.6: it must never get there.
        for frame in (b"\x08", b"", b"\x08\x07"):
            await conn.communicator.send_input({"type": "websocket.receive", "bytes": frame})
        assert await conn.client.get_hosted_table_names() == ["probe"]


async def test_disconnect_closes_the_session_and_frees_its_views(engine):
    async with connected(engine) as conn:
        table = await conn.client.open_table("probe")
        view = await table.view()
        assert await view.num_rows() == 10
        assert presence.count() == 1
        view_frame = conn.sent[-1]
        # While the view lives the table cannot be deleted, and its id answers.
        with pytest.raises(perspective.PerspectiveError, match="views"):
            await engine.arun(lambda: engine.client.open_table("probe").delete())
        assert not protocol.parse_envelope(await _replay(engine, view_frame)).kind == protocol.SERVER_ERROR
    for _ in range(100):
        if presence.count() == 0:
            break
        await asyncio.sleep(0.02)
    assert presence.count() == 0
    # The view is gone: its id no longer answers, and nothing holds the table. The close is
    # queued on the connection's lane as it leaves, so it may run just after.
    for _ in range(100):
        if protocol.parse_envelope(await _replay(engine, view_frame)).kind == protocol.SERVER_ERROR:
            break
        await asyncio.sleep(0.02)
    assert protocol.parse_envelope(await _replay(engine, view_frame)).kind == protocol.SERVER_ERROR
    await engine.arun(lambda: engine.client.open_table("probe").delete())
    assert await engine.arun(engine.client.get_hosted_table_names) == []


async def _replay(engine: Engine, frame: bytes) -> bytes:
    """Send ``frame`` through a fresh raw session (no consumer) and return the answer."""
    answers: list[bytes] = []

    def run() -> None:
        session = engine.server.new_session(answers.append)
        session.handle_request(protocol.with_msg_id(frame, 999))
        session.close()

    await engine.arun(run)
    return answers[0]


async def test_a_view_id_in_use_by_any_connection_is_refused(engine):
    # Found by fuzzing: two views under one id abort the whole process (C++ "View not
    # found" -> terminate) when either session closes.
    async def ask(communicator: WebsocketCommunicator, msg_id: int) -> bytes:
        await communicator.send_to(bytes_data=protocol.with_msg_id(make_view, msg_id))
        answer = await communicator.receive_from(5)
        assert protocol.parse_envelope(answer).msg_id == msg_id
        return answer

    async with connected(engine) as owner:
        await (await owner.client.open_table("probe")).view(columns=["x"])
        make_view = owner.sent[-1]
        other = WebsocketCommunicator(PerspectiveConsumer.as_asgi(engine=engine), "/ws/perspective/")
        assert (await other.connect())[0]
        assert b"already in use" in await ask(other, 4242)
        await other.disconnect()
    # Both sessions closed without taking the process down; the id is free again, once,
    # as soon as the engine has closed the owner's session (not before).
    for _ in range(200):
        if not engine.views:
            break
        await asyncio.sleep(0.01)
    later = WebsocketCommunicator(PerspectiveConsumer.as_asgi(engine=engine), "/ws/perspective/")
    assert (await later.connect())[0]
    assert protocol.parse_envelope(await ask(later, 77)).kind != protocol.SERVER_ERROR
    assert b"already in use" in await ask(later, 78)
    await later.disconnect()


async def test_a_failing_engine_call_answers_the_caller(engine, monkeypatch):
    class Exploding:
        def __init__(self, session):
            self.session = session

        def handle_request(self, frame: bytes, decoded: tuple[int, str] | None = None) -> None:
            if protocol.parse_envelope(frame).entity_id == "probe":
                raise RuntimeError("engine exploded")
            self.session.handle_request(frame, decoded)

        def close(self) -> None:
            self.session.close()

    new_session = Engine.new_session
    monkeypatch.setattr(Engine, "new_session", lambda self, cb: Exploding(new_session(self, cb)))
    async with connected(engine) as conn:
        table = await conn.client.open_table("probe")
        with pytest.raises(perspective.PerspectiveError, match="engine exploded"):
            await asyncio.wait_for(table.size(), 5)
        assert await conn.client.get_hosted_table_names() == ["probe"]


async def test_responses_over_the_message_limit_fail_the_call_instead_of_hanging(engine):
    with override_settings(PERSPECTIVE={"DEFAULT_ACCESS": "public", "HOST_ON_START": False, "MAX_RESPONSE_SIZE": 200}):
        async with connected(engine) as conn:
            table = await conn.client.open_table("probe")
            view = await table.view()
            with pytest.raises(perspective.PerspectiveError, match="exceeds the server's websocket message limit of 200"):
                await asyncio.wait_for(view.to_arrow(), 5)
            assert await table.size() == 10


async def test_requests_over_the_size_limit_are_refused_before_the_engine(engine):
    with override_settings(PERSPECTIVE={"DEFAULT_ACCESS": "public", "HOST_ON_START": False, "MAX_REQUEST_SIZE": 64}):
        async with connected(engine) as conn:
            table = await conn.client.open_table("probe")
            with pytest.raises(perspective.PerspectiveError, match="exceeds the limit of 64"):
                await asyncio.wait_for(table.view(filter=[["id", "in", list(range(40))]]), 5)
            assert await table.size() == 10


def _field(number: int, payload: bytes) -> bytes:
    return bytes([number << 3 | 2, len(payload)]) + payload


async def test_a_filter_without_a_value_never_reaches_the_engine(engine):
    """Perspective 5.6 segfaults on this frame; the consumer must refuse it."""
    term = _field(1, b"id") + _field(2, b">")
    frame = b"\x08\x4d" + _field(2, b"probe") + _field(6, _field(1, b"v1") + _field(2, _field(4, term)))
    async with connected(engine) as conn:
        await conn.communicator.send_to(bytes_data=frame)
        reply = protocol.parse_envelope(await conn.communicator.receive_from(5))
        assert (reply.msg_id, reply.entity_id, reply.kind) == (0x4D, "probe", protocol.SERVER_ERROR)
        # Unary operators need no value and do reach the engine.
        table = await conn.client.open_table("probe")
        view = await table.view(filter=[["x", "is not null", None]])
        assert await view.num_rows() == 10


async def test_connections_are_logged_with_structured_fields(engine, caplog):
    caplog.set_level("INFO", logger="django_perspective")
    async with connected(engine) as conn:
        await conn.communicator.send_to(bytes_data=b"\x08")
        await conn.client.get_hosted_table_names()
    events = {r.event: r for r in caplog.records if hasattr(r, "event")}
    assert {"connect", "refuse", "disconnect"} <= set(events)
    assert events["refuse"].reason.startswith("malformed request")
    assert events["disconnect"].seconds >= 0
    assert all(hasattr(r, "user") and hasattr(r, "client") for r in events.values())


async def test_views_per_connection_are_limited(engine):
    with override_settings(PERSPECTIVE={"DEFAULT_ACCESS": "public", "HOST_ON_START": False, "MAX_VIEWS": 3}):
        async with connected(engine) as conn:
            table = await conn.client.open_table("probe")
            views = [await table.view() for _ in range(3)]
            with pytest.raises(perspective.PerspectiveError, match="too many open views: at most 3"):
                await asyncio.wait_for(table.view(), 5)
            await views[0].delete()  # a deleted view frees its slot
            assert await (await table.view()).num_rows() == 10


async def test_an_idle_connection_is_closed(engine):
    from django_perspective.consumers import CLOSE_IDLE

    with override_settings(PERSPECTIVE={"DEFAULT_ACCESS": "public", "HOST_ON_START": False, "IDLE_TIMEOUT": 0.3}):
        communicator = WebsocketCommunicator(PerspectiveConsumer.as_asgi(engine=engine), "/ws/perspective/")
        assert (await communicator.connect())[0]
        assert await communicator.receive_output(5) == {"type": "websocket.close", "code": CLOSE_IDLE}
        await communicator.disconnect()


VIEW_DELETE = schema.BY_NAME["view_delete"].number


async def _refused(call, timeout: float = 5.0) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            await asyncio.wait_for(call(), 5)
        except perspective.PerspectiveError as exc:
            return str(exc)
        await asyncio.sleep(0.05)
    raise AssertionError("the call kept answering")


async def _released(engine: Engine, view_id: str) -> bool:
    for _ in range(100):
        if view_id not in engine.views:
            return True
        await asyncio.sleep(0.02)
    return False


async def test_a_view_whose_table_becomes_unreadable_is_deleted_and_fails_like_a_missing_table(engine):
    from django_perspective import access

    readable = {"probe": True}
    access.declare("probe", lambda user, name: readable[name])
    try:
        with override_settings(PERSPECTIVE={"DEFAULT_ACCESS": "public", "HOST_ON_START": False, "POLICY_CACHE_SECONDS": 0.5}):
            async with connected(engine) as conn:
                view = await (await conn.client.open_table("probe")).view()
                assert await view.num_rows() == 10
                view_id = protocol.parse_envelope(conn.sent[-1]).entity_id
                assert view_id in engine.views
                readable["probe"] = False
                assert "Unknown table 'probe'" in await _refused(view.num_rows)
                assert await _released(engine, view_id)  # deleted in the engine, then its id freed
                await engine.arun(lambda: engine.client.open_table("probe").delete())  # no view holds it
                readable["probe"] = True
                with pytest.raises(perspective.PerspectiveError, match="Unknown table 'probe'"):
                    await asyncio.wait_for(view.num_rows(), 5)  # revoked for good, whatever the policy says now
    finally:
        access._hosted.pop("probe", None)


async def test_deleting_a_table_deletes_every_connections_views_so_its_name_is_free_at_once(engine):
    async with connected(engine) as one, connected(engine) as two:
        first = await (await one.client.open_table("probe")).view()
        second = await (await two.client.open_table("probe")).view(columns=["x"])
        await first.num_rows(), await second.num_rows()
        ids = {protocol.parse_envelope(c.sent[-1]).entity_id for c in (one, two)}
        await engine.arun(engine.delete, "probe")
        await engine.arun(lambda: engine.host("probe", [{"id": 1, "x": 0.5}], index="id"))  # no "already exists"
        for view in (first, second):
            with pytest.raises(perspective.PerspectiveError, match="Unknown table 'probe'"):
                await asyncio.wait_for(view.num_rows(), 5)
        assert await (await one.client.open_table("probe")).size() == 1
        for view_id in ids:
            assert await _released(engine, view_id)
        # The engine's answers to the server's own deletes never reach the clients.
        assert all(protocol.parse_envelope(f).kind != VIEW_DELETE for c in (one, two) for f in c.received)


async def test_anonymous_connections_without_an_address_share_no_quota(engine):
    from django_perspective.consumers import CLOSE_TOO_MANY_CONNECTIONS

    def communicator(client: list | None) -> WebsocketCommunicator:
        made = WebsocketCommunicator(PerspectiveConsumer.as_asgi(engine=engine), "/ws/perspective/")
        if client is not None:
            made.scope["client"] = client
        return made

    with override_settings(PERSPECTIVE={"DEFAULT_ACCESS": "public", "HOST_ON_START": False, "MAX_CONNECTIONS_PER_USER": 2}):
        unknown = [communicator(None) for _ in range(3)]
        known = [communicator(["10.1.2.3", 5000 + i]) for i in range(3)]
        try:
            for made in unknown + known:
                assert (await made.connect())[0]
            for made in unknown + known[:2]:
                assert await made.receive_nothing(0.2)
            assert await known[2].receive_output(5) == {"type": "websocket.close", "code": CLOSE_TOO_MANY_CONNECTIONS}
        finally:
            for made in unknown + known:
                await made.disconnect()
