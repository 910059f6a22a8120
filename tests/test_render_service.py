"""Photoreal renders with a trained (tiny) avatar: headless mp4, batch, and the backend's render
sessions over a real ZeroMQ server, with its limits, its fairness and its CURVE authentication.
Real prepared GRID clip, real pocketsphinx, real PyAV (skipped without ../shared/data)."""

from __future__ import annotations

import json
import shutil
import threading
import time

import av
import numpy as np
import pytest
import zmq
from conftest import serving

from steadytalk_backend.cli import main
from steadytalk_backend.face.shape_pass import ShapePassRenderer
from steadytalk_backend.lipsync.audio import load_audio
from steadytalk_backend.lipsync.engine import LipsyncEngine
from steadytalk_backend.render.data import AvatarFrames
from steadytalk_backend.render.inference import AvatarRenderer
from steadytalk_backend.render.pipeline import Reference, audio_features
from steadytalk_backend.service.fair_queue import FairQueue
from steadytalk_backend.service.server import LipsyncServer, ServerConfig, ServerSetupError
from steadytalk_shared import protocol as wire
from steadytalk_shared import render_contract as rc
from steadytalk_shared.client import BackendClient, BackendError, BackendUnavailable, CurveKeys
from steadytalk_shared.face_model import FaceModel
from steadytalk_shared.protocol import ErrorCode
from steadytalk_shared.render_pass import PassPlan, render_pass


@pytest.fixture(scope="module")
def avatar_frames(trained_avatar) -> AvatarFrames:
    return AvatarFrames.load(trained_avatar, 256)


def shape_passes(frames: AvatarFrames, index: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """What a client (Blender) draws: the render contract for the avatar's crop, uint8."""
    rig = frames.rig
    posed = rig.vertices[None] + (coefficients @ rig.deltas.reshape(len(rig.deltas), -1)).reshape(len(index), -1, 3)
    screen = rc.project(frames.matrices[index], posed)
    return ShapePassRenderer(FaceModel.load(), 256, 256).render(screen, frames.matrices[index, 2, 3]).color_uint8()


def video_facts(path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video))
        audio = [s for s in container.streams if s.type == "audio"]
        return {
            "frames": frames,
            "fps": float(video.average_rate),
            "size": (video.width, video.height),
            "audio": float(audio[0].duration * audio[0].time_base) if audio else None,
        }


def test_headless_render_makes_an_mp4_as_long_as_the_audio(trained_avatar, tmp_path, capsys):
    audio = trained_avatar / "audio.wav"
    out = tmp_path / "out.mp4"
    assert main(["render", "--avatar", str(trained_avatar), "--audio", str(audio), "--out", str(out), "--quiet"]) == 0
    facts = video_facts(out)
    import soundfile as sf

    duration = sf.info(str(audio)).duration
    assert facts["audio"] is not None, "no audio track"
    assert abs(facts["frames"] / facts["fps"] - duration) <= 1 / facts["fps"]
    assert abs(facts["audio"] - duration) <= 1 / facts["fps"]
    scene = json.loads((trained_avatar / "blender" / "scene.json").read_text())
    assert list(facts["size"]) == scene["resolution"]  # the full reference frame, face pasted back
    assert not list(tmp_path.glob("*.partial"))


def test_batch_isolates_failures_and_resumes(trained_avatar, tmp_path, capsys):
    good = trained_avatar / "audio.wav"
    shutil.copyfile(good, tmp_path / "second.wav")
    (tmp_path / "broken.wav").write_text("not audio")
    listing = tmp_path / "jobs.txt"
    listing.write_text(f"# a comment\n{good}\nbroken.wav\n\nsecond.wav\tbin blue at s five soon\nmissing.wav\n")
    out = tmp_path / "out"
    argv = ["render", "--avatar", str(trained_avatar), "--batch", str(listing), "--out-dir", str(out), "--quiet"]
    assert main(argv) == 1  # some failed
    report = {r["audio"].rsplit("/", 1)[-1]: r for r in json.loads((out / "batch_report.json").read_text())}
    assert report["audio.wav"]["status"] == report["second.wav"]["status"] == "done"
    assert report["broken.wav"]["status"] == report["missing.wav"]["status"] == "failed"
    assert "traceback" not in report["broken.wav"]["error"].lower()
    assert sorted(p.name for p in out.glob("*.mp4")) == ["audio.mp4", "second.mp4"]
    stamp = (out / "audio.mp4").stat().st_mtime_ns
    assert main(argv) == 1
    report = {r["audio"].rsplit("/", 1)[-1]: r["status"] for r in json.loads((out / "batch_report.json").read_text())}
    assert report["audio.wav"] == report["second.wav"] == "skipped"
    assert (out / "audio.mp4").stat().st_mtime_ns == stamp
    assert "2 already there, 2 failed" in capsys.readouterr().out


