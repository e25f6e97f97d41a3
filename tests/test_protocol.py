import pytest

from django_perspective import protocol


def test_error_response_round_trips_through_the_walker():
    frame = protocol.error_response(300, "superstore", "refused: read-only")
    env = protocol.parse_envelope(frame)
    assert (env.msg_id, env.entity_id, env.kind) == (300, "superstore", protocol.SERVER_ERROR)
    fields = list(protocol.iter_fields(frame, *env.body))
    assert fields[0][0] == 1
    start, end = fields[0][2]
    assert frame[start:end] == b"refused: read-only"


def test_with_msg_id_rewrites_only_the_id():
    frame = protocol.error_response(5, "view-1", "x")
    rewritten = protocol.with_msg_id(frame, 123456)
    env = protocol.parse_envelope(rewritten)
    assert (env.msg_id, env.entity_id) == (123456, "view-1")


@pytest.mark.parametrize(
    "frame, message",
    [
        (b"\x08", "truncated varint"),
        (b"\x12\x05ab", "truncated length-delimited"),
        (b"\x00\x01", "field number 0"),
        (b"\x0b", "unsupported wire type"),
        (b"\x22\x00\x2a\x00", "more than one request body"),
        (b"\x12\x02\xff\xfe", "not UTF-8"),
        (b"", "no request body"),
        (b"\x08\x01\x12\x01t", "no request body"),
    ],
)
def test_malformed_frames_raise_protocol_error(frame, message):
    with pytest.raises(protocol.ProtocolError, match=message):
        protocol.parse_envelope(frame)


@pytest.mark.parametrize("tail", [b"\x08\x96", b"\x80"])  # a value, then a tag, cut at the body's end
def test_a_varint_may_not_run_past_its_message(tail):
    """A nested message's last varint ending in the bytes after it is truncated, not read on."""
    from django_perspective import schema

    body = b"\x0a" + bytes([len(tail)]) + tail  # ViewToColumnsStringReq.viewport, then its length
    # The entity_id after the body: its tag byte would end the cut varint.
    frame = b"\x08\x01" + protocol.varint(24 << 3 | 2) + bytes([len(body)]) + body + b"\x12\x01v"
    with pytest.raises(protocol.ProtocolError, match="truncated"):
        schema.decode(frame)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**28 - 1, 2**28, 2933731833, 2**32 - 1, 2**63, 2**64 - 1])
def test_varints_round_trip(value):
    encoded = protocol.varint(value)
    assert protocol.read_varint(encoded + b"\x01", 0) == (value, len(encoded))
    assert encoded[-1] < 0x80 and all(byte >= 0x80 for byte in encoded[:-1])  # minimal, one byte per 7 bits


@pytest.mark.parametrize(
    "data, message",
    [(b"", "truncated"), (b"\x80\x80", "truncated"), (b"\xff" * 10 + b"\x01", "longer than 64 bits")],
)
def test_bad_varints_raise_protocol_error(data, message):
    with pytest.raises(protocol.ProtocolError, match=message):
        protocol.read_varint(data, 0)
