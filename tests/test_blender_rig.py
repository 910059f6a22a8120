"""The add-on's rig and keyframing in the real ``bpy`` module (Blender as a Python module)."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_rigs import mesh_with_keys  # noqa: E402
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
    assert names == ["Basis", *CHANNELS]  # the face model's shapes: all 52 of schema v2
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
    key = obj.data.shape_keys
    channels = [keying.Channel(key, keying.shape_key_path(n), result.smoothed[:, i]) for i, n in enumerate(CHANNELS)]
    start = 10
    actions = keying.key_channels("demo_speech", channels, start_frame=start, style=keying.KeyStyle("DENSE"))
    keys = obj.data.shape_keys.key_blocks
    for frame in (start, start + 17, start + result.num_frames // 2, start + result.num_frames - 1):
        scene.frame_set(frame)
        for name in ("jawOpen", "mouthClose", "mouthFunnel"):
            expected = result.smoothed[frame - start, CHANNELS.index(name)]
            assert keys[name].value == pytest.approx(expected, abs=1e-5), (frame, name)

    assert actions[key].name == "demo_speech" and key.animation_data.action == actions[key]
    assert obj.animation_data.action is not None  # the object's location keys are still there


def test_one_keying_path_for_several_meshes_and_an_object_property(scene):
    """Two meshes' shape keys and an integer property of an object, one call: one action with a
    slot each on 4.4+, an action each on 4.2; constant keys step, reduced keys stay in tolerance."""
    keying = extension_module("keying")
    head, teeth = mesh_with_keys("Head", ["jawOpen"]), mesh_with_keys("Teeth", ["jawOpen"])
    board = bpy.data.objects.new("Mouth board", None)
    scene.collection.objects.link(board)
    board["mouth_shape"] = 0
    frames = 60
    jaw = (0.5 - 0.5 * np.cos(np.linspace(0, 4 * np.pi, frames))).astype(np.float32)
    shapes = np.repeat(np.arange(6, dtype=np.float32), 10)
    channels = [
        keying.Channel(head.data.shape_keys, keying.shape_key_path("jawOpen"), jaw),
        keying.Channel(teeth.data.shape_keys, keying.shape_key_path("jawOpen"), jaw * 0.5),
    ]
    actions = keying.key_channels("SteadyTalk test", channels, 5, keying.KeyStyle("REDUCED", 0.01))
    stepped = keying.key_channels("SteadyTalk board", [keying.Channel(board, '["mouth_shape"]', shapes)], 5,
                                  keying.KeyStyle("CONSTANT"))  # fmt: skip
    layered = bpy.app.version >= (4, 4, 0)
    assert len({a.name for a in actions.values()}) == (1 if layered else 2)
    if layered:
        action = actions[head.data.shape_keys]
        assert {s.name_display for s in action.slots} == {"Head", "Teeth"}
    curve = keying.action_fcurves(stepped[board])[0]
    assert len(curve.keyframe_points) == 6 and curve.keyframe_points[1].interpolation == "CONSTANT"
    for i in (0, 13, 29, 44, 59):
        scene.frame_set(5 + i)
        assert head.data.shape_keys.key_blocks["jawOpen"].value == pytest.approx(jaw[i], abs=0.011)
        assert teeth.data.shape_keys.key_blocks["jawOpen"].value == pytest.approx(jaw[i] * 0.5, abs=0.011)
        assert board["mouth_shape"] == int(shapes[i])
