"""Shared fixtures. Tests use real components: the bundled speech clip, real pocketsphinx,
a real ZeroMQ server on a random loopback port, torch for the smoother."""

from __future__ import annotations

import threading
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def demo_wav() -> Path:
    return Path(str(resources.files("steadytalk_backend.data") / "demo_speech.wav"))


@pytest.fixture(scope="session")
def demo_transcript() -> str:
    return (resources.files("steadytalk_backend.data") / "demo_speech.txt").read_text().strip()


@pytest.fixture(scope="session")
def demo_samples(demo_wav) -> tuple[np.ndarray, int]:
    data, rate = sf.read(demo_wav, dtype="float32")
    return data, rate


@pytest.fixture(scope="session")
def engine():
    from steadytalk_backend.engine import LipsyncEngine

    return LipsyncEngine()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def server():
    """A real backend on a random loopback port, served from a thread; stopped after the test."""
    from steadytalk_backend.server import LipsyncServer, ServerConfig

    srv = LipsyncServer(ServerConfig(bind="tcp://127.0.0.1:*", max_message_bytes=4 * 1024 * 1024, poll_ms=20))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.stop()
    thread.join(timeout=30)
    assert not thread.is_alive(), "server did not stop"
