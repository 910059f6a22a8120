"""What a lip-sync result owns in a .blend, how it is found again, and how it is taken away.

A result is one or more Actions (one on 4.4+, with a slot per datablock; one per datablock on
4.2) tagged with the result's settings (``META_PROPERTY``) and its raw curves
(``RAW_PROPERTY``), both saved with the .blend. It is found on the datablocks it animates (the
shape keys of the character's meshes, a 2D rig's object): as their active action or as a strip
in their NLA. Nothing else marks it, so renaming objects or actions loses nothing.

The user's own animation is never deleted or hidden: an action of theirs that was active is
pushed down onto an NLA track (as Blender's own Push Down does), where what the result does not
key keeps playing under it; their NLA tracks stay as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import bpy
import numpy as np

from ..shared.schema import CHANNELS_BY_VERSION, upgrade_curves
from . import keying

NLA_TRACK = "Steady Talk"
RAW_PROPERTY = "steadytalk_raw"  # (T * C) float32 raw curves, on the Action
META_PROPERTY = "steadytalk"  # {id, result, fps, frames, start_frame, audio, ...}, on the Action
HEAD_PROPERTY = "steadytalk_head"  # (T * 3) float32 head track [yaw, pitch, roll], on the Action
SOUND_TAG = "steadytalk_result"  # on sound strips we added: the id of the result


@dataclass
class Placement:
    """Where a result's action sits on one datablock: active, or an NLA strip of a track."""

    owner: bpy.types.ID
    action: bpy.types.Action
    strip: bpy.types.NlaStrip | None = None
    track: bpy.types.NlaTrack | None = None

    @property
    def meta(self) -> dict:
        return self.action[META_PROPERTY].to_dict()


def is_result(action: bpy.types.Action | None) -> bool:
    return action is not None and META_PROPERTY in action


def placements(owners: Iterable[bpy.types.ID]) -> list[Placement]:
    """Every result placed on these datablocks (active actions first, then NLA strips)."""
    found = []
    for owner in owners:
        animation = owner.animation_data
        if animation is None:
            continue
        if is_result(animation.action):
            found.append(Placement(owner, animation.action))
        for track in animation.nla_tracks:
            for strip in track.strips:
                if is_result(strip.action):
                    found.append(Placement(owner, strip.action, strip, track))
    return found


def animated_paths(placement: Placement) -> list[tuple[str, int]]:
    """(data path, index) of the channels the result keys on this datablock."""
    slot = None
    if keying.is_layered(placement.action):
        animation = placement.owner.animation_data
        slot = placement.strip.action_slot if placement.strip is not None else animation.action_slot
    return [(fc.data_path, fc.array_index) for fc in keying.slot_fcurves(placement.action, slot)]


def remove(found: list[Placement]) -> None:
    """Take these placements away; the values they animated go back to rest (0), so no frozen
    mid-word value is left behind (a library override would even save it), then the actions
    that nothing uses any more are deleted, and empty Steady Talk tracks with them."""
    for placement in found:
        paths = animated_paths(placement)
        animation = placement.owner.animation_data
        if placement.strip is None:
            animation.action = None
        else:
            placement.track.strips.remove(placement.strip)
            if placement.track.name.startswith(NLA_TRACK) and len(placement.track.strips) == 0:
                animation.nla_tracks.remove(placement.track)
        for path, index in paths:
            _reset(placement.owner, path, index)
    gone = {p.action.name: p.action for p in found}
    for obj in bpy.data.objects:  # the add-on's own pointers are users too
        pointer = obj.steadytalk.result_action if hasattr(obj, "steadytalk") else None
        if pointer is not None and pointer.name in gone and pointer == gone[pointer.name]:
            obj.steadytalk.result_action = None
    for action in gone.values():
        if action.users == 0:
            bpy.data.actions.remove(action)


def _reset(owner: bpy.types.ID, path: str, index: int) -> None:
    """Put one animated property back to its default (a shape key to 0, a rotation to identity)."""
    try:
        if path.startswith('["'):  # a custom property
            name = path[2:-2]
            owner[name] = type(owner[name])(0)
            return
        holder, _, prop = path.rpartition(".")
        target = owner.path_resolve(holder) if holder else owner
        rna = target.bl_rna.properties[prop]
        if isinstance(target, bpy.types.ShapeKey) and prop == "value":
            target.value = 0.0  # at rest (5.0 gives new keys 1.0, so the RNA default is not rest)
        elif getattr(rna, "is_array", False):
            getattr(target, prop)[index] = rna.default_array[index]
        else:
            setattr(target, prop, rna.default)
    except (ValueError, KeyError, AttributeError, TypeError, IndexError):
        pass  # the property went away with the rig's edits: nothing to reset


