"""The request schema as a boundary: one test per family of frames that crashed, froze or
bloated Perspective 5.6.1, through a real daphne process.

Each attack comes from perspective's own client where it can send the frame, and as raw
bytes where it cannot. Every case asserts the Perspective error that names the problem,
that the process is alive, and that a bystander connection keeps getting answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import perspective
import pytest
import websockets

from django_perspective import protocol, schema

from .servers import DaphneProcess, connect, make_user, rss_kib

pytestmark = pytest.mark.e2e

SETTINGS = "tests.settings_security"
VIEW = schema.BY_NAME


@pytest.fixture(scope="module")
def server(demo_db: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneProcess]:
    process = DaphneProcess(Path(tmp_path_factory.mktemp("boundary")) / "daphne.log", env=demo_db, settings=SETTINGS).start()
    yield process
    process.stop()


@contextlib.asynccontextmanager
async def bystander(server: DaphneProcess):
    """A client that must keep getting the same answers whatever the attacker does."""
    async with connect(server.ws_url) as conn:
        view = await (await conn.client.open_table("superstore")).view(group_by=["Region"], columns=["Quantity"])
        expected = await view.to_columns()
        yield
        assert await asyncio.wait_for(view.to_columns(), 20) == expected
    assert server.proc.poll() is None, "the server died"


class Raw:
    """One websocket speaking raw request frames; answers are matched by msg_id."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.next_id = 1000

    async def call(self, number: int, entity: str, body: bytes) -> tuple[protocol.Envelope, bytes]:
        self.next_id += 1
        msg_id = self.next_id
        await self.ws.send(protocol.encode_envelope(msg_id, entity, number, body))
        while True:
            reply = await asyncio.wait_for(self.ws.recv(), 20)
            envelope = protocol.parse_envelope(reply)
            if envelope.msg_id == msg_id:
                return envelope, reply

    async def refused(self, number: int, entity: str, body: bytes, expect: str) -> None:
        envelope, reply = await self.call(number, entity, body)
        assert envelope.kind == protocol.SERVER_ERROR, reply
        assert expect.encode() in reply, reply

    async def refused_frame(self, frame: bytes, msg_id: int, expect: str) -> None:
        await self.ws.send(frame)
        while True:
            reply = await asyncio.wait_for(self.ws.recv(), 20)
            envelope = protocol.parse_envelope(reply)
            if envelope.msg_id == msg_id:
                break
        assert envelope.kind == protocol.SERVER_ERROR and expect.encode() in reply, reply

    async def make_view(self, table: str, view_id: str, config: bytes = b"") -> protocol.Envelope:
        body = protocol.encode_len(1, view_id.encode()) + (protocol.encode_len(2, config) if config else b"")
        envelope, _ = await self.call(VIEW["make_view"].number, table, body)
        return envelope


@contextlib.asynccontextmanager
async def raw(server: DaphneProcess):
    async with websockets.connect(server.ws_url, origin=server.http_url, max_size=None) as ws:
        yield Raw(ws)


def filter_term(column: str, op: str, *values: bytes) -> bytes:
    term = protocol.encode_len(1, column.encode()) + protocol.encode_len(2, op.encode())
    for value in values:
        term += value
    return protocol.encode_len(4, term)


def scalar_float(number: float) -> bytes:
    import struct

    return protocol.encode_len(3, b"\x21" + struct.pack("<d", number))  # Scalar.float = 4, fixed64


@pytest.mark.parametrize("value", [1e300, 1e20, -1e20, float("inf")])
async def test_family_1_out_of_range_dates_from_perspectives_client(server, value):
    async with bystander(server), connect(server.ws_url) as attacker:
        table = await attacker.client.open_table("superstore")
        with pytest.raises(perspective.PerspectiveError, match="out of range|only finite numbers"):
            await asyncio.wait_for(table.view(filter=[["Order Date", "==", value]]), 20)
        # The same client's sensible filter still works.
        view = await table.view(filter=[["Order Date", ">", "2024-01-01"]])
        assert 0 < await view.num_rows() < 100_000


