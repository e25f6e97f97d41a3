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
            expected = ("only finite numbers", "more than its largest value", "from_csv is not UTF-8", "from_rows is not UTF-8", "from_cols is not UTF-8", "from_ndjson is not UTF-8")
            assert not clean or any(text in str(exc) for text in expected), (exc, raw.hex())
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


# Found by the fuzzer (python -m tests.fuzzing run, then minimize): one make_view that
# segfaulted Perspective 5.6.1 - a grouped view of fuzz_edit with "high minus low" on v,
# whose filter id < 8640000000000001 (past int32) matches no row.
CRASH_HIGH_MINUS_LOW = bytes.fromhex(
    "0801120966757a7a5f6564697432c6010a02763012bf010a0176120269641201761a02080022130a026964"
    "12023c3d1a0921408cb5781daf1544222b0a046e616d6512076d6174636865731a1a3218323032342d3031"
    "2d30315430303a30303a30302e3030305a22120a02696412013c1a09210100dcc208b23e432a060a026964"
    "10052a080a046e616d6510083a180a02696412120a0d7765696768746564206d65616e0a01763a150a0176"
    "12100a0e68696768206d696e7573206c6f773a120a046e616d65120a0a08646f6d696e616e7440004803"
)


@pytest.fixture
def engine():
    """The fuzz tables on an engine of the test's own: a test may empty them."""
    with override_settings(PERSPECTIVE=harness.SETTINGS):
        engine = Engine(poll_interval=0)
        engine.run(harness.host, engine)
        yield engine
        engine.shutdown()


@pytest.mark.django_db(transaction=True)
async def test_the_fuzzers_crash_frame_is_refused(engine):
    from channels.testing import WebsocketCommunicator

    from django_perspective.consumers import PerspectiveConsumer

    socket = WebsocketCommunicator(PerspectiveConsumer.as_asgi(engine=engine), "/ws/perspective/")
    assert (await socket.connect())[0]
    await socket.send_to(bytes_data=CRASH_HIGH_MINUS_LOW)
    answer = await socket.receive_from(10)
    assert protocol.parse_envelope(answer).kind == protocol.SERVER_ERROR
    assert b"'high minus low' is not available for the float column 'v'" in answer
    await socket.disconnect()


@pytest.mark.parametrize(
    "config",
    [
        # Crashed at make_view: no row passes the filter.
        {"group_by": ["s"], "filter": [["i", "<", -5]], "aggregates": {"f": "high minus low"}},
        # Crashed at the first read after the table's rows were removed.
        {"group_by": ["s"], "aggregates": {"i": "high minus low"}},
        {"group_by": ["s"], "aggregates": {"dt": "avg"}},
        {"group_by": ["s"], "expressions": {"e": '"f" * 2'}, "aggregates": {"e": "high minus low"}},
        # Only the engine knows this expression is a date: it fails the make_view and the
        # next poll crashed. Refused before the make_view, typed by a describe.
        {"group_by": ["s"], "expressions": {"e": '"d"'}, "aggregates": {"e": "avg"}},
    ],
)
@pytest.mark.django_db(transaction=True)
async def test_aggregates_that_crash_on_an_empty_group_are_refused(engine, config):
    from .test_consumer import connected

    async with connected(engine) as conn:
        table = await conn.client.open_table(harness.TABLE)
        with pytest.raises(Exception, match="crashes on it when a group has no rows"):
            await asyncio.wait_for(table.view(**config), 10)
        # The same aggregates where the engine copes, then every group emptied.
        kept = await table.view(
            group_by=["s"], expressions={"e": '"f" * 2'}, aggregates={"e": "avg", "f": "high", "dt": "max", "d": "count"}
        )
        assert await kept.num_rows() > 1
        rows = harness.table_rows()
        for removed in ([row["i"] for row in rows if row["s"] == "a"], [row["i"] for row in rows]):
            await engine.arun(lambda keys=removed: engine.open_table(harness.TABLE).remove(keys))  # groups emptied
            await engine.arun(engine.flush)
            assert await asyncio.wait_for(kept.num_rows(), 10) >= 1  # the total row, and a live process
        assert await kept.num_rows() == 1
        assert engine.views.keys() == {next(iter(engine.views))}  # the refused view is gone