def push_down_user_action(owner: bpy.types.ID) -> bpy.types.NlaStrip | None:
    """Move the user's active action (not a result) onto a new NLA track on top of their tracks,
    as Blender's Push Down does: it keeps playing where the result does not key."""
    animation = owner.animation_data
    if animation is None or animation.action is None or is_result(animation.action):
        return None
    action = animation.action
    slot = getattr(animation, "action_slot", None)
    track = animation.nla_tracks.new()
    track.name = action.name
    strip = track.strips.new(action.name, int(action.frame_range[0]), action)
    _use_slot(strip, slot, action)
    animation.action = None
    return strip


def _use_slot(strip: bpy.types.NlaStrip, slot, action: bpy.types.Action) -> None:
    """Give an NLA strip its datablock's slot (4.4+). A strip made from an action with several
    slots has none and is one frame long, so its range is set from the action afterwards."""
    if slot is None or strip.action_slot == slot:
        return
    strip.action_slot = slot
    first, last = action.frame_range
    strip.action_frame_end = last  # the end first: a start past the current end would be clamped
    strip.action_frame_start = first


def place_in_nla(actions: dict[bpy.types.ID, bpy.types.Action], start_frame: int) -> None:
    """Move a result from active to an NLA strip on each datablock, on a "Steady Talk" track
    above the others (a second track when a strip is in the way, e.g. two lines of one
    character that overlap)."""
    for owner, action in actions.items():
        animation = owner.animation_data
        slot = getattr(animation, "action_slot", None)
        first, last = action.frame_range
        start, end = float(start_frame), float(start_frame) + last - first

        ours = [t for t in animation.nla_tracks if t.name.startswith(NLA_TRACK)]
        track = next((t for t in ours if _free(t, start, end)), None)
        if track is None:
            track = animation.nla_tracks.new()
            track.name = NLA_TRACK
        strip = track.strips.new(action.name, int(start_frame), action)
        _use_slot(strip, slot, action)
        if ours and track != ours[0]:
            strip.extrapolation = "NOTHING"  # an overlapping line: it must not hold over the others
        animation.action = None


def _free(track: bpy.types.NlaTrack, start: float, end: float) -> bool:
    """No strip of the track overlaps [start, end]."""
    return all(s.frame_end < start or s.frame_start > end for s in track.strips)


def store(actions: Iterable[bpy.types.Action], meta: dict, raw: np.ndarray, head: np.ndarray | None = None) -> None:
    """Tag the result's action(s) with its settings, raw curves and head track (each action of
    a 4.2 result carries them, so any one mesh can be re-smoothed on its own)."""
    flat = np.ascontiguousarray(raw, dtype=np.float32).ravel()
    for action in {a.name: a for a in actions}.values():
        action[META_PROPERTY] = meta
        action[RAW_PROPERTY] = flat
        if head is not None and np.abs(head).max(initial=0.0) > 0:
            action[HEAD_PROPERTY] = np.ascontiguousarray(head, dtype=np.float32).ravel()


def cached_head(action: bpy.types.Action) -> np.ndarray | None:
    """The (T, 3) head track a result was keyed with (None: no head motion, or a v1 result)."""
    if HEAD_PROPERTY not in action:
        return None
    flat = np.asarray(action[HEAD_PROPERTY], dtype=np.float32)
    return flat.reshape(-1, 3) if flat.size % 3 == 0 else None


def cached_raw(action: bpy.types.Action) -> np.ndarray | None:
    if RAW_PROPERTY not in action or META_PROPERTY not in action:
        return None
    flat = np.asarray(action[RAW_PROPERTY], dtype=np.float32)
    # A .blend saved by a v1 release has 33 columns and no schema in its meta: upgraded here,
    # so re-smoothing it keys the same shapes as before (the new channels stay at rest).
    version = int(action[META_PROPERTY].get("schema_version", 1))
    width = len(CHANNELS_BY_VERSION.get(version, ()))
    if not width or flat.size % width:
        return None
    return upgrade_curves(flat.reshape(-1, width), version)


def by_result(found: list[Placement]) -> dict[str, list[Placement]]:
    """Placements grouped by result id, in the order first seen."""
    groups: dict[str, list[Placement]] = {}
    for placement in found:
        groups.setdefault(str(placement.meta.get("id", placement.action.name)), []).append(placement)
    return groups
