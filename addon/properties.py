"""The add-on's settings: per scene (the audio and how to key it) and per rig (mapping, result).

Both are saved with the .blend, so a custom mapping and a result's cached curves travel with
the file.
"""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..shared.mapping import AUTO, DEFAULT_PRESET, PRESETS

# Explicit numbers: a .blend stores the number, and files saved before Auto existed keep theirs.
PRESET_ITEMS = [
    (AUTO, "Auto", "Find the convention from the shape keys and VRM expressions (the panel says why)", "", 99),
    *((p.id, p.label, p.description, "", number) for number, p in enumerate(PRESETS.values())),
]


class STEADYTALK_PG_mapping_entry(bpy.types.PropertyGroup):
    source: StringProperty(name="Source", description="ARKit channel or viseme the curve comes from")
    object: PointerProperty(
        type=bpy.types.Object,
        name="Mesh",
        description="The mesh whose shape key this is (empty: every mesh that has it)",
    )
    target: StringProperty(name="Shape Key", description="Shape key of this rig that the curve drives")
    scale: FloatProperty(name="Scale", default=1.0, min=0.0, soft_max=2.0, description="Multiplies the curve")


def _resmooth(self: STEADYTALK_PG_rig, context: bpy.types.Context) -> None:
    from . import lipsync

    obj = self.id_data
    if isinstance(obj, bpy.types.Object) and obj.steadytalk.result_action is not None:
        lipsync.resmooth(obj, self.smoothing_strength)


class STEADYTALK_PG_rig(bpy.types.PropertyGroup):
    preset: EnumProperty(
        name="Rig Convention", items=PRESET_ITEMS, default=DEFAULT_PRESET, description="How this rig names its shapes"
    )
    use_mouth_index: BoolProperty(
        name="Mouth Index",
        description="Key a number property of this object with the shown mouth shape (Rhubarb A-H, X), for 2D rigs",
    )
    mouth_index_path: StringProperty(
        name="Property",
        default='["mouth_shape"]',
        description='Data path on this object: a custom property (["mouth_shape"]) or image_user.frame_offset',
    )
    mouth_index_order: StringProperty(
        name="Order",
        default="XABCDEFGH",
        description="The Rhubarb shapes in the order of your drawings: the index is the letter's position",
    )
    use_custom_mapping: BoolProperty(
        name="Custom Mapping", description="Drive the shape keys listed below instead of matching names"
    )
    mapping: CollectionProperty(type=STEADYTALK_PG_mapping_entry)
    mapping_index: IntProperty()
    mapping_origin: StringProperty(name="Filled From", description="What the custom mapping was filled from")
    result_action: PointerProperty(type=bpy.types.Action, name="Result", description="The last lip-sync result")
    head_on_object: BoolProperty(
        name="Head on Object",
        description="A character without an armature: the head motion turns this object (about its origin)",
    )
    head_bone: StringProperty(
        name="Head Bone",
        description="Bone the head motion turns (empty: found by name: mixamorig:Head, head, J_Bip_C_Head, Head)",
    )
    smoothing_strength: FloatProperty(
        name="Smoothing",
        default=1.0,
        min=0.0,
        max=10.0,
        soft_max=3.0,
        description="Strength of the adaptive smoothing; re-keys the result from its cached raw curves (no backend)",
        update=_resmooth,
    )


