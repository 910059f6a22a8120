"""Applying a lip-sync result to a character, and re-smoothing it later without the backend.

Main thread only (it edits Blender data). A result drives every mesh of the character that has
matching shape keys (``character.plan_for``), and a 2D rig's mouth-shape property when it has
one; it is one result however many meshes: one action (4.4+, a slot per mesh; 4.2, one per
mesh), one sound strip, one undo step, one re-smooth. The raw curves are cached on its
action(s) (saved with the .blend), so the smoothing-strength slider re-runs the numpy adaptive
smoother (``shared/smoothing.py``) and rewrites the keys locally.

Only channels the result animates are keyed: a shape the engine leaves at rest all through
(the blinks) is not keyed flat, so the user's own animation of it plays on under the result.
What a run replaces: the character's earlier results (actions, NLA strips, sound strips); a
batch run only the results of the same strips. The user's own actions are pushed down onto
the NLA, never deleted (``results.py``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from ..shared import mapping
from ..shared.curves import LipsyncResult
from ..shared.schema import CHANNELS, SCHEMA_VERSION
from ..shared.smoothing import default_smoother
from . import character, head, keying, results
from .backend_link import UserFacingError
from .results import NLA_TRACK, SOUND_TAG, cached_raw  # noqa: F401  (the add-on's names for them)

AT_REST = 1e-4  # a channel whose values never leave 0 by more than this is not keyed
MOUTH_INDEX_ORDER = "XABCDEFGH"  # default order of the Rhubarb shapes in a 2D rig's mouth index


@dataclass(frozen=True)
class ApplySettings:
    """Everything the apply step needs, taken from the UI when the request starts."""

    object_name: str  # the active object: its character is driven
    start_frame: int
    audio_name: str
    audio_path: str | None  # a file to add as a sound strip; None when the audio is a strip already
    add_sound_strip: bool
    push_to_nla: bool
    tolerance: float | None  # None: dense keys
    selected: tuple[str, ...] = ()  # other selected objects: part of the character
    hold: int = 0  # > 0: stepped keys (Constant), each shape held at least this many frames
    extend_range: bool = True  # make the scene's end frame cover the result
    batch: bool = False  # one of several results per character (Lip-sync All Sound Strips)
    face_off: tuple[str, ...] = ()  # parts not keyed: "blinks", "gaze", "brows", "head"


# Blender 4.4 renamed the sequencer's ``sequences``/``sequences_all`` to ``strips``/``strips_all``.
STRIPS_PROPERTY, ALL_STRIPS_PROPERTY = (
    ("strips", "strips_all")
    if "strips" in bpy.types.SequenceEditor.bl_rna.properties
    else ("sequences", "sequences_all")
)
STRIP_TYPE = getattr(bpy.types, "Strip", None) or bpy.types.Sequence


def strips_of(editor: bpy.types.SequenceEditor) -> bpy.types.bpy_prop_collection:
    """Top-level strips of a sequencer."""
    return getattr(editor, STRIPS_PROPERTY)


def all_strips(editor: bpy.types.SequenceEditor) -> bpy.types.bpy_prop_collection:
    """Strips at every level (inside meta strips too)."""
    return getattr(editor, ALL_STRIPS_PROPERTY)


def shape_key_names(obj: bpy.types.Object) -> list[str]:
    """The rig's shape keys other than the basis."""
    return [k.name for k in obj.data.shape_keys.key_blocks[1:]] if obj.data.shape_keys else []


def scene_fps(scene: bpy.types.Scene) -> float:
    return scene.render.fps / scene.render.fps_base


def _objects(names) -> list[bpy.types.Object]:
    return [bpy.data.objects[n] for n in names if n in bpy.data.objects]


def check_character(active: bpy.types.Object | None, selected=(), fresh: bool = True) -> character.RigPlan:
    """The character's plan, or a UserFacingError saying what to do; a 2D rig with a mouth
    index property needs no shape keys."""
    if active is not None and active.steadytalk.use_mouth_index:
        path = mouth_index_target(active)  # raises when the property cannot be keyed
        plan = character.plan_for(active, list(selected), fresh)
        index = f"Rhubarb mouth index on {active.name}.{path.lstrip('.')}"
        plan.reason = f"{plan.reason}; {index}" if plan.targets else index
        return plan
    return character.check_plan(active, list(selected), fresh)


