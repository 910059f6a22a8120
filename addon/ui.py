"""The Steady Talk panel (3D View sidebar) and the Add > Mesh menu entry."""

from __future__ import annotations

import bpy

from . import backend_link, lipsync

MAX_UNMATCHED_SHOWN = 8


class STEADYTALK_UL_mapping(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):  # noqa: PLR0913
        row = layout.row(align=True)
        row.prop(item, "source", text="", emboss=False)
        key = data.id_data.data.shape_keys if isinstance(data.id_data, bpy.types.Object) else None
        if key is not None:
            row.prop_search(item, "target", key, "key_blocks", text="")
        else:
            row.prop(item, "target", text="")
        row.prop(item, "scale", text="")


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
        box.label(text="Rig", icon="SHAPEKEY_DATA")
        row = box.row(align=True)
        row.operator("steadytalk.add_face_rig", icon="ADD")
        row.operator("steadytalk.load_avatar", icon="USER")
        if obj is None or obj.type != "MESH":
            box.label(text="Select a mesh with shape keys", icon="INFO")
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
            box.operator("steadytalk.mapping_from_preset", icon="PRESET")
            if obj.data.shape_keys is not None:
                preset, targets, unmatched = lipsync.rig_targets(obj)
                box.label(text=f"{len(targets)} of {len(preset.sources)} driven", icon="CHECKMARK")
                if unmatched:
                    shown = ", ".join(unmatched[:MAX_UNMATCHED_SHOWN])
                    more = f" +{len(unmatched) - MAX_UNMATCHED_SHOWN}" if len(unmatched) > MAX_UNMATCHED_SHOWN else ""
                    box.label(text=f"No target: {shown}{more}", icon="ERROR")

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
        box.prop(settings, "push_to_nla")

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
            if obj is not None and obj.get("steadytalk_avatar"):
                box = layout.box()
                box.label(text="Photoreal", icon="RENDER_ANIMATION")
                box.prop(settings, "photoreal_dir")
                box.operator("steadytalk.render_photoreal", icon="RENDER_ANIMATION")

        if obj is not None and obj.type == "MESH" and obj.steadytalk.result_action is not None:
            box = layout.box()
            box.label(text=f"Result: {obj.steadytalk.result_action.name}", icon="ACTION")
            box.prop(obj.steadytalk, "smoothing_strength", text="Re-smooth")

        level, text = backend_link.last_message
        if text:
            icon = {"ERROR": "ERROR", "WARNING": "ERROR"}.get(level, "INFO")
            for i, line in enumerate(_wrap(text, 60)):
                layout.label(text=line, icon=icon if i == 0 else "BLANK1")


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
