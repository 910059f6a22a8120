"""Real characters in the real ``bpy`` module: several meshes, any convention, nothing of the
user's lost. The curves are a real backend's answer for the demo sentence (fetched once); the
rigs are built here to stand for what users bring (see ``blender_rigs``)."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_rigs import (  # noqa: E402
    FPS,
    RecordingLayout,
    activate,
    apply,
    armature,
    frames_of,
    mesh_with_keys,
    skin,
    sound_strips_supported,
    value_at,
)
from conftest import extension_module, register_addon  # noqa: E402

from steadytalk_shared import mapping  # noqa: E402
from steadytalk_shared.schema import CHANNELS  # noqa: E402

ARKIT = list(CHANNELS)
RPM_VISEMES = [f"viseme_{n}" for n in "sil PP FF TH DD kk CH SS nn RR aa E I O U".split()]


@pytest.fixture(scope="module")
def result(backend_process, demo_wav, demo_transcript):
    from steadytalk_shared.client import BackendClient

    with BackendClient(backend_process[1], timeout=60) as client:
        return client.lipsync(demo_wav, demo_transcript, fps=FPS)


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
    slot = getattr(animation, "action_slot", None)
    return {fc.data_path for fc in keying.slot_fcurves(animation.action, slot)}


def rpm_character():
    """Ready Player Me's layout: head and teeth with the same ARKit keys under one armature, the
    eyes with blinks, a bone shape that must be left alone, and another character beside it."""
    rig = armature("Armature")
    head = skin(mesh_with_keys("Wolf3D_Head", ARKIT), rig)
    teeth = skin(mesh_with_keys("Wolf3D_Teeth", ["jawOpen", "mouthClose", "mouthFunnel", "tongueOut"]), rig)
    bone_shape = mesh_with_keys("Icosphere", ["jawOpen"])
    bone = rig.data  # a pose bone's custom shape: the importer's helper
    bpy.context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="EDIT")
    edit = bone.edit_bones.new("Head")
    edit.head, edit.tail = (0, 0, 0), (0, 0, 1)
    bpy.ops.object.mode_set(mode="OBJECT")
    rig.pose.bones["Head"].custom_shape = bone_shape
    stranger = mesh_with_keys("Other_Head", ARKIT, offset=(5, 0, 0))
    return head, teeth, stranger


def test_the_whole_character_moves_as_one_result(addon, result):
    head, teeth, stranger = rpm_character()
    activate(teeth)  # the teeth active: the head comes along
    plan = extension_module("character").plan_for(teeth)
    assert plan.members == ["Wolf3D_Teeth", "Wolf3D_Head"] and plan.preset.id == "ARKIT"
    assert plan.summary() == "Wolf3D_Teeth: 4 keys; Wolf3D_Head: 33 keys"
    actions, notes, _ = apply(addon, result, teeth)
    assert len(actions) == (1 if bpy.app.version >= (4, 4, 0) else 2)
    jaw = result.smoothed[:, CHANNELS.index("jawOpen")]
    for frame in frames_of(result, {"AA", "AE", "AH", "AO"})[:4]:
        assert value_at(head, "jawOpen", 1 + frame) == pytest.approx(jaw[frame], abs=0.011)
        assert value_at(teeth, "jawOpen", 1 + frame) == pytest.approx(jaw[frame], abs=0.011)  # no clenched teeth
        assert jaw[frame] > 0.15
    assert stranger.data.shape_keys.animation_data is None  # another character is not touched
    # Only what the result animates is keyed: the blinks stay free for the user.
    assert 'key_blocks["eyeBlinkLeft"].value' not in keyed_paths(head.data.shape_keys)
    assert 'key_blocks["jawOpen"].value' in keyed_paths(teeth.data.shape_keys)

    # Running again from the head replaces all of it; re-smoothing one mesh moves both.
    activate(head)
    apply(addon, result, head)
    ours = [a for a in bpy.data.actions if a.name.startswith("SteadyTalk")]
    assert len(ours) == len(actions)
    head.steadytalk.smoothing_strength = 3.0
    assert teeth.steadytalk.smoothing_strength == pytest.approx(3.0)
    peak = frames_of(result, {"AA", "AE", "AH", "AO"})[0]
    assert value_at(head, "jawOpen", 1 + peak) == pytest.approx(value_at(teeth, "jawOpen", 1 + peak), abs=1e-6)
    assert len([a for a in bpy.data.actions if a.name.startswith("SteadyTalk")]) == len(actions)


@pytest.mark.parametrize(
    ("keys", "preset", "open_key"),
    [
        (RPM_VISEMES, "OCULUS", "viseme_aa"),  # Oculus names in Ready Player Me's spelling
        (["mouthOpen", "mouthSmile"], "TWO_MORPH", "mouthOpen"),
        ([f"Fcl_MTH_{v}" for v in "AIUEO"], "VRM", "Fcl_MTH_A"),
        ("AI E O U WQ MBP FV L etc rest".split(), "PRESTON_BLAIR", "AI"),
        (list("ABCDEFGHX"), "RHUBARB", "D"),
    ],
)
def test_auto_finds_the_convention_and_the_mouth_opens(addon, result, keys, preset, open_key):
    head = mesh_with_keys("Head", keys)
    activate(head)
    plan = extension_module("character").plan_for(head)
    assert plan.preset.id == preset and plan.reason.startswith("Auto:"), plan.reason
    apply(addon, result, head)
    opened = max(value_at(head, open_key, 1 + f) for f in frames_of(result, {"AA", "AE", "AH"}))
    assert opened > 0.3, (open_key, opened)
    if preset == "OCULUS":  # "oo" of "blue" and "through" shows viseme_U (RPM spelling), not a neutral mouth
        oo = frames_of(result, {"UW"})
        assert max(value_at(head, "viseme_U", 1 + f) for f in oo) > 0.4


def test_empty_targets_are_not_driven_and_auto_uses_what_moves(addon, result):
    # VRoid: ARKit-named keys of which jawOpen and 15 others move nothing, working Fcl_MTH visemes.
    empty = tuple(ARKIT[:16])
    head = mesh_with_keys("Face", [*ARKIT, *(f"Fcl_MTH_{v}" for v in "AIUEO")], empty=empty)
    activate(head)
    character = extension_module("character")
    plan = character.plan_for(head)
    assert plan.preset.id == "VRM" and "jawOpen moves no vertex" in plan.reason
    head.steadytalk.preset = "ARKIT"  # chosen by hand, but its jawOpen is empty: said, and VRM used
    plan = character.plan_for(head)
    assert plan.preset.id == "VRM" and plan.reason.startswith("ARKit chosen, but jawOpen moves no vertex: using VRM")
    # With nothing better on the rig the choice stays, and its empty keys are listed, not counted.
    lone = mesh_with_keys("Lone", ARKIT, empty=empty)
    activate(lone)
    lone.steadytalk.preset = "ARKIT"
    plan = character.plan_for(lone)
    assert plan.preset.id == "ARKIT" and set(plan.empty["Lone"]) == set(empty)
    assert {t.shape_key for t in plan.targets}.isdisjoint(empty)
    only_empty = mesh_with_keys("Blank", ["jawOpen", "mouthClose"], empty=("jawOpen", "mouthClose"))
    activate(only_empty)
    with pytest.raises(Exception, match="move no vertex"):
        character.check_plan(only_empty)
    activate(head)
    head.steadytalk.preset = mapping.AUTO
    apply(addon, result, head)
    assert max(value_at(head, "Fcl_MTH_A", 1 + f) for f in frames_of(result, {"AA", "AE", "AH"})) > 0.3
    assert "jawOpen" not in {p.split('"')[1] for p in keyed_paths(head.data.shape_keys)}


def test_the_users_animation_stays_visible_under_the_result(addon, result):
    head = mesh_with_keys("Head", ARKIT)
    key = head.data.shape_keys
    blink = key.key_blocks["eyeBlinkLeft"]
    # The user's blink on an NLA track, and an action of theirs active (a smile and a blink).
    animation = key.animation_data_create()
    track_action = bpy.data.actions.new("blinks")
    animation.action = track_action
    for frame, value in ((1, 0.0), (30, 1.0), (34, 0.0)):
        blink.value = value
        blink.keyframe_insert("value", frame=frame)
    animation.action = None
    track = animation.nla_tracks.new()
    track.name = "my blinks"
    strip = track.strips.new("blinks", 1, track_action)
    if bpy.app.version >= (4, 4, 0):
        strip.action_slot = track_action.slots[0]
    mine = bpy.data.actions.new("my smile")
    animation.action = mine
    right = key.key_blocks["eyeBlinkRight"]
    for frame, value in ((1, 0.0), (60, 0.8), (70, 0.0)):
        right.value = value
        right.keyframe_insert("value", frame=frame)
    activate(head)
    apply(addon, result, head)
    assert value_at(head, "eyeBlinkLeft", 30) == pytest.approx(1.0, abs=1e-5)  # the NLA blink plays on
    assert value_at(head, "eyeBlinkRight", 60) == pytest.approx(0.8, abs=1e-5)  # the pushed-down action too
    assert [t.name for t in animation.nla_tracks] == ["my blinks", "my smile"]
    assert animation.action is not None and animation.action.name.startswith("SteadyTalk")
    jaw = result.smoothed[:, CHANNELS.index("jawOpen")]
    peak = int(np.argmax(jaw))
    assert value_at(head, "jawOpen", 1 + peak) == pytest.approx(jaw[peak], abs=0.011)


def test_the_scene_range_covers_the_result(addon, result):
    head = mesh_with_keys("Head", ARKIT)
    activate(head)
    scene = bpy.context.scene
    scene.frame_end = 50
    _, notes, _ = apply(addon, result, head, start=20, extend_range=False)
    assert scene.frame_end == 50
    _, notes, _ = apply(addon, result, head, start=20)
    assert scene.frame_end == 20 + result.num_frames - 1 and f"frame {scene.frame_end}" in notes[-1]


def test_stepped_mouths_and_a_2d_mouth_index(addon, result):
    # A sprite mouth: an image empty whose frame offset picks the drawing, Rhubarb order.
    board = bpy.data.objects.new("Mouth", None)
    bpy.context.scene.collection.objects.link(board)
    board.empty_display_type = "IMAGE"
    board.steadytalk.use_mouth_index = True
    board.steadytalk.mouth_index_path = "image_user.frame_offset"
    activate(board)
    _, _, plan = apply(addon, result, board, hold=3)
    assert plan.reason == "Rhubarb mouth index on Mouth.image_user.frame_offset"
    curve = extension_module("keying").action_fcurves(board.animation_data.action)[0]
    assert curve.data_path == "image_user.frame_offset"
    frames = np.array([k.co[0] for k in curve.keyframe_points])
    assert all(k.interpolation == "CONSTANT" for k in curve.keyframe_points)
    assert (np.diff(frames) >= 3).all()  # every drawing held 3 frames at least
    shown = set()
    for f in range(1, result.num_frames, 2):
        bpy.context.scene.frame_set(f)
        shown.add(board.image_user.frame_offset)
    assert shown <= set(range(9)) and len(shown) >= 4 and 0 in shown  # X (rest) is drawing 0
    closed = "XABCDEFGH".index("A")  # Rhubarb A: the closed mouth of P, B, M
    bilabials = frames_of(result, {"P", "B", "M"})
    assert sum(1 for f in bilabials if _offset_at(board, 1 + f) == closed) >= len(bilabials) // 2

    # Stepped keys on a shape-key viseme rig: one viseme at a time, at full weight.
    head = mesh_with_keys("Head", RPM_VISEMES)
    activate(head)
    apply(addon, result, head, hold=2)
    for f in (10, 40, 80):
        bpy.context.scene.frame_set(f)
        weights = [k.value for k in head.data.shape_keys.key_blocks[1:]]
        assert sorted(np.round(weights, 5))[-2:] == [0.0, 1.0]


def _offset_at(obj, frame: int) -> int:
    bpy.context.scene.frame_set(frame)
    return obj.image_user.frame_offset


def test_overlapping_lines_of_one_character_get_their_own_nla_tracks(addon, result):
    head, teeth, _ = rpm_character()
    activate(head)
    length = result.num_frames
    apply(addon, result, head, start=100, batch=True, audio_name="later")
    apply(addon, result, head, start=10, batch=True, audio_name="earlier")  # overlaps the later line
    for obj in (head, teeth):
        tracks = [t for t in obj.data.shape_keys.animation_data.nla_tracks if t.name.startswith("Steady Talk")]
        spans = sorted((s.frame_start, s.frame_end) for t in tracks for s in t.strips)
        assert spans == [(10, 10 + length - 1), (100, 100 + length - 1)]  # full length, slots or not
        for track in tracks:  # no two strips of one track overlap
            ordered = sorted((s.frame_start, s.frame_end) for s in track.strips)
            assert all(a[1] < b[0] for a, b in zip(ordered, ordered[1:], strict=False))
    jaw = result.smoothed[:, CHANNELS.index("jawOpen")]
    peak = int(np.argmax(jaw[:80]))
    assert value_at(teeth, "jawOpen", 10 + peak) > 0.1  # the earlier line shows before the later starts
    # Once the earlier line has ended, the later one shows, not the earlier one's held last value.
    k = length - 88 + int(np.argmax(jaw[length - 88 :]))
    assert jaw[k] > 0.15 and abs(jaw[k] - jaw[-1]) > 0.1
    assert value_at(head, "jawOpen", 100 + k) == pytest.approx(jaw[k], abs=0.011)


def test_the_panel_shows_the_character_and_the_dialogue_strips(addon, result, demo_wav):
    head, teeth, _ = rpm_character()
    activate(head)
    ui = extension_module("ui")
    panel = type("Panel", (), {"layout": RecordingLayout()})()
    ui.STEADYTALK_PT_main.draw(panel, bpy.context)
    lines = panel.layout.lines
    assert "Auto: ARKit: 31 of 31 mouth shapes" in lines
    assert "Driven: Wolf3D_Head: 33 keys; Wolf3D_Teeth: 4 keys" in lines
    # Empty keys are listed, not counted; a strip shows who speaks it.
    blank = mesh_with_keys("Blank_Head", ["jawOpen", "mouthClose", "viseme_aa"], empty=("jawOpen", "mouthClose"))
    activate(blank)
    panel.layout = RecordingLayout()
    ui.STEADYTALK_PT_main.draw(panel, bpy.context)
    assert "Move no vertex (not driven): jawOpen, mouthClose" in panel.layout.lines
    assert any(line.startswith("Auto: Meta/Oculus visemes: 1 of 14") for line in panel.layout.lines)
    apply(addon, result, blank)
    panel.layout = RecordingLayout()
    ui.STEADYTALK_PT_main.draw(panel, bpy.context)
    assert "Result: SteadyTalk demo" in panel.layout.lines
    if sound_strips_supported():
        strips = addon.strips_of(bpy.context.scene.sequence_editor_create())
        strips.new_sound("wolf3d_head line 1", str(demo_wav), 1, 1)
        panel.layout = RecordingLayout()
        ui.STEADYTALK_PT_main.draw(panel, bpy.context)
        assert "Dialogue Strips" in panel.layout.lines and "-> Wolf3D_Head" in panel.layout.lines


def test_a_new_mesh_in_an_old_ones_place_is_measured_again(addon):
    """The empty-key check is cached for the panel; a mesh made where a deleted one was (same
    memory, same counts, other shapes) must not inherit its answer."""
    character = extension_module("character")
    for round_, empty in enumerate((("jawOpen",), ())):
        head = mesh_with_keys("Head", ["jawOpen", "mouthClose"], empty=empty)
        activate(head)
        assert ("jawOpen" in character.plan_for(head).still.get("Head", [])) == bool(empty), round_
        mesh = head.data
        bpy.data.objects.remove(head)
        bpy.data.meshes.remove(mesh)
