"""Malformed envelopes against the decoder and against a live server (hypothesis): the decoder
raises only ProtocolError, and the server answers every message with a reply (an error for
anything malformed) and keeps serving."""

from __future__ import annotations

import msgpack
import numpy as np
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steadytalk_shared import protocol as wire
from steadytalk_shared.protocol import ProtocolError

TYPES = [
    wire.PING, wire.STATUS, wire.CANCEL, wire.RENDER_OPEN, wire.RENDER_FRAMES, wire.RENDER_AUDIO, wire.PORTRAIT,
    wire.PORTRAIT_RIG, "nope", "",
]  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True), st.text(max_size=20),
    st.binary(max_size=20),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)  # noqa: E501
descriptor = st.one_of(
    st.fixed_dictionaries({"dtype": st.sampled_from(["<f4", "|u1", "bytes", "<f8", "O", "<c8", ""])}),
    st.fixed_dictionaries(
        {"dtype": st.sampled_from(["<f4", "|u1", "<i4"]), "shape": st.lists(st.integers(-2, 70), max_size=5)}
    ),
    values,
)
bodies = st.one_of(
    st.dictionaries(
        st.sampled_from(["avatar", "frames", "fps", "session", "first", "count", "context_before", "references",
                         "target", "transcript", "smoothing", "size", "face", "seed", "name"]),
        values, max_size=8,
    ),
    values,
)  # fmt: skip


@st.composite
def envelopes(draw) -> list[bytes]:
    """Headers that are close to valid (right version, known types) with wrong parts, plus raw garbage."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.lists(st.binary(max_size=64), min_size=1, max_size=4))
    buffers = draw(st.lists(st.binary(max_size=300), max_size=3))
    header = {
        "protocol": draw(st.sampled_from([wire.PROTOCOL_VERSION, wire.PROTOCOL_VERSION, 0, "1", None])),
        "id": draw(st.one_of(st.text(max_size=12), st.integers(-(2**63), 2**63 - 1))),
        "type": draw(st.sampled_from(TYPES)),
        "status": draw(st.sampled_from([wire.REQUEST, wire.REQUEST, wire.OK, "x"])),
        "body": draw(bodies),
        "buffers": draw(st.lists(descriptor, min_size=len(buffers), max_size=len(buffers) + 1)),
    }
    for key in draw(st.sets(st.sampled_from(list(header)), max_size=2)):
        del header[key]
    return [msgpack.packb(header, use_bin_type=True), *buffers]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes())
def test_decoder_raises_only_protocol_errors(frames):
    try:
        message = wire.decode(frames, max_bytes=1 << 16)
    except ProtocolError as exc:
        assert exc.code and exc.message
    else:
        for buffer in message.buffers:
            assert isinstance(buffer, bytes | np.ndarray)


def test_live_server_answers_every_malformed_message(render_server):
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(render_server.endpoint)
    sent = []

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(envelopes())
    def one(frames):
        socket.send_multipart(frames)
        assert socket.poll(60_000), f"no reply to {frames!r}"
        reply = wire.decode(socket.recv_multipart())
        # Replies to this one message only (no progress for bad requests): an error, or the
        # answer to a request that happened to be valid (a ping, a cancel of nothing).
        while reply.status == wire.PROGRESS:
            assert socket.poll(60_000)
            reply = wire.decode(socket.recv_multipart())
        assert reply.status in (wire.ERROR, wire.OK)
        if reply.status == wire.ERROR:
            assert reply.error["code"] and reply.error["message"]
        sent.append(reply.status)

    try:
        one()
        # Still serving.
        socket.send_multipart(wire.encode(wire.Message(wire.PING)))
        assert socket.poll(10_000)
        assert wire.decode(socket.recv_multipart()).status == wire.OK
    finally:
        socket.close()
        context.term()
    assert sent.count(wire.ERROR) > len(sent) // 2