@pytest.mark.parametrize("field", ["from_csv", "from_rows", "from_cols", "from_ndjson"])
@pytest.mark.django_db(transaction=True)
async def test_text_payloads_that_are_not_utf8_are_refused(engine, field):
    """Found by the fuzzer: a make_table from the CSV b"\\xc5_\\n" made a table whose column
    name was not UTF-8; every later answer about it was a frame no client can decode."""
    from channels.testing import WebsocketCommunicator

    socket = WebsocketCommunicator(harness.TablesConsumer.as_asgi(engine=engine), "/ws/perspective/")
    assert (await socket.connect())[0]
    for msg_id, (kind, entity) in enumerate((("make_table", "made-0"), ("table_update", harness.EDITABLE)), 1):
        body = {"data": {field: b"\xc5_\n"}}
        await socket.send_to(bytes_data=harness.request(msg_id, entity, kind, body))
        answer = await socket.receive_from(10)
        assert protocol.parse_envelope(answer).msg_id == msg_id
        assert f"{kind}.data.{field} is not UTF-8".encode() in answer, answer
    await socket.send_to(bytes_data=harness.request(9, "made-0", "make_table", {"data": {"from_csv": b"x,y\n1,2\n"}}))
    assert protocol.parse_envelope(await socket.receive_from(10)).kind == schema.BY_NAME["make_table"].number
    assert await engine.arun(engine.catalog.columns, "made-0") == {"x": "integer", "y": "integer"}
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_set_depth_on_a_flat_grouped_view_is_refused(engine):
    """Found by the fuzzer: set_depth on a view grouped with group_rollup_mode 1 (flat)
    whose filter matched no row segfaulted Perspective 5.6.1."""
    from channels.testing import WebsocketCommunicator

    from django_perspective.consumers import PerspectiveConsumer

    socket = WebsocketCommunicator(PerspectiveConsumer.as_asgi(engine=engine), "/ws/perspective/")
    assert (await socket.connect())[0]
    empty = {"group_by": ["s"], "filter": [{"column": "dt", "op": "is null"}], "group_rollup_mode": 1}
    frames = [
        harness.request(1, harness.TABLE, "make_view", {"view_id": "flat", "config": empty}),
        harness.request(2, "flat", "view_set_depth", {}),
        harness.request(3, "flat", "view_set_depth", {"depth": 1}),
        harness.request(4, "flat", "view_dimensions"),
    ]
    answers = []
    for frame in frames:
        await socket.send_to(bytes_data=frame)
        answers.append(await socket.receive_from(10))
    assert protocol.parse_envelope(answers[0]).kind == schema.BY_NAME["make_view"].number
    for answer in answers[1:3]:
        assert b"set_depth is not available on a flat view" in answer, answer
    assert protocol.parse_envelope(answers[3]).kind == schema.BY_NAME["view_dimensions"].number
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_new_table_from_dictionary_encoded_integers_is_refused(engine):
    """The fuzzer's payloads include a dictionary<int64> Arrow column: a make_table from it
    segfaulted Perspective 5.6.1 (through a client_tables connection)."""
    import pyarrow as pa
    from channels.testing import WebsocketCommunicator

    def arrow(table: pa.Table) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()

    socket = WebsocketCommunicator(harness.TablesConsumer.as_asgi(engine=engine), "/ws/perspective/")
    assert (await socket.connect())[0]
    encoded = pa.table({"id": pa.array([1, 2]).dictionary_encode(), "v": [1.0, 2.0]})
    nested = pa.table({"ids": pa.array([[1], [2]], pa.list_(pa.dictionary(pa.int8(), pa.int32())))})
    for msg_id, table in enumerate((encoded, nested), 1):
        await socket.send_to(bytes_data=harness.request(msg_id, f"made-{msg_id}", "make_table", {"data": {"from_arrow": arrow(table)}}))
        answer = await socket.receive_from(10)
        assert b"is dictionary-encoded integers" in answer and b"crashes on it" in answer, answer
    # Not Arrow at all (the fuzzer's bytes made pyarrow raise OSError): the engine's to refuse.
    await socket.send_to(bytes_data=harness.request(3, "made-3", "make_table", {"data": {"from_arrow": bytes.fromhex("b0227ad7e884db1c256733b114bb8c17a1aa82")}}))
    answer = await socket.receive_from(10)
    assert protocol.parse_envelope(answer).kind == protocol.SERVER_ERROR and b"could not check" not in answer, answer
    strings = pa.table({"id": pa.array(["a", "b"]).dictionary_encode(), "v": [1.0, 2.0]})  # the engine copes
    await socket.send_to(bytes_data=harness.request(5, "made-5", "make_table", {"data": {"from_arrow": arrow(strings)}}))
    assert protocol.parse_envelope(await socket.receive_from(10)).kind == schema.BY_NAME["make_table"].number
    assert await engine.arun(engine.catalog.columns, "made-5") == {"id": "string", "v": "float"}
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_new_table_from_a_view_is_refused(engine):
    """Minimized from the fuzzer's crash journal: make_table from_view v0, view_delete v0,
    make_view v0 again - closing the session aborted Perspective 5.6.1 (View not found)."""
    from channels.testing import WebsocketCommunicator

    socket = WebsocketCommunicator(harness.TablesConsumer.as_asgi(engine=engine), "/ws/perspective/")
    assert (await socket.connect())[0]
    frames = [
        harness.request(1, harness.EDITABLE, "make_view", {"view_id": "v0", "config": {"group_by": ["when"]}}),
        harness.request(2, "made-0", "make_table", {"data": {"from_view": "v0"}}),
        harness.request(3, "v0", "view_delete"),
        harness.request(4, harness.TABLE, "make_view", {"view_id": "v0"}),
    ]
    answers = []
    for frame in frames:
        await socket.send_to(bytes_data=frame)
        answers.append(await socket.receive_from(10))
    assert b"make_table from a view is not allowed" in answers[1], answers[1]
    assert [protocol.parse_envelope(a).kind for a in (answers[0], answers[2], answers[3])] == [
        schema.BY_NAME[k].number for k in ("make_view", "view_delete", "make_view")
    ]
    await socket.disconnect()
    await engine.arun(lambda: None)  # the session closed with its view, and the process lives
    assert sorted(await engine.arun(engine.table_names)) == sorted([harness.TABLE, harness.EDITABLE])


