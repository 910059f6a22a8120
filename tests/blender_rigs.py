"""Small third-party-like rigs the Blender tests build themselves (real ``bpy`` data).

Each stands for a kind of character users bring: a head and teeth under one armature (Ready
Player Me), Oculus visemes in RPM spelling, a two-morph rig, a rig whose ``jawOpen`` is empty
(VRoid). Shape keys move their vertices unless listed as empty.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

FPS = 25.0  # the scene rate the tests fetch curves at
PROBE_WAV = Path(__file__).resolve().parents[1] / "backend" / "data" / "demo_speech.wav"


def mesh_with_keys(
    name: str,
    keys: list[str],
    empty: tuple[str, ...] = (),
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
    collection: bpy.types.Collection | None = None,
) -> bpy.types.Object:
    """A quad mesh with a Basis and ``keys`` (each lifts the quad by a different height)."""
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([(x + offset[0], y + offset[1], offset[2]) for x in (0, 1) for y in (0, 1)], [], [(0, 1, 3, 2)])
    obj = bpy.data.objects.new(name, mesh)
    (collection or bpy.context.scene.collection).objects.link(obj)
    obj.shape_key_add(name="Basis", from_mix=False)
    for i, key_name in enumerate(keys):
        block = obj.shape_key_add(name=key_name, from_mix=False)
        block.value = 0.0  # Blender 5.0 makes new keys at 1.0
        if key_name not in empty:
            co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
            block.data.foreach_get("co", co)
            co[2::3] += 0.01 * (i + 1)
            block.data.foreach_set("co", co)
    return obj


def armature(name: str = "Armature", collection: bpy.types.Collection | None = None) -> bpy.types.Object:
    obj = bpy.data.objects.new(name, bpy.data.armatures.new(name))
    (collection or bpy.context.scene.collection).objects.link(obj)
    return obj


def skin(mesh: bpy.types.Object, rig: bpy.types.Object) -> bpy.types.Object:
    """Parent ``mesh`` to ``rig`` with an Armature modifier, as the glTF and FBX importers do."""
    mesh.parent = rig
    modifier = mesh.modifiers.new("Armature", "ARMATURE")
    modifier.object = rig
    return mesh


def activate(obj: bpy.types.Object, *selected: bpy.types.Object) -> None:
    bpy.context.view_layer.update()  # bpy 4.2 keeps a None in place of a just-removed object until then
    for other in bpy.context.view_layer.objects:
        if other is not None:
            other.select_set(False)
    for other in (obj, *selected):
        other.select_set(True)
    bpy.context.view_layer.objects.active = obj


def apply(lipsync, result, obj, start=1, **changes):
    """``lipsync.apply_result`` on ``obj``'s character with the panel's defaults, changed by ``changes``."""
    fields = dict(
        object_name=obj.name, start_frame=start, audio_name="demo", audio_path=None, add_sound_strip=False,
        push_to_nla=False, tolerance=0.01,
    ) | changes  # fmt: skip
    return lipsync.apply_result(bpy.context.scene, result, lipsync.ApplySettings(**fields))


def value_at(obj, key: str, frame: int) -> float:
    bpy.context.scene.frame_set(frame)
    return obj.data.shape_keys.key_blocks[key].value


def frames_of(result, phones: set[str]) -> list[int]:
    """Frames in the middle of the given phones (the ones the rig should show)."""
    return [int((p.start + p.end) / 2 * FPS) for p in result.phones if p.phone in phones]


def sound_strips_supported() -> bool:
    """The bpy 4.2 wheel is built without Audaspace, so it cannot make sound strips (Blender can)."""
    scene = bpy.data.scenes.new("probe")
    try:
        editor = scene.sequence_editor_create()
        strips = editor.strips if hasattr(editor, "strips") else editor.sequences
        strips.new_sound("p", str(PROBE_WAV), 1, 1)
        return True
    except RuntimeError:
        return False
    finally:
        bpy.data.scenes.remove(scene)


class RecordingLayout:
    """Stands in for Blender's UILayout (there is no window in the ``bpy`` module): records the
    labels, and checks every property and operator the panel names really exists."""

    def __init__(self, lines: list[str] | None = None) -> None:
        self.lines = [] if lines is None else lines

    def _nested(self, *args, **kwargs) -> RecordingLayout:
        return RecordingLayout(self.lines)

    box = row = column = split = _nested

    def label(self, text: str = "", icon: str = "NONE") -> None:
        self.lines.append(text)

    def prop(self, data, name: str, **kwargs) -> None:
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"

    def prop_search(self, data, name: str, search_data, search_name: str, **kwargs) -> None:
        self.prop(data, name)
        assert search_name in search_data.bl_rna.properties, search_name

    def operator(self, idname: str, **kwargs) -> None:
        module, _, name = idname.partition(".")
        assert hasattr(getattr(bpy.ops, module), name) and getattr(getattr(bpy.ops, module), name).idname()

    def template_list(self, list_type, list_id, data, name, active_data, active_name, **kwargs) -> None:
        self.prop(data, name)
        self.prop(active_data, active_name)

    def progress(self, **kwargs) -> None:
        pass
