"""Face Rig from Portrait in the real ``bpy`` module against a real backend process: the rig
built from a real picture (../shared/data/images, skipped when absent), its packed texture,
the lip-sync driving it, and a Workbench render that shows the textured, talking face."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from conftest import extension_module, register_addon  # noqa: E402

from steadytalk_shared.schema import CHANNELS  # noqa: E402  (the face model's shapes: all 52)

IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "images"
GRID = IMAGES / "grid_s1_frame_bbaf2n.png"
DEMO_WAV = Path(__file__).resolve().parents[1] / "backend" / "data" / "demo_speech.wav"
ARTEFACTS = Path(os.environ.get("STEADYTALK_ARTEFACTS", Path(__file__).resolve().parents[1] / "build" / "artefacts"))
needs_images = pytest.mark.skipif(not GRID.exists(), reason="../shared/data/images is not present")


@pytest.fixture
def addon(backend_process):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    package = register_addon(backend_process[1], timeout=120)
    yield extension_module("backend_link")
    link = extension_module("backend_link")
    link.cancel_current()
    link.wait(30)
    package.unregister()


def build(link, path: Path, **options) -> tuple[str, str]:
    assert bpy.ops.steadytalk.portrait_rig(filepath=str(path), **options) == {"FINISHED"}
    link.wait(180)
    return link.last_message


def picture_pixels(image) -> np.ndarray:
    """A Blender image as (H, W, 3) uint8, row 0 at the top."""
    width, height = image.size
    pixels = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    return np.round(pixels.reshape(height, width, 4)[::-1, :, :3] * 255).astype(np.uint8)


def render(scene, path: Path) -> np.ndarray:
    scene.render.engine = "BLENDER_WORKBENCH"
    shading = scene.display.shading
    shading.light, shading.color_type = "FLAT", "TEXTURE"
    scene.display.render_aa = "OFF"
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(str(path))
    try:
        return picture_pixels(image)
    finally:
        bpy.data.images.remove(image)


@needs_images
def test_portrait_rig_builds_lipsyncs_and_renders_the_photo(addon, backend_process, tmp_path):
    scene = bpy.context.scene
    level, text = build(addon, GRID, size=360)
    assert level == "INFO" and "52 ARKit shape keys" in text, text
    face = bpy.context.active_object
    collection = face.users_collection[0]
    assert collection.name == "grid_s1_frame_bbaf2n portrait"
    kinds = sorted(obj.type for obj in collection.objects)
    assert kinds == ["CAMERA", "MESH", "MESH", "MESH", "MESH"]  # face, mouth, teeth, card; the camera
    keys = face.data.shape_keys.key_blocks
    assert [k.name for k in keys] == ["Basis", *CHANNELS]
    # The picture is packed into the file, at the requested size, and is the photo.
    image = face.data.materials[0].node_tree.nodes.active.image
    assert image.packed_file is not None and tuple(image.size) == (360, 288)
    from steadytalk_shared.client import BackendClient

    with BackendClient(backend_process[1], timeout=120) as client:  # the photo as the backend sends it
        photo = client.portrait_rig(GRID, size=360).texture()
    assert np.abs(picture_pixels(image).astype(int) - photo).max() <= 1
    assert scene.camera.name == "grid_s1_frame_bbaf2n camera" and scene.camera.data.type == "ORTHO"
    assert (scene.render.resolution_x, scene.render.resolution_y) == (360, 288)
    # At rest the render is the photo itself, face included.
    rest = render(scene, tmp_path / "rest.png")
    assert rest.shape == photo.shape
    assert np.abs(rest.astype(int) - photo).mean() < 4.0
    # Lip-sync from Audio (Auto convention) drives it; the open jaw shows a dark mouth.
    settings = scene.steadytalk
    settings.source, settings.audio_path, settings.add_sound_strip = "FILE", str(DEMO_WAV), False
    assert bpy.ops.steadytalk.lipsync() == {"FINISHED"}
    addon.wait(120)
    level, text = addon.last_message
    assert level == "INFO" and "ARKit" in text, text
    fcurves = {fc.data_path: fc for fc in extension_module("keying").action_fcurves(face.steadytalk.result_action)}
    jaw = fcurves['key_blocks["jawOpen"].value']
    frame = max(range(int(jaw.range()[0]), int(jaw.range()[1])), key=jaw.evaluate)
    scene.frame_set(frame)
    assert keys["jawOpen"].value > 0.2
    for part in ("mouth", "teeth"):  # the face's children: driven with it
        child = bpy.data.objects[f"grid_s1_frame_bbaf2n {part}"]
        assert child.parent == face
        assert child.data.shape_keys.key_blocks["jawOpen"].value == pytest.approx(keys["jawOpen"].value)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    version = f"{bpy.app.version[0]}_{bpy.app.version[1]}"
    talking = render(scene, ARTEFACTS / f"portrait_rig_open_jaw_blender_{version}.png")
    from mathutils import Vector

    lips = [face.matrix_world @ Vector(face.data.vertices[i].co) for i in (13, 14, 61, 291)]
    rows = sorted(int(round(-p.y)) for p in lips[:2])
    cols = sorted(int(round(p.x)) for p in lips[2:])
    mouth = (slice(rows[0] - 2, rows[1] + 8), slice(cols[0] + 4, cols[1] - 4))
    assert talking[mouth].mean() < rest[mouth].mean() - 15  # the mouth opened dark
    assert np.abs(talking[:40, :40].astype(int) - rest[:40, :40]).max() <= 1  # the corner stays
    # Saved and opened again: the texture travels inside the .blend.
    blend = tmp_path / "portrait.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    image = bpy.data.images["grid_s1_frame_bbaf2n picture"]
    assert image.packed_file is not None
    assert np.abs(picture_pixels(image).astype(int) - photo).max() <= 1


def test_bad_pictures_give_a_message_and_change_nothing(addon, tmp_path):
    before = set(bpy.data.objects.keys())
    notes = tmp_path / "notes.png"
    notes.write_text("these are words, not pixels")
    level, text = build(addon, notes)
    assert level == "ERROR" and "not a picture" in text and "\n" not in text, text
    with pytest.raises(RuntimeError, match="missing.jpg does not exist"):  # refused before anything is sent
        bpy.ops.steadytalk.portrait_rig(filepath=str(tmp_path / "missing.jpg"))
    ramp = np.tile(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], (240, 1, 3))
    from steadytalk_shared.png import write_png

    write_png(tmp_path / "ramp.png", ramp)
    level, text = build(addon, tmp_path / "ramp.png")
    assert level == "ERROR" and "No face was found" in text, text
    assert set(bpy.data.objects.keys()) == before and not bpy.data.collections


@needs_images
def test_portrait_video_lands_in_the_sequencer(addon, tmp_path):
    scene = bpy.context.scene
    settings = scene.steadytalk
    settings.source, settings.audio_path = "FILE", str(DEMO_WAV)
    with pytest.raises(RuntimeError, match="Save the .blend first"):  # "//" needs a saved file
        bpy.ops.steadytalk.portrait_video(filepath=str(GRID), size=192)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    scene = bpy.context.scene
    scene.frame_current = 7
    for _ in range(2):  # a rerun replaces the file and its strips
        assert bpy.ops.steadytalk.portrait_video(filepath=str(GRID), size=192) == {"FINISHED"}
        addon.wait(300)
        level, text = addon.last_message
        assert level == "INFO" and "in the sequencer at frame 7" in text, text
    video = tmp_path / "talking_portrait.mp4"
    assert video.read_bytes()[4:8] == b"ftyp" and not list(tmp_path.glob("*.partial"))
    lipsync = extension_module("lipsync")
    movies = [s for s in lipsync.all_strips(scene.sequence_editor) if s.type == "MOVIE"]
    assert len(movies) == 1 and movies[0].frame_final_start == 7
    frames = int(text.split(" frames")[0].rsplit(" ", 1)[-1])
    fps = lipsync.scene_fps(scene)  # the video is made at the scene's rate (24 in a new file)
    assert movies[0].frame_final_duration == frames and abs(frames - 6.983 * fps) <= 1


@needs_images
def test_one_undo_step_removes_the_portrait_rig(addon):
    bpy.ops.ed.undo_push(message="before")
    level, text = build(addon, GRID, size=256)
    assert level == "INFO", text
    assert bpy.data.collections and bpy.data.images
    bpy.ops.ed.undo()
    assert not bpy.data.collections and not [o for o in bpy.data.objects if o.get("steadytalk_portrait")]
    bpy.ops.ed.redo()
    assert [o.name for o in bpy.data.objects if o.get("steadytalk_portrait")] == ["grid_s1_frame_bbaf2n face"]
    # A second rig of the same picture is a rig of its own, with its own camera.
    level, text = build(addon, GRID, size=256)
    assert level == "INFO", text
    cameras = [[o.name for o in c.objects if o.type == "CAMERA"] for c in bpy.data.collections]
    assert len(cameras) == 2 and all(len(names) == 1 for names in cameras) and cameras[0] != cameras[1]
    assert bpy.context.scene.camera.name == cameras[1][0]
