"""The whole face from audio (schema v2): blinks, gaze, brows and head are present, controllable,
seeded and smooth; v1 results still load; the Live Link Face CSV has Epic's layout; the models
do what their fits say; ``eval face`` runs on the real held-out video."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from steadytalk_backend.performance.blinks import BlinkModel, detect_blinks, fit_blinks
from steadytalk_backend.performance.features import speech_timeline
from steadytalk_backend.performance.model import FaceOptions, default_performer
from steadytalk_shared import protocol as wire
from steadytalk_shared.client import BackendClient, BackendError
from steadytalk_shared.curves import LipsyncResult, Phone
from steadytalk_shared.head import euler_from_matrix, matrix_from_euler
from steadytalk_shared.livelink import BLEND_SHAPE_COUNT, HEADER, LIVE_LINK_CURVES, live_link_csv, timecode
from steadytalk_shared.messages import result_from_reply
from steadytalk_shared.protocol import Message
from steadytalk_shared.schema import CHANNEL_INDEX, CHANNELS, MOUTH_CHANNELS, NUM_MOUTH_CHANNELS, UPPER_FACE_CHANNELS

BLINKS = [CHANNEL_INDEX["eyeBlinkLeft"], CHANNEL_INDEX["eyeBlinkRight"]]
BROWS = [CHANNEL_INDEX[n] for n in ("browInnerUp", "browOuterUpLeft", "browDownLeft")]
LOOKS = [CHANNEL_INDEX[n] for n in CHANNELS if n.startswith("eyeLook")]


@pytest.fixture(scope="module")
def face_runs(engine, demo_wav):
    """The demo clip with the default face, a second run, another seed, and everything off."""
    return {
        "default": engine.run(demo_wav, fps=25.0),
        "again": engine.run(demo_wav, fps=25.0),
        "seed": engine.run(demo_wav, fps=25.0, face=FaceOptions(seed=99)),
        "off": engine.run(demo_wav, fps=25.0, face=FaceOptions(blink_rate=0, head_motion=0, expressiveness=0)),
        "mouth": engine.run(demo_wav, fps=25.0, whole_face=False),
    }


def test_blinks_gaze_brows_and_head_are_present(face_runs):
    r = face_runs["default"]
    assert r.smoothed.shape[1] == 52 and r.schema_version == 2
    assert r.smoothed[:, BLINKS].max() > 0.5, "at least one blink on 7 s of speech"
    assert r.smoothed[:, BROWS].max() > 0.01 and r.smoothed[:, LOOKS].max() > 0.01
    assert np.abs(r.head).max() > np.radians(0.5) and r.head.shape == (r.num_frames, 3)
    assert np.all((r.smoothed >= 0) & (r.smoothed <= 1))
    # the upper face passes the lip smoother untouched: a blink keeps its crisp shape
    np.testing.assert_array_equal(r.smoothed[:, NUM_MOUTH_CHANNELS:], r.raw[:, NUM_MOUTH_CHANNELS:])


def test_same_seed_same_face_other_seed_other_face(face_runs):
    a, b, c = face_runs["default"], face_runs["again"], face_runs["seed"]
    np.testing.assert_array_equal(a.smoothed, b.smoothed)
    np.testing.assert_array_equal(a.head, b.head)
    assert np.abs(a.head - c.head).max() > 1e-3
    # the mouth does not depend on the face's randomness
    mouth = slice(0, NUM_MOUTH_CHANNELS)
    np.testing.assert_array_equal(a.smoothed[:, mouth], c.smoothed[:, mouth])


def test_turning_the_face_off(face_runs):
    off, mouth, full = face_runs["off"], face_runs["mouth"], face_runs["default"]
    for r in (off, mouth):
        assert not r.smoothed[:, NUM_MOUTH_CHANNELS:].any()
        assert not r.head.any() and not r.head_raw.any()
    np.testing.assert_array_equal(off.smoothed[:, :NUM_MOUTH_CHANNELS], full.smoothed[:, :NUM_MOUTH_CHANNELS])
    assert mouth.seed is None and full.seed is not None


def test_blink_rate_is_what_is_asked(engine, demo_wav):
    calm = engine.run(demo_wav, fps=25.0, face=FaceOptions(blink_rate=5, seed=1))
    busy = engine.run(demo_wav, fps=25.0, face=FaceOptions(blink_rate=60, seed=1))
    count = lambda r: len(detect_blinks(r.smoothed[:, BLINKS], r.fps))  # noqa: E731
    assert count(busy) > count(calm)


def test_head_track_is_smooth_and_scales(face_runs, engine, demo_wav):
    from steadytalk_backend.evaluation.face import head_msi
    from steadytalk_shared.face_model import FaceModel

    r = face_runs["default"]
    assert head_msi(r.head, FaceModel.load()) > 1.8, "no jitter in the head track"
    half = engine.run(demo_wav, fps=25.0, face=FaceOptions(head_motion=0.5))
    np.testing.assert_allclose(half.head, 0.5 * r.head, atol=1e-6)


def test_bad_options_are_refused_with_a_message(engine, demo_wav):
    with pytest.raises(ValueError, match="blink rate must be between 0 and 120"):
        engine.run(demo_wav, face=FaceOptions(blink_rate=-1))
    with pytest.raises(ValueError, match="head motion must be between 0 and 5"):
        engine.run(demo_wav, face=FaceOptions(head_motion=float("nan")))


def test_v1_results_still_load():
    v1 = {
        "schema_version": 1, "fps": 25.0, "duration": 0.08, "mode": "recognition", "channels": list(CHANNELS[:33]),
        "raw": [[0.5] * 33, [0.25] * 33, [0.0] * 33], "smoothed": [[0.4] * 33, [0.2] * 33, [0.0] * 33],
        "sigma": [1.0, 1.0, 1.0], "phones": [{"phone": "SIL", "start": 0.0, "end": 0.08}], "warnings": [],
    }  # fmt: skip
    r = LipsyncResult.from_dict(json.loads(json.dumps(v1)))
    assert r.channels == CHANNELS and r.schema_version == 2 and r.smoothed.shape == (3, 52)
    np.testing.assert_allclose(r.smoothed[:, :33], np.array(v1["smoothed"]))
    assert not r.smoothed[:, 33:].any() and not r.head.any() and r.head.shape == (3, 3)
    # and a v2 result round-trips with its head
    again = LipsyncResult.from_dict(json.loads(json.dumps(r.to_dict())))
    np.testing.assert_array_equal(again.head, r.head)
    with pytest.raises(ValueError, match="schema version 3"):
        LipsyncResult.from_dict({**v1, "schema_version": 3})


def test_a_v1_server_reply_is_upgraded():
    raw = np.full((4, 33), 0.3, np.float32)
    body = {"fps": 25.0, "duration": 0.12, "mode": "recognition", "smoothing_strength": 1.0,
            "channels": list(CHANNELS[:33]), "schema_version": 1, "phones": [["SIL", 0.0, 0.12, ""]]}  # fmt: skip
    reply = wire.decode(wire.encode(Message(wire.LIPSYNC, body=body, buffers=[raw, raw, np.ones(4, np.float32)])))
    r = result_from_reply(reply)
    assert r.smoothed.shape == (4, 52) and not r.head.any()


def test_head_angles_round_trip_and_signs():
    angles = np.random.default_rng(0).uniform(-1.2, 1.2, (50, 3))
    np.testing.assert_allclose(euler_from_matrix(matrix_from_euler(angles)), angles, atol=1e-9)
    forward = np.array([0.0, 0.0, 1.0])
    assert (matrix_from_euler([0.3, 0, 0]) @ forward)[0] > 0  # yaw > 0: the face turns to its left (+X)
    assert (matrix_from_euler([0, 0.3, 0]) @ forward)[1] < 0  # pitch > 0: chin down
    assert (matrix_from_euler([0, 0, 0.3]) @ np.array([1.0, 0, 0]))[1] > 0  # roll > 0: left ear up


def test_live_link_csv_has_epics_layout(face_runs):
    r = face_runs["default"]
    rows = list(csv.reader(io.StringIO(live_link_csv(r))))
    header = rows[0]
    assert header[:2] == ["Timecode", "BlendShapeCount"] and len(header) == 2 + 52 + 9 == len(HEADER)
    assert header[2:5] == ["EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft"]
    assert header[16:20] == ["JawForward", "JawLeft", "JawRight", "JawOpen"] and header[53] == "TongueOut"
    assert header[54:] == ["HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                           "RightEyeYaw", "RightEyePitch", "RightEyeRoll"]  # fmt: skip
    assert sorted(LIVE_LINK_CURVES) == sorted(CHANNELS)
    assert len(rows) == r.num_frames + 1
    for i, row in enumerate(rows[1:]):
        assert re.fullmatch(r"\d\d:\d\d:\d\d:\d\d\.\d\d\d", row[0]) and int(row[1]) == BLEND_SHAPE_COUNT == 61
        values = np.array(row[2:], dtype=float)
        assert values[header.index("JawOpen") - 2] == pytest.approx(r.smoothed[i, CHANNEL_INDEX["jawOpen"]], abs=1e-5)
        assert values[header.index("HeadPitch") - 2] == pytest.approx(r.head[i, 1], abs=1e-5)
    assert timecode(26, 25.0) == "00:00:01:01.000" and timecode(3600 * 30, 30.0) == "01:00:00:00.000"
    assert timecode(1, 29.97).startswith("00:00:00:01.")


def test_cli_flags_json_csv_and_live_link(tmp_path, demo_wav):
    out, table, live = tmp_path / "c.json", tmp_path / "c.csv", tmp_path / "ll.csv"
    command = [sys.executable, "-m", "steadytalk_backend.cli", "lipsync", str(demo_wav), "--out", str(out),
               "--csv", str(table), "--live-link-csv", str(live), "--blink-rate", "0", "--head-motion", "0",
               "--seed", "5", "--quiet"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["schema_version"] == 2 and len(data["channels"]) == 52 and data["seed"] == 5
    smoothed = np.array(data["smoothed"])
    assert not smoothed[:, BLINKS].any() and not np.array(data["head"]).any() and not np.array(data["head_raw"]).any()
    assert smoothed[:, BROWS].max() > 0  # brows and gaze stay on (only --expressiveness 0 stills them)
    assert table.read_text().splitlines()[0].endswith("headYaw,headPitch,headRoll")
    assert live.read_text().startswith("Timecode,BlendShapeCount,EyeBlinkLeft")
    bad = subprocess.run([*command[:-7], "--style", "sleepy"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "error: Unknown style 'sleepy'. Choose one of: calm, lively, or avatar:PATH" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_face_options_over_the_wire(server, demo_wav):
    with BackendClient(server.endpoint, timeout=60.0, retries=0) as client:
        still = client.lipsync(demo_wav, face={"blink_rate": 0, "head_motion": 0})
        moving = client.lipsync(demo_wav, face={"seed": 3})
        again = client.lipsync(demo_wav, face={"seed": 3})
        with pytest.raises(BackendError, match="head motion must be between 0 and 5"):
            client.lipsync(demo_wav, face={"head_motion": 9})
        with pytest.raises(ValueError, match="unknown whole-face options: blinks"):
            client.lipsync(demo_wav, face={"blinks": 1})
    assert not still.head.any() and not still.smoothed[:, BLINKS].any()
    assert np.abs(moving.head).max() > 0 and moving.seed == 3
    np.testing.assert_array_equal(moving.head, again.head)
    np.testing.assert_array_equal(moving.smoothed, again.smoothed)


def _timeline(seconds: float, pauses: list[tuple[float, float]], fps: float = 25.0):
    phones, t = [], 0.0
    for lo, hi in pauses:
        while t + 0.1 <= lo:
            phones.append(Phone("AA" if int(t * 10) % 2 else "T", t, t + 0.1))
            t += 0.1
        phones.append(Phone("SIL", lo, hi))
        t = hi
    while t + 0.1 <= seconds:
        phones.append(Phone("AA", t, t + 0.1))
        t += 0.1
    n = int(seconds * fps)
    energy = np.full(int(seconds * 100) + 1, -20.0)
    return speech_timeline(phones, energy, np.full(len(energy), 120.0), n, fps)


def test_blink_fit_recovers_a_speech_dependent_rate():
    """Blinks drawn from a known model (three times as many at phrase boundaries) are fitted back."""
    truth = BlinkModel(bias=np.log(0.3), weights=(0.0, 0.0, np.log(3.0), 0.0, 0.0), refractory=0.3)
    timelines = [_timeline(30.0, [(3.0 * k + 2.0, 3.0 * k + 3.0) for k in range(10)]) for _ in range(8)]
    rng = np.random.default_rng(0)
    events = []
    for t in timelines:
        drawn = truth.events(t, rng)
        curves = truth.curves(drawn, t.num_frames, t.fps)
        events.append(detect_blinks(curves, t.fps))
    fitted = fit_blinks(timelines, events, ridge=0.1)
    assert fitted.weights[2] == pytest.approx(np.log(3.0), abs=0.5)
    assert np.exp(fitted.bias) == pytest.approx(0.3, rel=0.35)


def test_blink_profile_closes_fast_and_opens_slowly():
    model = default_performer().blinks
    assert 0.1 < model.close_share < 0.5  # fitted: closing takes well under half the blink
    curve = model.curves([{"start": 0.0, "duration": 0.3, "eyes": (1.0, 1.0)}], 60, 200.0)[:, 0]
    peak = int(np.argmax(curve))
    assert peak < len(np.flatnonzero(curve > 0.05)) / 2


def test_shipped_models_come_from_the_tracked_video():
    p = default_performer()
    assert p.blinks.fitted_on["blinks"] > 50 and 5 < p.blinks.blinks_per_minute < 60
    assert set(p.styles) == {"calm", "lively"} and p.default_style == "lively"
    # GRID s1 reads sentences sitting still; the Obama addresses move the head far more
    assert np.all(np.asarray(p.heads["lively"].target_std) > 2 * np.asarray(p.heads["calm"].target_std))
    assert set(UPPER_FACE_CHANNELS) >= {"eyeBlinkLeft", "browInnerUp", "eyeLookUpLeft"}
    assert "jawOpen" in MOUTH_CHANNELS


def test_eval_face_runs_on_the_held_out_video(shared_data, tmp_path):
    from steadytalk_backend.evaluation.face import evaluate_face, format_face_report

    report = evaluate_face(shared_data, tmp_path / "eval", log=lambda *a: None)
    rows = report["rows"]
    assert set(rows) == {"real video", "generated", "still face", "random process"}
    assert rows["still face"]["blinks_per_minute"] == 0 and rows["generated"]["blinks_per_minute"] > 5
    assert rows["generated"]["head_msi"] > rows["random process"]["head_msi"] - 0.3
    assert rows["generated"]["diversity_deg"] > 0
    assert all((tmp_path / "eval" / p.split("/")[-1]).exists() for p in report["plots"])
    assert "| generated |" in format_face_report(report)
