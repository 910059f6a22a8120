"""A character, not an object: which meshes lip-sync drives and how their shape keys are matched.

Characters come in pieces: Ready Player Me splits head, teeth and eyes into meshes with the
same shape keys, VRoid adds eyelashes and a tongue. The character of an active object is that
object, the selected meshes, and every mesh that shares its armature (Armature modifier or
parent) or its parent hierarchy; bone custom shapes and the glTF importer's
``glTF_not_exported`` helpers are left out.

The plan for a character (``plan_for``): the convention (Auto detects it from the shape keys:
``mapping.choose_preset``; VRM expressions that the VRM add-on imported win when they move the
mouth), then for every member mesh the shape keys that convention drives. A shape key that
moves no vertex is not a target: it would count as driven and do nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import bpy
import numpy as np

from ..shared import mapping
from . import vrm
from .backend_link import UserFacingError

NOT_EXPORTED_COLLECTION = "glTF_not_exported"  # the glTF importer's bone shapes
# A key moves "no vertex" when its largest offset is below this share of the mesh's size.
EMPTY_KEY_SHARE = 1e-5


@dataclass(frozen=True)
class Target:
    """One shape key of one mesh driven by one source curve (ARKit channel or viseme)."""

    object_name: str
    source: str
    shape_key: str
    scale: float = 1.0


@dataclass
class RigPlan:
    """What a lip-sync will drive on a character, and why."""

    anchor: str  # the object whose settings were used
    preset: mapping.Preset
    reason: str  # one line: which convention and why
    targets: list[Target]
    unmatched: list[str]  # sources that found no working shape key
    empty: dict[str, list[str]] = field(default_factory=dict)  # mesh: matched keys that move nothing
    members: list[str] = field(default_factory=list)  # the character's meshes with shape keys
    keyed: dict[str, int] = field(default_factory=dict)  # after keying: mesh -> shape keys animated
    still: dict[str, list[str]] = field(default_factory=dict)  # mesh: its keys that move no vertex

    @property
    def driven(self) -> dict[str, int]:
        """{mesh: number of shape keys driven}, in member order."""
        counts: dict[str, set[str]] = {}
        for target in self.targets:
            counts.setdefault(target.object_name, set()).add(target.shape_key)
        return {name: len(counts[name]) for name in self.members if name in counts}

    def summary(self, counts: dict[str, int] | None = None) -> str:
        """'Head, Teeth: 33 keys each; Eyes: 2 keys' (of ``counts``, else of what is driven)."""
        groups: dict[int, list[str]] = {}
        for name, count in (self.driven if counts is None else counts).items():
            groups.setdefault(count, []).append(name)
        parts = []
        for count, names in groups.items():
            each = " each" if len(names) > 1 else ""
            parts.append(f"{', '.join(names)}: {count} key{'s' if count != 1 else ''}{each}")
        return "; ".join(parts)


def armatures_of(obj: bpy.types.Object) -> set[str]:
    """Names of the armatures that deform or carry an object."""
    names = {m.object.name for m in obj.modifiers if m.type == "ARMATURE" and m.object is not None}
    parent = obj.parent
    while parent is not None:
        if parent.type == "ARMATURE":
            names.add(parent.name)
        parent = parent.parent
    if obj.type == "ARMATURE":
        names.add(obj.name)
    return names


def _root(obj: bpy.types.Object) -> bpy.types.Object:
    while obj.parent is not None:
        obj = obj.parent
    return obj


def _bone_shapes(scene: bpy.types.Scene) -> set[str]:
    shapes = set()
    for obj in scene.objects:
        if obj.type == "ARMATURE" and obj.pose is not None:
            shapes.update(b.custom_shape.name for b in obj.pose.bones if b.custom_shape is not None)
    return shapes


def character_meshes(
    active: bpy.types.Object, selected: list[bpy.types.Object] = (), scene: bpy.types.Scene | None = None
) -> list[bpy.types.Object]:
    """The meshes with shape keys of ``active``'s character, ``active`` first when it is one.

    Related: selected, sharing an armature, or under the same root object, unless each has an
    armature of its own (two characters parented under one set empty stay two)."""
    scene = scene or bpy.context.scene
    armatures = armatures_of(active)
    root = _root(active)
    skip = _bone_shapes(scene)
    chosen = {o.name for o in selected}
    out = []
    for obj in [active, *selected, *scene.objects]:
        if obj in out or obj.type != "MESH" or obj.data.shape_keys is None or obj.name in skip:
            continue
        if any(c.name.startswith(NOT_EXPORTED_COLLECTION) for c in obj.users_collection):
            continue
        own = armatures_of(obj)
        if obj == active or obj.name in chosen or armatures & own:
            out.append(obj)
        elif _root(obj) == root and not (armatures and own):
            out.append(obj)
    return out


_motion_cache: dict[tuple, tuple[float, dict[str, bool]]] = {}
MOTION_CACHE_SECONDS = 2.0  # the panel sees a sculpted shape key within this long


def key_motion(obj: bpy.types.Object, fresh: bool = False) -> dict[str, bool]:
    """{shape key: moves some vertex} for a mesh's keys other than the basis.

    Cached for a moment on the Key's session id (never reused, unlike its memory address), key
    count and vertex count, since the panel asks on every redraw; ``fresh`` measures again (what
    a lip-sync run does)."""
    key = obj.data.shape_keys
    if key is None:
        return {}
    vertices = len(obj.data.vertices)
    cache_key = (key.session_uid, len(key.key_blocks), vertices)
    cached = _motion_cache.get(cache_key)
    if not fresh and cached is not None and time.monotonic() - cached[0] < MOTION_CACHE_SECONDS:
        return cached[1]
    coords: dict[str, np.ndarray] = {}

    def co(block: bpy.types.ShapeKey) -> np.ndarray:
        if block.name not in coords:
            values = np.empty(vertices * 3, dtype=np.float32)
            block.data.foreach_get("co", values)
            coords[block.name] = values.reshape(-1, 3)
        return coords[block.name]

    reference = key.reference_key
    basis = co(reference)
    size = float(np.ptp(basis, axis=0).max()) if vertices else 0.0
    threshold = max(EMPTY_KEY_SHARE * size, 1e-7)
    motion = {}
    for block in key.key_blocks:
        if block == reference:
            continue
        offset = np.abs(co(block) - co(block.relative_key)).max(initial=0.0)
        motion[block.name] = bool(offset > threshold)
    if len(_motion_cache) > 256:
        _motion_cache.clear()
    _motion_cache[cache_key] = (time.monotonic(), motion)
    return motion


def settings_holder(active: bpy.types.Object, members: list[bpy.types.Object]) -> bpy.types.Object:
    """Whose Steady Talk settings a character uses: the active object's, unless it has none of
    its own and another member has (a custom mapping or a chosen convention on the head is kept
    when the teeth are active)."""

    def customized(obj: bpy.types.Object) -> bool:
        settings = obj.steadytalk
        return settings.use_custom_mapping or settings.preset != mapping.AUTO

    if customized(active):
        return active
    return next((m for m in members if customized(m)), active)


def plan_for(active: bpy.types.Object, selected: list[bpy.types.Object] = (), fresh: bool = False) -> RigPlan:
    """The plan for ``active``'s character (see the module docstring)."""
    meshes = character_meshes(active, selected)
    holder = settings_holder(active, meshes)
    motion = {m.name: key_motion(m, fresh) for m in meshes}
    members = [m.name for m in meshes]
    plan = _plan(active, holder, meshes, motion, members)
    plan.still = {name: [k for k, moves in motion[name].items() if not moves] for name in members}
    return plan


