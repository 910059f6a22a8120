"""A trained avatar in Blender: "Load Avatar" builds the person's rig, cameras, head-pose
animation and plate; "Render Photoreal Pass" draws the rig's face-shape pass for each frame,
streams it to the backend and puts the photoreal frames it gets back into the sequencer.

Frames and time: the avatar's reference video is keyed on the rig from the load frame on, for
the render loop's frames (``render_contract.reference_loop``), with a Mirror cycle after it:
the same ping-pong the backend plays (``reference_index``), so frame ``f`` of the scene always
shows reference frame ``reference_index(f - start)``, in the viewport and in the render.

The pass: the shape passes are drawn on the main thread (Workbench in a private scene that
links the rig and the crop camera, so the user's render settings are never touched), a few per
tick so the UI stays live; then a worker thread sends them, a bounded number of requests in
flight, and writes each photoreal frame as ``<folder>/frame_<number>.png`` the moment it
arrives (write-then-rename). Rendering again renders only the frames whose file is missing,
so a cancel or a backend crash loses nothing and a rerun never duplicates a frame.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from ..shared import render_contract as rc
from ..shared.client import BackendError
from ..shared.face_model import FaceModel
from ..shared.png import write_png
from ..shared.protocol import ErrorCode
from ..shared.render_pass import PassPlan, render_pass
from ..shared.schema import CHANNELS
from . import backend_link, face_shape_pass
from .backend_link import Job, UserFacingError
from .rig import create_face_rig

AVATAR_PROP = "steadytalk_avatar"  # on the rig: the avatar folder
START_PROP = "steadytalk_avatar_start"  # on the rig: the scene frame of reference frame 0
LOOP_PROP = "steadytalk_avatar_loop"
SIZE_PROP = "steadytalk_avatar_size"
CROP_CAMERA = "SteadyTalk crop camera"
STRIP_TAG = "steadytalk_photoreal"
SHAPES_PER_TICK = 4


@dataclass
class AvatarFolder:
    path: Path
    scene: dict
    rig: FaceModel
    head_pose: np.ndarray  # (T, 4, 4) model -> full-frame contract space
    crops: np.ndarray  # (T, 3) crop windows at ``size``
    size: int

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def loop(self) -> int:
        return rc.reference_loop(self.scene["frames"], self.scene["fps"])


def read_avatar(folder: str | Path) -> AvatarFolder:
    path = Path(bpy.path.abspath(str(folder))).resolve()
    blender = path / "blender"
    scene_file = blender / "scene.json"
    if not scene_file.is_file():
        raise UserFacingError(
            f"{path} is not a prepared avatar (blender/scene.json is missing); run 'steadytalk prepare'."
        )
    model = path / "model" / "renderer.json"
    if not model.is_file():
        raise UserFacingError(f"{path.name} has no trained renderer yet; run 'steadytalk train {path}' first.")
    size = int(json.loads(model.read_text())["architecture"]["size"])
    crops = path / f"crop_{size}" / "crop.npy"
    if not crops.is_file():
        raise UserFacingError(f"{path.name} has no {size}px crops, which its renderer needs; prepare it again.")
    scene = json.loads(scene_file.read_text())
    return AvatarFolder(
        path,
        scene,
        FaceModel.load(blender / scene["rig"]),
        np.load(blender / scene["head_pose"]),
        np.load(crops),
        size,
    )


def _key_channels(target, specs: list[tuple[str, int, np.ndarray]], start: int) -> None:
    """Key ``data_path[index]`` with values (T,) at frames start.. with foreach_set, linear, and
    a Mirror cycle (the ping-pong of ``reference_index``)."""
    if target.animation_data is None:
        target.animation_data_create()
    action = target.animation_data.action
    if action is None:
        action = target.animation_data.action = bpy.data.actions.new(f"{target.name} reference")
    from .keying import fcurve_for, linear_interpolation

    for data_path, index, values in specs:
        curve = fcurve_for(action, target, data_path, index)
        curve.keyframe_points.clear()
        curve.keyframe_points.add(len(values))
        co = np.empty((len(values), 2), dtype=np.float32)
        co[:, 0] = np.arange(start, start + len(values))
        co[:, 1] = values
        curve.keyframe_points.foreach_set("co", co.ravel())
        curve.keyframe_points.foreach_set("interpolation", np.full(len(values), linear_interpolation(), dtype=np.int32))
        curve.update()
        while curve.modifiers:
            curve.modifiers.remove(curve.modifiers[0])
        cycles = curve.modifiers.new("CYCLES")
        cycles.mode_before = cycles.mode_after = "MIRROR"


def _similarity(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """4x4 scale * rotation + translation -> (location, quaternion wxyz, scale)."""
    from mathutils import Matrix

    linear = matrix[:3, :3]
    scale = float(np.cbrt(np.linalg.det(linear)))
    quaternion = Matrix((linear / scale).tolist()).to_quaternion()
    return matrix[:3, 3], np.array(quaternion), scale


def load_avatar(context: bpy.types.Context, folder: str | Path, start: int | None = None) -> bpy.types.Object:
    """Build the avatar in the current scene; returns its rig (active and selected)."""
    avatar = read_avatar(folder)
    scene = context.scene
    start = scene.frame_current if start is None else int(start)
    width, height = (int(v) for v in avatar.scene["resolution"])
    loop = avatar.loop
    # The rig: the person's identity mesh with the schema's shape keys, in model metres,
    # placed by the head pose (model -> contract space, where one unit is one source pixel).
    rig = create_face_rig(scene.collection, avatar.rig, name=f"{avatar.name} (Steady Talk)", upright=False)
    colors = rc.canonical_colors(FaceModel.load().vertices)
    face_shape_pass.add_contract_colors(rig.data, colors)
    rig[AVATAR_PROP] = str(avatar.path)
    rig[START_PROP], rig[LOOP_PROP], rig[SIZE_PROP] = start, loop, avatar.size
    rig.rotation_mode = "QUATERNION"
    poses = [_similarity(m) for m in avatar.head_pose[:loop].astype(np.float64)]
    locations = np.array([p[0] for p in poses])
    quaternions = np.array([p[1] for p in poses])
    quaternions *= np.sign(np.sum(quaternions * quaternions[:1], axis=1, keepdims=True))  # one hemisphere
    scales = np.array([p[2] for p in poses])
    specs = [("location", i, locations[:, i]) for i in range(3)]
    specs += [("rotation_quaternion", i, quaternions[:, i]) for i in range(4)]
    specs += [("scale", i, scales) for i in range(3)]
    _key_channels(rig, specs, start)
    # The reference camera (the source video's framing) becomes the scene camera.
    camera = rc.camera(width, height)
    reference_camera = face_shape_pass.contract_camera(
        scene, camera.location, camera.ortho_scale, camera.clip_start, camera.clip_end, name=f"{avatar.name} camera"
    )
    plate = (avatar.path / "blender" / avatar.scene["plate"]).resolve()
    if plate.is_file():
        reference_camera.data.show_background_images = True
        background = reference_camera.data.background_images.new()
        background.source = "MOVIE_CLIP"
        clip = bpy.data.movieclips.load(str(plate), check_existing=True)
        clip.frame_start = start
        background.clip = clip
        background.alpha = 1.0
    # The crop camera: over the avatar's face crop at every reference frame.
    cams = [
        rc.crop_camera(rc.Crop(*map(float, w), avatar.size, avatar.size), width, height) for w in avatar.crops[:loop]
    ]
    crop_camera = face_shape_pass.contract_camera(
        scene, cams[0].location, cams[0].ortho_scale, cams[0].clip_start, cams[0].clip_end, name=CROP_CAMERA
    )
    _key_channels(crop_camera, [("location", i, np.array([c.location[i] for c in cams])) for i in range(2)], start)
    _key_channels(crop_camera.data, [("ortho_scale", 0, np.array([c.ortho_scale for c in cams]))], start)
    scene.camera = reference_camera
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    fps = float(avatar.scene["fps"])
    scene.render.fps, scene.render.fps_base = round(fps), round(fps) / fps
    for obj in context.view_layer.objects:
        obj.select_set(False)
    rig.select_set(True)
    context.view_layer.objects.active = rig
    return rig


def avatar_of(obj: bpy.types.Object | None) -> str | None:
    return obj.get(AVATAR_PROP) if obj is not None else None


# -- the photoreal pass -----------------------------------------------------------------
def frame_path(folder: Path, frame: int) -> Path:
    return folder / f"frame_{frame:06d}.png"


@dataclass
class PassState:
    """Shared by the main thread (draws shape passes) and the worker (sends them)."""

    frames: list[int]  # scene frames of the pass
    needed: list[int] = field(default_factory=list)  # pass indices whose shape pass is needed
    shapes: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    drawn: threading.Event = field(default_factory=threading.Event)
    next_needed: int = 0


@dataclass
class ShapePassStage:
    """A private scene that holds the rig and its own, unanimated crop camera, set to the render
    contract: the user's scene and render settings are never touched. The user's scene is
    moved to each frame (so the rig's animation, head pose and shape keys, is evaluated there)
    and the camera is placed over that frame's crop by the same numbers the backend uses."""

    user_scene: bpy.types.Scene
    rig: bpy.types.Object
    avatar: AvatarFolder
    start: int
    scene: bpy.types.Scene = None
    camera: bpy.types.Object = None

    def __post_init__(self) -> None:
        name = "SteadyTalk shape pass"
        self.scene = bpy.data.scenes.get(name) or bpy.data.scenes.new(name)
        for obj in list(self.scene.collection.objects):
            self.scene.collection.objects.unlink(obj)
        self.scene.collection.objects.link(self.rig)
        size = self.avatar.size
        first = self._camera_for(0)
        self.camera = face_shape_pass.contract_camera(
            self.scene, first.location, first.ortho_scale, first.clip_start, first.clip_end, name=f"{name} camera"
        )
        if self.camera.name not in self.scene.collection.objects:
            self.scene.collection.objects.link(self.camera)
        face_shape_pass.configure_scene(self.scene, size, size)

    def _camera_for(self, reference: int) -> rc.OrthoCamera:
        width, height = (int(v) for v in self.avatar.scene["resolution"])
        window = self.avatar.crops[reference]
        return rc.crop_camera(rc.Crop(*map(float, window), self.avatar.size, self.avatar.size), width, height)

    def reference(self, frame: int) -> int:
        return int(rc.reference_index(frame - self.start, self.avatar.loop))

    def draw(self, frame: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """Render the contract at ``frame``: (S, S, 3) uint8 image and the rig's coefficients."""
        self.user_scene.frame_set(frame)
        camera = self._camera_for(self.reference(frame))
        self.camera.location = camera.location
        self.camera.data.ortho_scale = camera.ortho_scale
        self.scene.frame_set(frame)
        self.scene.render.filepath = str(path)
        bpy.ops.render.render(write_still=True, scene=self.scene.name)
        image = bpy.data.images.load(str(path), check_existing=False)
        try:
            width, height = image.size
            pixels = np.empty(width * height * 4, dtype=np.float32)
            image.pixels.foreach_get(pixels)
        finally:
            bpy.data.images.remove(image)
        rgb = (pixels.reshape(height, width, 4)[::-1, :, :3] * 255.0 + 0.5).astype(np.uint8)
        keys = self.rig.data.shape_keys.key_blocks
        coefficients = np.array([keys[n].value if n in keys else 0.0 for n in CHANNELS], dtype=np.float32)
        return rgb, coefficients


def start_photoreal_pass(context: bpy.types.Context, folder: str, first: int, last: int, in_flight: int = 3) -> Job:
    scene = context.scene
    rig = context.active_object
    avatar_path = avatar_of(rig)
    if avatar_path is None:
        raise UserFacingError("Select an avatar's rig (made by Load Avatar) to render its photoreal pass.")
    if CROP_CAMERA not in bpy.data.objects:
        raise UserFacingError("The avatar's crop camera is missing; load the avatar again.")
    if last < first:
        raise UserFacingError(f"The frame range {first}-{last} is empty.")
    out = Path(bpy.path.abspath(folder)).resolve()
    out.mkdir(parents=True, exist_ok=True)
    frames = list(range(first, last + 1))
    missing = [i for i, f in enumerate(frames) if not frame_path(out, f).exists()]
    from . import preferences

    connection = preferences.connection(context)
    avatar_name = Path(avatar_path).name
    start, loop, size = int(rig[START_PROP]), int(rig[LOOP_PROP]), int(rig[SIZE_PROP])
    fps = scene.render.fps / scene.render.fps_base
    audio = _scene_audio(scene, first)
    state = PassState(frames)
    stage = ShapePassStage(scene, rig, read_avatar(avatar_path), start)
    scratch = out / ".shape_pass.png"
    user_frame = scene.frame_current

    def main_step() -> bool:
        """Draw a few shape passes (main thread); True once all needed ones are drawn."""
        if state.drawn.is_set():
            return True
        if job.is_cancel_requested() or (job.finished and not state.drawn.is_set()):
            state.drawn.set()
            return True
        if not state.needed:
            return False  # the worker has not planned yet
        for _ in range(SHAPES_PER_TICK):
            if state.next_needed >= len(state.needed):
                scene.frame_set(user_frame)
                scratch.unlink(missing_ok=True)
                state.drawn.set()
                return True
            index = state.needed[state.next_needed]
            state.shapes[index] = stage.draw(frames[index], scratch)
            state.next_needed += 1
        job.progress(0.5 * state.next_needed / len(state.needed), f"shape pass {state.next_needed}/{len(state.needed)}")
        return False

    def work(job: Job):
        if not missing:
            return 0
        backend_link.connect(connection, job)
        with connection.client() as client:
            try:
                session = client.render_open(avatar_name, len(frames), fps, audio, cancelled=job.is_cancel_requested)
            except BackendError as exc:
                if exc.code == ErrorCode.UNKNOWN_AVATAR:
                    raise UserFacingError(f"Backend: {exc.message}") from None
                raise
            if session["loop"] != loop or session["size"] != size:
                raise UserFacingError("The backend's copy of this avatar differs from the loaded one; load it again.")
            plan = PassPlan(len(frames), session["context"], session["max_frames_per_request"])
            state.needed = plan.needed(missing)
            while not state.drawn.wait(0.1):
                job.check_cancelled()
            job.check_cancelled()

            def write(index: int, rgb: np.ndarray) -> None:
                write_png(frame_path(out, frames[index]), rgb)

            def progress(done: int, total: int) -> None:
                job.progress(0.5 + 0.5 * done / total, f"photoreal frame {done}/{total}")

            return render_pass(
                client,
                session,
                plan,
                missing,
                lambda i: state.shapes[i],
                lambda i: stage.reference(frames[i]),
                write,
                in_flight=in_flight,
                cancelled=job.is_cancel_requested,
                progress=progress,
            )

    scene_name = scene.name

    def on_done(job: Job) -> None:
        target = bpy.data.scenes.get(scene_name)
        if target is None:
            return
        strip = add_image_strip(target, out, frames)
        backend_link.set_message(
            "INFO", f"Photoreal pass: {job.result} frame(s) rendered, {len(frames)} in {out}; strip '{strip.name}'."
        )

    job = Job("Photoreal pass", work, on_done, main_step=main_step)
    backend_link.submit(job)
    return job


def _scene_audio(scene: bpy.types.Scene, first: int) -> bytes | None:
    """The audio under the pass for the renderer's audio fusion: the lip-sync's sound strip
    when it starts at the pass's first frame (the usual case), else none (silence)."""
    from .lipsync import SOUND_TAG, all_strips

    editor = scene.sequence_editor
    if editor is None:
        return None
    for strip in all_strips(editor):
        if strip.get(SOUND_TAG) and strip.type == "SOUND" and strip.frame_start == first and strip.sound:
            path = Path(bpy.path.abspath(strip.sound.filepath))
            if path.is_file():
                return path.read_bytes()
    return None


def add_image_strip(scene: bpy.types.Scene, folder: Path, frames: list[int]) -> bpy.types.Sequence:
    """The pass as one image strip at its first frame, above the lip-sync sound strip (or on
    the first free channel); replaces the strip of an earlier pass into the same folder."""
    from .lipsync import SOUND_TAG, all_strips, strips_of

    editor = scene.sequence_editor or scene.sequence_editor_create()
    for strip in [s for s in strips_of(editor) if s.get(STRIP_TAG) == str(folder)]:
        strips_of(editor).remove(strip)
    present = [f for f in frames if frame_path(folder, f).exists()]
    if not present:
        raise UserFacingError(f"No photoreal frames in {folder}.")
    first, last = frames[0], frames[-1]
    sounds = [s for s in all_strips(editor) if s.get(SOUND_TAG)]
    channel = max([s.channel for s in sounds], default=0) + 1

    def busy(c: int) -> bool:
        return any(
            s.channel == c and s.frame_final_start <= last and s.frame_final_end > first for s in all_strips(editor)
        )

    while busy(channel):
        channel += 1
    strip = strips_of(editor).new_image(
        name=f"Photoreal {folder.name}", filepath=str(frame_path(folder, frames[0])), channel=channel, frame_start=first
    )
    for f in frames[1:]:
        strip.elements.append(frame_path(folder, f).name)
    strip[STRIP_TAG] = str(folder)
    return strip
