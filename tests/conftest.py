"""Shared fixtures. Tests use real components: the bundled speech clip, real pocketsphinx,
a real ZeroMQ server on a random loopback port, torch for the smoother."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
EXTENSION_PACKAGE = "steadytalk_extension"  # the repository root, as Blender sees the extension


def extension_package():
    """The repository root imported as Blender imports the extension: a package whose
    ``__init__.py`` registers the add-on and whose subpackages are ``addon`` and ``shared``."""
    import importlib.util
    import sys

    if EXTENSION_PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            EXTENSION_PACKAGE, REPO / "__init__.py", submodule_search_locations=[str(REPO)]
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules[EXTENSION_PACKAGE] = package
        spec.loader.exec_module(package)
    return sys.modules[EXTENSION_PACKAGE]


def serve_process() -> tuple[subprocess.Popen, str]:
    """``steadytalk serve`` in its own process on a free loopback port: (process, endpoint)."""
    endpoint = f"tcp://127.0.0.1:{unused_loopback_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "steadytalk_backend.cli", "serve", "--bind", endpoint],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, endpoint


def unused_loopback_port() -> int:
    """A loopback TCP port nobody listens on (bound and released by the OS)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def register_addon(endpoint: str, timeout: float = 60.0):
    """Register the add-on the way Blender does, its preferences pointing at ``endpoint``;
    returns the extension package (call its ``unregister`` when done)."""
    import bpy

    package = extension_package()
    package.register()
    entry = bpy.context.preferences.addons.get(EXTENSION_PACKAGE) or bpy.context.preferences.addons.new()
    entry.module = EXTENSION_PACKAGE
    entry.preferences.endpoint = endpoint
    entry.preferences.timeout = timeout
    return package


@contextlib.contextmanager
def serving(config):
    """A real ``LipsyncServer`` for ``config`` served from a thread; stopped (and checked) on exit."""
    from steadytalk_backend.service.server import LipsyncServer

    srv = LipsyncServer(config)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.stop()
        thread.join(timeout=60)
    assert not thread.is_alive(), "server did not stop"


def extension_module(name: str):
    """Import ``addon.<name>`` the way the installed extension does, so its ``..shared`` imports work."""
    import importlib

    extension_package()
    return importlib.import_module(f"{EXTENSION_PACKAGE}.addon.{name}")


@pytest.fixture(scope="session")
def demo_wav() -> Path:
    return Path(str(resources.files("steadytalk_backend.data") / "demo_speech.wav"))


@pytest.fixture(scope="session")
def demo_transcript() -> str:
    return (resources.files("steadytalk_backend.data") / "demo_speech.txt").read_text().strip()


@pytest.fixture(scope="session")
def demo_samples(demo_wav) -> tuple[np.ndarray, int]:
    import soundfile as sf

    data, rate = sf.read(demo_wav, dtype="float32")
    return data, rate


@pytest.fixture(scope="session")
def engine():
    from steadytalk_backend.lipsync.engine import LipsyncEngine

    return LipsyncEngine()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def server():
    """A real backend on a random loopback port, served from a thread; stopped after the test."""
    from steadytalk_backend.service.server import ServerConfig

    with serving(ServerConfig(bind="tcp://127.0.0.1:*", max_message_bytes=4 * 1024 * 1024, poll_ms=20)) as srv:
        yield srv


def write_video(
    path: Path,
    frames: list[np.ndarray],
    fps: float = 25.0,
    audio: np.ndarray | None = None,
    times: list[float] | None = None,
) -> Path:
    """An H.264 mp4 of RGB frames (optionally at the given frame times: variable rate) with
    16 kHz mono AAC audio when given. For tests that need videos of a particular kind."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        # Millisecond timestamps in the encoder too, or irregular frame times collide at 1/fps.
        video.time_base = video.codec_context.time_base = Fraction(1, 1000)
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=16000)
            sound.layout = "mono"
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = int(round((times[index] if times is not None else index / fps) * 1000))
            frame.time_base = Fraction(1, 1000)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            step = 1024
            for start in range(0, len(audio), step):
                piece = np.ascontiguousarray(audio[None, start : start + step], dtype=np.float32)
                frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 16000, start
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return path


@pytest.fixture(scope="session")
def make_video():
    """``write_video`` for tests: (path, frames, fps=25, audio=None, times=None) -> path."""
    return write_video


@pytest.fixture(scope="session")
def backend_process():
    """A real ``steadytalk serve`` process on a random loopback port; yields its endpoint.

    The Blender tests also run in virtual environments that hold only ``bpy`` (4.2, 4.5):
    there ``STEADYTALK_BACKEND_PYTHON`` names the project's own interpreter."""
    import os
    import subprocess
    import sys

    python = os.environ.get("STEADYTALK_BACKEND_PYTHON", sys.executable)
    process = subprocess.Popen(
        [python, "-m", "steadytalk_backend.cli", "serve", "--bind", "tcp://127.0.0.1:*"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = process.stdout.readline()
    if "serving on" not in line:
        process.kill()
        pytest.fail(f"backend did not start: {line}{process.stdout.read()}")
    endpoint = line.split("serving on ")[1].split()[0]
    yield process, endpoint
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="session")
def grid_avatar(shared_data, tmp_path_factory) -> Path:
    """A held-out GRID clip prepared at 256 (real tracking, crops, audio features)."""
    from steadytalk_backend.avatar.prepare import PrepareConfig, Preparer

    out = tmp_path_factory.mktemp("grid_avatar") / "bbbs5s"
    Preparer(shared_data / "video" / "grid_s1_val" / "bbbs5s.mpg", out, PrepareConfig(sizes=(256,))).run()
    return out


def tiny_preset(**changes):
    """A training preset small enough for tests (seconds on a CPU): a 3-level network at 64 px,
    one epoch per stage on windows of 6 frames. ``changes`` replace its fields."""
    from steadytalk_backend.render.network import RendererConfig
    from steadytalk_backend.render.presets import LossWeights, TrainPreset

    renderer = RendererConfig(
        work_size=64, channels=(8, 16, 32), groups=4, audio_hidden=16, temporal_radius=3, temporal_heads=2
    )
    fields = dict(
        name="test",
        renderer=renderer,
        epochs=1,
        joint_epochs=1,
        lr=2e-3,
        joint_lr=1e-4,
        window=6,
        windows_per_step=2,
        losses=LossWeights(adversarial=0.01),
        adversarial_from_epoch=0,
    )
    return TrainPreset(**(fields | changes))


@pytest.fixture(scope="session")
def trained_avatar(grid_avatar, tmp_path_factory) -> Path:
    """``grid_avatar`` copied into an avatars folder (``<root>/bbbs5s``) with a tiny renderer
    trained on it (seconds on a CPU), for the render paths: server, headless, Blender."""
    import shutil

    from steadytalk_backend.render.train import RendererTrainer

    avatar = tmp_path_factory.mktemp("avatars") / grid_avatar.name
    shutil.copytree(grid_avatar, avatar)
    preset = tiny_preset()
    RendererTrainer(avatar, preset, device="cpu", log=lambda line: None).run()
    return avatar


@pytest.fixture
def render_server(trained_avatar, tmp_path):
    """A real backend on a random loopback port that knows ``trained_avatar``."""
    from steadytalk_backend.service.server import ServerConfig

    config = ServerConfig(
        bind="tcp://127.0.0.1:*",
        poll_ms=20,
        workers=2,
        avatars=(trained_avatar.parent,),
        jobs_dir=tmp_path / "jobs",
        max_frames_per_request=32,
        device="cpu",
    )
    with serving(config) as srv:
        yield srv