def _plan(active, holder, meshes: list, motion: dict, members: list[str]) -> RigPlan:
    """The plan from the holder's settings: custom mapping, VRM expressions, a convention."""
    settings = holder.steadytalk
    if settings.use_custom_mapping:
        return _custom_plan(holder, meshes, motion)
    preset_id = settings.preset
    if preset_id in (mapping.AUTO, "VRM"):
        binds = vrm.addon_binds(meshes, active)
        if binds is not None:
            plan = bound_plan(holder.name, binds, meshes, motion)
            if plan.targets and (preset_id == "VRM" or _speaks(plan)):
                return plan
    moving = [k for m in meshes for k, moves in motion[m.name].items() if moves]
    still = [k for m in meshes for k, moves in motion[m.name].items() if not moves]
    if preset_id == mapping.AUTO:
        detection = mapping.choose_preset(moving, still)
        if detection is None:
            return RigPlan(holder.name, mapping.PRESETS["ARKIT"], "no convention matches", [], [], {}, members)
        return _named_plan(holder.name, detection.preset, f"Auto: {detection.reason}", meshes, motion)
    preset = mapping.PRESETS[preset_id]
    plan = _named_plan(holder.name, preset, f"{preset.label} (chosen)", meshes, motion)
    blank = sorted({k for keys in plan.empty.values() for k in keys} & set(_opening_keys(plan, preset, motion)))
    if not _speaks(plan) and blank:  # the chosen shapes cannot open the mouth: use ones that can
        detection = mapping.choose_preset(moving, still)
        if detection is not None and detection.speaks and detection.preset.id != preset.id:
            verb = "moves" if len(blank) == 1 else "move"
            reason = f"{preset.label} chosen, but {', '.join(blank)} {verb} no vertex: using {detection.reason}"
            return _named_plan(holder.name, detection.preset, reason, meshes, motion)
    return plan


def _opening_keys(plan: RigPlan, preset: mapping.Preset, motion: dict) -> list[str]:
    """The shape keys the preset's mouth-opening sources match on the character."""
    openers = set(mapping.opening_sources(preset))
    keys = []
    for name in plan.members:
        found, _ = mapping.match_targets(preset, motion[name])
        keys.extend(key for source, key in found.items() if source in openers)
    return keys