def test_mouth_read_from_a_shape_pass_image_matches_the_rasterizer(avatar_frames):
    index = np.arange(0, avatar_frames.num_frames, 5)
    renderer = ShapePassRenderer(FaceModel.load(), 256, 256)
    rig = avatar_frames.rig
    coefficients = avatar_frames.coefficients[index].copy()
    coefficients[::2, 0] = 0.8  # wide open jaws too: the open mouth is a hole in the mesh
    posed = rig.vertices[None] + (coefficients @ rig.deltas.reshape(len(rig.deltas), -1)).reshape(len(index), -1, 3)
    drawn = renderer.render(rc.project(avatar_frames.matrices[index], posed), avatar_frames.matrices[index, 2, 3])
    read = renderer.mouth_of_image(drawn.color_uint8())
    truth = drawn.mouth.numpy()
    iou = (read & truth).sum((1, 2)) / (read | truth).sum((1, 2))
    assert iou.min() > 0.98, iou


def _open(client, avatar, frames, audio=None):
    return client.render_open(avatar, frames, 25.0, audio, timeout=120)


def test_server_render_pass_equals_one_long_window(render_server, trained_avatar, avatar_frames):
    frames = 40
    index = rc.reference_index(np.arange(frames), avatar_frames.num_frames)
    coefficients = avatar_frames.coefficients[index]
    shapes = shape_passes(avatar_frames, index, coefficients)
    audio = (trained_avatar / "audio.wav").read_bytes()
    got: dict[int, np.ndarray] = {}
    with BackendClient(render_server.endpoint, timeout=120) as client:
        session = _open(client, trained_avatar.name, frames, audio)
        plan = PassPlan(frames, session["context"], 16)
        # First a few scattered frames (a resumed pass), then the rest.
        first_batch = [0, 1, 2, 17, 30, 31]
        rest = [f for f in range(frames) if f not in first_batch]
        for missing in (first_batch, rest):
            render_pass(
                client,
                session,
                plan,
                missing,
                lambda f: (shapes[f], coefficients[f]),
                lambda f: int(index[f]),
                lambda f, rgb: got.__setitem__(f, rgb.copy()),
            )
    assert sorted(got) == list(range(frames))
    # The same frames rendered here as one long window over the whole pass.
    renderer = AvatarRenderer(trained_avatar, device="cpu")
    reference = Reference(trained_avatar, 256)
    samples = load_audio(trained_avatar / "audio.wav")
    phones = LipsyncEngine().run(trained_avatar / "audio.wav", fps=25.0).phones
    audio_in = renderer.audio_for(audio_features(samples, phones), frames, 25.0)
    inputs = [reference.frame_input(int(index[t]), coefficients[t], audio_in[t], shapes[t]) for t in range(frames)]
    whole = reference.paste(renderer.render_whole(inputs), index)
    served = np.stack([got[f] for f in range(frames)])
    assert np.abs(served.astype(int) - whole).max() <= 1
    # Pixels the renderer does not touch are the plate's own.
    assert np.array_equal(served[0][:20], reference.plate[0][:20])


def test_server_limits_and_names(render_server, trained_avatar, avatar_frames):
    with BackendClient(render_server.endpoint, timeout=60) as client:
        for name in ("../" + trained_avatar.name, "/etc", "nobody", "a/b"):
            with pytest.raises(BackendError) as caught:
                _open(client, name, 10)
            assert caught.value.code == ErrorCode.UNKNOWN_AVATAR, name
        session = _open(client, trained_avatar.name, 100)
        shapes = np.zeros((40, 256, 256, 3), np.uint8)
        coefficients = np.zeros((40, 33), np.float32)
        from steadytalk_shared.messages import render_frames_message

        too_many = render_frames_message(session["session"], 0, 0, 40, [0] * 40, shapes, coefficients)
        with pytest.raises(BackendError) as caught:
            client.request(too_many)
        assert caught.value.code == ErrorCode.TOO_MANY_FRAMES
        unknown = render_frames_message("0" * 32, 0, 0, 2, [0, 0], shapes[:2], coefficients[:2])
        with pytest.raises(BackendError) as caught:
            client.request(unknown)
        assert caught.value.code == ErrorCode.UNKNOWN_SESSION
        wrong_size = render_frames_message(session["session"], 0, 0, 2, [0, 0], shapes[:2, :64, :64], coefficients[:2])
        with pytest.raises(BackendError) as caught:
            client.request(wrong_size)
        assert "256x256" in caught.value.message
        assert client.ping()["avatars"] == [trained_avatar.name]
    # The server wrote nothing outside its jobs folder (and leaves it clean).
    assert list(render_server.jobs_dir.iterdir()) == []


