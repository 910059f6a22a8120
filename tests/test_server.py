"""A real ZeroMQ backend on a random loopback port, real clients, real and broken messages."""

import os
import signal
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq
from conftest import serve_process

from steadytalk_shared import protocol as wire
from steadytalk_shared.client import BackendClient, BackendError, BackendUnavailable
from steadytalk_shared.protocol import ErrorCode, Message


@pytest.fixture
def client(server):
    with BackendClient(server.endpoint, timeout=20.0, retries=0) as c:
        yield c


def raw_exchange(endpoint, frames, timeout_ms=5000):
    """Send arbitrary frames from a bare DEALER and return the decoded reply."""
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(endpoint)
    try:
        socket.send_multipart(frames)
        assert socket.poll(timeout_ms), "no reply: the server must answer every message"
        return wire.decode(socket.recv_multipart())
    finally:
        socket.close()


def test_ping_reports_versions_and_device(client):
    info = client.ping()
    assert info["protocol"] == wire.PROTOCOL_VERSION
    assert info["device"] in {"cpu", "cuda"}
    assert "server_version" in info and "schema_version" in info


def test_lipsync_over_the_wire_equals_the_direct_call(client, engine, demo_wav, demo_transcript):
    progress = []
    remote = client.lipsync(
        demo_wav, demo_transcript, fps=30.0, smoothing=1.0, progress=lambda f, s: progress.append(f)
    )
    local = engine.run(demo_wav, demo_transcript, fps=30.0)
    np.testing.assert_array_equal(remote.smoothed, local.smoothed)
    np.testing.assert_array_equal(remote.raw, local.raw)
    np.testing.assert_array_equal(remote.sigma, local.sigma)
    assert remote.phones == local.phones
    assert remote.mode == "alignment" and progress and progress[-1] == 1.0


def test_bad_audio_is_an_error_reply_and_server_keeps_serving(client):
    with pytest.raises(BackendError) as info:
        client.lipsync(b"definitely not audio" * 10)
    assert info.value.code == ErrorCode.BAD_AUDIO and "WAV, FLAC, MP3, OGG or M4A/AAC" in info.value.message
    assert client.ping()["protocol"] == wire.PROTOCOL_VERSION


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([b"\xc1\xc1garbage"], ErrorCode.BAD_ENVELOPE),
        ([msgpack.packb([1, 2, 3])], ErrorCode.BAD_ENVELOPE),
        (
            [
                msgpack.packb(
                    {"protocol": 99, "id": "x", "type": "ping", "status": "request", "body": {}, "buffers": []}
                )
            ],
            ErrorCode.UNSUPPORTED_VERSION,
        ),
        (
            [
                msgpack.packb(
                    {"protocol": 1, "id": "x", "type": "dance", "status": "request", "body": {}, "buffers": []}
                )
            ],
            ErrorCode.UNKNOWN_TYPE,
        ),
        (
            [
                msgpack.packb(
                    {"protocol": 1, "id": "x", "type": "ping", "status": "request", "body": {}, "buffers": []}
                ),
                b"extra",
            ],
            ErrorCode.BAD_ENVELOPE,
        ),
        (
            [
                msgpack.packb(
                    {"protocol": 1, "id": "x", "type": "lipsync", "status": "request", "body": {}, "buffers": []}
                )
            ],
            ErrorCode.BAD_REQUEST,
        ),
        (
            [
                msgpack.packb(
                    {
                        "protocol": 1,
                        "id": "x",
                        "type": "lipsync",
                        "status": "request",
                        "body": {"fps": "fast"},
                        "buffers": [{"dtype": "bytes"}],
                    }
                ),
                b"RIFF",
            ],
            ErrorCode.BAD_REQUEST,
        ),
        (
            [msgpack.packb({"protocol": 1, "id": "x", "type": "ping", "status": "ok", "body": {}, "buffers": []})],
            ErrorCode.BAD_ENVELOPE,
        ),
    ],
)
def test_malformed_messages_get_error_replies(server, client, frames, code):
    reply = raw_exchange(server.endpoint, frames)
    assert reply.status == wire.ERROR and reply.error["code"] == code
    assert client.ping()  # still serving


def test_oversized_message_gets_an_error_reply(server, client):
    big = os.urandom(server.config.max_message_bytes + 10)
    reply = raw_exchange(server.endpoint, wire.encode(Message(wire.LIPSYNC, buffers=[big])))
    assert reply.error["code"] == ErrorCode.TOO_LARGE
    assert client.ping()


def test_wrong_version_surfaces_as_backend_error(server):
    with BackendClient(server.endpoint, timeout=5.0, retries=0) as c:
        with pytest.raises(BackendError) as info:
            c.request(Message(wire.PING, protocol=2))
    assert info.value.code == ErrorCode.UNSUPPORTED_VERSION and "Update" in info.value.message


def test_ping_is_answered_while_a_long_job_runs(server, demo_samples, tmp_path):
    import soundfile as sf

    samples, rate = demo_samples
    long_audio = tmp_path / "long.flac"
    sf.write(long_audio, np.tile(samples, 6), rate)  # ~42 s of speech
    done = threading.Event()

    def job():
        with BackendClient(server.endpoint, timeout=60.0, retries=0) as c:
            c.lipsync(long_audio)
        done.set()

    threading.Thread(target=job, daemon=True).start()
    time.sleep(0.3)
    with BackendClient(server.endpoint, timeout=5.0, retries=0) as c:
        started = time.monotonic()
        status = c.status()
        latency = time.monotonic() - started
    assert status["jobs_running"] >= 1 or done.is_set()
    assert latency < 1.0
    assert done.wait(60)


def test_cancel_a_running_job(server, demo_samples, tmp_path):
    import soundfile as sf

    samples, rate = demo_samples
    long_audio = tmp_path / "long.flac"
    sf.write(long_audio, np.tile(samples, 20), rate)  # 140 s: several recognition chunks
    flag = {"cancel": False}
    timer = threading.Timer(0.5, lambda: flag.update(cancel=True))
    timer.start()
    with BackendClient(server.endpoint, timeout=60.0, retries=0) as c:
        started = time.monotonic()
        with pytest.raises(BackendError) as info:
            c.lipsync(long_audio, cancelled=lambda: flag["cancel"])
    assert info.value.code == ErrorCode.CANCELLED
    assert time.monotonic() - started < 10.0


def test_client_times_out_and_retries_against_nothing():
    context = zmq.Context.instance()
    probe = context.socket(zmq.ROUTER)
    port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close(linger=0)  # a port nobody listens on any more
    with BackendClient(f"tcp://127.0.0.1:{port}", timeout=0.2, retries=2) as c:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="steadytalk serve"):
            c.ping()
    assert 0.5 < time.monotonic() - started < 3.0


def test_stale_replies_are_dropped(server):
    """A reply to an abandoned try must not be taken for the answer to the next request."""
    with BackendClient(server.endpoint, timeout=5.0, retries=0) as c:
        socket = c._connect()
        socket.send_multipart(wire.encode(Message(wire.STATUS)))  # its reply is never awaited
        info = c.ping()
    assert "jobs_running" not in info  # the ping's own reply, not the stale status reply


def test_serve_command_stops_cleanly_on_sigterm():
    proc, endpoint = serve_process()
    try:
        with BackendClient(endpoint, timeout=15.0, retries=0) as c:
            assert c.ping()["protocol"] == wire.PROTOCOL_VERSION
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "serving on" in out and "stopped" in out and "Traceback" not in err