def mouth_index_target(obj: bpy.types.Object) -> str:
    """The data path of a 2D rig's mouth index (a custom property is made when missing)."""
    path = obj.steadytalk.mouth_index_path.strip()
    if path.startswith('["') and path.endswith('"]'):
        name = path[2:-2]
        if name not in obj.keys():
            obj[name] = 0
            obj.id_properties_ui(name).update(min=0, max=len(MOUTH_INDEX_ORDER) - 1)
        return path
    try:
        value = obj.path_resolve(path)
    except ValueError:
        value = None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise UserFacingError(
            f"The mouth index property {path!r} is not a number property of {obj.name}. "
            'Use a custom property (["mouth_shape"]) or e.g. image_user.frame_offset of an image empty.'
        )
    return path


# The sources of each part of the face the user may turn off.
FACE_PARTS = {
    "blinks": ("eyeBlinkLeft", "eyeBlinkRight"),
    "gaze": tuple(n for n in CHANNELS if n.startswith("eyeLook")),
    "brows": tuple(n for n in CHANNELS if n.startswith("brow")),
}


def build_channels(
    plan: character.RigPlan, smoothed: np.ndarray, meta: dict, head_track: np.ndarray | None = None
) -> list[keying.Channel]:
    """The result's channels: the shape keys of every member, a 2D mouth index, then the head.
    Parts of the face the user turned off (``meta["face_off"]``) are left out: not keyed."""
    sources = mapping.source_curves(plan.preset, smoothed)
    off = set(filter(None, str(meta.get("face_off", "")).split(",")))
    for part in off & set(FACE_PARTS):
        for name in FACE_PARTS[part]:
            sources.pop(name, None)
    hold = int(meta.get("hold", 0))
    if hold > 0:
        sources = mapping.stepped_curves(plan.preset, sources, hold)
    channels, flat = [], []
    for mesh in _objects(plan.members):
        targets = [(t.source, t.shape_key, t.scale) for t in plan.targets if t.object_name == mesh.name]
        for name, values in mapping.rig_curves(sources, targets).items():
            channel = keying.Channel(mesh.data.shape_keys, keying.shape_key_path(name), values, group=mesh.name)
            (channels if np.abs(values).max(initial=0.0) > AT_REST else flat).append(channel)
    holder = bpy.data.objects.get(plan.anchor)
    if holder is not None and holder.steadytalk.use_mouth_index:
        channels.append(keying.Channel(holder, mouth_index_target(holder), mouth_indices(holder, smoothed, hold)))
    if not channels and flat:  # silence: keep one channel so the result (and its slider) exists
        channels.append(flat[0])
    if head_track is not None and "head" not in off and np.abs(head_track).max(initial=0.0) > 0:
        target, _ = head.find_target(bpy.data.objects.get(plan.anchor))
        if target is not None:
            channels += head.head_channels(target, head_track)
    return channels


def mouth_indices(obj: bpy.types.Object, smoothed: np.ndarray, hold: int) -> np.ndarray:
    """Per frame, the position of the shown Rhubarb shape in the rig's order string."""
    rhubarb = mapping.PRESETS["RHUBARB"]
    weights = mapping.viseme_curves(rhubarb, smoothed)
    names = [v.name for v in rhubarb.visemes]
    shown = mapping.dominant_shapes(np.stack([weights[n] for n in names], axis=1), max(1, hold))
    order = obj.steadytalk.mouth_index_order.upper()
    lookup = np.array([order.index(n) if n in order else 0 for n in names], dtype=np.float32)
    return lookup[shown]


def _make_editable(owner: bpy.types.ID) -> None:
    """A library override's shape keys stay linked (animation on them would be lost on save):
    give the mesh an editable override of its own first."""
    if not isinstance(owner, bpy.types.Key) or (owner.library is None and owner.override_library is None):
        return
    mesh = owner.user
    users = [o for o in bpy.data.objects if o.data == mesh]
    obj = users[0] if users else None
    if obj is None or (obj.library is not None and obj.override_library is None):
        name = obj.name if obj is not None else mesh.name
        raise UserFacingError(
            f"{name} is linked from a library and cannot be animated. Make a library override first "
            "(Object > Library Override > Make > Selected & Content)."
        )
    if obj.data.override_library is None:
        obj.data.override_create(remap_local_usages=True)
    if obj.data.override_library.is_system_override:
        obj.data.override_library.is_system_override = False


