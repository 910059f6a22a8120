"""The ``portrait`` and ``portrait_rig`` requests against a real server on a random loopback
port: real pictures from ../shared/data/images (skipped when absent) and pictures the test
makes; bad inputs get one-line error replies and the server keeps answering pings."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import serving

from steadytalk_backend.service.server import ServerConfig
from steadytalk_shared import render_contract as rc
from steadytalk_shared.client import BackendClient, BackendError
from steadytalk_shared.protocol import PORTRAIT, ErrorCode, Message
from steadytalk_shared.schema import CHANNELS  # the face model's shapes (the rig's): all 52

IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "images"
GRID = IMAGES / "grid_s1_frame_bbaf2n.png"
needs_images = pytest.mark.skipif(not GRID.exists(), reason="../shared/data/images is not present")


def png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def grid_rgb() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(GRID)), cv2.COLOR_BGR2RGB)


def made_picture() -> np.ndarray:
    """A picture the test makes: the GRID face, smaller, on a painted gradient with a frame."""
    height, width = 420, 560
    y, x = np.mgrid[0:height, 0:width]
    canvas = np.stack([x * 200 // width + 30, y * 150 // height + 60, np.full_like(x, 120)], axis=-1)
    canvas = canvas.astype(np.uint8)
    face = cv2.resize(grid_rgb(), None, fx=0.9, fy=0.9, interpolation=cv2.INTER_AREA)
    canvas[60 : 60 + face.shape[0], 120 : 120 + face.shape[1]] = face
    canvas[:8], canvas[-8:], canvas[:, :8], canvas[:, -8:] = 20, 20, 20, 20
    return canvas


def short_speech(demo_wav: Path, seconds: float) -> bytes:
    import soundfile as sf

    samples, rate = sf.read(demo_wav, dtype="float32")
    buffer = io.BytesIO()
    sf.write(buffer, samples[: int(seconds * rate)], rate, format="WAV")
    return buffer.getvalue()


@pytest.fixture
def served(tmp_path):
    jobs = tmp_path / "jobs"
    config = ServerConfig(bind="tcp://127.0.0.1:*", poll_ms=20, jobs_dir=jobs, max_frames_per_session=200)
    with serving(config) as srv, BackendClient(srv.endpoint, timeout=120, retries=0) as client:
        yield client, jobs


def error_of(call) -> BackendError:
    with pytest.raises(BackendError) as caught:
        call()
    return caught.value


@needs_images
def test_rig_of_a_photo_lands_on_its_texture(served):
    client, jobs = served
    stages = []
    rig = client.portrait_rig(GRID, size=720, progress=lambda f, s: stages.append(s))
    assert stages and rig.shape_names == CHANNELS and (rig.face, rig.faces) == (1, 1)
    texture = rig.texture()
    assert texture.shape == (rig.height, rig.width, 3) and max(rig.width, rig.height) == 720
    # The texture is the picture at the rig's size.
    expected = cv2.resize(grid_rgb(), (rig.width, rig.height), interpolation=cv2.INTER_AREA)
    assert np.abs(texture.astype(int) - expected).mean() < 3.0
    assert rig.deltas.shape == (len(CHANNELS), len(rig.vertices), 3)
    assert np.abs(rig.deltas[CHANNELS.index("jawOpen")]).max() > 0.005  # metres: the jaw really opens
    # The mesh, placed by its matrix, lies where its UVs take the texture from.
    pixels = rc.project(rig.matrix, rig.vertices[: rc.FACE_POINTS])[:, :2]
    uv = np.stack([rig.uvs[: rc.FACE_POINTS, 0] * rig.width, (1 - rig.uvs[: rc.FACE_POINTS, 1]) * rig.height], 1)
    assert np.abs(pixels - uv).max() < 1.0
    assert rig.camera == rc.camera(rig.width, rig.height)
    assert rig.card[:, 2].max() < rc.project(rig.matrix, rig.vertices)[:, 2].min()
    assert list(jobs.iterdir()) == []


@needs_images
def test_rig_of_a_painting_and_of_a_made_picture(served):
    client, _ = served
    painting = client.portrait_rig((IMAGES / "monalisa_leonardo.jpg").read_bytes(), size=512)
    assert max(painting.width, painting.height) == 512 and painting.faces == 1
    turned = client.portrait_rig(IMAGES / "pearl_earring_vermeer.jpg", size=512)  # a path: its name in messages
    assert any("pearl_earring_vermeer.jpg is turned" in w for w in turned.warnings), turned.warnings
    made = made_picture()
    rig = client.portrait_rig(png(made), size=560)
    assert (rig.width, rig.height) == (560, 420)
    np.testing.assert_array_equal(rig.texture(), made)  # same size: the picture itself, lossless
    face = rc.project(rig.matrix, rig.vertices[: rc.FACE_POINTS])[:, :2]
    assert 120 < face[:, 0].min() and face[:, 0].max() < 120 + 0.9 * grid_rgb().shape[1]


@needs_images
def test_portrait_over_the_wire(served, demo_wav):
    import av

    client, jobs = served
    progress = []
    audio = short_speech(demo_wav, 2.0)
    data, summary = client.portrait(
        GRID.read_bytes(), audio, size=192, fps=25, progress=lambda f, s: progress.append(f)
    )
    assert data[4:8] == b"ftyp" and "out" not in summary
    assert progress and progress[-1] == pytest.approx(1.0) and progress == sorted(progress)
    with av.open(io.BytesIO(data)) as container:
        video, sound = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and sound.codec_context.name == "aac"
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video)])
    assert len(frames) == summary["frames"] and abs(len(frames) / 25 - 2.0) <= 1 / 25 + 1e-9
    assert frames.shape[2] == 192 and list(summary["size"]) == [192, frames.shape[1]]
    assert frames[:, :, :].std(axis=0).max() > 20  # something moves (the mouth)
    assert frames[:, :12, :12].astype(float).std(axis=0).max() <= 1.0  # the corner does not
    assert list(jobs.iterdir()) == []  # nothing left in the jobs folder


def test_bad_pictures_are_error_replies_and_the_server_keeps_serving(served, demo_wav):
    client, jobs = served
    audio = short_speech(demo_wav, 1.0)
    text = b"these are words, not pixels"
    for call in (lambda: client.portrait_rig(text), lambda: client.portrait(text, audio, size=128)):
        error = error_of(call)
        assert error.code == ErrorCode.BAD_PORTRAIT and "not a picture" in error.message, error.message
        assert "\n" not in error.message
        assert client.ping()["protocol"] == 1
    # The name is for messages only: never opened, its folders cut off.
    error = error_of(lambda: client.portrait_rig(text, name="../../etc/notes.png"))
    assert error.message.startswith("notes.png is not a picture") and "etc" not in error.message, error.message
    ramp = np.tile(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], (240, 1, 3))
    error = error_of(lambda: client.portrait_rig(png(ramp)))
    assert error.code == ErrorCode.BAD_PORTRAIT and "No face was found" in error.message
    assert error_of(lambda: client.portrait_rig(b"")).code == ErrorCode.BAD_PORTRAIT
    assert client.ping()["protocol"] == 1
    assert list(jobs.iterdir()) == []


@needs_images
def test_several_faces(served):
    client, _ = served
    rgb = grid_rgb()
    smaller = np.zeros_like(rgb)
    small = cv2.resize(rgb, None, fx=0.75, fy=0.75)
    smaller[: small.shape[0], : small.shape[1]] = small
    data = png(np.concatenate([smaller, rgb], axis=1))
    rig = client.portrait_rig(data, size=720)
    assert (rig.face, rig.faces) == (2, 2) and any("2 faces" in w for w in rig.warnings)
    left = client.portrait_rig(data, size=720, face=1)
    assert left.face == 1 and rc.project(left.matrix, left.vertices)[:, 0].mean() < 360
    error = error_of(lambda: client.portrait_rig(data, face=3))
    assert error.code == ErrorCode.BAD_PORTRAIT and "it has 2" in error.message
    assert client.ping()["protocol"] == 1


def test_bad_requests_are_refused_before_any_work(served, demo_wav):
    client, _ = served
    audio = short_speech(demo_wav, 1.0)
    picture = png(np.zeros((64, 64, 3), np.uint8))
    cases = [
        (Message(PORTRAIT, buffers=[picture]), "2 buffer"),
        (Message(PORTRAIT, body={"size": 50}, buffers=[picture, audio]), "size must be an integer in 128..4096"),
        (Message(PORTRAIT, body={"fps": "fast"}, buffers=[picture, audio]), "fps must be a number"),
        (Message(PORTRAIT, body={"face": 0}, buffers=[picture, audio]), "face must be an integer"),
        (Message(PORTRAIT, body={"transcript": 5}, buffers=[picture, audio]), "transcript must be"),
    ]
    for message, text in cases:
        error = error_of(lambda m=message: client.request(m))
        assert error.code == ErrorCode.BAD_REQUEST and text in error.message, error.message
    assert client.ping()["protocol"] == 1


@needs_images
def test_the_servers_limits_hold(tmp_path, demo_wav):
    jobs = tmp_path / "jobs"
    config = ServerConfig(bind="tcp://127.0.0.1:*", poll_ms=20, jobs_dir=jobs, max_frames_per_session=10)
    with serving(config) as srv, BackendClient(srv.endpoint, timeout=120, retries=0) as client:
        error = error_of(lambda: client.portrait(GRID, short_speech(demo_wav, 2.0), size=256))
        assert error.code == ErrorCode.TOO_MANY_FRAMES and "limit is 10" in error.message
        error = error_of(lambda: client.portrait(GRID, b"RIFF nonsense", size=256))
        assert error.code == ErrorCode.BAD_AUDIO
        assert list(jobs.iterdir()) == []
        assert client.ping()["protocol"] == 1
    config = ServerConfig(bind="tcp://127.0.0.1:*", poll_ms=20, max_message_bytes=400_000)
    with serving(config) as srv, BackendClient(srv.endpoint, timeout=120, retries=0) as client:
        error = error_of(lambda: client.portrait_rig(GRID, size=2048))  # a 2048 texture: megabytes
        assert error.code == ErrorCode.TOO_LARGE and "smaller size" in error.message


@needs_images
def test_cancel_a_running_portrait(served, demo_wav):
    client, jobs = served
    seen = []

    def progress(fraction: float, stage: str) -> None:
        seen.append(stage)

    error = error_of(
        lambda: client.portrait(
            GRID, demo_wav, size=512, progress=progress, cancelled=lambda: any("frame" in s for s in seen)
        )
    )
    assert error.code == ErrorCode.CANCELLED, error.message
    assert any("frame" in s for s in seen)
    assert client.ping()["protocol"] == 1
    assert list(jobs.iterdir()) == []  # the half video is gone
