"""Fast keyframing of curves onto shape keys (the whole result in one Action).

One F-curve per shape key, filled with ``keyframe_points.add`` + ``foreach_set`` instead of a
call per key: ten minutes at 30 fps on 33 channels is 600k keys. Two kinds of keys:

- dense: one linear key per frame, the curve exactly (baked);
- reduced: sparse Bezier keys within a tolerance (``shared/keyreduce.py``), with aligned
  handles an animator can drag.

Blender 4.4 introduced layered actions (slots, channelbags);
``Action.fcurve_ensure_for_datablock`` exists from there on, the plain ``Action.fcurves`` before.
"""

from __future__ import annotations

from collections.abc import Mapping

import bpy
import numpy as np

from ..shared.keyreduce import reduce_keys


def _enum_value(prop: str, item: str) -> int:
    """The stored value of a Keyframe enum item (what ``foreach_set`` writes; not its list position)."""
    return bpy.types.Keyframe.bl_rna.properties[prop].enum_items[item].value


def shape_key_path(key_name: str) -> str:
    return f'key_blocks["{bpy.utils.escape_identifier(key_name)}"].value'


def fcurve_for(action: bpy.types.Action, datablock: bpy.types.ID, data_path: str, index: int = 0) -> bpy.types.FCurve:
    if hasattr(action, "fcurve_ensure_for_datablock"):  # Blender 4.4+
        return action.fcurve_ensure_for_datablock(datablock, data_path, index=index)
    return action.fcurves.find(data_path, index=index) or action.fcurves.new(data_path, index=index)


def linear_interpolation() -> int:
    return _enum_value("interpolation", "LINEAR")


def action_fcurves(action: bpy.types.Action) -> list[bpy.types.FCurve]:
    """All F-curves of an action, on every Blender version (4.4+: through its layers)."""
    if hasattr(action, "layers"):
        return [
            fc for layer in action.layers for strip in layer.strips for bag in strip.channelbags for fc in bag.fcurves
        ]
    return list(action.fcurves)


def key_curves(
    obj: bpy.types.Object,
    curves: Mapping[str, np.ndarray],
    start_frame: float,
    action_name: str,
    frame_step: float = 1.0,
    tolerance: float | None = None,
) -> bpy.types.Action:
    """A new Action on ``obj``'s shape keys with ``curves`` ({shape key: per-frame values}).

    Frame i of a curve lands on scene frame ``start_frame + i * frame_step``. ``tolerance``
    None keys every frame (linear); a number keys sparse Bezier keys within it. The action is
    made the shape keys' active action; nothing else is touched (the caller decides what
    happens to a previous action)."""
    key = obj.data.shape_keys
    if key is None:
        raise ValueError(f"{obj.name} has no shape keys")
    animation = key.animation_data or key.animation_data_create()
    action = bpy.data.actions.new(action_name)
    animation.action = action
    linear, bezier = _enum_value("interpolation", "LINEAR"), _enum_value("interpolation", "BEZIER")
    aligned = _enum_value("handle_left_type", "ALIGNED")

    def to_scene(points: np.ndarray) -> np.ndarray:
        """(K, 2) (curve frame, value) -> flat float32 (scene frame, value) for foreach_set."""
        out = np.asarray(points, dtype=np.float64).copy()
        out[:, 0] = start_frame + frame_step * out[:, 0]
        return out.astype(np.float32).ravel()

    for name, values in curves.items():
        values = np.asarray(values, dtype=np.float32)
        fcurve = fcurve_for(action, key, shape_key_path(name))
        points = fcurve.keyframe_points
        if tolerance is None:
            count = len(values)
            points.add(count)
            points.foreach_set("co", to_scene(np.stack([np.arange(count), values], axis=1)))
            points.foreach_set("interpolation", np.full(count, linear, dtype=np.int32))
        else:
            sparse = reduce_keys(values, tolerance)
            left, right = sparse.handles()
            count = len(sparse.frames)
            points.add(count)
            points.foreach_set("co", to_scene(np.stack([sparse.frames, sparse.values], axis=1)))
            points.foreach_set("interpolation", np.full(count, bezier, dtype=np.int32))
            points.foreach_set("handle_left_type", np.full(count, aligned, dtype=np.int32))
            points.foreach_set("handle_right_type", np.full(count, aligned, dtype=np.int32))
            points.foreach_set("handle_left", to_scene(left))
            points.foreach_set("handle_right", to_scene(right))
        fcurve.update()
    return action