def _all_owners(plan: character.RigPlan) -> list[bpy.types.ID]:
    owners = [m.data.shape_keys for m in _objects(plan.members) if m.data.shape_keys is not None]
    holder = bpy.data.objects.get(plan.anchor)
    target, _ = head.find_target(holder)
    extra = [o for o in (holder, target.owner if target else None) if o is not None]
    return [*owners, *{o.name: o for o in extra}.values()]


def write_result(
    plan: character.RigPlan, raw: np.ndarray, smoothed: np.ndarray, meta: dict, head_track: np.ndarray | None = None
) -> tuple[dict[bpy.types.ID, bpy.types.Action], set[str]]:
    """Replace the character's earlier results with keys of ``smoothed`` (T, CHANNELS).

    Returns ({datablock: action}, ids of the results it replaced)."""
    for mesh in _objects(plan.members):
        if any(t.object_name == mesh.name for t in plan.targets):
            _make_editable(mesh.data.shape_keys)
    channels = build_channels(plan, smoothed, meta, head_track)
    replaced = [
        p
        for p in results.placements(_all_owners(plan))
        if p.meta.get("id") == meta["id"]
        or p.meta.get("result") == meta["result"]
        or not (meta.get("batch") or p.meta.get("batch"))
    ]
    replaced_ids = {str(p.meta.get("id", "")) for p in replaced}
    results.remove(replaced)
    owners = {c.owner.as_pointer(): c.owner for c in channels}.values()
    for owner in owners:
        results.push_down_user_action(owner)
    plan.keyed = {}
    for channel in channels:
        if isinstance(channel.owner, bpy.types.Key):  # its group is its mesh's name
            plan.keyed[channel.group] = plan.keyed.get(channel.group, 0) + 1
    tolerance = float(meta.get("tolerance", 0.01))
    kind = meta.get("keys") or ("DENSE" if tolerance <= 0 else "REDUCED")  # results of 0.1.0 have no "keys"
    style = keying.KeyStyle(kind, tolerance)
    actions = keying.key_channels(meta["result"], channels, meta["start_frame"], style)
    results.store(actions.values(), meta, raw, head_track)
    if meta.get("nla"):
        results.place_in_nla(actions, int(meta["start_frame"]))
    for mesh in _objects(plan.members):
        if mesh.data.shape_keys in actions:
            mesh.steadytalk.result_action = actions[mesh.data.shape_keys]
    for name in (plan.anchor, meta.get("active", "")):
        other = bpy.data.objects.get(name)
        if other is not None and other.steadytalk.result_action is None and actions:
            other.steadytalk.result_action = next(iter(actions.values()))
    return actions, replaced_ids - {meta["id"]}