def _named_plan(anchor: str, preset: mapping.Preset, reason: str, meshes: list, motion: dict) -> RigPlan:
    """Targets found by the preset's names on every member; keys that move nothing are set aside."""
    targets, empty, working_sources = [], {}, set()
    for mesh in meshes:
        found, _ = mapping.match_targets(preset, motion[mesh.name])
        for source, key in found.items():
            if motion[mesh.name][key]:
                targets.append(Target(mesh.name, source, key))
                working_sources.add(source)
            else:
                empty.setdefault(mesh.name, []).append(key)
    unmatched = [s for s in preset.sources if s not in working_sources]
    return RigPlan(anchor, preset, reason, targets, unmatched, empty, [m.name for m in meshes])


def _speaks(plan: RigPlan) -> bool:
    return bool({t.source for t in plan.targets} & set(mapping.opening_sources(plan.preset)))


def bound_plan(anchor: str, binds: vrm.Binds, meshes: list, motion: dict) -> RigPlan:
    """A plan from VRM expression bindings (source -> [(mesh, key, weight)])."""
    preset = mapping.PRESETS["VRM"]
    names = {m.name for m in meshes}
    targets, empty = [], {}
    for source, bound in binds.binds.items():
        for object_name, key, weight in bound:
            if object_name not in names or key not in motion[object_name]:
                continue
            if motion[object_name][key]:
                targets.append(Target(object_name, source, key, weight))
            else:
                empty.setdefault(object_name, []).append(key)
    driven = {t.source for t in targets}
    unmatched = [s for s in preset.sources if s not in driven]
    mouth = [s for s in preset.mouth_sources if s in driven]
    reason = f"{binds.origin}: {len(mouth)} of {len(preset.mouth_sources)} mouth shapes"
    return RigPlan(anchor, preset, reason, targets, unmatched, empty, [m.name for m in meshes])


def _custom_plan(holder: bpy.types.Object, meshes: list, motion: dict) -> RigPlan:
    """The custom mapping drives exactly what it lists: a row with an object drives that mesh's
    key, a row without one drives the key on every member that has it."""
    settings = holder.steadytalk
    if settings.preset != mapping.AUTO:
        preset = mapping.PRESETS[settings.preset]
    else:  # the preset whose sources the rows name most
        sources = {e.source for e in settings.mapping}
        preset = max((mapping.PRESETS[p] for p in mapping.DETECTION_ORDER), key=lambda p: len(sources & set(p.sources)))
    targets, empty = [], {}
    for entry in settings.mapping:
        if not entry.target:
            continue
        for mesh in meshes:
            if entry.object is not None and entry.object.name != mesh.name:
                continue
            moves = motion[mesh.name].get(entry.target)
            if moves:
                targets.append(Target(mesh.name, entry.source, entry.target, entry.scale))
            elif moves is not None:
                empty.setdefault(mesh.name, []).append(entry.target)
    driven = {t.source for t in targets}
    unmatched = [s for s in preset.sources if s not in driven]
    origin = f" ({settings.mapping_origin})" if settings.mapping_origin else ""
    reason = f"Custom Mapping{origin}"
    return RigPlan(holder.name, preset, reason, targets, unmatched, empty, [m.name for m in meshes])


def check_plan(active: bpy.types.Object | None, selected: list = (), fresh: bool = True) -> RigPlan:
    """The plan, or a UserFacingError that says what to do."""
    if active is None:
        raise UserFacingError("Select the character to animate (its face mesh or armature), or add a face rig first.")
    plan = plan_for(active, selected, fresh)
    if plan.targets:
        return plan
    if not plan.members:
        raise UserFacingError(
            f"{active.name} has no shape keys to animate, nor does a mesh of its character. "
            "Select the face mesh, or add a face rig."
        )
    empty = sorted({k for keys in plan.empty.values() for k in keys})
    if empty:
        shown = ", ".join(empty[:6]) + (f" +{len(empty) - 6}" if len(empty) > 6 else "")
        raise UserFacingError(
            f"The shape keys {plan.preset.label} would drive on {', '.join(plan.members)} move no vertex ({shown}). "
            "Choose another Rig Convention, or set up a Custom Mapping."
        )
    if active.steadytalk.preset == mapping.AUTO and not active.steadytalk.use_custom_mapping:
        raise UserFacingError(
            f"None of the shape keys of {', '.join(plan.members)} matches a known convention (ARKit, Oculus/RPM "
            "visemes, VRM, Rhubarb, Preston Blair, mouthOpen/mouthSmile). Use Custom Mapping > Fill from "
            "Convention and pick the shape keys."
        )
    raise UserFacingError(
        f"None of {', '.join(plan.members)}'s shape keys matches the {plan.preset.label} preset. "
        "Choose another preset (or Auto), or set up a custom mapping in the Steady Talk panel."
    )
