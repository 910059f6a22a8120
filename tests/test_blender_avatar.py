"""Load Avatar and the photoreal pass in the real ``bpy`` module against a real backend process
serving a tiny trained avatar: the shape pass Blender draws is the backend's, the pass writes
every frame once, survives a killed backend, and lands in the sequencer."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
pytest.importorskip("torch")  # the trained avatar fixture trains one

from conftest import extension_module, register_addon, unused_loopback_port  # noqa: E402

from steadytalk_backend.face.shape_pass import ShapePassRenderer  # noqa: E402
from steadytalk_backend.render.data import AvatarFrames  # noqa: E402
from steadytalk_shared import render_contract as rc  # noqa: E402
from steadytalk_shared.face_model import FaceModel  # noqa: E402
from steadytalk_shared.png import read_png  # noqa: E402


def start_backend(avatars: Path, endpoint: str) -> subprocess.Popen:
    python = os.environ.get("STEADYTALK_BACKEND_PYTHON", sys.executable)
    argv = [python, "-m", "steadytalk_backend.cli", "serve", "--bind", endpoint, "--avatars", str(avatars)]
    process = subprocess.Popen([*argv, "--device", "cpu", "--max-frames", "12"], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert "serving on" in line, line
    return process


@pytest.fixture
def avatar_scene(trained_avatar):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    endpoint = f"tcp://127.0.0.1:{unused_loopback_port()}"
    package = register_addon(endpoint)
    assert bpy.ops.steadytalk.load_avatar(directory=str(trained_avatar)) == {"FINISHED"}
    yield extension_module("backend_link"), endpoint
    link = extension_module("backend_link")
    link.cancel_current()
    link.wait(60)
    package.unregister()


def test_blender_draws_the_backends_shape_pass(avatar_scene, trained_avatar):
    avatar = extension_module("avatar")
    rig = bpy.context.active_object
    assert rig.get("steadytalk_avatar") == str(trained_avatar)
    frames = AvatarFrames.load(trained_avatar, 256, frames=False)
    stage = avatar.ShapePassStage(
        bpy.context.scene, rig, avatar.read_avatar(trained_avatar), rig["steadytalk_avatar_start"]
    )
    key = rig.data.shape_keys.key_blocks["jawOpen"]
    key.value = 0.6
    rasterizer = ShapePassRenderer(FaceModel.load(), 256, 256)
    full_rig = FaceModel.load(trained_avatar / "blender" / "rig.npz")
    start = rig["steadytalk_avatar_start"]
    loop = rig["steadytalk_avatar_loop"]
    for frame in (start, start + 40, start + loop + 10):  # inside the keys and in the mirrored cycle
        drawn, coefficients = stage.draw(frame, Path(bpy.app.tempdir) / "shape.png")
        index = int(rc.reference_index(frame - start, loop))
        posed = full_rig.pose(coefficients)  # every shape key the Blender rig has (52; 33 before v2)
        ours = rasterizer.render(
            rc.project(frames.matrices[index], posed)[None], frames.matrices[index : index + 1, 2, 3]
        )
        ours = ours.color_uint8()[0]
        both = (ours.max(-1) > 0) & (drawn.max(-1) > 0)
        either = (ours.max(-1) > 0) | (drawn.max(-1) > 0)
        assert both.sum() / either.sum() > 0.995, frame
        assert np.abs(ours.astype(int) - drawn)[both].mean() < 1.0, frame
    assert coefficients[0] == pytest.approx(0.6)
    # The user's scene keeps its own settings.
    assert bpy.context.scene.render.engine != "BLENDER_WORKBENCH" or bpy.context.scene.name == "SteadyTalk shape pass"


def test_photoreal_pass_survives_a_killed_backend(avatar_scene, trained_avatar, tmp_path):
    link, endpoint = avatar_scene
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 30
    out = tmp_path / "photoreal"
    scene.steadytalk.photoreal_dir = str(out)
    backend = start_backend(trained_avatar.parent, endpoint)
    killer_done = threading.Event()

    def kill_midway() -> None:
        deadline = time.monotonic() + 300
        while len(list(out.glob("frame_*.png"))) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        backend.kill()
        killer_done.set()

    threading.Thread(target=kill_midway, daemon=True).start()
    try:
        assert bpy.ops.steadytalk.render_photoreal() == {"FINISHED"}
        link.wait(300)
        assert killer_done.wait(60)
        level, text = link.last_message
        first_run = {p.name: p.stat().st_mtime_ns for p in out.glob("frame_*.png")}
        assert 8 <= len(first_run) < 30, text
        assert level == "ERROR" and "No answer" in text, text
        assert not list(out.glob("*.partial"))
    finally:
        backend.kill()
        backend.wait()
    backend = start_backend(trained_avatar.parent, endpoint)
    try:
        assert bpy.ops.steadytalk.render_photoreal() == {"FINISHED"}
        link.wait(300)
        level, text = link.last_message
        assert level == "INFO", text
    finally:
        backend.terminate()
        backend.wait(timeout=60)
    files = sorted(out.glob("frame_*.png"))
    assert [p.name for p in files] == [f"frame_{f:06d}.png" for f in range(1, 31)]
    # Frames of the first run were not rendered again: every frame was written once.
    assert all((out / name).stat().st_mtime_ns == stamp for name, stamp in first_run.items())
    # Each frame shows its own reference frame (the top rows are the plate's, untouched).
    reference = __import__("steadytalk_backend.render.pipeline", fromlist=["Reference"]).Reference(trained_avatar, 256)
    for path in files:
        frame = int(path.stem.split("_")[1])
        index = int(rc.reference_index(frame - 1, reference.loop))
        top = read_png(path)[:24]
        assert np.array_equal(top, reference.plate[index][:24]), path.name
    # The strip: at the first frame, one element per frame.
    editor = scene.sequence_editor
    strips = [s for s in extension_module("lipsync").all_strips(editor) if s.get("steadytalk_photoreal")]
    assert len(strips) == 1 and strips[0].frame_final_start == 1 and len(strips[0].elements) == 30
    assert strips[0].frame_final_duration == 30
