"""Operators on a character's matching: the custom mapping (fill, add, remove) and Read VRM
Expressions, which builds the mapping from a .vrm file for avatars the plain glTF importer
brought in (their shape keys are ``target_0``..)."""

from __future__ import annotations

from pathlib import Path

import bpy

from . import character, vrm
from .backend_link import UserFacingError


def _active(context: bpy.types.Context) -> bpy.types.Object | None:
    return context.active_object


class _OnActiveRig:
    """Operators that edit the active object's Steady Talk settings."""

    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _active(context) is not None


def fill_mapping(obj: bpy.types.Object, plan: character.RigPlan) -> None:
    """The custom mapping of ``obj`` becomes what ``plan`` drives (a row names its mesh when the
    key is not on every member) plus an empty row for each source without a target."""
    settings = obj.steadytalk
    settings.mapping.clear()
    members = [bpy.data.objects[n] for n in plan.members if n in bpy.data.objects]
    rows: dict[tuple[str, str, float], set[str]] = {}
    for target in plan.targets:
        rows.setdefault((target.source, target.shape_key, target.scale), set()).add(target.object_name)
    everywhere = {m.name for m in members if m.data.shape_keys is not None}
    done = set()
    extra = [t.source for t in plan.targets if t.source not in plan.preset.sources]  # e.g. VRM blinks
    for source in dict.fromkeys([*plan.preset.sources, *extra]):
        for (row_source, key, scale), meshes in rows.items():
            if row_source != source:
                continue
            having = {m for m in everywhere if key in bpy.data.objects[m].data.shape_keys.key_blocks}
            for mesh in [None] if meshes >= having else sorted(meshes):
                entry = settings.mapping.add()
                entry.source, entry.target, entry.scale = source, key, scale
                entry.object = bpy.data.objects[mesh] if mesh else None
            done.add(source)
        if source not in done:
            settings.mapping.add().source = source
    settings.preset = plan.preset.id
    settings.mapping_origin = plan.reason.removeprefix("Auto: ")
    settings.use_custom_mapping = True


class STEADYTALK_OT_mapping_from_preset(_OnActiveRig, bpy.types.Operator):
    """Fill the custom mapping with what the convention finds on the character (empty rows: not found)"""

    bl_idname = "steadytalk.mapping_from_preset"
    bl_label = "Fill from Convention"

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = _active(context)
        settings = obj.steadytalk
        settings.use_custom_mapping = False  # match by convention, not by the mapping being replaced
        selected = [o for o in context.selected_objects if o != obj]
        fill_mapping(obj, character.plan_for(obj, selected, fresh=True))
        return {"FINISHED"}


class STEADYTALK_OT_mapping_add(_OnActiveRig, bpy.types.Operator):
    """Add a row to the custom mapping"""

    bl_idname = "steadytalk.mapping_add"
    bl_label = "Add Mapping Row"

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = _active(context).steadytalk
        settings.mapping.add()
        settings.mapping_index = len(settings.mapping) - 1
        return {"FINISHED"}


class STEADYTALK_OT_mapping_remove(_OnActiveRig, bpy.types.Operator):
    """Remove the selected row of the custom mapping"""

    bl_idname = "steadytalk.mapping_remove"
    bl_label = "Remove Mapping Row"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return super().poll(context) and len(context.active_object.steadytalk.mapping) > 0

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = _active(context).steadytalk
        settings.mapping.remove(settings.mapping_index)
        settings.mapping_index = max(0, min(settings.mapping_index, len(settings.mapping) - 1))
        return {"FINISHED"}


def read_vrm_mapping(obj: bpy.types.Object, path: str, selected=()) -> str:
    """Fill ``obj``'s custom mapping from a .vrm file's expressions; returns the report line."""
    try:
        expressions = vrm.read_expressions(bpy.path.abspath(path))
    except vrm.VrmError as exc:
        raise UserFacingError(f"{exc}. Choose the avatar's .vrm file.") from exc
    meshes = character.character_meshes(obj, list(selected))
    if not meshes:
        raise UserFacingError(f"{obj.name}'s character has no meshes with shape keys to bind the expressions to.")
    binds, missing = vrm.file_binds(expressions, meshes, Path(path).name)
    motion = {m.name: character.key_motion(m, fresh=True) for m in meshes}
    plan = character.bound_plan(obj.name, binds, meshes, motion)
    if not {t.source for t in plan.targets} & {"A", "I", "U", "E", "O"}:
        raise UserFacingError(
            f"{Path(path).name} binds no mouth expression (aa ih ou ee oh) to a shape key of "
            f"{', '.join(m.name for m in meshes)} that moves. Is it this avatar's file?"
        )
    fill_mapping(obj, plan)
    placed = ", ".join(f"{t.source}: {t.object_name}.{t.shape_key}" for t in plan.targets)
    lost = f"; not found: {', '.join(missing)}" if missing else ""
    return f"VRM {expressions.version} expressions of {Path(path).name}: {placed}{lost}"


class STEADYTALK_OT_read_vrm(_OnActiveRig, bpy.types.Operator):
    """Build the custom mapping from a VRM avatar's expressions (for an avatar imported as plain glTF)"""

    bl_idname = "steadytalk.read_vrm_expressions"
    bl_label = "Read VRM Expressions..."

    filepath: bpy.props.StringProperty(subtype="FILE_PATH")
    filter_glob: bpy.props.StringProperty(default="*.vrm;*.glb;*.gltf", options={"HIDDEN"})

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = _active(context)
        try:
            text = read_vrm_mapping(obj, self.filepath, [o for o in context.selected_objects if o != obj])
        except UserFacingError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, text)
        return {"FINISHED"}


CLASSES = (
    STEADYTALK_OT_mapping_from_preset,
    STEADYTALK_OT_mapping_add,
    STEADYTALK_OT_mapping_remove,
    STEADYTALK_OT_read_vrm,
)
