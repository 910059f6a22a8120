"""Envelope encoding round trips, and a fuzz of the decoder: garbage never escapes as
anything but ProtocolError."""

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steadytalk_shared import protocol as wire
from steadytalk_shared.protocol import Message, ProtocolError


def test_round_trip_with_arrays_and_bytes():
    arrays = [np.arange(12, dtype=np.float32).reshape(3, 4), np.array([1.5, 2.5])]
    message = Message(wire.LIPSYNC, body={"fps": 29.97, "transcript": "héllo"}, buffers=[*arrays, b"\x00audio"])
    decoded = wire.decode([bytes(f) for f in wire.encode(message)])
    assert decoded.id == message.id and decoded.type == wire.LIPSYNC and decoded.body == message.body
    np.testing.assert_array_equal(decoded.buffers[0], arrays[0])
    np.testing.assert_array_equal(decoded.buffers[1], arrays[1])
    assert decoded.buffers[2] == b"\x00audio"


def test_shape_mismatch_is_rejected():
    header = {"protocol": 1, "id": "a", "type": "x", "status": "request", "body": {},
              "buffers": [{"dtype": "<f4", "shape": [10]}]}  # fmt: skip
    with pytest.raises(ProtocolError, match="does not match"):
        wire.decode([msgpack.packb(header), b"\x00" * 8])


def test_object_dtypes_are_refused():
    header = {"protocol": 1, "id": "a", "type": "x", "status": "request", "body": {},
              "buffers": [{"dtype": "|O", "shape": [1]}]}  # fmt: skip
    with pytest.raises(ProtocolError, match="not allowed"):
        wire.decode([msgpack.packb(header), b"\x00" * 8])


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=200), min_size=0, max_size=4))
def test_random_frames_only_raise_protocol_errors(frames):
    try:
        wire.decode(frames)
    except ProtocolError:
        pass


@settings(max_examples=400, deadline=None)
@given(header=st.dictionaries(st.sampled_from(["protocol", "id", "type", "status", "body", "buffers", "error"]),
                              json_like, max_size=7),
       extra=st.lists(st.binary(max_size=64), max_size=3))  # fmt: skip
def test_random_headers_only_raise_protocol_errors(header, extra):
    header.setdefault("protocol", 1)
    try:
        wire.decode([msgpack.packb(header, use_bin_type=True), *extra])
    except ProtocolError:
        pass
