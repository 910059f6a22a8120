"""The face-shape pass in Blender: scene settings, camera and mesh of the render contract.

The contract itself (colours, contract space, camera) is defined in
``steadytalk_shared.render_contract``; this module only applies it to a Blender scene, taking
plain numbers and arrays so it needs nothing but ``bpy``. Workbench is used because it is the
one engine that draws vertex colours unlit and exactly: flat lighting, no anti-aliasing, no
dithering, Standard view transform, black world.
"""

from __future__ import annotations

from collections.abc import Sequence

import bpy
import numpy as np

COLOR_ATTRIBUTE = "steadytalk_canonical"


def configure_scene(scene: bpy.types.Scene, width: int, height: int) -> None:
    """Render settings of the contract (idempotent; touches only render/colour settings)."""
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    scene.render.film_transparent = False
    scene.render.dither_intensity = 0.0
    scene.render.use_freestyle = False
    scene.display.render_aa = "OFF"
    shading = scene.display.shading
    shading.light = "FLAT"
    shading.color_type = "VERTEX"
    shading.background_type = "WORLD"
    for flag in ("show_shadows", "show_cavity", "show_object_outline", "show_specular_highlight", "use_dof"):
        if hasattr(shading, flag):
            setattr(shading, flag, False)
    shading.show_backface_culling = False
    shading.show_xray = False
    view = scene.view_settings
    scene.display_settings.display_device = "sRGB"
    view.view_transform = "Standard"
    view.look = "None"
    view.exposure = 0.0
    view.gamma = 1.0
    view.use_curve_mapping = False
    scene.sequencer_colorspace_settings.name = "sRGB"
    if scene.world is None:
        scene.world = bpy.data.worlds.new("SteadyTalk shape pass")
    scene.world.color = (0.0, 0.0, 0.0)
    image = scene.render.image_settings
    image.file_format = "PNG"
    image.color_mode = "RGB"
    image.color_depth = "8"


def contract_camera(
    scene: bpy.types.Scene,
    location: Sequence[float],
    ortho_scale: float,
    clip_start: float,
    clip_end: float,
    name: str = "SteadyTalk shape-pass camera",
) -> bpy.types.Object:
    """The orthographic camera of the contract (looking down -Z, image up = +Y), made active."""
    obj = bpy.data.objects.get(name)
    if obj is None or obj.type != "CAMERA":
        obj = bpy.data.objects.new(name, bpy.data.cameras.new(name))
        scene.collection.objects.link(obj)
    cam = obj.data
    cam.type = "ORTHO"
    cam.ortho_scale = ortho_scale
    cam.sensor_fit = "AUTO"
    cam.shift_x = cam.shift_y = 0.0
    cam.clip_start, cam.clip_end = clip_start, clip_end
    obj.location = tuple(location)
    obj.rotation_mode = "XYZ"
    obj.rotation_euler = (0.0, 0.0, 0.0)
    obj.scale = (1.0, 1.0, 1.0)
    scene.camera = obj
    return obj


def face_object(
    scene: bpy.types.Scene,
    name: str,
    vertices: np.ndarray,
    triangles: np.ndarray,
    colors: np.ndarray,
) -> bpy.types.Object:
    """A mesh object with the contract's colours as its active, rendered colour attribute.

    vertices (V, 3) in the object's own space (its matrix_world places it); triangles (F, 3);
    colors (V, 3) scene-linear, i.e. the canonical coordinates themselves."""
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(np.asarray(vertices, dtype=np.float64).tolist(), [], np.asarray(triangles).tolist())
    mesh.validate()
    add_contract_colors(mesh, colors)
    obj = bpy.data.objects.new(name, mesh)
    scene.collection.objects.link(obj)
    return obj


def add_contract_colors(mesh: bpy.types.Mesh, colors: np.ndarray) -> None:
    """The contract's per-vertex colours (V, 3), scene-linear, as the mesh's rendered colours."""
    attribute = mesh.color_attributes.new(COLOR_ATTRIBUTE, "FLOAT_COLOR", "POINT")
    rgba = np.concatenate([np.asarray(colors, dtype=np.float32), np.ones((len(colors), 1), np.float32)], axis=1)
    attribute.data.foreach_set("color", rgba.ravel())
    mesh.color_attributes.active_color = attribute
    mesh.color_attributes.render_color_index = mesh.color_attributes.active_color_index


def set_matrix(obj: bpy.types.Object, matrix: np.ndarray) -> None:
    """Place an object with a 4x4 (row-major numpy) contract matrix."""
    from mathutils import Matrix

    obj.matrix_world = Matrix([list(map(float, row)) for row in np.asarray(matrix)])
