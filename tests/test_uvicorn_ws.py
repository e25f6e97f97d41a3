"""``python -m django_perspective.uvicorn_ws``: uvicorn with the direct binary path sends,
byte for byte and in order, the replies stock uvicorn sends, and treats every odd frame as
stock uvicorn does."""

from __future__ import annotations

import asyncio
import socket

import pytest

from django_perspective import backpressure, uvicorn_ws

from .servers import UvicornProcess
from .test_serve import HEADER_ONLY, ODD_FRAMES, ROWS, _frame, _raw, _replies, _size_request

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def servers(demo_db, tmp_path_factory):
    logs = tmp_path_factory.mktemp("uvicorn")
    ours = UvicornProcess(logs / "ours.log", env=demo_db).start()
    stock = UvicornProcess(logs / "stock.log", env=demo_db, launcher="uvicorn").start()
    yield ours, stock
    ours.stop()
    stock.stop()


async def test_replies_match_stock_uvicorn_byte_for_byte_and_in_order(servers):
    ours, stock = servers
    got, want = await asyncio.gather(_replies(ours.ws_url), _replies(stock.ws_url))
    assert max(len(r) for r in got) > 4 * 1024 * 1024
    assert len(got) == len(ROWS) * 3
    assert got == want


@pytest.mark.parametrize("writes,pause,ids", [(w, p, e[0]) for w, p, e in ODD_FRAMES[0]], ids=ODD_FRAMES[1])
async def test_odd_frames_are_handled_as_stock_uvicorn_handles_them(servers, writes, pause, ids):
    ours, stock = servers
    reference = await _raw(stock.ws_url, *writes, pause=pause)
    assert reference[0] == ids  # what every server answers; the close code is uvicorn's own
    assert await _raw(ours.ws_url, *writes, pause=pause) == reference


async def test_only_whole_frames_at_a_boundary_skip_the_websockets_parser(monkeypatch):
    """One real protocol on a real socket pair: the parser sees the handshake and the split
    frame, never the whole frames; each message reaches the application once, in order."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    async def app(scope, receive, send):  # accepts, then echoes each message's length
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "bytes": len(message["bytes"]).to_bytes(4, "big")})

    config = Config(app=app, ws_per_message_deflate=False, lifespan="off")
    config.load()
    loop = asyncio.get_running_loop()
    protocol = uvicorn_ws.WebSocketProtocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    parsed: list[int] = []
    receive_data = protocol.conn.receive_data
    monkeypatch.setattr(protocol.conn, "receive_data", lambda data: (parsed.append(len(data)), receive_data(data)))
    ours, theirs = socket.socketpair()
    await loop.connect_accepted_socket(lambda: protocol, ours)
    reader, writer = await asyncio.open_connection(sock=theirs)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    whole = _frame(_size_request(1))
    answers = []
    for chunks in ([whole], [whole[:2], whole[2:]], [whole], [HEADER_ONLY[0], HEADER_ONLY[1]]):
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.05)
        header = await reader.readexactly(2)
        assert header == b"\x82\x04"  # one unmasked final binary frame of 4 bytes
        answers.append(int.from_bytes(await reader.readexactly(4), "big"))
    assert answers == [len(_size_request(1))] * 3 + [len(_size_request(7))]
    # The handshake and the two split frames went through websockets' parser; the whole ones did not.
    assert len(parsed) == 1 + 2 + 2
    # A direct send: framed here, written as it is.
    assert protocol.send_binary(b"x" * 100_000)
    assert await reader.readexactly(10 + 100_000) == b"\x82\x7f" + (100_000).to_bytes(8, "big") + b"x" * 100_000
    writer.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("ws,direct", [("django_perspective.uvicorn_ws:WebSocketProtocol", True), ("auto", False)])
async def test_the_consumer_sends_directly_only_through_this_apps_protocol(ws, direct):
    """Uvicorn in this process, the project's ASGI app: the consumer finds ``send_binary``
    behind uvicorn's ``send`` only under this app's protocol, and waits on uvicorn's own
    ``writable`` event (its flow control) under both."""
    import gc

    import uvicorn

    from django_perspective.client import connect
    from django_perspective.consumers import PerspectiveConsumer
    from django_perspective.testing import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config("example_project.asgi:application", host="127.0.0.1", port=port,
                                           lifespan="off", ws=ws, ws_per_message_deflate=False, log_level="warning"))
    task = asyncio.get_running_loop().create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        async with connect(f"ws://127.0.0.1:{port}/ws/perspective/") as conn:
            assert "leak" in await conn.client.get_hosted_table_names()
            [consumer] = [
                o for o in gc.get_objects()
                if isinstance(o, PerspectiveConsumer) and o.scope.get("server") == ("127.0.0.1", port) and not o._closed
            ]
            protocol = backpressure.server_protocol(consumer.base_send)
            assert isinstance(protocol, uvicorn_ws.WebSocketProtocol) is direct
            assert consumer._send_binary == (protocol.send_binary if direct else None)
            assert consumer._gate.open is protocol.writable
    finally:
        server.should_exit = True
        await task
