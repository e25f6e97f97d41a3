"""The attack suite: perspective's own client (and raw frames) against a real daphne process.

Every case asserts the precise outcome, that the table is unchanged afterwards, and that a
bystander connection kept working.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import perspective
import pytest
import websockets

from django_perspective import protocol

from .servers import DaphneProcess, connect, make_user

pytestmark = pytest.mark.e2e

SETTINGS = "tests.settings_security"
SMALL = {"id": [1, 2, 3], "value": [10.0, 20.0, 30.0]}
PUBLIC = {"superstore", "ticks", "leak", "editable"}
SIGNED_IN = {"members", "targets"}  # access="authenticated": the e2e app's and the demo's


@pytest.fixture(scope="module")
def server(demo_db: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneProcess]:
    process = DaphneProcess(Path(tmp_path_factory.mktemp("security")) / "daphne.log", env=demo_db, settings=SETTINGS).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def cookies(demo_db: dict[str, str]) -> dict[str, dict[str, str]]:
    def cookie(name: str, **kwargs) -> dict[str, str]:
        return {"Cookie": f"sessionid={make_user(demo_db, name, settings=SETTINGS, **kwargs)}"}

    return {
        "member": cookie("sec-member"),
        "trader": cookie("sec-trader", groups=("traders",)),
        "staff": cookie("sec-staff", staff=True),
    }


@contextlib.asynccontextmanager
async def bystander(server: DaphneProcess):
    """A client that must keep working whatever the attacker does."""
    async with connect(server.ws_url) as conn:
        view = await (await conn.client.open_table("superstore")).view(group_by=["Region"], columns=["Quantity"])
        expected = await view.to_columns()

        async def still_fine() -> None:
            assert await asyncio.wait_for(view.to_columns(), 10) == expected

        yield still_fine


async def unchanged(server: DaphneProcess, name: str = "editable") -> dict:
    async with connect(server.ws_url, headers=None) as conn:
        table = await conn.client.open_table("editable")
        return await (await table.view(sort=[["id", "asc"]])).to_columns()


async def test_listing_hides_what_the_user_may_not_read(server, cookies):
    async with connect(server.ws_url) as anonymous:
        assert set(await anonymous.client.get_hosted_table_names()) == PUBLIC
    async with connect(server.ws_url, headers=cookies["member"]) as member:
        assert set(await member.client.get_hosted_table_names()) == PUBLIC | SIGNED_IN
    async with connect(server.ws_url, headers=cookies["trader"]) as trader:
        assert set(await trader.client.get_hosted_table_names()) == PUBLIC | SIGNED_IN | {"traders"}
    async with connect(server.ws_url, headers=cookies["staff"]) as staff:
        assert {"members", "staff_only"} <= set(await staff.client.get_hosted_table_names())


async def test_hidden_tables_fail_like_missing_ones(server, cookies):
    async with bystander(server) as still_fine, connect(server.ws_url) as anonymous:
        for name in ("members", "staff_only", "traders", "no-such-table"):
            with pytest.raises(perspective.PerspectiveError, match=f'Unknown table "{name}"'):
                await anonymous.client.open_table(name)
        # Raw frame on a hidden table: size request, answered with an error for its msg_id.
        await _raw_roundtrip(server, b"\x08\x2a" + _len(2, b"members") + _len(8, b""), expect="Unknown table 'members'")
        await still_fine()
    async with connect(server.ws_url, headers=cookies["member"]) as member:
        with pytest.raises(perspective.PerspectiveError, match='Unknown table "traders"'):
            await member.client.open_table("traders")
        assert await (await member.client.open_table("members")).size() == 3


def _len(field: int, payload: bytes) -> bytes:
    return protocol.encode_len(field, payload)


async def _raw_roundtrip(server: DaphneProcess, frame: bytes, *, expect: str) -> None:
    async with websockets.connect(server.ws_url, origin=server.http_url) as ws:
        await ws.send(frame)
        reply = await asyncio.wait_for(ws.recv(), 10)
    envelope = protocol.parse_envelope(reply)
    assert envelope.kind == protocol.SERVER_ERROR
    assert envelope.msg_id == protocol.parse_envelope(frame).msg_id
    assert expect.encode() in reply


@pytest.mark.parametrize(
    "attack, message",
    [
        ("update", "is read-only: update is not allowed"),
        ("replace", "is read-only: replace is not allowed"),
        ("clear", "is read-only: replace is not allowed"),
        ("remove", "is read-only: remove is not allowed"),
        ("delete", "is read-only: delete is not allowed"),
    ],
)
async def test_writes_to_a_read_only_table_are_refused(server, attack, message):
    before = await unchanged(server)
    async with bystander(server) as still_fine, connect(server.ws_url) as attacker:
        table = await attacker.client.open_table("editable")
        call = {
            "update": lambda: table.update([{"id": 1, "value": -1.0}]),
            "replace": lambda: table.replace(SMALL),
            "clear": lambda: table.clear(),
            "remove": lambda: table.remove([1]),
            "delete": lambda: table.delete(),
        }[attack]
        with pytest.raises(perspective.PerspectiveError, match=message):
            await asyncio.wait_for(call(), 10)
        await still_fine()
    assert await unchanged(server) == before


async def test_make_table_and_join_are_refused(server):
    async with bystander(server) as still_fine, connect(server.ws_url) as attacker:
        with pytest.raises(perspective.PerspectiveError, match="make_table is not allowed"):
            await asyncio.wait_for(attacker.client.table(SMALL, name="superstore"), 10)
        with pytest.raises(perspective.PerspectiveError, match="make_table is not allowed"):
            await asyncio.wait_for(attacker.client.table(SMALL, name="planted"), 10)
        left = await attacker.client.open_table("editable")
        with pytest.raises(perspective.PerspectiveError, match="join is not allowed"):
            await asyncio.wait_for(attacker.client.join(left, left, "id", name="joined"), 10)
        assert "planted" not in await attacker.client.get_hosted_table_names()
        assert await (await attacker.client.open_table("superstore")).size() == 100_000
        await still_fine()


async def test_updates_on_an_editable_table_need_its_permission(server, cookies):
    before = await unchanged(server)
    async with connect(server.ws_url, headers=cookies["member"]) as member:
        table = await member.client.open_table("editable")
        with pytest.raises(perspective.PerspectiveError, match="is read-only: update is not allowed"):
            await asyncio.wait_for(table.update([{"id": 2, "value": -2.0}]), 10)
    assert await unchanged(server) == before
    async with connect(server.ws_url, headers=cookies["staff"]) as staff:
        table = await staff.client.open_table("editable")
        await table.update([{"id": 2, "value": 99.0}])
        # Replace and delete stay refused even for a user who may update.
        with pytest.raises(perspective.PerspectiveError, match="replace is not allowed"):
            await asyncio.wait_for(table.replace(SMALL), 10)
    for _ in range(50):
        after = await unchanged(server)
        if after["value"][1] == 99.0:
            break
        await asyncio.sleep(0.05)
    assert after == {"id": [1, 2, 3], "value": [10.0, 99.0, 30.0]}
    async with connect(server.ws_url, headers=cookies["staff"]) as staff:
        await (await staff.client.open_table("editable")).update([{"id": 2, "value": 20.0}])


async def test_another_connections_view_cannot_be_read_or_deleted(server):
    async with connect(server.ws_url) as owner:
        view = await (await owner.client.open_table("superstore")).view(columns=["Sales"], filter=[["Quantity", "==", 3]])
        rows = await view.num_rows()
        read_frame = owner.sent[-1]
        view_id = protocol.parse_envelope(read_frame).entity_id
        delete_frame = b"\x08\x07" + _len(2, view_id.encode()) + _len(11, b"")
        for frame in (protocol.with_msg_id(read_frame, 4242), delete_frame):
            await _raw_roundtrip(server, frame, expect="View not found")
        assert await view.num_rows() == rows  # still there, still answering its owner


async def test_forged_expired_and_wrong_table_tokens(server):
    from django.test import override_settings

    from django_perspective.tokens import make_token

    with override_settings(SECRET_KEY="django-insecure-demo-key-change-me"):
        good = make_token(["members"])
        with mock.patch("time.time", return_value=time.time() - 7200):
            expired = make_token(["members"])
    forged = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    for token in (forged, expired, "garbage"):
        async with connect(server.ws_url + f"?token={token}") as conn:
            await asyncio.wait_for(conn.ws.wait_closed(), 10)
            assert conn.ws.close_code == 4401
    async with connect(server.ws_url + f"?token={good}") as conn:
        assert "members" in await conn.client.get_hosted_table_names()
        assert await (await conn.client.open_table("members")).size() == 3
        with pytest.raises(perspective.PerspectiveError, match='Unknown table "staff_only"'):
            await conn.client.open_table("staff_only")


async def test_cross_origin_connections_are_refused(server):
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(server.ws_url, origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403


async def test_oversize_frames_are_refused_with_their_msg_id(server):
    big = b"\x08\x63" + _len(2, b"editable") + _len(33, _len(1, _len(4, b"x" * (300 * 1024))))
    async with bystander(server) as still_fine:
        await _raw_roundtrip(server, big, expect="exceeds the limit of 262144")
        await still_fine()


async def test_a_request_flood_is_rate_limited_and_others_keep_working(server):
    async with bystander(server) as still_fine, connect(server.ws_url) as flooder:
        table = await flooder.client.open_table("superstore")
        results = await asyncio.gather(*(table.size() for _ in range(400)), return_exceptions=True)
        refused = [r for r in results if isinstance(r, Exception)]
        assert refused and all("rate limit" in str(r) for r in refused)
        assert any(r == 100_000 for r in results)
        await still_fine()
        await asyncio.sleep(1.1)  # the bucket refills
        assert await table.size() == 100_000


async def test_truncated_and_random_bytes_get_errors_not_crashes(server):
    import random

    rng = random.Random(5)
    async with bystander(server) as still_fine, connect(server.ws_url) as attacker:
        await (await attacker.client.open_table("superstore")).view()
        captured = list(attacker.sent)
        frames = [f[: rng.randrange(len(f))] for f in captured for _ in range(5)]
        frames += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))) for _ in range(60)]
        for frame in frames:
            await attacker.ws.send(frame)
        await asyncio.sleep(0.5)
        await still_fine()
    assert server.proc.poll() is None


async def test_connections_per_user_are_limited(server, cookies):
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(8):
            await stack.enter_async_context(connect(server.ws_url, headers=cookies["trader"]))
        async with connect(server.ws_url, headers=cookies["trader"]) as ninth:
            await asyncio.wait_for(ninth.ws.wait_closed(), 10)
            assert ninth.ws.close_code == 4429


def test_the_viewer_tag_can_sign_a_token_for_its_table(rf):
    from urllib.parse import parse_qs, urlsplit

    from django.contrib.auth.models import AnonymousUser

    from django_perspective.browser import websocket_url
    from django_perspective.tokens import read_token

    request = rf.get("/")
    request.user = AnonymousUser()
    url = websocket_url(request, "members", token=True)
    token = parse_qs(urlsplit(url).query)["token"][0]
    assert read_token(token).tables == frozenset({"members"})