# Found by the fuzzer in the long run: make_view of fuzz_edit grouped by v and id, sorted
# by id with "col desc" then "desc abs" - heap corruption (free(): invalid next size).
CRASH_SORTED_TWICE = bytes.fromhex(
    "0801120966757a7a5f6564697432250a027630121f0a01760a0269641a0212002a060a02696410042a060a026964100640004801"
)


@pytest.mark.parametrize(
    "frame",
    [
        CRASH_SORTED_TWICE,
        harness.request(1, harness.TABLE, "make_view", {"view_id": "v0", "config": {
            "group_by": ["s", "i"], "split_by": ["b"], "sort": [{"column": "i", "op": 3}, {"column": "i", "op": 6}]}}),
    ],
)
@pytest.mark.django_db(transaction=True)
async def test_a_column_sorted_twice_is_refused(engine, frame):
    from channels.testing import WebsocketCommunicator

    from django_perspective.consumers import PerspectiveConsumer

    socket = WebsocketCommunicator(PerspectiveConsumer.as_asgi(engine=engine), "/ws/perspective/")
    assert (await socket.connect())[0]
    await socket.send_to(bytes_data=frame)
    answer = await socket.receive_from(10)
    assert b"is sorted twice" in answer, answer
    # One sort per column, the same ops, is fine.
    ok = {"group_by": ["s", "i"], "sort": [{"column": "i", "op": 4}, {"column": "s", "op": 6}]}
    await socket.send_to(bytes_data=harness.request(2, harness.TABLE, "make_view", {"view_id": "v1", "config": ok}))
    assert protocol.parse_envelope(await socket.receive_from(10)).kind == schema.BY_NAME["make_view"].number
    await socket.disconnect()


@pytest.mark.parametrize("kind", ["table_update", "table_replace"])
@pytest.mark.django_db(transaction=True)
async def test_csv_rows_with_a_column_the_table_lacks_are_refused(engine, kind):
    """Found by the fuzzer: a table_update of fuzz_edit whose from_csv was NDJSON text made
    Perspective 5.6.1 abort (stoll); so does any CSV column the table lacks holding text."""
    from channels.testing import WebsocketCommunicator

    socket = WebsocketCommunicator(harness.TablesConsumer.as_asgi(engine=engine), "/ws/perspective/")
    assert (await socket.connect())[0]
    table = harness.EDITABLE
    if kind == "table_replace":  # only a table this connection made may be replaced
        table = "made-0"
        await socket.send_to(bytes_data=harness.request(9, table, "make_table", {"data": {"from_csv": b"id,v\n1,1.5\n"}, "options": {"make_index_table": "id"}}))
        assert protocol.parse_envelope(await socket.receive_from(10)).kind == schema.BY_NAME["make_table"].number
    for msg_id, rows in enumerate((b'{"id":1}\n{"id":2}', b"a\nfoo\n", b'id,a\n1,"x y"\n'), 1):
        await socket.send_to(bytes_data=harness.request(msg_id, table, kind, {"data": {"from_csv": rows}}))
        answer = await socket.receive_from(10)
        assert b"the CSV has columns the table lacks" in answer, answer
    await socket.send_to(bytes_data=harness.request(5, table, kind, {"data": {"from_csv": b"id,v\n1,9.5\n"}}))
    assert protocol.parse_envelope(await socket.receive_from(10)).kind == schema.BY_NAME[kind].number
    await engine.arun(engine.flush)
    rows = await engine.arun(lambda: engine.open_table(table).view().to_records())
    assert {"id": 1, "v": 9.5} in [{"id": r["id"], "v": r["v"]} for r in rows]
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
def test_a_view_id_made_again_is_checked_against_the_new_view(direct):
    """Found by the fuzzer (its child was killed by the OOM killer at 24 GB): v0 split on
    fuzz (105 columns) refused for its cells, v0 made again on fuzz_edit (4 columns), then
    view_column_paths 40..2**32-2 - clamped to the first view's cached 105 columns, the
    engine allocated without bound. Run the direct way: no poll between the frames, as when
    a client's frames queue on the engine thread."""
    seen = []
    frames = [
        harness.request(1, harness.TABLE, "make_view", {"view_id": "v0", "config": {"split_by": ["s", "b"]}}),
        harness.request(2, harness.EDITABLE, "make_view", {"view_id": "v0"}),
        harness.request(3, "v0", "view_column_paths", {"start_col": 40, "end_col": 2**32 - 2}),
    ]
    direct.run(frames, False, seen.append)
    assert b"MAX_VIEW_CELLS" in seen[0] and b"v0" in seen[1]
    assert protocol.parse_envelope(seen[2]).kind == schema.BY_NAME["view_column_paths"].number, seen[2]
    assert len(seen[2]) < 100  # no paths: 40 is past the view's 4 columns
