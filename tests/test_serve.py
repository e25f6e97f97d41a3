"""``python -m django_perspective.serve``: daphne with the direct binary path, byte for byte
the replies stock daphne sends, in order, whatever their size."""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest

from django_perspective import serve

from .servers import DaphneProcess, connect

pytestmark = pytest.mark.e2e

# Windows of the 200,000-row "leak" table: Arrow replies from 664 bytes to 5.9 MB, on both
# sides of the 16-bit / 64-bit frame length boundary and of COALESCE_BYTES, and far past
# what one socket send takes.
ROWS = [0, 1, 2, 3, 700, 1_500, 1_600, 1_700, 3_000, 10_000, 200_000]


@pytest.fixture(scope="module")
def servers(demo_db, tmp_path_factory):
    logs = tmp_path_factory.mktemp("serve")
    ours = DaphneProcess(logs / "serve.log", env=demo_db).start()
    stock = DaphneProcess(logs / "daphne.log", env=demo_db, launcher="daphne").start()
    yield ours, stock
    ours.stop()
    stock.stop()


@pytest.mark.parametrize(
    "length,expected",
    [(0, "8200"), (125, "827d"), (126, "827e007e"), (65_535, "827effff"), (65_536, "827f0000000000010000")],
)
def test_frame_headers_follow_rfc_6455(length, expected):
    assert serve.frame_header(length).hex() == expected


async def _replies(url: str) -> list[bytes]:
    async with connect(url) as conn:
        view = await (await conn.client.open_table("leak")).view(columns=["id", "x", "s"])
        # All at once: large replies still being written while small ones queue behind them.
        return list(await asyncio.gather(*(view.to_arrow(start_row=0, end_row=n) for n in ROWS * 3)))


async def test_replies_match_stock_daphne_byte_for_byte_and_in_order(servers):
    ours, stock = servers
    got, want = await asyncio.gather(_replies(ours.ws_url), _replies(stock.ws_url))
    sizes = sorted({len(r) for r in got})
    print("reply sizes", sizes)
    assert max(sizes) > 4 * 1024 * 1024  # more than one send of the socket takes
    assert got == want
    for payload, rows in zip(got, ROWS * 3):
        table = pa.ipc.open_stream(payload).read_all()
        assert table.num_rows == rows
        if rows:
            assert table.column("id")[rows - 1].as_py() == rows - 1

