"""Fast keyframing of per-frame curves onto any animatable datablock: one keying path.

A result is a list of ``Channel`` s (which datablock, which property path and array index, one
value per frame): the shape keys of every mesh of a character, and for 2D rigs an integer
property; the head rotation of the whole-face work keys an object or bone rotation the same
way. ``key_channels`` writes them all at once with ``keyframe_points.add`` + ``foreach_set``
instead of a call per key: ten minutes at 30 fps on 33 channels is 600k keys.

Kinds of keys (``KeyStyle``):

- dense: one linear key per frame, the curve exactly (baked);
- reduced: sparse Bezier keys within a tolerance (``shared/keyreduce.py``), with aligned
  handles an animator can drag;
- constant: a key where the value changes, Constant interpolation (stepped, sprite mouths).

Actions: Blender 4.4 introduced layered actions; there one Action holds every datablock of the
result, one slot each (``Action.slots``, channelbags). Before (4.2) an Action animates one
datablock, so each gets its own. Which API exists is probed on an instance, because the type's
``hasattr`` does not tell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import bpy
import numpy as np

from ..shared.keyreduce import reduce_keys


@dataclass
class Channel:
    """One animated property: ``owner.<data_path>[index]`` gets ``values[i]`` at frame i."""

    owner: bpy.types.ID  # a shape Key, an Object, ...
    data_path: str
    values: np.ndarray  # (T,) float
    index: int = 0
    group: str = ""  # F-curve group shown in the editors ("" for none)


@dataclass(frozen=True)
class KeyStyle:
    kind: str = "REDUCED"  # "DENSE", "REDUCED" or "CONSTANT"
    tolerance: float = 0.01  # largest error of reduced keys


def _enum_value(prop: str, item: str) -> int:
    """The stored value of a Keyframe enum item (what ``foreach_set`` writes; not its list position)."""
    return bpy.types.Keyframe.bl_rna.properties[prop].enum_items[item].value


def shape_key_path(key_name: str) -> str:
    return f'key_blocks["{bpy.utils.escape_identifier(key_name)}"].value'


def linear_interpolation() -> int:
    return _enum_value("interpolation", "LINEAR")


def is_layered(action: bpy.types.Action) -> bool:
    """Blender 4.4+ actions have slots (probed on the instance: the type's hasattr lies)."""
    return hasattr(action, "slots")


def fcurve_for(action: bpy.types.Action, datablock: bpy.types.ID, data_path: str, index: int = 0) -> bpy.types.FCurve:
    """The F-curve of ``data_path[index]`` for a datablock the action is assigned to."""
    if hasattr(action, "fcurve_ensure_for_datablock"):  # Blender 4.4+
        return action.fcurve_ensure_for_datablock(datablock, data_path, index=index)
    return action.fcurves.find(data_path, index=index) or action.fcurves.new(data_path, index=index)


def action_fcurves(action: bpy.types.Action) -> list[bpy.types.FCurve]:
    """All F-curves of an action, on every Blender version (4.4+: through its layers, all slots)."""
    if is_layered(action):
        return [
            fc for layer in action.layers for strip in layer.strips for bag in strip.channelbags for fc in bag.fcurves
        ]
    return list(action.fcurves)


def slot_fcurves(action: bpy.types.Action, slot) -> list[bpy.types.FCurve]:
    """The F-curves of one slot (4.4+), or of the whole action (4.2, where there are no slots)."""
    if slot is None or not is_layered(action):
        return action_fcurves(action)
    for layer in action.layers:
        for strip in layer.strips:
            bag = strip.channelbag(slot)
            if bag is not None:
                return list(bag.fcurves)
    return []


def _channelbag(action: bpy.types.Action, slot):
    """The channelbag of ``slot``, made when missing (5.0 has a helper; 4.4/4.5 the layer API)."""
    try:
        from bpy_extras.anim_utils import action_ensure_channelbag_for_slot
    except ImportError:
        layer = action.layers[0] if action.layers else action.layers.new("Layer")
        strip = layer.strips[0] if layer.strips else layer.strips.new(type="KEYFRAME")
        return strip.channelbag(slot, ensure=True)
    return action_ensure_channelbag_for_slot(action, slot)


def _owners(channels: Sequence[Channel]) -> list[bpy.types.ID]:
    owners: list[bpy.types.ID] = []
    for channel in channels:
        if all(channel.owner != o for o in owners):
            owners.append(channel.owner)
    return owners


def owner_label(owner: bpy.types.ID) -> str:
    """A readable name for a datablock: a shape Key is named after its mesh's object when it has one."""
    if isinstance(owner, bpy.types.Key) and owner.user is not None:
        users = [o for o in bpy.data.objects if o.data == owner.user]
        return users[0].name if users else owner.user.name
    return owner.name


def key_channels(
    action_name: str,
    channels: Sequence[Channel],
    start_frame: float,
    style: KeyStyle,
    frame_step: float = 1.0,
) -> dict[bpy.types.ID, bpy.types.Action]:
    """Key every channel and make the new action(s) active on their datablocks.

    Frame i of a channel lands on scene frame ``start_frame + i * frame_step``. Returns
    {datablock: its action}: on 4.4+ the same Action (one slot per datablock), on 4.2 one
    Action per datablock (named after it when there are several). Nothing else is touched: the
    caller decides what happens to an action that was active before."""
    owners = _owners(channels)
    probe = bpy.data.actions.new(action_name)
    layered = is_layered(probe)
    actions: dict[bpy.types.ID, bpy.types.Action] = {}
    bags = {}
    for n, owner in enumerate(owners):
        animation = owner.animation_data or owner.animation_data_create()
        if layered:
            action = probe
            slot = action.slots.new(id_type=owner.id_type, name=owner_label(owner))
            animation.action = action
            animation.action_slot = slot
            bags[owner.as_pointer()] = _channelbag(action, slot)
        else:
            action = probe if n == 0 else bpy.data.actions.new(action_name)
            if len(owners) > 1:
                action.name = f"{action_name} {owner_label(owner)}"
            action.id_root = owner.id_type
            animation.action = action
        actions[owner] = action
    if not owners:
        bpy.data.actions.remove(probe)
    writer = _KeyWriter(style, start_frame, frame_step)
    for channel in channels:
        if layered:
            bag = bags[channel.owner.as_pointer()]
            fcurve = bag.fcurves.find(channel.data_path, index=channel.index) or bag.fcurves.new(
                channel.data_path, index=channel.index
            )
        else:
            fcurves = actions[channel.owner].fcurves
            fcurve = fcurves.find(channel.data_path, index=channel.index) or fcurves.new(
                channel.data_path, index=channel.index, action_group=channel.group
            )
        writer.write(fcurve, channel.values)
    return actions


class _KeyWriter:
    """Fills F-curves in one style; reduced keys are computed once per distinct curve (a
    character's head and teeth get the same curve for the same shape)."""

    def __init__(self, style: KeyStyle, start_frame: float, frame_step: float) -> None:
        self.style, self.start, self.step = style, float(start_frame), float(frame_step)
        self.linear = _enum_value("interpolation", "LINEAR")
        self.bezier = _enum_value("interpolation", "BEZIER")
        self.constant = _enum_value("interpolation", "CONSTANT")
        self.aligned = _enum_value("handle_left_type", "ALIGNED")
        self._reduced: dict[bytes, object] = {}

    def to_scene(self, points: np.ndarray) -> np.ndarray:
        """(K, 2) (curve frame, value) -> flat float32 (scene frame, value) for foreach_set."""
        out = np.asarray(points, dtype=np.float64).copy()
        out[:, 0] = self.start + self.step * out[:, 0]
        return out.astype(np.float32).ravel()

    def write(self, fcurve: bpy.types.FCurve, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float32)
        points = fcurve.keyframe_points
        if self.style.kind == "DENSE":
            count = len(values)
            points.add(count)
            points.foreach_set("co", self.to_scene(np.stack([np.arange(count), values], axis=1)))
            points.foreach_set("interpolation", np.full(count, self.linear, dtype=np.int32))
        elif self.style.kind == "CONSTANT":
            frames = np.flatnonzero(np.diff(values, prepend=np.float32(np.nan)) != 0)
            count = len(frames)
            points.add(count)
            points.foreach_set("co", self.to_scene(np.stack([frames, values[frames]], axis=1)))
            points.foreach_set("interpolation", np.full(count, self.constant, dtype=np.int32))
        else:
            digest = values.tobytes()
            sparse = self._reduced.get(digest)
            if sparse is None:
                sparse = self._reduced[digest] = reduce_keys(values, self.style.tolerance)
            left, right = sparse.handles()
            count = len(sparse.frames)
            points.add(count)
            points.foreach_set("co", self.to_scene(np.stack([sparse.frames, sparse.values], axis=1)))
            points.foreach_set("interpolation", np.full(count, self.bezier, dtype=np.int32))
            points.foreach_set("handle_left_type", np.full(count, self.aligned, dtype=np.int32))
            points.foreach_set("handle_right_type", np.full(count, self.aligned, dtype=np.int32))
            points.foreach_set("handle_left", self.to_scene(left))
            points.foreach_set("handle_right", self.to_scene(right))
        fcurve.update()
