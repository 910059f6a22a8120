"""The Steady Talk panel (3D View sidebar) and the Add > Mesh menu entry."""

from __future__ import annotations

import bpy

from . import backend_link, batch, character, lipsync

MAX_UNMATCHED_SHOWN = 8
MAX_STRIPS_SHOWN = 12


class STEADYTALK_UL_mapping(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):  # noqa: PLR0913
        row = layout.row(align=True)
        row.prop(item, "source", text="", emboss=False)
        row.prop(item, "object", text="")
        owner = item.object or (data.id_data if isinstance(data.id_data, bpy.types.Object) else None)
        key = owner.data.shape_keys if owner is not None and owner.type == "MESH" else None
        if key is not None:
            row.prop_search(item, "target", key, "key_blocks", text="")
        else:
            row.prop(item, "target", text="")
        row.prop(item, "scale", text="")


def _names(names: list[str], limit: int = MAX_UNMATCHED_SHOWN) -> str:
    more = f" +{len(names) - limit}" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def draw_heard(layout: bpy.types.UILayout, text: str, width: int = 48) -> None:
    """The words recognized in the last lip-sync, wrapped, with the button that makes them editable."""
    column = layout.column(align=True)
    column.label(text="Heard:", icon="OUTLINER_OB_SPEAKER")
    line = ""
    for word in text.split():
        if len(line) + len(word) + 1 > width:
            column.label(text=line)
            line = ""
        line = f"{line} {word}".strip()
    if line:
        column.label(text=line)
    column.operator("steadytalk.use_as_transcript", icon="TEXT")


def draw_character(layout: bpy.types.UILayout, context: bpy.types.Context, obj: bpy.types.Object) -> None:
    """What lip-sync will drive on the active object's character, and why."""
    selected = [o for o in context.selected_objects if o != obj]
    try:
        plan = character.plan_for(obj, selected)
    except Exception as exc:  # drawing must never fail; the operator reports the real error
        layout.label(text=f"Cannot read the rig: {exc}", icon="ERROR")
        return
    for i, line in enumerate(_wrap(plan.reason, 60)):
        layout.label(text=line, icon="INFO" if i == 0 else "BLANK1")
    if plan.targets:
        for i, line in enumerate(_wrap(f"Driven: {plan.summary()}", 60)):
            layout.label(text=line, icon="CHECKMARK" if i == 0 else "BLANK1")
    elif not obj.steadytalk.use_mouth_index:
        layout.label(text="Nothing to drive on this character", icon="ERROR")
    if plan.unmatched and plan.targets:
        layout.label(text=f"No target: {_names(plan.unmatched)}", icon="ERROR")
    empty = sorted({k for keys in plan.still.values() for k in keys})
    if empty:
        layout.label(text=f"Move no vertex (not driven): {_names(empty)}", icon="ERROR")


