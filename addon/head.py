"""Head motion on a rig: the result's head track keyed on a head bone or on the rig object.

Target: the character's armature (the active object, its parent, or its Armature modifier's
object) and its head bone, found by the common names of Mixamo (``mixamorig:Head``), Rigify
(``head``, ``DEF-head``), VRM (``J_Bip_C_Head``), Ready Player Me (``Head``) or picked by name
(the rig's Head Bone field); with no armature, the rig object itself when its Head on Object
is ticked (the Face Rig: an object turns about its origin, and keying it gives the object an
action of its own). An armature without a head bone gets no head keys (rotating the whole
armature would turn the body).

The track's ``[yaw, pitch, roll]`` are rotations in the character's frame (``shared/head.py``:
X to its left, Y up, Z out of the face). In Blender the character stands Z-up facing -Y, so the
rotation is taken to that frame, then into the bone's own rest axes (any bone roll works) or
the object's local axes, composed with the rest rotation, and written in the bone's or object's
own rotation mode (quaternion, axis-angle or any Euler order; Euler angles kept continuous).
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np
from mathutils import Matrix

from ..shared.head import matrix_from_euler
from . import keying

HEAD_BONE_NAMES = ("mixamorig:Head", "head", "DEF-head", "ORG-head", "J_Bip_C_Head", "Head", "head.x", "Bip01 Head")
# The character's frame (X left, Y up, Z out of the face) in Blender's (Z up, facing -Y).
BLENDER_FROM_CHARACTER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


@dataclass
class HeadTarget:
    owner: bpy.types.Object
    bone: str = ""  # "" for the object itself

    def describe(self) -> str:
        return f"{self.owner.name}: bone {self.bone}" if self.bone else self.owner.name


def armature_of(obj: bpy.types.Object) -> bpy.types.Object | None:
    if obj.type == "ARMATURE":
        return obj
    if obj.parent is not None and obj.parent.type == "ARMATURE":
        return obj.parent
    for modifier in getattr(obj, "modifiers", ()):
        if modifier.type == "ARMATURE" and modifier.object is not None:
            return modifier.object
    return None


def _own_animation(owner: bpy.types.Object) -> bool:
    """The object plays an action of the user's (not a Steady Talk result): its head is theirs."""
    action = owner.animation_data.action if owner.animation_data else None
    return action is not None and "steadytalk" not in action


def find_target(obj: bpy.types.Object | None) -> tuple[HeadTarget | None, str]:
    """The head target of the character ``obj`` belongs to, and a note when there is none.
    An object that plays an action of the user's is left alone (push it to the NLA first)."""
    target, why = _find(obj)
    if target is not None and _own_animation(target.owner):
        return None, f"{target.owner.name} has its own animation: head not keyed (push it down to the NLA first)"
    return target, why


def _find(obj: bpy.types.Object | None) -> tuple[HeadTarget | None, str]:
    if obj is None:
        return None, ""
    armature = armature_of(obj)
    if armature is None:  # the object itself only when asked (a mesh, not a 2D rig or an empty)
        return (HeadTarget(obj), "") if obj.type == "MESH" and obj.steadytalk.head_on_object else (None, "")
    picked = obj.steadytalk.head_bone.strip() or armature.steadytalk.head_bone.strip()
    names = [picked] if picked else list(HEAD_BONE_NAMES)
    bones = armature.pose.bones
    for name in names:
        if name in bones:
            return HeadTarget(armature, name), ""
    lower = {b.name.lower(): b.name for b in bones}
    for name in names:
        if name.lower() in lower:
            return HeadTarget(armature, lower[name.lower()]), ""
    if picked:
        return None, f"no bone {picked!r} in {armature.name}: head not keyed"
    return None, f"no head bone found in {armature.name} (set Head Bone): head not keyed"


def head_channels(target: HeadTarget, head: np.ndarray) -> list[keying.Channel]:
    """Rotation channels of ``target`` for the (T, 3) head track, in its own rotation mode."""
    owner = target.owner
    holder = owner.pose.bones[target.bone] if target.bone else owner
    local = matrix_from_euler(np.asarray(head, dtype=np.float64))  # (T, 3, 3) character frame
    world = BLENDER_FROM_CHARACTER @ local @ BLENDER_FROM_CHARACTER.T
    if target.bone:  # armature space -> the bone's rest axes
        rest = np.array(owner.data.bones[target.bone].matrix_local.to_3x3())
        world = rest.T @ world @ rest
    base = holder.matrix_basis.to_3x3() if target.bone else owner.matrix_basis.to_3x3()
    mode = holder.rotation_mode
    prefix = f'pose.bones["{target.bone}"].' if target.bone else ""
    rows, previous = [], None
    for m in world:
        # a bone: the turn in its rest axes before its pose; the object: in its own local axes
        rotation = Matrix(m.tolist()) @ base if target.bone else base @ Matrix(m.tolist())
        if mode == "QUATERNION":
            q = rotation.to_quaternion()
            if previous is not None and q.dot(previous) < 0:
                q.negate()  # the same rotation, the shorter way from the previous key
            previous = q
            rows.append(tuple(q))
        elif mode == "AXIS_ANGLE":
            axis, angle = rotation.to_quaternion().to_axis_angle()
            rows.append((angle, *axis))
        else:
            e = rotation.to_euler(mode, previous) if previous is not None else rotation.to_euler(mode)
            previous = e
            rows.append(tuple(e))
    values = np.array(rows, dtype=np.float32)
    path = {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}.get(mode, "rotation_euler")
    group = target.bone or owner.name
    return [keying.Channel(owner, prefix + path, values[:, i], index=i, group=group) for i in range(values.shape[1])]
