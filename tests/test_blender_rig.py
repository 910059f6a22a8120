"""The add-on's rig and keyframing in the real ``bpy`` module (Blender as a Python module)."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from conftest import extension_module  # noqa: E402

from steadytalk_shared.face_model import FaceModel  # noqa: E402
from steadytalk_shared.schema import CHANNELS, match_rig  # noqa: E402


@pytest.fixture
def scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def evaluated_vertices(obj) -> np.ndarray:
    bpy.context.view_layer.update()
    depsgraph = bpy.context.evaluated_depsgraph_get()
    mesh = obj.evaluated_get(depsgraph).to_mesh()
    points = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", points)
    obj.evaluated_get(depsgraph).to_mesh_clear()
    return points.reshape(-1, 3)


def test_face_rig_has_every_channel_as_a_working_shape_key(scene):
    rig_module = extension_module("rig")
    model = FaceModel.load()
    obj = rig_module.create_face_rig(scene.collection, model, location=(1.0, 2.0, 0.0))
    names = [k.name for k in obj.data.shape_keys.key_blocks]
    assert names == ["Basis", *CHANNELS]
    mapping, unmatched = match_rig(names)
    assert unmatched == [] and mapping == {c: c for c in CHANNELS}
    assert tuple(obj.location) == (1.0, 2.0, 0.0)

    rest = evaluated_vertices(obj)
    chin = 152
    obj.data.shape_keys.key_blocks["jawOpen"].value = 1.0
    opened = evaluated_vertices(obj)
    assert opened[chin, 2] < rest[chin, 2] - 0.01  # Z is up in Blender: the chin drops > 1 cm
    untouched = np.linalg.norm(opened - rest, axis=1) < 1e-6
    assert untouched[10]  # the forehead stays


def test_dense_keys_equal_the_curves_and_other_animation_stays(scene, backend_process, demo_wav):
    from steadytalk_shared.client import BackendClient

    rig_module, keying = extension_module("rig"), extension_module("keying")
    obj = rig_module.create_face_rig(scene.collection, FaceModel.load())
    obj.keyframe_insert("location", frame=1)  # the user's own animation on the object
    with BackendClient(backend_process[1], timeout=60) as client:
        result = client.lipsync(demo_wav, fps=25.0)
    curves = {name: result.smoothed[:, i] for i, name in enumerate(result.channels)}
    start = 10
    action = keying.key_curves(obj, curves, start_frame=start, frame_step=1.0, action_name="demo_speech")
    keys = obj.data.shape_keys.key_blocks
    for frame in (start, start + 17, start + result.num_frames // 2, start + result.num_frames - 1):
        scene.frame_set(frame)
        for name in ("jawOpen", "mouthClose", "mouthFunnel"):
            expected = curves[name][frame - start]
            assert keys[name].value == pytest.approx(expected, abs=1e-5), (frame, name)

    assert action.name == "demo_speech" and obj.data.shape_keys.animation_data.action == action
    assert obj.animation_data.action is not None  # the object's location keys are still there
