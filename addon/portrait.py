"""Face Rig from Portrait: one photo or painting becomes a talking-portrait rig in Blender.

The picture's bytes go to the backend (``portrait_rig``) from a worker thread; what comes back
(the person's fitted face mesh with the schema's ARKit shape keys, the picture as a PNG, the
background card and the camera, see ``steadytalk_shared.portrait_rig``) is built on the main
thread into one new collection:

- the face mesh, placed by the fitted head pose in the render contract's space (one unit is
  one pixel of the picture), textured with the picture itself (its UVs are where each vertex
  sits on the picture), so at rest it shows exactly the photo;
- a dark mouth cavity behind the lips, parented to the face: what shows when the jaw opens;
- the background card: the whole picture on a plane behind the head, so hair, neck and
  background stay as they are;
- an orthographic camera framing the picture, made the scene camera, the render resolution
  set to the picture's size.

The picture is packed into the .blend (nothing depends on a path). Both materials emit their
colour (no lighting: the photo is already lit), so Workbench (Texture colour, Flat lighting),
EEVEE and Cycles render the photo's own colours with the Standard view transform, which the
build sets. Lip-sync from Audio then animates the face mesh like any ARKit rig.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ..shared.portrait_rig import PortraitRigData
from ..shared.render_contract import FACE_POINTS, srgb_decode
from . import backend_link, face_shape_pass, preferences
from .backend_link import Job, UserFacingError
from .operators import JobOperator, push_undo_step
from .rig import rig_from_arrays

PORTRAIT_PROP = "steadytalk_portrait"  # on the face mesh: the picture's file name
# mediapipe topology (the face model keeps its order): the inner lips, corner to corner, as
# backend/face/landmarks.py has them (the add-on does not import the backend).
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
CAVITY_COLOR = (0.045, 0.012, 0.012)  # scene-linear: a dark, slightly red mouth inside
TONGUE_COLOR = (0.30, 0.06, 0.06)
MAX_PICTURE_BYTES = 128 * 1024 * 1024


def picture_file(path: str) -> Path:
    """The chosen picture, checked on the main thread (a clear message for a missing or unsuitable
    file); the worker reads its bytes, so a large file does not stall the UI."""
    if not path:
        raise UserFacingError("Choose a picture file (a photo or painting with a face).")
    file = Path(bpy.path.abspath(path))
    if not file.is_file():
        raise UserFacingError(f"The picture {file} does not exist. Choose another file.")
    size = file.stat().st_size
    if size == 0:
        raise UserFacingError(f"{file.name} is empty (0 bytes). Choose a picture file.")
    if size > MAX_PICTURE_BYTES:
        raise UserFacingError(f"{file.name} is {size / 2**20:.0f} MB; use a picture under 128 MB.")
    return file


def _image(name: str, rgb: np.ndarray) -> bpy.types.Image:
    """The picture as a packed Blender image (rows bottom-up, as Blender stores them)."""
    height, width = rgb.shape[:2]
    image = bpy.data.images.new(f"{name} picture", width, height, alpha=False)
    rgba = np.ones((height, width, 4), dtype=np.float32)
    rgba[..., :3] = rgb[::-1] / 255.0
    image.pixels.foreach_set(rgba.ravel())
    image.update()
    image.pack()  # a generated image packs as PNG: saved inside the .blend
    return image


def _emission_material(name: str, image: bpy.types.Image | None, color=(1.0, 1.0, 1.0)) -> bpy.types.Material:
    """Unlit: the image (or the colour) as emission, and the Workbench colour for Flat lighting."""
    material = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):  # 5.0 materials always use nodes (the flag is deprecated)
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    output = nodes.new("ShaderNodeOutputMaterial")
    emission = nodes.new("ShaderNodeEmission")
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    if image is not None:
        texture = nodes.new("ShaderNodeTexImage")
        texture.image = image
        texture.interpolation = "Linear"
        texture.extension = "EXTEND"  # no wrap-around: the top row must not blend in the bottom one
        links.new(texture.outputs["Color"], emission.inputs["Color"])
        nodes.active = texture  # Workbench's Texture colour draws the active image node
    else:
        emission.inputs["Color"].default_value = (*color, 1.0)
    material.diffuse_color = (*color, 1.0)
    return material


def _card(collection: bpy.types.Collection, name: str, corners: np.ndarray, material) -> bpy.types.Object:
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(np.asarray(corners, dtype=np.float64).tolist(), [], [(3, 2, 1, 0)])  # faces the camera
    uv = mesh.uv_layers.new(name="UVMap")
    corner_uv = {0: (0.0, 1.0), 1: (1.0, 1.0), 2: (1.0, 0.0), 3: (0.0, 0.0)}  # TL, TR, BR, BL
    loop_vertices = np.empty(len(mesh.loops), dtype=np.int32)
    mesh.loops.foreach_get("vertex_index", loop_vertices)
    uv.data.foreach_set("uv", np.array([corner_uv[int(v)] for v in loop_vertices], np.float32).ravel())
    mesh.materials.append(material)
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    return obj


def _cavity(collection, name: str, face: bpy.types.Object, rig: PortraitRigData, material) -> bpy.types.Object:
    """A dark band in the face's own space just behind the lower lip: the face hides it except
    through the mouth, so an opening jaw shows a mouth and not the card's closed lips.

    Its top edge lies along the picture's own inner lower lip at rest (nothing of it shows, and
    a picture with an open mouth keeps its teeth: the card shows them) and moves with the upper
    lip; its bottom edge, a little below and behind the lower lip (tapering to the corners),
    moves with the lower lip, point by point, so it never reaches past the lips. The shape keys
    have the face's ARKit names, so the lip-sync drives it with the face (it is the face's child)."""
    upper, lower = np.array(LIPS_INNER_UPPER), np.array(LIPS_INNER_LOWER)
    vertices = rig.vertices
    width = float(np.ptp(vertices[lower, 0]))
    taper = np.sin(np.linspace(0.0, np.pi, len(lower)))  # 0 at the corners, 1 in the middle
    top = vertices[lower] - np.array([0.0, 0.0, 0.03 * width])
    bottom = top - np.outer(taper, [0.0, 0.12 * width, 0.02 * width])
    corners = np.concatenate([top, bottom]).astype(np.float64)
    n = len(lower)
    quads = [(i, n + i, n + i + 1, i + 1) for i in range(n - 1)]  # +Z (out of the face) is their front
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(corners.tolist(), [], quads)
    mesh.materials.append(material)
    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    obj.parent = face  # follows the face's placement (and any head motion keyed on it)
    _follow(obj, corners, np.concatenate([upper, lower]), rig)
    return obj


def _teeth_color(rig: PortraitRigData, texture: np.ndarray) -> tuple[float, float, float]:
    """Scene-linear off-white lit like the face: the brightest tenth of the skin under the face
    mesh, mostly desaturated (a painting's teeth are as dim and warm as its highlights)."""
    height, width = texture.shape[:2]
    uv = rig.uvs[:FACE_POINTS]
    cols = np.clip((uv[:, 0] * width).astype(int), 0, width - 1)
    rows = np.clip(((1.0 - uv[:, 1]) * height).astype(int), 0, height - 1)
    skin = texture[rows, cols].astype(np.float64) / 255.0
    bright = skin[skin.sum(axis=1) >= np.quantile(skin.sum(axis=1), 0.9)].mean(axis=0)
    color = 0.25 * bright + 0.75 * bright.mean()
    return tuple(float(v) for v in srgb_decode(np.clip(0.92 * color, 0.0, 1.0)))  # teeth sit in shade


def _teeth(collection, name: str, face, rig: PortraitRigData, material) -> bpy.types.Object | None:
    """Upper teeth: a band from the picture's own inner lower lip down, in front of the mouth
    band, riding with the upper lip (its shape keys follow the upper lip's points, so no dark
    gap opens between lip and teeth). Hidden by the lower lip at rest; the jaw uncovers it. Its
    height shrinks by the picture's own mouth opening, so a picture that shows its teeth keeps
    them (the card) and gets no second row."""
    upper, lower = np.array(LIPS_INNER_UPPER), np.array(LIPS_INNER_LOWER)
    vertices = rig.vertices
    width = float(np.ptp(vertices[lower, 0]))
    gap = np.maximum(vertices[upper, 1] - vertices[lower, 1], 0.0)
    taper = np.sin(np.linspace(0.0, np.pi, len(lower)))
    drop = np.maximum(0.16 * width - gap, 0.0) * taper  # incisors: about a sixth of the mouth's width
    if drop.max() < 0.01 * width:
        return None
    top = vertices[lower] - np.array([0.0, 0.0, 0.02 * width])
    bottom = top - np.stack([np.zeros_like(drop), drop, np.zeros_like(drop)], axis=1)
    n = len(lower)
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(np.concatenate([top, bottom]).tolist(), [], [(i, n + i, n + i + 1, i + 1) for i in range(n - 1)])
    mesh.materials.append(material)
    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    obj.parent = face
    _follow(obj, np.concatenate([top, bottom]), np.concatenate([upper, upper]), rig)
    return obj


def _follow(obj: bpy.types.Object, rest: np.ndarray, follows: np.ndarray, rig: PortraitRigData) -> None:
    """Shape keys of the face's names on ``obj``: each of its points moves as the face point
    ``follows[i]`` does, so the lip-sync drives it with the face."""
    obj.shape_key_add(name="Basis", from_mix=False)
    for channel, delta in zip(rig.shape_names, rig.deltas, strict=True):
        key = obj.shape_key_add(name=channel, from_mix=False)
        key.slider_min, key.slider_max, key.value = 0.0, 1.0, 0.0
        key.data.foreach_set("co", (rest + delta[follows]).astype(np.float32).ravel())


def build_portrait_rig(scene: bpy.types.Scene, rig: PortraitRigData, name: str) -> bpy.types.Object:
    """Build the rig's collection in ``scene``; returns the face mesh (the character to lip-sync)."""
    collection = bpy.data.collections.new(f"{name} portrait")
    scene.collection.children.link(collection)
    texture = rig.texture()  # decoded once: the image and the teeth's colour
    image = _image(name, texture)
    picture = _emission_material(f"{name} picture", image)
    face = rig_from_arrays(
        collection, rig.vertices, rig.triangles, rig.uvs, rig.shape_names, rig.deltas, f"{name} face", upright=False
    )
    face.data.materials.append(picture)
    face_shape_pass.set_matrix(face, rig.matrix)
    face[PORTRAIT_PROP] = name
    cavity = _emission_material(f"{name} mouth", None, CAVITY_COLOR)
    _cavity(collection, f"{name} mouth", face, rig, cavity)
    teeth = _emission_material(f"{name} teeth", None, _teeth_color(rig, texture))
    _teeth(collection, f"{name} teeth", face, rig, teeth)
    # The tongue (the mesh's points past the face proper) is not in the photo: its own colour.
    face.data.materials.append(_emission_material(f"{name} tongue", None, TONGUE_COLOR))
    tongue = np.any(rig.triangles >= FACE_POINTS, axis=1).astype(np.int32)
    face.data.polygons.foreach_set("material_index", tongue)
    _card(collection, f"{name} card", rig.card, picture)
    camera = rig.camera
    camera_name, number = f"{name} camera", 1
    while camera_name in bpy.data.objects:  # contract_camera reuses an object of its name: a second rig gets its own
        camera_name, number = f"{name} camera.{number:03d}", number + 1
    camera_obj = face_shape_pass.contract_camera(
        scene, camera.location, camera.ortho_scale, camera.clip_start, camera.clip_end, name=camera_name
    )
    for owner in list(camera_obj.users_collection):
        owner.objects.unlink(camera_obj)
    collection.objects.link(camera_obj)
    scene.render.resolution_x, scene.render.resolution_y = rig.width, rig.height
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    scene.view_settings.view_transform = "Standard"  # the photo's own colours, not a film curve
    scene.view_settings.look = "None"
    # The scene the request came from may no longer be the one shown: select in its own layer.
    view_layer = bpy.context.view_layer if bpy.context.scene == scene else scene.view_layers[0]
    for obj in view_layer.objects:
        if obj is not None:  # bpy 4.2 can list a just-removed object as None
            obj.select_set(False, view_layer=view_layer)
    face.select_set(True, view_layer=view_layer)
    view_layer.objects.active = face
    return face


def start_portrait_rig(context: bpy.types.Context, path: str, size: int, face: int, push_undo: bool) -> Job:
    """Check the picture, then fit it on the backend from a worker; built when it arrives."""
    file = picture_file(path)
    name = file.stem
    connection = preferences.connection(context)
    scene_name = context.scene.name
    chosen = face if face > 0 else None

    def work(job: Job) -> PortraitRigData:
        backend_link.connect(connection, job)
        job.progress(0.05, "sending the picture")
        job.check_cancelled()
        data = file.read_bytes()
        with connection.client() as client:
            return client.portrait_rig(
                data, size=size, face=chosen, name=file.name, progress=job.progress, cancelled=job.is_cancel_requested
            )

    def on_done(job: Job) -> None:
        scene = bpy.data.scenes.get(scene_name)
        if scene is None:
            raise UserFacingError("The scene was deleted before the portrait rig arrived.")
        rig: PortraitRigData = job.result
        obj = build_portrait_rig(scene, rig, name)
        which = f"face {rig.face} of {rig.faces}, " if rig.faces > 1 else ""
        notes = "".join(f"; {w}" for w in rig.warnings)
        backend_link.set_message(
            "INFO",
            f"{obj.name}: {len(rig.shape_names)} ARKit shape keys, {which}{rig.width}x{rig.height} picture packed; "
            f"Lip-sync from Audio animates it{notes}",
        )
        if push_undo:
            push_undo_step("Face Rig from Portrait")

    job = Job("Face rig from portrait", work, on_done)
    backend_link.submit(job)
    return job


class PicturePicker(JobOperator):
    """A backend job on one picture: the picture's path and which face, and from the panel the
    file browser first (then it runs as from a script). Shared by the portrait operators."""

    filepath: bpy.props.StringProperty(subtype="FILE_PATH", name="Picture")
    filter_glob: bpy.props.StringProperty(
        default="*.png;*.jpg;*.jpeg;*.webp;*.tif;*.tiff;*.bmp;*.gif", options={"HIDDEN"}
    )
    face: bpy.props.IntProperty(
        name="Face", description="Which face when the picture has several: 1 is the leftmost, 0 the largest",
        default=0, min=0, max=64,
    )  # fmt: skip

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if not self.filepath:
            context.window_manager.fileselect_add(self)
            return {"RUNNING_MODAL"}
        return super().invoke(context, event)


class STEADYTALK_OT_portrait_rig(PicturePicker, bpy.types.Operator):
    """Build a talking-portrait rig from one photo or painting: the person's face mesh with the ARKit shape
    keys, the picture as its texture, a background card and a camera (fitted by the backend)"""

    bl_idname = "steadytalk.portrait_rig"
    bl_label = "Face Rig from Portrait"
    bl_options = {"REGISTER", "UNDO"}

    size: bpy.props.IntProperty(
        name="Texture Size", description="The texture's longer side in pixels (the picture is resized to it)",
        default=1024, min=128, max=4096,
    )  # fmt: skip

    def start(self, context: bpy.types.Context, from_ui: bool) -> None:
        # From the UI this operator's own undo step holds the rig (as Lip-sync from Audio does).
        start_portrait_rig(context, self.filepath, self.size, self.face, push_undo=not from_ui)


CLASSES = (STEADYTALK_OT_portrait_rig,)
