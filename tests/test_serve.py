"""``python -m django_perspective.serve``: daphne with the direct binary path, byte for byte
the replies stock daphne sends, in order, whatever their size."""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest

from django_perspective import websocket

from .servers import DaphneProcess, connect

pytestmark = pytest.mark.e2e

# Windows of the 200,000-row "leak" table: Arrow replies from 664 bytes to 5.9 MB, on both
# sides of the 16-bit / 64-bit frame length boundary and of COALESCE_BYTES, and far past
# what one socket send takes.
ROWS = [0, 1, 2, 3, 700, 1_500, 1_600, 1_700, 3_000, 10_000, 200_000]


@pytest.fixture(scope="module")
def servers(demo_db, tmp_path_factory):
    logs = tmp_path_factory.mktemp("serve")
    ours = DaphneProcess(logs / "serve.log", env=demo_db, unix_socket=logs / "serve.sock").start()
    stock = DaphneProcess(logs / "daphne.log", env=demo_db, launcher="daphne").start()
    yield ours, stock
    ours.stop()
    stock.stop()


@pytest.mark.parametrize(
    "length,expected",
    [(0, "8200"), (125, "827d"), (126, "827e007e"), (65_535, "827effff"), (65_536, "827f0000000000010000")],
)
def test_frame_headers_follow_rfc_6455(length, expected):
    assert websocket.frame_header(length).hex() == expected


async def _replies(url: str, **options: str) -> list[bytes]:
    async with connect(url, **options) as conn:
        view = await (await conn.client.open_table("leak")).view(columns=["id", "x", "s"])
        # All at once: large replies still being written while small ones queue behind them.
        return list(await asyncio.gather(*(view.to_arrow(start_row=0, end_row=n) for n in ROWS * 3)))


async def test_replies_match_stock_daphne_byte_for_byte_and_in_order(servers):
    ours, stock = servers
    got, on_unix, want = await asyncio.gather(
        _replies(ours.ws_url),
        _replies("ws://localhost/ws/perspective/", unix_socket=str(ours.unix_socket)),
        _replies(stock.ws_url),
    )
    sizes = sorted({len(r) for r in got})
    print("reply sizes", sizes)
    assert max(sizes) > 4 * 1024 * 1024  # more than one send of the socket takes
    assert got == want
    assert on_unix == want
    for payload, rows in zip(got, ROWS * 3):
        table = pa.ipc.open_stream(payload).read_all()
        assert table.num_rows == rows
        if rows:
            assert table.column("id")[rows - 1].as_py() == rows - 1



def _frame(payload: bytes, opcode: int = 2, fin: bool = True, masked: bool = True, rsv: int = 0) -> bytes:
    """One client frame, built by hand so a test can send what no well-behaved client would."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    n = len(payload)
    bit = 0x80 if masked else 0
    head += bytes([bit | n]) if n < 126 else bytes([bit | 126]) + n.to_bytes(2, "big")
    if not masked:
        return head + payload
    mask = b"\x11\x22\x33\x44"
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _size_request(msg_id: int) -> bytes:
    from django_perspective import protocol, schema

    return protocol.encode_envelope(msg_id, "leak", schema.BY_NAME["table_size"].number, b"")


async def _raw(url: str, *writes: bytes, pause: float = 0.0) -> tuple[list[int], int | None]:
    """Write ``writes`` as they are, then read the answers' msg_ids until 3 arrive or it closes;
    the close code received, 0 when the server dropped the connection without one."""
    import websockets

    from django_perspective.client import default_origin
    from django_perspective.protocol import parse_response

    async with websockets.connect(url, origin=default_origin(url), max_size=None) as ws:
        for chunk in writes:
            ws.transport.write(chunk)
            await asyncio.sleep(pause)
        ids: list[int] = []
        try:
            while len(ids) < 3:
                ids.append(parse_response(await asyncio.wait_for(ws.recv(), 10)).msg_id)
        except websockets.ConnectionClosed as closed:
            return ids, closed.rcvd.code if closed.rcvd else 0
        return ids, None


ONE, TWO, THREE = (_size_request(n) for n in (1, 2, 3))
SPLIT = _frame(ONE)
# A read that ends right after the first frame's two header bytes: the library's parser is
# then inside a frame with nothing buffered, and must get the rest.
HEADER_ONLY = (_frame(_size_request(7))[:2], _frame(_size_request(7))[2:])

# (writes, pause between them, (msg_ids answered, close code)) as stock daphne answers them.
ODD_FRAMES = (
    [
        ([_frame(ONE), _frame(TWO), _frame(THREE)], 0.05, ([1, 2, 3], None)),  # one frame per read
        ([_frame(ONE) + _frame(TWO) + _frame(THREE)], 0, ([1, 2, 3], None)),  # three in one read
        ([SPLIT[:5], SPLIT[5:] + _frame(TWO) + _frame(THREE)], 0.05, ([1, 2, 3], None)),  # split frame
        ([SPLIT[:2], SPLIT[2:], _frame(TWO), _frame(THREE)], 0.05, ([1, 2, 3], None)),  # split after the header
        ([_frame(ONE[:4], fin=False), _frame(ONE[4:], opcode=0), _frame(TWO), _frame(THREE)], 0.05, ([1, 2, 3], None)),
        ([_frame(ONE), _frame(b"hi", opcode=9), _frame(TWO), _frame(THREE)], 0.05, ([1, 2, 3], None)),  # a ping
        ([_frame(ONE, masked=False)], 0, ([], 0)),  # clients must mask: autobahn drops it
        ([_frame(ONE, rsv=4)], 0, ([], 0)),  # no extension was negotiated
        ([_frame(b"{}", opcode=1)], 0, ([], 4003)),  # text: the consumer closes
    ],
    ["frame-per-read", "frames-in-one-read", "split-frame", "split-after-header", "fragmented", "ping",
     "unmasked", "rsv", "text"],
)


@pytest.mark.parametrize("writes,pause,expected", ODD_FRAMES[0], ids=ODD_FRAMES[1])
async def test_odd_frames_are_handled_as_stock_daphne_handles_them(servers, writes, pause, expected):
    ours, stock = servers
    assert await _raw(stock.ws_url, *writes, pause=pause) == expected  # the reference
    assert await _raw(ours.ws_url, *writes, pause=pause) == expected
