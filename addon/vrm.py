"""VRM expressions: the mouth and blink shapes a VRM avatar declares, and which morphs they bind.

Two ways in:

- The VRM add-on for Blender (saturday06/VRM-Addon-for-Blender, the usual importer) keeps the
  expressions on the armature (``armature.data.vrm_addon_extension``); they are read duck-typed,
  so the add-on is no dependency. VRM 0.x: ``vrm0.blend_shape_master.blend_shape_groups`` with
  ``preset_name`` a i u e o blink blink_l blink_r; VRM 1.0: ``vrm1.expressions.preset.<aa ih
  ou ee oh blink blink_left blink_right>``; binds name the mesh object and the shape key, with
  weights in 0..1. (That add-on's own frame handlers write shape-key values when its expression
  preview is animated: leave the preview alone.)
- An avatar imported with Blender's plain glTF importer lost that data, and its shape keys are
  often named ``target_0``.. (the morph names sit where the importer does not look): "Read VRM
  Expressions" reads the .vrm file itself (GLB: its JSON chunk) and maps the binds onto the
  imported meshes. VRM 0.x: ``extensions.VRM.blendShapeMaster.blendShapeGroups[]`` with binds
  {mesh (a mesh index), index (its morph), weight 0..100}; VRM 1.0:
  ``extensions.VRMC_vrm.expressions.preset`` with ``morphTargetBinds`` {node (a node index),
  index, weight 0..1}.

The file reading is plain Python (no bpy): ``read_expressions``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

GLB_MAGIC = 0x46546C67  # "glTF"
JSON_CHUNK = 0x4E4F534A  # "JSON"

# VRM expression (1.0 names; 0.x presets are renamed to them) -> the source curve it follows.
EXPRESSION_SOURCES = {
    "aa": "A",
    "ih": "I",
    "ou": "U",
    "ee": "E",
    "oh": "O",
    "blinkLeft": "eyeBlinkLeft",
    "blinkRight": "eyeBlinkRight",
}
VRM0_PRESETS = {"a": "aa", "i": "ih", "u": "ou", "e": "ee", "o": "oh", "blink": "blink"}
VRM0_PRESETS |= {"blink_l": "blinkLeft", "blink_r": "blinkRight"}
ADDON_VRM1_PRESETS = {"aa": "aa", "ih": "ih", "ou": "ou", "ee": "ee", "oh": "oh", "blink": "blink"}
ADDON_VRM1_PRESETS |= {"blink_left": "blinkLeft", "blink_right": "blinkRight"}


class VrmError(ValueError):
    """A file that is not a VRM avatar, or one this reader cannot read; the message says which."""


@dataclass(frozen=True)
class MorphBind:
    mesh: int  # glTF mesh index
    morph: int  # morph target index within that mesh
    weight: float  # 0..1


@dataclass
class VrmExpressions:
    version: str  # "0.x" or "1.0"
    expressions: dict[str, list[MorphBind]]  # 1.0 names: aa, ih, ..., blinkLeft
    mesh_names: list[str]
    morph_names: list[list[str]]  # per mesh, from its extras (may be empty)
    node_names: dict[int, list[str]] = field(default_factory=dict)  # mesh index -> node (object) names


@dataclass
class Binds:
    """Expressions bound to a scene's shape keys: source -> [(mesh object, shape key, weight)]."""

    origin: str  # where they come from, for the panel
    binds: dict[str, list[tuple[str, str, float]]]


def read_json(path: str | Path) -> dict:
    """The glTF JSON of a .vrm/.glb (binary) or .gltf file."""
    data = Path(path).read_bytes()
    if len(data) >= 12 and struct.unpack_from("<I", data, 0)[0] == GLB_MAGIC:
        length = min(struct.unpack_from("<I", data, 8)[0], len(data))
        offset = 12
        while offset + 8 <= length:
            size, kind = struct.unpack_from("<II", data, offset)
            if kind == JSON_CHUNK:
                return json.loads(data[offset + 8 : offset + 8 + size].decode("utf-8").rstrip(" \x00"))
            offset += 8 + size + (-size % 4)
        raise VrmError(f"{Path(path).name} is a glTF binary without a JSON chunk (damaged?)")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VrmError(f"{Path(path).name} is neither a VRM/GLB binary nor glTF JSON") from exc


def _morph_names(gltf: dict, mesh_index: int) -> list[str]:
    mesh = gltf["meshes"][mesh_index]
    names = (mesh.get("extras") or {}).get("targetNames")
    if not names:
        primitives = mesh.get("primitives") or [{}]
        names = (primitives[0].get("extras") or {}).get("targetNames")
    return [str(n) for n in names or []]


