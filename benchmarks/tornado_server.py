"""Perspective's own Tornado handler, hosting the benchmark tables: the baseline (a).

Run as ``python -m benchmarks.tornado_server --port P --rows N``. Set up as Perspective's
documentation shows: one ``Server``, the handler with its defaults (requests handled on
the IOLoop), updates applied inline.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import perspective
import tornado.web
from perspective.handlers.tornado import PerspectiveTornadoHandler

from .data import TABLE, TICKS, TICKS_INDEX, bench_table, ticks_schema
from .feed import start_feed

MAX_MESSAGE = 1024 * 1024 * 1024


class FeedHandler(tornado.web.RequestHandler):
    """``POST /feed`` with JSON ``{seconds, rate, rows}`` starts the fan-out producer."""

    def initialize(self, ticks: perspective.Table) -> None:
        self.ticks = ticks

    def post(self) -> None:
        spec = json.loads(self.request.body)
        start_feed(lambda data: self.ticks.update(data), spec["seconds"], spec["rate"], spec["rows"])
        self.write({"started": True})


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rows", type=int, required=True)
    args = parser.parse_args()
    server = perspective.Server()
    client = server.new_local_client()
    client.table(bench_table(args.rows), name=TABLE)
    ticks = client.table(ticks_schema(), name=TICKS, index=TICKS_INDEX)
    app = tornado.web.Application(
        [
            (r"/websocket", PerspectiveTornadoHandler, {"perspective_server": server}),
            (r"/feed", FeedHandler, {"ticks": ticks}),
        ],
        websocket_max_message_size=MAX_MESSAGE,
    )
    app.listen(args.port, address="127.0.0.1", max_buffer_size=MAX_MESSAGE)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
