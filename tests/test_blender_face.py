"""The whole face in the real ``bpy`` module: head motion keyed on a head bone (found by name,
any bone roll) or on the rig object, in their own rotation modes, with the track's signs; the
parts of the face the user turns off are not keyed and the user's own animation of them stays.
The curves are a real backend's answer for the demo sentence (fetched once)."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_rigs import FPS, activate, apply, armature, mesh_with_keys, skin  # noqa: E402
from conftest import extension_module, register_addon  # noqa: E402

from steadytalk_shared.head import matrix_from_euler  # noqa: E402
from steadytalk_shared.schema import CHANNELS  # noqa: E402

ARKIT = list(CHANNELS)
FORWARD = np.array([0.0, -1.0, 0.0])  # a Blender character faces -Y
BLENDER_FROM_CHARACTER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


@pytest.fixture(scope="module")
def result(backend_process, demo_wav):
    from steadytalk_shared.client import BackendClient

    with BackendClient(backend_process[1], timeout=60) as client:
        return client.lipsync(demo_wav, fps=FPS, face={"seed": 4, "head_motion": 2.0})


@pytest.fixture
def addon(backend_process):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.scene.render.fps, bpy.context.scene.render.fps_base = int(FPS), 1
    package = register_addon(backend_process[1])
    yield extension_module("lipsync")
    package.unregister()


def keyed_paths(owner) -> set[str]:
    keying = extension_module("keying")
    animation = owner.animation_data
    if animation is None or animation.action is None:
        return set()
    return {fc.data_path for fc in keying.slot_fcurves(animation.action, getattr(animation, "action_slot", None))}


def expected_world(head: np.ndarray) -> np.ndarray:
    return BLENDER_FROM_CHARACTER @ matrix_from_euler(head) @ BLENDER_FROM_CHARACTER.T


def test_head_keys_on_the_rig_object_with_the_tracks_signs(addon, result):
    rig = mesh_with_keys("Face", ARKIT)
    rig.steadytalk.head_on_object = True  # no armature: the object turns
    activate(rig)
    apply(addon, result, rig, tolerance=None)
    paths = keyed_paths(rig)
    assert "rotation_euler" in paths and 'key_blocks["eyeBlinkLeft"].value' in keyed_paths(rig.data.shape_keys)
    yaw_frame = int(np.argmax(np.abs(result.head[:, 0])))
    for i in (yaw_frame, 5, result.num_frames // 2):
        bpy.context.scene.frame_set(1 + i)
        got = np.array(rig.matrix_world.to_3x3())
        np.testing.assert_allclose(got, expected_world(result.head[i]), atol=2e-3)
    bpy.context.scene.frame_set(1 + yaw_frame)
    forward = np.array(rig.matrix_world.to_3x3()) @ FORWARD
    # yaw > 0 turns the face to the character's left: +X in Blender's front view
    assert np.sign(forward[0]) == np.sign(result.head[yaw_frame, 0]) and abs(forward[0]) > 0.02


@pytest.mark.parametrize("roll", [0.0, 90.0])
def test_head_keys_on_a_mixamo_head_bone(addon, result, roll):
    rig = armature("Armature")
    activate(rig)
    bpy.ops.object.mode_set(mode="EDIT")
    for name, head, tail in (
        ("mixamorig:Hips", (0, 0, 1.0), (0, 0, 1.2)),
        ("mixamorig:Head", (0, 0, 1.5), (0, 0, 1.7)),
    ):
        bone = rig.data.edit_bones.new(name)
        bone.head, bone.tail = head, tail
        bone.roll = np.radians(roll) if name.endswith("Head") else 0.0
    rig.data.edit_bones["mixamorig:Head"].parent = rig.data.edit_bones["mixamorig:Hips"]
    bpy.ops.object.mode_set(mode="OBJECT")
    face = skin(mesh_with_keys("Body", ARKIT[:40]), rig)
    activate(face)
    _, notes, _ = apply(addon, result, face, tolerance=None)
    assert "head on Armature: bone mixamorig:Head" in notes
    bone = rig.pose.bones["mixamorig:Head"]
    assert bone.rotation_mode == "QUATERNION"
    assert 'pose.bones["mixamorig:Head"].rotation_quaternion' in keyed_paths(rig)
    rest = np.array(rig.data.bones["mixamorig:Head"].matrix_local.to_3x3())
    for i in (int(np.argmax(np.abs(result.head[:, 1]))), result.num_frames // 3):
        bpy.context.scene.frame_set(1 + i)
        posed = np.array(bone.matrix.to_3x3())  # armature space, whatever the bone's roll
        np.testing.assert_allclose(posed @ rest.T, expected_world(result.head[i]), atol=2e-3)


def test_turned_off_parts_are_not_keyed_and_the_users_animation_stays(addon, result):
    rig = mesh_with_keys("Face", ARKIT)
    rig.steadytalk.head_on_object = True
    keys = rig.data.shape_keys.key_blocks
    keys["eyeBlinkLeft"].value = 0.7
    keys["eyeBlinkLeft"].keyframe_insert("value", frame=1)  # the user's own blink animation
    activate(rig)
    apply(addon, result, rig, tolerance=None, face_off=("blinks", "gaze", "brows", "head"))
    paths = keyed_paths(rig.data.shape_keys)
    assert 'key_blocks["jawOpen"].value' in paths
    assert not {
        p for p in paths if any(f'"{n}"' in p for n in CHANNELS if n.startswith(("eyeBlink", "eyeLook", "brow")))
    }
    assert not keyed_paths(rig)  # no head keys on the object

    other = mesh_with_keys("Plain", ARKIT)  # Head on Object not ticked: the object is left alone
    activate(other)
    apply(addon, result, other, tolerance=None)
    assert not keyed_paths(other) and keyed_paths(other.data.shape_keys)
    bpy.context.scene.frame_set(10)
    assert keys["eyeBlinkLeft"].value == pytest.approx(0.7)  # the user's blink plays on through the NLA


def test_all_parts_keyed_by_default_and_a_users_own_object_animation_keeps_its_head(addon, result):
    rig = mesh_with_keys("Face", ARKIT)
    rig.steadytalk.head_on_object = True
    rig.keyframe_insert("location", frame=1)  # the user animates the object: its head is theirs
    activate(rig)
    _, notes, _ = apply(addon, result, rig, tolerance=None)
    paths = keyed_paths(rig.data.shape_keys)
    for name in ("eyeBlinkLeft", "browInnerUp", "eyeLookOutLeft"):
        assert f'key_blocks["{name}"].value' in paths, name
    assert any("has its own animation: head not keyed" in n for n in notes)
    assert "rotation_euler" not in keyed_paths(rig)