def read_expressions(path: str | Path) -> VrmExpressions:
    """The expressions of a VRM 0.x or 1.0 file, binds in 1.0 terms (mesh index, weight 0..1)."""
    try:
        gltf = read_json(path)
    except OSError as exc:
        raise VrmError(f"Could not read {path}: {exc.strerror or exc}") from exc
    extensions = gltf.get("extensions") or {}
    meshes = gltf.get("meshes") or []
    nodes = gltf.get("nodes") or []
    out: dict[str, list[MorphBind]] = {}
    try:
        if "VRMC_vrm" in extensions:
            version = "1.0"
            presets = (extensions["VRMC_vrm"].get("expressions") or {}).get("preset") or {}
            for name, expression in presets.items():
                binds = []
                for bind in expression.get("morphTargetBinds") or []:
                    mesh = nodes[int(bind["node"])].get("mesh")  # 1.0 binds name a node
                    if mesh is not None:
                        binds.append(MorphBind(int(mesh), int(bind["index"]), float(bind.get("weight", 1.0))))
                out[name] = binds
        elif "VRM" in extensions:
            version = "0.x"
            master = extensions["VRM"].get("blendShapeMaster") or {}
            for group in master.get("blendShapeGroups") or []:
                name = VRM0_PRESETS.get(str(group.get("presetName", "")).lower())
                if name is None:
                    continue
                out[name] = [
                    MorphBind(int(b["mesh"]), int(b["index"]), float(b.get("weight", 100.0)) / 100.0)
                    for b in group.get("binds") or []
                ]
        else:
            raise VrmError(f"{Path(path).name} has no VRM data (no VRM or VRMC_vrm extension): it is a plain glTF")
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        if isinstance(exc, VrmError):
            raise
        raise VrmError(f"{Path(path).name} has VRM expressions this reader cannot follow ({exc!r})") from exc
    node_names: dict[int, list[str]] = {}
    for node in nodes:
        if "mesh" in node:
            node_names.setdefault(int(node["mesh"]), []).append(str(node.get("name", "")))
    return VrmExpressions(
        version,
        out,
        [str(m.get("name", "")) for m in meshes],
        [_morph_names(gltf, i) for i in range(len(meshes))],
        node_names,
    )


def source_binds(expressions: dict[str, list]) -> dict[str, list]:
    """Expressions -> our sources; "blink" stands in for each eye when there is no per-eye one."""
    out = {EXPRESSION_SOURCES[n]: list(b) for n, b in expressions.items() if n in EXPRESSION_SOURCES and b}
    if expressions.get("blink"):
        out.setdefault("eyeBlinkLeft", list(expressions["blink"]))
        out.setdefault("eyeBlinkRight", list(expressions["blink"]))
    return out


def file_binds(vrm: VrmExpressions, objects: list, label: str) -> tuple[Binds, list[str]]:
    """Map a file's binds onto Blender mesh objects (``objects``: those with shape keys).

    A glTF mesh is the object named like its node, else the one whose mesh data has its name
    (the importer may rename either), else the one with as many shape keys as it has morphs. A
    morph is the shape key of its name, or ``target_<index>``, or the key at its position.
    Returns the binds and what could not be placed."""
    missing: list[str] = []
    by_mesh: dict[int, object] = {}
    for mesh_index, mesh_name in enumerate(vrm.mesh_names):
        candidates = [o for o in objects if o.name in vrm.node_names.get(mesh_index, [])]
        candidates = candidates or [o for o in objects if o.data.name.split(".")[0] == mesh_name.split(".")[0]]
        count = len(vrm.morph_names[mesh_index])
        candidates = candidates or [o for o in objects if count and len(o.data.shape_keys.key_blocks) == count + 1]
        if candidates:
            by_mesh[mesh_index] = candidates[0]
    binds: dict[str, list[tuple[str, str, float]]] = {}
    for source, bound in source_binds(vrm.expressions).items():
        for bind in bound:
            obj = by_mesh.get(bind.mesh)
            if obj is None:
                name = vrm.mesh_names[bind.mesh] if bind.mesh < len(vrm.mesh_names) else bind.mesh
                missing.append(f"{source}: mesh {name}")
                continue
            blocks = obj.data.shape_keys.key_blocks
            names = vrm.morph_names[bind.mesh] if bind.mesh < len(vrm.morph_names) else []
            named = names[bind.morph] if bind.morph < len(names) else None
            for candidate in (named, f"target_{bind.morph}"):
                if candidate and candidate in blocks:
                    key = candidate
                    break
            else:
                key = blocks[bind.morph + 1].name if bind.morph + 1 < len(blocks) else None
            if key is None:
                missing.append(f"{source}: morph {bind.morph} of {obj.name}")
                continue
            binds.setdefault(source, []).append((obj.name, key, bind.weight))
    return Binds(f"VRM {vrm.version} expressions of {label}", binds), missing


def addon_binds(meshes: list, active) -> Binds | None:
    """Expressions the VRM add-on keeps on the character's armature, or None when there are none."""
    import bpy

    from .character import armatures_of

    names = set(armatures_of(active)).union(*(armatures_of(m) for m in meshes)) if meshes else armatures_of(active)
    for name in sorted(names):
        armature = bpy.data.objects.get(name)
        extension = getattr(getattr(armature, "data", None), "vrm_addon_extension", None)
        if extension is None:
            continue
        expressions = _addon_expressions(extension)
        if any(expressions.values()):
            spec = "1.0" if str(getattr(extension, "spec_version", "")) == "1.0" else "0.x"
            return Binds(f"VRM {spec} expressions of {name} (VRM add-on)", source_binds(expressions))
    return None


def _addon_expressions(extension) -> dict[str, list[tuple[str, str, float]]]:
    """{expression (1.0 name): [(mesh object, shape key, weight)]} from the add-on's data."""
    out: dict[str, list[tuple[str, str, float]]] = {}
    try:
        if str(getattr(extension, "spec_version", "")) == "1.0":
            preset = extension.vrm1.expressions.preset
            for attribute, name in ADDON_VRM1_PRESETS.items():
                expression = getattr(preset, attribute, None)
                if expression is not None:
                    out[name] = [
                        (b.node.mesh_object_name, str(b.index), float(b.weight)) for b in expression.morph_target_binds
                    ]
        else:
            for group in extension.vrm0.blend_shape_master.blend_shape_groups:
                name = VRM0_PRESETS.get(str(group.preset_name).lower())
                if name is not None:
                    out[name] = [(b.mesh.mesh_object_name, str(b.index), float(b.weight)) for b in group.binds]
    except AttributeError:
        return {}  # another version of the add-on, laid out differently: use the shape-key names
    return out
