"""The operators end to end on characters, in the real ``bpy`` module against a real backend:
Lip-sync All Sound Strips (each strip on its character, failures isolated, cancel), and one
undo step for a whole character's result."""

from __future__ import annotations

import re
import shutil

import pytest

bpy = pytest.importorskip("bpy")

from blender_rigs import FPS, activate, armature, mesh_with_keys, skin, sound_strips_supported, value_at  # noqa: E402
from conftest import extension_module, register_addon  # noqa: E402

from steadytalk_shared.schema import CHANNELS  # noqa: E402

RPM_VISEMES = [f"viseme_{n}" for n in "sil PP FF TH DD kk CH SS nn RR aa E I O U".split()]


@pytest.fixture
def link(backend_process):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.scene.render.fps, bpy.context.scene.render.fps_base = int(FPS), 1
    package = register_addon(backend_process[1])
    link = extension_module("backend_link")
    yield link
    link.cancel_current()
    link.wait(60)
    package.unregister()


def two_characters():
    rig = armature("Alice")
    head = skin(mesh_with_keys("Alice_Head", list(CHANNELS)), rig)
    teeth = skin(mesh_with_keys("Alice_Teeth", ["jawOpen", "mouthClose"]), rig)
    bob = mesh_with_keys("Bob", RPM_VISEMES, offset=(3, 0, 0))
    return rig, head, teeth, bob


def steady_strips(obj) -> list[tuple[int, str]]:
    animation = obj.data.shape_keys.animation_data
    return sorted(
        (int(s.frame_start), s.action.name)
        for t in animation.nla_tracks
        if t.name.startswith("Steady Talk")
        for s in t.strips
    )


def test_lipsync_all_sound_strips_on_their_characters(link, demo_wav, demo_transcript, tmp_path):
    if not sound_strips_supported():
        pytest.skip("this bpy build has no Audaspace, so it cannot make sound strips")
    scene = bpy.context.scene
    rig, head, teeth, bob = two_characters()
    strips = extension_module("lipsync").strips_of(scene.sequence_editor_create())
    again = tmp_path / "again.wav"
    shutil.copy(demo_wav, again)
    strips.new_sound("alice hello", str(demo_wav), 1, 10)
    strips.new_sound("Bob answers", str(demo_wav), 2, 300)
    strips.new_sound("second line", str(again), 1, 600).steadytalk_target = head  # named by hand
    strips.new_sound("narrator", str(demo_wav), 3, 900)  # nobody of that name
    broken = strips.new_sound("alice broken", str(demo_wav), 1, 1200)
    notes = tmp_path / "notes.wav"
    notes.write_text("not audio")
    broken.sound.filepath = str(notes)
    bpy.data.texts.new("alice hello").write(demo_transcript)  # the strip's transcript
    assert bpy.ops.steadytalk.lipsync_all_strips() == {"FINISHED"}
    link.wait(300)
    level, message = link.last_message
    assert level == "INFO" and message.startswith("Lip-synced 3 of 5 sound strips"), message
    assert "narrator: no character" in message and "alice broken: Backend:" in message
    assert steady_strips(head) == [(10, "SteadyTalk alice hello"), (600, "SteadyTalk second line")]
    assert [f for f, _ in steady_strips(teeth)] == [10, 600]  # the teeth follow every line
    assert steady_strips(bob) == [(300, "SteadyTalk Bob answers")]
    peak = frames_of_result(head)
    assert value_at(head, "jawOpen", 10 + peak) > 0.15
    assert value_at(teeth, "jawOpen", 10 + peak) == pytest.approx(value_at(head, "jawOpen", 10 + peak), abs=1e-6)
    assert value_at(head, "jawOpen", 600 + peak) > 0.15  # the second line plays too
    assert max(value_at(bob, "viseme_aa", 300 + f) for f in range(0, 150, 3)) > 0.3
    assert scene.frame_end >= 600 + 150
    # Again: the same strips' results are replaced, not added; no sound strip was added.
    assert bpy.ops.steadytalk.lipsync_all_strips() == {"FINISHED"}
    link.wait(300)
    assert len(steady_strips(head)) == 2 and len(steady_strips(bob)) == 1
    assert len(list(strips)) == 5


def frames_of_result(head) -> int:
    """The widest jaw opening of the head's first result, in frames from its start."""
    keying = extension_module("keying")
    strip = min(
        (s for t in head.data.shape_keys.animation_data.nla_tracks for s in t.strips), key=lambda s: s.frame_start
    )
    slot = getattr(strip, "action_slot", None)
    jaw = next(fc for fc in keying.slot_fcurves(strip.action, slot) if "jawOpen" in fc.data_path)
    first, last = (int(v) for v in jaw.range())
    return max(range(first, last), key=jaw.evaluate) - int(strip.frame_start)


def test_cancelling_the_batch_changes_nothing(link, demo_wav):
    if not sound_strips_supported():
        pytest.skip("this bpy build has no Audaspace, so it cannot make sound strips")
    rig, head, teeth, bob = two_characters()
    strips = extension_module("lipsync").strips_of(bpy.context.scene.sequence_editor_create())
    for n in range(3):
        strips.new_sound(f"alice {n}", str(demo_wav), 1, 10 + 300 * n)
    assert bpy.ops.steadytalk.lipsync_all_strips() == {"FINISHED"}
    assert bpy.ops.steadytalk.cancel() == {"FINISHED"}
    link.wait(120)
    assert link.last_message[0] == "WARNING" and "cancelled" in link.last_message[1]
    assert head.data.shape_keys.animation_data is None and teeth.data.shape_keys.animation_data is None


def test_nothing_to_batch_is_a_message(link):
    with pytest.raises(RuntimeError, match="no sound strips"):
        bpy.ops.steadytalk.lipsync_all_strips()


def test_one_undo_step_removes_the_whole_characters_result(link, demo_wav):
    rig, head, teeth, bob = two_characters()
    activate(teeth)
    bpy.ops.ed.undo_push(message="characters added")
    scene = bpy.context.scene
    scene.steadytalk.audio_path, scene.steadytalk.add_sound_strip = str(demo_wav), False
    assert bpy.ops.steadytalk.lipsync() == {"FINISHED"}
    link.wait(120)
    level, message = link.last_message
    assert level == "INFO" and re.search(r"Alice_Teeth: 2 keys; Alice_Head: \d\d keys animated", message), message
    assert "at rest all through, not keyed" in message  # the blinks
    assert bpy.data.objects["Alice_Head"].steadytalk.result_action is not None
    bpy.ops.ed.undo()
    for name in ("Alice_Head", "Alice_Teeth"):
        obj = bpy.data.objects[name]  # undo reloads the data: fetch it again
        animation = obj.data.shape_keys.animation_data
        assert obj.steadytalk.result_action is None and (animation is None or animation.action is None)
    assert not [a for a in bpy.data.actions if a.name.startswith("SteadyTalk")]
    bpy.ops.ed.redo()
    assert bpy.data.objects["Alice_Teeth"].steadytalk.result_action is not None