def test_render_audio_over_the_wire(render_server, trained_avatar, tmp_path):
    with BackendClient(render_server.endpoint, timeout=120) as client:
        data, summary = client.render_audio(trained_avatar.name, trained_avatar / "audio.wav")
    (tmp_path / "x.mp4").write_bytes(data)
    assert video_facts(tmp_path / "x.mp4")["frames"] == summary["frames"] > 0
    assert list(render_server.jobs_dir.iterdir()) == []


def test_four_clients_streaming_200_frames_each_lose_nothing(render_server, trained_avatar, avatar_frames):
    frames = 200
    index = rc.reference_index(np.arange(frames), avatar_frames.num_frames)
    coefficients = avatar_frames.coefficients[index]
    shapes = shape_passes(avatar_frames, index, coefficients)
    results: dict[int, dict[int, int]] = {}
    errors: list[BaseException] = []

    def client_run(number: int) -> None:
        seen: dict[int, int] = {}
        try:
            with BackendClient(render_server.endpoint, timeout=180, context=zmq.Context()) as client:
                session = _open(client, trained_avatar.name, frames)
                plan = PassPlan(frames, session["context"], 32)
                render_pass(
                    client,
                    session,
                    plan,
                    range(frames),
                    lambda f: (shapes[f], coefficients[f]),
                    lambda f: int(index[f]),
                    lambda f, rgb: seen.__setitem__(f, seen.get(f, 0) + 1),
                    in_flight=3,
                )
        except BaseException as exc:  # reported below, from the main thread
            errors.append(exc)
        results[number] = seen

    threads = [threading.Thread(target=client_run, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    for number in range(4):
        assert sorted(results[number]) == list(range(frames)), number
        assert set(results[number].values()) == {1}, number


def test_fair_queue_takes_clients_in_turn():
    queue = FairQueue()
    order: list[str] = []
    for i in range(6):
        queue.put(b"bulk", lambda i=i: order.append(f"bulk{i}"))
    queue.put(b"small", lambda: order.append("small0"))
    queue.put(b"small", lambda: order.append("small1"))
    for _ in range(8):
        queue.get()()
    assert order[:4] == ["bulk0", "small0", "bulk1", "small1"]
    queue.close()
    assert queue.get() is None


def test_curve_refuses_unauthorized_clients(tmp_path):
    keys = tmp_path / "keys"
    assert main(["keys", str(keys), "--client", "blender"]) == 0
    assert main(["keys", str(tmp_path / "other"), "--client", "intruder"]) == 0
    with pytest.raises(ServerSetupError):
        LipsyncServer(ServerConfig(bind="tcp://0.0.0.0:*"))
    with serving(ServerConfig(bind="tcp://127.0.0.1:*", keys=keys, poll_ms=20)) as server:
        good = CurveKeys.load(keys / "clients" / "blender.key_secret", keys / "server.key")
        with BackendClient(server.endpoint, timeout=5, retries=0, curve=good) as client:
            assert client.ping()["protocol"] == wire.PROTOCOL_VERSION
        intruder = CurveKeys.load(tmp_path / "other" / "clients" / "intruder.key_secret", keys / "server.key")
        for curve in (intruder, None):
            started = time.monotonic()
            with BackendClient(server.endpoint, timeout=1.5, retries=0, curve=curve) as client:
                with pytest.raises(BackendUnavailable):
                    client.ping()
            assert time.monotonic() - started < 5


def test_serve_refuses_to_expose_without_keys(capsys):
    assert main(["serve", "--bind", "tcp://0.0.0.0:0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Refusing to listen") and "steadytalk keys" in err


def test_lipsync_in_the_avatars_manner(render_server, trained_avatar):
    from steadytalk_shared.smoothing import AdaptiveSmoother

    with BackendClient(render_server.endpoint, timeout=120) as client:
        result = client.lipsync(trained_avatar / "audio.wav", fps=25.0, avatar=trained_avatar.name)
        with pytest.raises(BackendError) as caught:
            client.lipsync(trained_avatar / "audio.wav", avatar="nobody")
    assert caught.value.code == ErrorCode.UNKNOWN_AVATAR
    # This avatar has no person model (the fixture trains the renderer only): the engine's
    # curves, smoothed by the avatar's own jointly trained smoother.
    assert any("no audio-to-expression model" in w for w in result.warnings)
    own = AdaptiveSmoother.load(trained_avatar / "model" / "smoother.safetensors")
    np.testing.assert_allclose(result.smoothed, own.smooth(result.raw)[0], atol=1e-5)
