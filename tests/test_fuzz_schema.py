"""The structured fuzzer (tests/fuzzing) over every request type in schema.KINDS.

Frames are drawn from the schema's own descriptors, so a request type added to the schema
is fuzzed without a change here. CI runs a seeded slice (hypothesis' derandomize: the same
examples every run); ``FUZZ_SCHEMA_EXAMPLES`` raises it by hand, and
``python -m tests.fuzzing run`` runs a million frames in a child process that may crash.
A crash inside Perspective kills this very process: the test finishing is the first
assertion; each example also checks every answer, the control connection and that the
connection's views went with it.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_perspective import protocol, schema
from django_perspective.engine import Engine

from .fuzzing import frames, harness

EXAMPLES = int(os.environ.get("FUZZ_SCHEMA_EXAMPLES", "120"))
SLICE = settings(
    max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


@pytest.fixture(scope="module")
def channels(django_db_setup, django_db_blocker):
    # Module-scoped, so it opens the database itself: access checks may read the registry.
    with django_db_blocker.unblock(), override_settings(PERSPECTIVE=harness.SETTINGS):
        loop = asyncio.new_event_loop()
        engine = Engine(poll_interval=0)
        fuzz = harness.Channels(engine)
        loop.run_until_complete(fuzz.open())
        fuzz.loop = loop
        yield fuzz
        loop.run_until_complete(fuzz.close())
        engine.shutdown()
        loop.close()


@pytest.fixture(scope="module")
def direct(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), override_settings(PERSPECTIVE=harness.SETTINGS):
        fuzz = harness.Direct()
        yield fuzz
        fuzz.engine.shutdown()


def _kinds(frames_: list[bytes], seen: Counter[str]) -> None:
    for data in frames_:
        try:
            seen[schema.decode(data).kind.name] += 1
        except protocol.ProtocolError:
            seen["(refused by the schema)"] += 1


@pytest.mark.django_db(transaction=True)
def test_any_request_types_through_the_consumer_never_take_the_server_down(channels):
    seen: Counter[str] = Counter()

    @SLICE
    @given(frames.examples(frames.FrameStrategies(channels.world)))
    def run(example: tuple[bool, list[bytes]]) -> None:
        client_tables, frames_ = example
        _kinds(frames_, seen)
        channels.loop.run_until_complete(channels.run(frames_, client_tables))

    run()
    assert seen["(refused by the schema)"] < sum(seen.values()) / 2, seen  # most frames reach the guard


@pytest.mark.parametrize("kind", sorted(schema.BY_NAME))
@pytest.mark.django_db(transaction=True)
def test_each_request_type_through_the_consumer(channels, kind):
    seen: Counter[str] = Counter()

    @settings(SLICE, max_examples=max(EXAMPLES // 10, 5))
    @given(frames.examples(frames.FrameStrategies(channels.world), 10, kind))
    def run(example: tuple[bool, list[bytes]]) -> None:
        client_tables, frames_ = example
        _kinds(frames_, seen)
        channels.loop.run_until_complete(channels.run(frames_, client_tables))

    run()
    assert seen[kind] >= 5, seen


@pytest.mark.django_db(transaction=True)
def test_every_request_type_through_the_guard_and_engine_directly(direct):
    @settings(SLICE, max_examples=EXAMPLES * 3)
    @given(frames.examples(frames.FrameStrategies(direct.world)))
    def run(example: tuple[bool, list[bytes]]) -> None:
        direct.run(example[1], example[0])

    run()
    counts = direct.counts
    assert counts["engine"] > counts["frames"] / 5, counts  # the semantic layer passes enough on
    assert counts["errors"] > counts["frames"] / 5, counts  # and refuses enough


@pytest.fixture(scope="module")
def strategies(direct):
    return frames.FrameStrategies(direct.world)


@pytest.mark.django_db(transaction=True)
def test_schema_decodes_and_re_encodes_every_clean_frame_to_the_same_meaning(strategies):
    """A frame drawn without corruptions decodes, unless a value is out of its bounds, and
    the re-encoded frame the engine would get decodes to the same request."""

    @SLICE
    @given(strategies.frame())
    def run(frame: frames.Frame) -> None:
        raw = frame.render(7)
        try:
            request = schema.decode(raw)
        except protocol.ProtocolError as exc:
            clean = frame.broken in ((), ("shuffle",)) and (frame.msg_id or 0) <= schema.UINT32_MAX
            assert not clean or "only finite numbers" in str(exc) or "more than its largest value" in str(exc), (exc, raw.hex())
            return
        again = schema.decode(schema.encode(request))
        assert (again.msg_id, again.entity_id, again.kind) == (request.msg_id, request.entity_id, request.kind)
        assert _meaning(again.body, again.kind.body) == _meaning(request.body, request.kind.body), raw.hex()

    run()


def _meaning(values: dict, message: schema.Message) -> dict:
    """Decoded values as the engine reads them: defaults of plain fields are absent."""
    out = {}
    for number, spec in message.fields.items():
        if spec.name not in values:
            continue
        value = values[spec.name]
        if spec.map:
            value = {key: _item(spec.message.fields[2], item) for key, item in value.items()}
        elif spec.repeated:
            value = [_item(spec, item) for item in value]
        else:
            value = _item(spec, value)
            if not value and spec.kind != "message" and not (spec.optional or number in message.in_oneof):
                continue
        out[spec.name] = value
    return out


def _item(spec: schema.Field, value):
    if spec.kind == "message":
        return _meaning(value, spec.message)
    return bytes(value) if isinstance(value, memoryview) else value
