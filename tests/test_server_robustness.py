"""The live backend survives jobs that would take it down: a transcript far longer than its
audio, a lip-sync child that dies or balloons, a cancel that must bite, SIGTERM mid-job; and a
seeded semantic fuzz of 10,000 messages, every one answered, pings answered throughout."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq
from conftest import serve_process, serving

from steadytalk_shared import protocol as wire
from steadytalk_shared.client import BackendClient, BackendError
from steadytalk_shared.protocol import ErrorCode, Message


def ping_latency(endpoint: str) -> float:
    with BackendClient(endpoint, timeout=5.0, retries=0) as c:
        started = time.monotonic()
        c.ping()
        return time.monotonic() - started


def test_megabyte_transcript_is_refused_and_pings_go_on(server, demo_wav):
    transcript = "bin blue at f two now " * 60_000  # 1.3 MB, 360,000 words for a 7 s clip
    with BackendClient(server.endpoint, timeout=60.0, retries=0) as c:
        started = time.monotonic()
        with pytest.raises(BackendError) as info:
            c.lipsync(demo_wav, transcript)
    assert info.value.code == ErrorCode.BAD_TRANSCRIPT and "can hold" in info.value.message
    assert time.monotonic() - started < 20.0
    assert ping_latency(server.endpoint) < 1.0


def test_a_child_that_dies_is_an_error_reply_and_the_next_job_works(server, demo_samples, tmp_path, demo_wav):
    import soundfile as sf

    samples, rate = demo_samples
    long_audio = tmp_path / "long.wav"
    sf.write(long_audio, np.tile(samples, 12), rate)
    outcome = {}

    def job():
        with BackendClient(server.endpoint, timeout=60.0, retries=0) as c:
            try:
                c.lipsync(long_audio)
            except BackendError as exc:
                outcome["error"] = exc

    thread = threading.Thread(target=job)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(child.pid for child in server._children):
        time.sleep(0.05)
    time.sleep(0.5)
    victim = next(child.pid for child in server._children if child.pid)
    os.kill(victim, signal.SIGKILL)
    thread.join(60)
    assert outcome["error"].code == ErrorCode.INTERNAL and "stopped unexpectedly" in outcome["error"].message
    assert ping_latency(server.endpoint) < 1.0
    with BackendClient(server.endpoint, timeout=60.0, retries=0) as c:
        assert c.lipsync(demo_wav).mode == "recognized"


def test_a_job_past_the_memory_ceiling_is_stopped(demo_wav):
    from steadytalk_backend.service.lipsync_worker import WorkerLimits
    from steadytalk_backend.service.server import ServerConfig

    config = ServerConfig(bind="tcp://127.0.0.1:*", poll_ms=20, lipsync_limits=WorkerLimits(memory_mb=40))
    with serving(config) as srv, BackendClient(srv.endpoint, timeout=60.0, retries=0) as c:
        with pytest.raises(BackendError) as info:
            c.lipsync(demo_wav)
        assert info.value.code == ErrorCode.INTERNAL and "more than 40 MB" in info.value.message
        assert c.ping()["protocol"] == wire.PROTOCOL_VERSION


def test_sigterm_during_a_job_stops_the_backend_within_seconds(demo_samples, tmp_path):
    import soundfile as sf

    samples, rate = demo_samples
    long_audio = tmp_path / "long.wav"
    sf.write(long_audio, np.tile(samples, 30), rate)  # 3.5 minutes
    proc, endpoint = serve_process()
    try:
        socket = zmq.Context.instance().socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(endpoint)
        socket.send_multipart(wire.encode(Message(wire.LIPSYNC, body={"fps": 25.0}, buffers=[long_audio.read_bytes()])))
        assert socket.poll(90_000)  # progress: the job runs (the first comes after a minute of audio is heard)
        socket.close()
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        stopped_in = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert stopped_in < 8.0 and "stopped" in out and "Traceback" not in err


# -- the semantic fuzz -------------------------------------------------------------------------
def _fuzz_message(rng: random.Random, audio: bytes) -> list[bytes]:
    """Near-valid requests of every type with wrong values, plus garbage frames."""
    kind = rng.randrange(12)
    if kind == 0:
        return [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))]
    if kind == 1:
        return wire.encode(Message(wire.PING))
    if kind == 2:
        return wire.encode(Message(wire.CANCEL, body={"target": rng.choice(["nope", "", "x" * 50, 7])}))
    if kind == 3:
        header = {"protocol": rng.choice([1, 2, "1", None]), "id": "f", "type": rng.choice(["lipsync", "zzz", ""]),
                  "status": rng.choice(["request", "ok", "progress"]), "body": {}, "buffers": []}  # fmt: skip
        return [msgpack.packb(header, use_bin_type=True)]
    if kind == 4:  # lip-sync with values out of range: refused before any audio work
        body = {"fps": rng.choice([0, -1, 1e9, float("nan"), "25", None]), "smoothing": rng.choice([1.0, -3, 99, "a"])}
        return wire.encode(Message(wire.LIPSYNC, body=body, buffers=[audio]))
    if kind == 5:  # garbage or truncated audio
        junk = audio[: rng.randrange(0, 200)] if rng.random() < 0.5 else rng.randbytes(rng.randrange(1, 500))
        return wire.encode(Message(wire.LIPSYNC, body={"fps": 25.0}, buffers=[junk]))
    if kind == 6:  # path-like or odd avatar names
        name = rng.choice(["../../etc/passwd", "/abs/path", "a" * 300, "..", "ok-name", "", "x/y"])
        return wire.encode(Message(wire.RENDER_OPEN, body={"avatar": name, "frames": 10, "fps": 25.0}))
    if kind == 7:  # unknown render sessions
        body = {"session": rng.choice(["", "nope", 3, None]), "first": rng.randrange(-5, 5), "count": 1}
        return wire.encode(Message(wire.RENDER_FRAMES, body=body))
    if kind == 8:
        return wire.encode(Message(wire.LIPSYNC, body={"recognizer": rng.choice(["whisper", 3, None, ""])},
                                   buffers=[audio]))  # fmt: skip
    if kind == 9:  # wrong buffer counts
        return wire.encode(Message(wire.LIPSYNC, body={}, buffers=[audio, audio][: rng.randrange(0, 1)]))
    if kind == 10:
        return wire.encode(Message(wire.STATUS))
    return wire.encode(Message(wire.LIPSYNC, body={"transcript": rng.choice([3, ["a"], {"x": 1}])}, buffers=[audio]))


def test_ten_thousand_message_live_fuzz(server, demo_wav):
    rng = random.Random(20261202)
    audio = demo_wav.read_bytes()[:2000]  # a real WAV header: truncated audio is one of the cases
    context = zmq.Context.instance()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVHWM, 0)
    socket.setsockopt(zmq.SNDHWM, 0)
    socket.connect(server.endpoint)
    total, finals, errors = 10_000, 0, 0
    slowest_ping = 0.0
    try:
        for batch_start in range(0, total, 250):
            for _ in range(250):
                socket.send_multipart(_fuzz_message(rng, audio))
            expected = finals + 250
            while finals < expected:
                assert socket.poll(60_000), f"no reply after {finals} of {total} messages"
                reply = wire.decode(socket.recv_multipart())
                if reply.status == wire.PROGRESS:
                    continue
                finals += 1
                errors += reply.status == wire.ERROR
                if reply.status == wire.ERROR:
                    assert reply.error["code"] and reply.error["message"]
                    assert "Traceback" not in reply.error["message"], reply.error["message"]
            if batch_start % 2500 == 0:
                slowest_ping = max(slowest_ping, ping_latency(server.endpoint))
    finally:
        socket.close()
    assert finals == total and errors > total // 2
    assert slowest_ping < 2.0
    assert ping_latency(server.endpoint) < 1.0