class STEADYTALK_PG_scene(bpy.types.PropertyGroup):
    source: EnumProperty(
        name="Audio",
        items=[
            ("FILE", "File", "An audio file (WAV, FLAC, OGG, MP3)"),
            ("STRIP", "Sound Strip", "A sound strip of the Video Sequencer"),
        ],
        default="FILE",
    )
    audio_path: StringProperty(name="Audio File", subtype="FILE_PATH")
    sound_strip: StringProperty(name="Sound Strip", description="Sound strip of this scene's sequencer")
    # Explicit numbers: a .blend saved before Automatic existed keeps the choice it stored.
    transcript_source: EnumProperty(
        name="Transcript",
        items=[
            ("AUTO", "Automatic", "Recognize the words, then align them (no typing needed)", 3),
            ("TYPED", "Typed", "The words typed here", 1),
            ("TEXT", "Text Block", "The words in a text block (Use as Transcript makes one to correct)", 2),
            ("NONE", "None (phones)", "Recognize phones only, no words (the old path)", 0),
        ],
        default="AUTO",
        description="The words spoken: recognized automatically, or typed for exact words",
    )
    transcript: StringProperty(name="Words")
    recognized_text: StringProperty(
        name="Heard",
        description="The words the backend recognized in the last lip-sync (Use as Transcript to fix them)",
    )
    transcript_text: PointerProperty(type=bpy.types.Text, name="Text Block")
    start: EnumProperty(
        name="Start",
        items=[
            ("AUTO", "Automatic", "The sound strip's start, or the current frame for a file"),
            ("CURRENT", "Current Frame", "The current frame"),
            ("CUSTOM", "Frame", "The frame given here"),
        ],
        default="AUTO",
    )
    start_frame: IntProperty(name="Frame", default=1)
    add_sound_strip: BoolProperty(
        name="Add Sound Strip", default=True, description="Add the audio file to the sequencer so playback is in sync"
    )
    photoreal_dir: StringProperty(
        name="Output",
        subtype="DIR_PATH",
        default="//photoreal/",
        description="Folder of the photoreal frames (frame_NNNNNN.png); rendering again fills in only missing ones",
    )
    portrait_video: StringProperty(
        name="Video",
        subtype="FILE_PATH",
        default="//talking_portrait.mp4",
        description="Where Talking Portrait Video writes the mp4 it puts in the sequencer (replaced by a rerun)",
    )
    push_to_nla: BoolProperty(name="Push to NLA", description="Put the result in an NLA strip instead of the action")
    key_mode: EnumProperty(
        name="Keys",
        items=[
            ("REDUCED", "Reduced", "Sparse Bezier keys within the tolerance: easy to edit"),
            ("DENSE", "Every Frame", "One key per frame: exactly the curves"),
            ("STEPPED", "Stepped", "Constant keys, one mouth shape at a time held a minimum of frames (sprite mouths)"),
        ],
        default="REDUCED",
    )
    hold_frames: IntProperty(
        name="Minimum Hold", default=2, min=1, max=24, description="Frames each stepped mouth shape is held at least"
    )
    extend_range: BoolProperty(
        name="Extend Scene Range", default=True, description="Make the scene's end frame cover the result"
    )
    tolerance: FloatProperty(
        name="Tolerance", default=0.01, min=0.0005, max=0.2, precision=4, description="Largest error of reduced keys"
    )
    smoothing_strength: FloatProperty(
        name="Smoothing", default=1.0, min=0.0, max=10.0, soft_max=3.0, description="Adaptive smoothing strength"
    )
    # The whole face (schema v2). A part turned off is not keyed: the rig's own animation stays.
    use_blinks: BoolProperty(name="Blinks", default=True, description="Blink with the speech (eyeBlinkLeft/Right)")
    blink_rate: FloatProperty(
        name="Rate", default=0.0, min=0.0, max=120.0, description="Blinks per minute; 0: the natural rate of the model"
    )
    use_gaze: BoolProperty(name="Gaze", default=True, description="Fixations and glances (the eyeLook shapes)")
    use_brows: BoolProperty(name="Brows", default=True, description="Brows raised on accents (browInnerUp, ...)")
    expressiveness: FloatProperty(
        name="Expressiveness", default=1.0, min=0.0, max=5.0, soft_max=2.0, description="Scale of brows and gaze"
    )
    head_motion: FloatProperty(
        name="Head Motion", default=1.0, min=0.0, max=5.0, soft_max=2.0,
        description="Scale of the head motion, keyed on the head bone or the rig object; 0: not keyed",
    )  # fmt: skip
    face_style: EnumProperty(
        name="Style",
        items=[
            ("lively", "Lively", "Head motion learned from the Obama addresses"),
            ("calm", "Calm", "Head motion learned from GRID s1, who reads sitting still"),
            (
                "AVATAR",
                "Avatar's Own",
                "Blinks, gaze, brows and head motion learned from the avatar's own video (a rig made by Load "
                "Avatar; other characters get Lively)",
            ),
        ],
        default="lively",
    )
    face_seed: IntProperty(name="Seed", default=17, min=0, description="Same seed, same blinks, gaze and head")


CLASSES = (STEADYTALK_PG_mapping_entry, STEADYTALK_PG_rig, STEADYTALK_PG_scene)


# Sound strips name the character they are spoken by (Lip-sync All Sound Strips); Blender 4.4
# renamed the strip type from Sequence to Strip.
STRIP_TYPE = getattr(bpy.types, "Strip", None) or bpy.types.Sequence


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Object.steadytalk = PointerProperty(type=STEADYTALK_PG_rig)
    bpy.types.Scene.steadytalk = PointerProperty(type=STEADYTALK_PG_scene)
    STRIP_TYPE.steadytalk_target = PointerProperty(
        type=bpy.types.Object,
        name="Character",
        description="Who speaks this strip (empty: a rig whose name the strip's name contains)",
    )


def unregister() -> None:
    del STRIP_TYPE.steadytalk_target
    del bpy.types.Scene.steadytalk
    del bpy.types.Object.steadytalk
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