class STEADYTALK_PT_main(bpy.types.Panel):
    bl_label = "Steady Talk"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Steady Talk"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.steadytalk
        obj = context.active_object

        box = layout.box()
        box.label(text="Character", icon="SHAPEKEY_DATA")
        row = box.row(align=True)
        row.operator("steadytalk.add_face_rig", icon="ADD")
        row.operator("steadytalk.load_avatar", icon="USER")
        box.operator("steadytalk.portrait_rig", icon="IMAGE_DATA")
        if obj is None:
            box.label(text="Select the face mesh or armature of a character", icon="INFO")
        else:
            rig = obj.steadytalk
            box.prop(rig, "preset")
            box.prop(rig, "use_custom_mapping")
            if rig.use_custom_mapping:
                row = box.row()
                row.template_list("STEADYTALK_UL_mapping", "", rig, "mapping", rig, "mapping_index", rows=4)
                column = row.column(align=True)
                column.operator("steadytalk.mapping_add", icon="ADD", text="")
                column.operator("steadytalk.mapping_remove", icon="REMOVE", text="")
            row = box.row(align=True)
            row.operator("steadytalk.mapping_from_preset", icon="PRESET")
            row.operator("steadytalk.read_vrm_expressions", icon="FILE")
            draw_character(box, context, obj)
            box.prop(rig, "use_mouth_index")
            if rig.use_mouth_index:
                row = box.row(align=True)
                row.prop(rig, "mouth_index_path", text="")
                row.prop(rig, "mouth_index_order", text="")

        box = layout.box()
        box.label(text="Audio", icon="SOUND")
        box.prop(settings, "source", expand=True)
        if settings.source == "FILE":
            box.prop(settings, "audio_path", text="")
            box.prop(settings, "add_sound_strip")
        elif context.scene.sequence_editor is not None:
            box.prop_search(settings, "sound_strip", context.scene.sequence_editor, lipsync.ALL_STRIPS_PROPERTY)
        else:
            box.label(text="This scene has no sequencer strips", icon="INFO")
        box.prop(settings, "transcript_source")
        if settings.transcript_source == "TYPED":
            box.prop(settings, "transcript", text="")
        elif settings.transcript_source == "TEXT":
            box.prop(settings, "transcript_text", text="")
        if settings.recognized_text:
            draw_heard(box, settings.recognized_text)
        row = box.row(align=True)
        row.prop(settings, "start")
        if settings.start == "CUSTOM":
            row.prop(settings, "start_frame", text="")

        box = layout.box()
        box.label(text="Keys", icon="KEYINGSET")
        box.prop(settings, "smoothing_strength")
        row = box.row(align=True)
        row.prop(settings, "key_mode", expand=True)
        if settings.key_mode == "REDUCED":
            box.prop(settings, "tolerance")
        elif settings.key_mode == "STEPPED":
            box.prop(settings, "hold_frames")
        row = box.row(align=True)
        row.prop(settings, "push_to_nla")
        row.prop(settings, "extend_range")

        job = backend_link.current()
        if job is not None and not job.finished:
            fraction, stage = job.snapshot()
            row = layout.row(align=True)
            if hasattr(row, "progress"):  # Blender 4.0+
                row.progress(factor=fraction, type="BAR", text=f"{job.label}: {stage}")
            else:
                row.label(text=f"{job.label}: {stage} {fraction:.0%}")
            row.operator("steadytalk.cancel", text="", icon="CANCEL")
        else:
            layout.operator("steadytalk.lipsync", icon="PLAY_SOUND")
            draw_strips(layout, context)
            box = layout.box()
            box.label(text="Talking Portrait (picture + the audio above)", icon="IMAGE_DATA")
            box.prop(settings, "portrait_video")
            box.operator("steadytalk.portrait_video", icon="SEQUENCE")
            if obj is not None and obj.get("steadytalk_avatar"):
                box = layout.box()
                box.label(text="Photoreal", icon="RENDER_ANIMATION")
                box.prop(settings, "photoreal_dir")
                box.operator("steadytalk.render_photoreal", icon="RENDER_ANIMATION")

        if obj is not None and obj.steadytalk.result_action is not None:
            box = layout.box()
            box.label(text=f"Result: {obj.steadytalk.result_action.name}", icon="ACTION")
            box.prop(obj.steadytalk, "smoothing_strength", text="Re-smooth")

        level, text = backend_link.last_message
        if text:
            icon = {"ERROR": "ERROR", "WARNING": "ERROR"}.get(level, "INFO")
            for i, line in enumerate(_wrap(text, 60)):
                layout.label(text=line, icon=icon if i == 0 else "BLANK1")


def draw_strips(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    """The sequencer's dialogue strips, each with who speaks it, and the batch button."""
    strips = batch.dialogue_strips(context.scene)
    if not strips:
        return
    box = layout.box()
    box.label(text="Dialogue Strips", icon="SEQUENCE")
    for strip in strips[:MAX_STRIPS_SHOWN]:
        row = box.row(align=True)
        row.label(text=strip.name)
        row.prop(strip, "steadytalk_target", text="")
        if strip.steadytalk_target is None:
            guess = batch.strip_target(context.scene, strip)
            row.label(text=f"-> {guess.name}" if guess else "-> nobody", icon="LINKED" if guess else "ERROR")
    if len(strips) > MAX_STRIPS_SHOWN:
        box.label(text=f"... and {len(strips) - MAX_STRIPS_SHOWN} more")
    box.operator("steadytalk.lipsync_all_strips", icon="PLAY_SOUND")


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines


def menu_add_face_rig(self, context: bpy.types.Context) -> None:
    self.layout.operator("steadytalk.add_face_rig", icon="SHAPEKEY_DATA")


CLASSES = (STEADYTALK_UL_mapping, STEADYTALK_PT_main)