async def test_family_1_filters_without_a_value_or_with_a_wrong_wire_type(server):
    async with bystander(server), raw(server) as attacker:
        # A unary-looking operator with no value field at all: passed on as [null].
        envelope = await attacker.make_view("superstore", "no-value", filter_term("Region", "is null"))
        assert envelope.kind == VIEW["make_view"].number
        # A binary operator with no value.
        await attacker.refused(6, "superstore", protocol.encode_len(1, b"v2") + protocol.encode_len(2, filter_term("Region", "==")), "needs one value")
        # A value encoded as a varint instead of a Scalar message.
        await attacker.refused(6, "superstore", protocol.encode_len(1, b"v3") + protocol.encode_len(2, protocol.encode_len(4, protocol.encode_len(1, b"Sales") + protocol.encode_len(2, b">") + b"\x18\x05")), "must be length-delimited")
        # A string where a number is expected, and a number where a date goes.
        await attacker.refused(6, "superstore", protocol.encode_len(1, b"v4") + protocol.encode_len(2, filter_term("Sales", ">", protocol.encode_len(3, protocol.encode_len(6, b"many")))), "needs a number, not a string")
        await attacker.refused(6, "superstore", protocol.encode_len(1, b"v5") + protocol.encode_len(2, filter_term("Order Date", "<", scalar_float(1e20))), "out of range")
        # An operator the column's type does not have.
        await attacker.refused(6, "superstore", protocol.encode_len(1, b"v6") + protocol.encode_len(2, filter_term("Sales", "contains", scalar_float(1.0))), "is not available for column 'Sales'")


async def test_family_2_repeated_singular_fields_are_refused(server):
    async with bystander(server), raw(server) as attacker:
        twice = protocol.encode_len(1, b"first") + protocol.encode_len(1, b"second")
        await attacker.refused(6, "superstore", twice, "view_id appears twice")
        await attacker.refused(6, "superstore", protocol.encode_len(1, b"x") + protocol.encode_len(2, b"\x40\x01\x40\x00"), "filter_op appears twice")
        # Two bodies in one request, and msg_id twice.
        await attacker.refused_frame(protocol.encode_envelope(77, "superstore", 8, b"") + protocol.encode_len(7, b""), 77, "has two")
        await attacker.refused_frame(b"\x08\x05" + protocol.encode_envelope(78, "superstore", 8, b""), 78, "field 1 appears twice")


async def test_family_3_a_view_id_is_owned_until_the_engine_has_deleted_it(server):
    async with bystander(server), raw(server) as owner, raw(server) as other:
        assert (await owner.make_view("superstore", "shared-id")).kind == VIEW["make_view"].number
        await other.refused(6, "superstore", protocol.encode_len(1, b"shared-id"), "already in use")
        await other.refused(VIEW["view_to_csv"].number, "shared-id", b"", "View not found")
        await other.refused(VIEW["view_delete"].number, "shared-id", b"", "View not found")
        envelope, _ = await owner.call(VIEW["view_delete"].number, "shared-id", b"")
        assert envelope.kind == VIEW["view_delete"].number
        assert (await other.make_view("superstore", "shared-id")).kind == VIEW["make_view"].number
    # Both sessions closed with their views: nothing aborted.
    async with connect(server.ws_url) as later:
        assert await (await later.client.open_table("superstore")).size() == 100_000


@pytest.mark.parametrize("grouped", [False, True])
async def test_family_4_viewports_near_two_to_the_32_are_clamped_or_refused(server, grouped):
    huge = 2**32 - 2
    async with bystander(server), connect(server.ws_url) as attacker:
        table = await attacker.client.open_table("superstore")
        view = await table.view(group_by=["Region"] if grouped else [], columns=["Sales", "Region"])
        rows = await view.num_rows()
        # An end far past the view is clamped to it: the answer is the whole view.
        assert len((await view.to_columns(start_row=0, end_row=huge))["Sales"]) == rows
        assert (await view.to_csv(start_row=rows - 2, end_row=huge)).count("\n") >= 2
        assert await view.to_arrow(start_col=0, end_col=huge, start_row=0, end_row=3)
        assert await view.to_json(start_row=huge - 1, end_row=huge) == []
        with pytest.raises(perspective.PerspectiveError, match="is after"):
            await view.to_columns_string(start_row=huge, end_row=1)
        if grouped:
            with pytest.raises(perspective.PerspectiveError, match="outside the view"):
                await view.expand(huge)
            with pytest.raises(perspective.PerspectiveError, match="outside the view"):
                await view.collapse(rows + 10)
            assert await view.collapse(0) >= 0
        else:
            with pytest.raises(perspective.PerspectiveError, match="needs a view with group_by"):
                await view.expand(0)


async def test_family_5_inverted_column_ranges_are_refused(server):
    async with bystander(server), raw(server) as attacker:
        assert (await attacker.make_view("superstore", "paths")).kind == VIEW["make_view"].number
        rss = rss_kib(server.proc.pid)
        await attacker.refused(VIEW["view_column_paths"].number, "paths", b"\x08\x05\x10\x01", "start_col 5 is after end_col 1")
        envelope, reply = await attacker.call(VIEW["view_column_paths"].number, "paths", b"\x08\x00\x10\xfe\xff\xff\xff\x0f")
        assert envelope.kind == VIEW["view_column_paths"].number and b"Order ID" in reply
        assert rss_kib(server.proc.pid) - rss < 50 * 1024


