"""Random, truncated and mutated request frames through the consumer: nothing dies.

Frames start from real requests captured from perspective's own client. A crash inside
Perspective kills this very process, so "the test finished" is itself the first assertion;
after every batch a separate connection must still get correct answers. The budget is
``FUZZ_EXAMPLES`` hypothesis examples (CI: the default; by hand: raise it).
"""

from __future__ import annotations

import asyncio
import os

import pytest
from channels.testing import WebsocketCommunicator
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_perspective import protocol
from django_perspective.consumers import PerspectiveConsumer
from django_perspective.engine import Engine

from .test_consumer import InProcessClient

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1500"))
FRAMES_TRIED = 0


async def _capture(engine: Engine) -> list[bytes]:
    communicator = WebsocketCommunicator(PerspectiveConsumer.as_asgi(engine=engine), "/ws/perspective/")
    await communicator.connect()
    conn = InProcessClient(communicator)
    client = conn.client
    table = await client.open_table("probe")
    await table.schema(), await table.size(), await table.columns()
    view = await table.view(
        group_by=["s"], split_by=["b"], columns=["f"], sort=[["f", "desc"]],
        filter=[["k", ">", 1]], expressions={"e": '"f" * 2'}, aggregates={"f": "avg"},
    )
    await view.to_columns(), await view.to_arrow(), await view.num_rows(), await view.schema()
    await view.to_json(start_row=0, end_row=2), await view.to_csv(), await view.get_min_max("f")
    await view.expand(0), await view.collapse(0)
    await view.on_update(lambda *args: None)
    await view.delete()
    conn._pump.cancel()
    await communicator.disconnect()
    return list(conn.sent)


class Harness:
    """One engine, one connection that receives the fuzz and one control connection."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.engine = Engine(poll_interval=0)
        self.engine.run(
            lambda: self.engine.host(
                "probe",
                [{"k": i, "s": "abc"[i % 3], "b": i % 2 == 0, "f": i * 0.5} for i in range(20)],
                index="k",
            )
        )
        self.frames = self.loop.run_until_complete(_capture(self.engine))
        self.target, self.control = self.loop.run_until_complete(self._open())

    async def _open(self):
        target = WebsocketCommunicator(PerspectiveConsumer.as_asgi(engine=self.engine), "/ws/perspective/")
        assert (await target.connect())[0]
        control = WebsocketCommunicator(PerspectiveConsumer.as_asgi(engine=self.engine), "/ws/perspective/")
        assert (await control.connect())[0]
        client = InProcessClient(control)
        self.control_view = await (await client.client.open_table("probe")).view(columns=["f"], filter=[["k", "<", 3]])
        return target, control

    async def blast(self, frames: list[bytes]) -> None:
        for frame in frames:
            await self.target.send_input({"type": "websocket.receive", "bytes": frame})
        await self.engine.arun(lambda: None)  # the engine has handled every frame
        while not self.target.output_queue.empty():
            message = self.target.output_queue.get_nowait()
            assert message["type"] == "websocket.send"
            protocol.parse_envelope(message["bytes"])  # every answer is a well-formed frame
        assert await asyncio.wait_for(self.control_view.to_columns(), 10) == {"f": [0.0, 0.5, 1.0]}

    def close(self) -> None:
        self.loop.run_until_complete(self.target.disconnect())
        self.loop.run_until_complete(self.control.disconnect())
        self.engine.shutdown()
        self.loop.close()


@pytest.fixture(scope="module")
def harness(django_db_setup, django_db_blocker):
    # Module-scoped, so it opens the database itself: access checks read the registry.
    with django_db_blocker.unblock(), override_settings(
        # No rate limit: every fuzzed frame must reach the guard and the engine, not a refusal.
        PERSPECTIVE={"DEFAULT_ACCESS": "public", "HOST_ON_START": False, "RATE_LIMIT": 0}
    ):
        harness = Harness()
        yield harness
        harness.close()


def mutations(frames: list[bytes]) -> st.SearchStrategy[bytes]:
    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        frame = bytearray(draw(st.sampled_from(frames)))
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "splice"]))
            at = draw(st.integers(0, max(len(frame) - 1, 0)))
            if op == "flip" and frame:
                frame[at] = draw(st.integers(0, 255))
            elif op == "truncate":
                del frame[at:]
            elif op == "insert":
                frame[at:at] = draw(st.binary(min_size=1, max_size=8))
            elif op == "delete" and frame:
                del frame[at]
            elif op == "splice":
                other = draw(st.sampled_from(frames))
                frame[at:] = other[draw(st.integers(0, len(other))) :]
        return bytes(frame)

    return mutate()


@pytest.mark.django_db(transaction=True)
def test_mutated_random_and_truncated_frames_never_take_the_server_down(harness, capsys):
    frame = st.one_of(
        mutations(harness.frames),
        st.binary(max_size=64),
        st.sampled_from(harness.frames).flatmap(lambda f: st.integers(0, len(f)).map(lambda n: f[:n])),
    )

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.lists(frame, min_size=1, max_size=20))
    def run(frames: list[bytes]) -> None:
        global FRAMES_TRIED
        FRAMES_TRIED += len(frames)
        harness.loop.run_until_complete(harness.blast(frames))

    run()
    assert FRAMES_TRIED >= EXAMPLES
    with capsys.disabled():  # the budget spent, in every run's output
        print(f" fuzz: {FRAMES_TRIED} frames tried", end=" ")
