"""The face rig in Blender: the canonical face mesh with one shape key per schema channel.

Built with ``foreach_set`` from the project's face-model data (``shared/data/face_model.npz``,
or an avatar's ``blender/rig.npz``), so adding the rig takes milliseconds, and the shape keys
carry the ARKit names that "Lip-sync from audio" and other ARKit tools look for.
"""

from __future__ import annotations

from collections.abc import Sequence

import bpy
import numpy as np

from ..shared.face_model import FaceModel


def create_face_rig(
    collection: bpy.types.Collection,
    model: FaceModel,
    name: str = "SteadyTalk Face",
    location: Sequence[float] = (0.0, 0.0, 0.0),
    upright: bool = True,
) -> bpy.types.Object:
    """A new mesh object: the model's neutral as Basis and its blendshapes as shape keys.

    Blender is Z-up and the model is Y-up (X to the character's left, Z out of the face), so
    the mesh is rotated to stand upright facing -Y, Blender's front view. ``upright=False``
    keeps the model's own axes, for an avatar rig that a head-pose matrix places."""
    return rig_from_arrays(
        collection, model.vertices, model.triangles, model.uvs, model.shape_names, model.deltas, name, location, upright
    )


def rig_from_arrays(  # noqa: PLR0913
    collection: bpy.types.Collection,
    vertices: np.ndarray,
    triangles: np.ndarray,
    uvs: np.ndarray,
    shape_names: Sequence[str],
    deltas: np.ndarray,
    name: str,
    location: Sequence[float] = (0.0, 0.0, 0.0),
    upright: bool = True,
) -> bpy.types.Object:
    """``create_face_rig`` from plain arrays (a portrait rig that came over the wire): vertices
    (V, 3), triangles (F, 3), uvs (V, 2), deltas (S, V, 3) in ``shape_names`` order."""
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]) if upright else np.eye(3)
    neutral = np.asarray(vertices, dtype=np.float64) @ rotation.T
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(neutral.tolist(), [], np.asarray(triangles).tolist())
    uv_layer = mesh.uv_layers.new(name="UVMap")
    loop_vertices = np.empty(len(mesh.loops), dtype=np.int32)
    mesh.loops.foreach_get("vertex_index", loop_vertices)
    uv_layer.data.foreach_set("uv", np.asarray(uvs)[loop_vertices].astype(np.float32).ravel())
    mesh.validate()
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    obj.location = tuple(location)
    obj.shape_key_add(name="Basis", from_mix=False)
    for channel, delta in zip(shape_names, deltas, strict=True):
        key = obj.shape_key_add(name=channel, from_mix=False)
        key.slider_min, key.slider_max = 0.0, 1.0
        key.value = 0.0  # the rig starts at rest (new keys are not always at 0)
        key.data.foreach_set("co", (neutral + delta.astype(np.float64) @ rotation.T).astype(np.float32).ravel())
    mesh.shape_keys.use_relative = True
    return obj