@pytest.mark.parametrize(
    "expression",
    [
        "var x := 0; for (var i := 0; i < 900000; i += 1) { x += 1 }; x",
        'var x := 0; while (x < 1000000) { x += 1 }; x + "Sales"',
        "var x := 0; repeat x += 1; until (x > 1000000); x",
        "var v[1000000] := {1}; sum(v)",
    ],
)
async def test_family_6_loops_in_expressions_are_refused(server, expression):
    async with bystander(server), connect(server.ws_url) as attacker:
        table = await attacker.client.open_table("superstore")
        with pytest.raises(perspective.PerspectiveError, match="not allowed on this table"):
            await asyncio.wait_for(table.view(expressions={"loop": expression}), 10)
        # Loop words inside strings and column names are not statements.
        view = await table.view(expressions={"ok": "if (\"Sales\" > 100) { 'for while' } else { 'repeat' }"}, columns=["ok"])
        assert await view.num_rows() == 100_000


async def test_family_7_read_only_tables_allocate_no_ports(server):
    async with bystander(server):
        async with connect(server.ws_url) as first:
            table = await first.client.open_table("superstore")
            baseline = rss_kib(server.proc.pid)
        clients = [connect(server.ws_url) for _ in range(6)]
        async with contextlib.AsyncExitStack() as stack:
            conns = [await stack.enter_async_context(c) for c in clients]
            tables = [await conn.client.open_table("superstore") for conn in conns]
            ports = await asyncio.gather(*(t.make_port() for t in tables for _ in range(60)))
        assert set(ports) == {0}  # the default port: nothing made in the engine
        assert rss_kib(server.proc.pid) - baseline < 30 * 1024


async def test_family_7_ports_on_an_editable_table_are_capped(server, demo_db):
    cookie = {"Cookie": f"sessionid={make_user(demo_db, 'boundary-staff', staff=True, settings=SETTINGS)}"}
    async with bystander(server):
        async with connect(server.ws_url, headers=cookie) as staff:
            table = await staff.client.open_table("editable")
            ports = [await table.make_port() for _ in range(16)]
            assert len(set(ports)) == 16 and 0 not in ports
            with pytest.raises(perspective.PerspectiveError):
                await table.make_port()  # perspective's client drops this call's message...
            await table.update([{"id": 1, "value": 11.0}], port_id=ports[3])
            with pytest.raises(perspective.PerspectiveError, match="was not made by this connection"):
                await table.update([{"id": 1, "value": 12.0}], port_id=max(ports) + 1000)
            await table.update([{"id": 1, "value": 10.0}])
        async with websockets.connect(server.ws_url, origin=server.http_url, additional_headers=cookie) as ws:
            staff_raw = Raw(ws)  # ...so read the refusal itself
            for _ in range(16):
                assert (await staff_raw.call(VIEW["make_port"].number, "editable", b""))[0].kind == VIEW["make_port"].number
            await staff_raw.refused(VIEW["make_port"].number, "editable", b"", "too many ports: at most 16")
        async with raw(server) as anonymous:  # read-only for them: the default port, nothing made
            envelope, reply = await anonymous.call(VIEW["make_port"].number, "editable", b"")
            assert envelope.kind == VIEW["make_port"].number and envelope.body[0] == envelope.body[1]


async def test_family_8_a_view_split_by_a_unique_column_is_refused_with_its_numbers(server):
    async with bystander(server), connect(server.ws_url) as attacker:
        table = await attacker.client.open_table("superstore")
        with pytest.raises(perspective.PerspectiveError, match=r"rows x \d+ columns = \d+ cells.*MAX_VIEW_CELLS"):
            await asyncio.wait_for(table.view(split_by=["Order ID"], columns=["Sales", "Profit"]), 120)
        # The refused view is gone and the connection goes on.
        view = await table.view(group_by=["Region"], columns=["Sales"])
        assert await view.num_rows() == 5


async def test_unknown_fields_and_request_types_are_refused(server):
    async with bystander(server), raw(server) as attacker:
        await attacker.refused(8, "superstore", b"\x08\x01", "unknown field 1 in table_size")
        await attacker.refused(9, "superstore", b"", "unknown request field 9")
        await attacker.refused(VIEW["make_view"].number, "superstore", protocol.encode_len(1, b"w") + protocol.encode_len(2, protocol.encode_len(11, b"")), "unknown field 11 in make_view.config")
        await attacker.refused(VIEW["make_view"].number, "superstore", protocol.encode_len(1, b"\xff\xfe"), "is not UTF-8")