def apply_result(
    scene: bpy.types.Scene, result: LipsyncResult, settings: ApplySettings
) -> tuple[list[bpy.types.Action], list[str], character.RigPlan]:
    """Key ``result`` (its backend-smoothed curves) on the character and cache its raw curves.

    Returns the actions, notes for the user (a sound strip that could not be added, the scene
    range extended) and the plan that was keyed."""
    obj = bpy.data.objects.get(settings.object_name)
    if obj is None:
        raise UserFacingError(f"The rig {settings.object_name!r} was deleted before the lip-sync arrived.")
    plan = check_character(obj, _objects(settings.selected))
    if tuple(result.channels) != CHANNELS:
        raise UserFacingError("The backend sent curves of another schema; install the same release on both sides.")
    if settings.hold > 0:
        kind = "CONSTANT"
    else:
        kind = "DENSE" if settings.tolerance is None else "REDUCED"
    meta = {
        "id": uuid.uuid4().hex,
        "schema_version": SCHEMA_VERSION,  # the width of the cached raw curves
        "result": f"SteadyTalk {settings.audio_name}",
        "fps": float(result.fps),
        "frames": int(result.num_frames),
        "start_frame": int(settings.start_frame),
        "audio": settings.audio_name,
        "keys": kind,
        "tolerance": -1.0 if settings.tolerance is None else float(settings.tolerance),
        "hold": int(settings.hold),
        "nla": bool(settings.push_to_nla or settings.batch),
        "batch": bool(settings.batch),
        "mode": result.mode,
        "active": obj.name,
        "selected": "\n".join(settings.selected),
        "face_off": ",".join(settings.face_off),  # (ID properties hold no lists of strings)
    }
    actions, replaced = write_result(plan, result.raw, result.smoothed, meta, result.head)
    for member in [*_objects(plan.members), obj]:
        member.steadytalk["smoothing_strength"] = float(result.smoothing_strength)  # no callback: keys are fresh
    notes = []
    if "head" not in settings.face_off and np.abs(result.head).max(initial=0.0) > 0:
        target, why = head.find_target(obj)
        notes.append(f"head on {target.describe()}" if target is not None else why)
    editor = scene.sequence_editor
    if editor is not None and replaced:
        for strip in [s for s in strips_of(editor) if s.get(SOUND_TAG) in replaced]:
            strips_of(editor).remove(strip)
    if settings.audio_path is not None and settings.add_sound_strip:
        try:
            add_sound_strip(scene, settings.audio_path, settings.start_frame, result.num_frames, meta["id"])
        except RuntimeError as exc:  # e.g. a Blender built without audio; the keys are still good
            notes.append(f"the sound strip could not be added ({str(exc).removeprefix('Error: ').strip()})")
    last = settings.start_frame + result.num_frames - 1
    if settings.extend_range and scene.frame_end < last:
        scene.frame_end = last
        notes.append(f"scene end extended to frame {last}")
    return list({a.name: a for a in actions.values()}.values()), notes, plan


def smoother_for(obj: bpy.types.Object):
    """The avatar's jointly trained smoother for an avatar rig (when its folder is at hand),
    else the default weights: the slider then matches what the backend did."""
    from ..shared.smoothing import AdaptiveSmoother

    folder = obj.get("steadytalk_avatar")
    weights = Path(folder) / "model" / "smoother.safetensors" if folder else None
    if weights is not None and weights.is_file():
        return AdaptiveSmoother.load(weights)
    return default_smoother()


def resmooth(obj: bpy.types.Object, strength: float) -> list[bpy.types.Action]:
    """Re-key every result on ``obj``'s character at another smoothing strength, from the
    cached raw curves; all its meshes move together."""
    owners = [*_all_owners(character.plan_for(obj)), obj]
    rewritten = []
    for found in results.by_result(results.placements(owners)).values():
        meta = found[0].meta
        raw = cached_raw(found[0].action)
        active = bpy.data.objects.get(meta.get("active", "")) or obj
        if raw is None:
            continue
        selected = [n for n in str(meta.get("selected", "")).split("\n") if n]
        plan = character.plan_for(active, _objects(selected))
        if not plan.targets and not active.steadytalk.use_mouth_index:
            continue
        smoothed, _ = smoother_for(active).smooth(raw, strength)
        meta.setdefault("id", found[0].action.name)
        meta.setdefault("result", found[0].action.name)
        actions, _ = write_result(plan, raw, smoothed, meta, results.cached_head(found[0].action))
        rewritten.extend(actions.values())
        for member in [*_objects(plan.members), active]:
            if member != obj:
                member.steadytalk["smoothing_strength"] = float(strength)
    return list({a.name: a for a in rewritten}.values())


def add_sound_strip(scene: bpy.types.Scene, filepath: str, frame: int, length: int, result_id: str) -> STRIP_TYPE:
    """The audio as a sound strip starting at ``frame``, on the first free channel; replaces the
    strip an earlier write of the same result added."""
    editor = scene.sequence_editor or scene.sequence_editor_create()
    for strip in [s for s in strips_of(editor) if s.get(SOUND_TAG) == result_id]:
        strips_of(editor).remove(strip)
    channel = 1
    while any(
        s.channel == channel and s.frame_final_start < frame + length and s.frame_final_end > frame
        for s in all_strips(editor)
    ):
        channel += 1
    strip = strips_of(editor).new_sound(Path(filepath).stem, filepath, channel, int(frame))
    strip[SOUND_TAG] = result_id
    return strip
