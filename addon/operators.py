"""Operators: Add Face Rig, Lip-sync from Audio (+ cancel), connection tools, avatars.

"Lip-sync from Audio" collects everything from the UI on the main thread, sends the audio
from a worker thread (``backend_link.Job``) and applies the result on the main thread:
interactively through a modal operator (Esc cancels; its undo step holds the whole result),
from scripts through ``bpy.app.timers`` (or ``backend_link.wait()`` where timers do not fire,
as in the ``bpy`` module and background Blender).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import bpy

from ..shared.face_model import FaceModel
from . import backend_link, lipsync, preferences
from .backend_link import Job, UserFacingError
from .rig import create_face_rig


@dataclass(frozen=True)
class AudioSource:
    name: str
    path: str | None  # read by the worker; None when ``data`` holds the bytes (packed sound)
    data: bytes | None
    start_frame: int
    from_file: bool


def audio_source(scene: bpy.types.Scene) -> AudioSource:
    settings = scene.steadytalk
    if settings.source == "FILE":
        if not settings.audio_path:
            raise UserFacingError("Choose an audio file first (Steady Talk panel > Audio).")
        path = Path(bpy.path.abspath(settings.audio_path))
        if not path.is_file():
            raise UserFacingError(f"The audio file {path} does not exist. Choose another file.")
        auto_start = scene.frame_current
        source = AudioSource(path.stem, str(path), None, auto_start, True)
    else:
        editor = scene.sequence_editor
        strip = lipsync.all_strips(editor).get(settings.sound_strip) if editor else None
        if strip is None or strip.type != "SOUND" or strip.sound is None:
            raise UserFacingError("Choose a sound strip of this scene's Video Sequencer, or switch the source to File.")
        source = strip_audio(strip)
    if settings.start == "CURRENT":
        return replace(source, start_frame=scene.frame_current)
    if settings.start == "CUSTOM":
        return replace(source, start_frame=settings.start_frame)
    return source


def strip_audio(strip) -> AudioSource:
    """The audio of a sound strip: its packed bytes, or the file it points to (checked here)."""
    sound = strip.sound
    if sound.packed_file is not None:
        return AudioSource(strip.name, None, bytes(sound.packed_file.data), int(strip.frame_start), False)
    path = Path(bpy.path.abspath(sound.filepath, library=sound.library))
    if not path.is_file():
        raise UserFacingError(f"The sound strip {strip.name!r} points to {path}, which does not exist.")
    return AudioSource(strip.name, str(path), None, int(strip.frame_start), False)


def transcript_of(scene: bpy.types.Scene) -> tuple[str | None, str]:
    """The typed words (or None) and how the backend reads speech without them."""
    settings = scene.steadytalk
    if settings.transcript_source == "TYPED":
        text = settings.transcript
    elif settings.transcript_source == "TEXT":
        if settings.transcript_text is None:
            raise UserFacingError("Choose the text block that holds the transcript, or set Transcript to Automatic.")
        text = settings.transcript_text.as_string()
    else:
        return None, "phones" if settings.transcript_source == "NONE" else "words"
    return " ".join(text.split()) or None, "words"


def _ensure_timer() -> None:
    if not bpy.app.timers.is_registered(backend_link.tick):
        bpy.app.timers.register(backend_link.tick, first_interval=backend_link.TICK_SECONDS)


def push_undo_step(message: str) -> None:
    """One undo step for a result that arrived after its operator finished (from the timer)."""
    try:
        bpy.ops.ed.undo_push(message=message)
    except RuntimeError:
        pass  # no undo stack (background Blender, the bpy module)


def redraw_panels() -> None:
    for window in getattr(bpy.context.window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type in {"VIEW_3D", "PREFERENCES"}:
                area.tag_redraw()


def key_settings(scene: bpy.types.Scene) -> dict:
    """The Keys box of the panel as ApplySettings fields."""
    settings = scene.steadytalk
    return {
        "push_to_nla": settings.push_to_nla,
        "tolerance": settings.tolerance if settings.key_mode == "REDUCED" else None,
        "hold": settings.hold_frames if settings.key_mode == "STEPPED" else 0,
        "extend_range": settings.extend_range,
        "face_off": face_off(scene),
    }


def face_off(scene: bpy.types.Scene) -> tuple[str, ...]:
    """The parts of the face the user turned off: not keyed, so the rig's own animation stays."""
    settings = scene.steadytalk
    parts = {"blinks": settings.use_blinks, "gaze": settings.use_gaze, "brows": settings.use_brows}
    parts["head"] = settings.head_motion > 0
    return tuple(name for name, on in parts.items() if not on)


def face_request(scene: bpy.types.Scene, obj: bpy.types.Object | None = None) -> dict:
    """The whole-face fields of the lipsync request (``protocol.LIPSYNC_FACE_FIELDS``). Style
    Avatar's Own asks for ``avatar:NAME``, the manner the backend learned from the avatar ``obj``
    was loaded from; a character that is no avatar gets the default style."""
    settings = scene.steadytalk
    blink_rate = None if settings.blink_rate <= 0 else float(settings.blink_rate)
    style = settings.face_style
    if style == "AVATAR":
        avatar_path = obj.get("steadytalk_avatar") if obj is not None else None
        style = f"avatar:{Path(avatar_path).name}" if avatar_path else None
    return {
        "blink_rate": blink_rate if settings.use_blinks else 0.0,
        "head_motion": float(settings.head_motion),
        "expressiveness": float(settings.expressiveness),
        "seed": int(settings.face_seed),
        "style": style,
    }


def describe_applied(name: str, plan, first: int, frames: int, extra: list[str]) -> str:
    """The one line the panel shows after a lip-sync: what was keyed, by which convention."""
    note = f"; no target for {len(plan.unmatched)}" if plan.unmatched else ""
    resting = sum(plan.driven.values()) - sum(plan.keyed.values())
    rest = f"; {resting} at rest all through, not keyed" if resting > 0 else ""
    warn = "".join(f"; {text}" for text in extra)
    keyed = plan.summary(plan.keyed) or "mouth index"
    return f"{name}: {keyed} animated (frames {first}-{first + frames - 1}; {plan.reason}){rest}{note}{warn}"


def start_lipsync(context: bpy.types.Context, push_undo: bool) -> Job:
    """Validate the request, then start the backend job; raises UserFacingError for bad input."""
    scene = context.scene
    obj = context.active_object
    selected = [o for o in context.selected_objects if o != obj]
    lipsync.check_character(obj, selected)
    source = audio_source(scene)
    transcript, recognizer = transcript_of(scene)
    connection = preferences.connection(context)
    settings = scene.steadytalk
    fps = lipsync.scene_fps(scene)
    apply_settings = lipsync.ApplySettings(
        object_name=obj.name,
        start_frame=source.start_frame,
        audio_name=source.name,
        audio_path=source.path if source.from_file else None,
        add_sound_strip=settings.add_sound_strip,
        selected=tuple(o.name for o in selected),
        **key_settings(scene),
    )
    strength = settings.smoothing_strength
    face = face_request(scene, obj)
    scene_name = scene.name
    avatar_path = obj.get("steadytalk_avatar")
    avatar_name = Path(avatar_path).name if avatar_path else None

    def work(job: Job):
        backend_link.connect(connection, job)
        job.progress(0.02, "sending audio")
        job.check_cancelled()
        data = source.data if source.data is not None else Path(source.path).read_bytes()
        with connection.client() as client:
            return client.lipsync(
                data,
                transcript,
                fps=fps,
                smoothing=strength,
                progress=job.progress,
                cancelled=job.is_cancel_requested,
                avatar=avatar_name,
                face=face,
                recognizer=recognizer,
            )

    def on_done(job: Job) -> None:
        scene_now = bpy.data.scenes.get(scene_name)
        if scene_now is None:
            raise UserFacingError("The scene was deleted before the lip-sync arrived.")
        result = job.result
        actions, notes, plan = lipsync.apply_result(scene_now, result, apply_settings)
        heard = result.transcript_text if result.transcript_source == "recognized" else ""
        scene_now.steadytalk.recognized_text = heard
        text = describe_applied(
            actions[0].name if actions else "SteadyTalk", plan, apply_settings.start_frame, result.num_frames,
            [*result.warnings, *notes],
        )  # fmt: skip
        backend_link.set_message("INFO", f"{text} ({result.duration:.1f} s, {result.mode})")
        if push_undo:
            push_undo_step("Lip-sync from Audio")

    job = Job("Lip-sync", work, on_done)
    backend_link.submit(job)
    return job


class JobOperator:
    """An operator that starts a ``backend_link`` job: ``execute`` (scripts, the ``bpy``
    module) leaves it to the timer; ``invoke`` (the UI) follows it modally, Esc cancels."""

    _timer = None
    tick_seconds = backend_link.TICK_SECONDS

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        """Available while no other backend job runs (one job at a time)."""
        job = backend_link.current()
        return context.scene is not None and (job is None or job.finished)

    def start(self, context: bpy.types.Context, from_ui: bool) -> None:
        raise NotImplementedError

    def _started(self, context: bpy.types.Context, from_ui: bool) -> bool:
        try:
            self.start(context, from_ui)
        except (UserFacingError, RuntimeError) as exc:
            self.report({"ERROR"}, str(exc))
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not self._started(context, from_ui=False):
            return {"CANCELLED"}
        _ensure_timer()
        return {"FINISHED"}

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if context.window is None:
            return self.execute(context)
        if not self._started(context, from_ui=True):
            return {"CANCELLED"}
        self._timer = context.window_manager.event_timer_add(self.tick_seconds, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type == "ESC" and event.value == "PRESS":
            backend_link.cancel_current()
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if backend_link.tick() is not None:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        level, text = backend_link.last_message
        if text:
            self.report({level}, text)
        return {"FINISHED"} if level == "INFO" else {"CANCELLED"}


class STEADYTALK_OT_lipsync(JobOperator, bpy.types.Operator):
    """Turn speech into mouth animation on the active character: all its meshes with matching shape keys"""

    bl_idname = "steadytalk.lipsync"
    bl_label = "Lip-sync from Audio"
    bl_options = {"REGISTER", "UNDO"}

    def start(self, context: bpy.types.Context, from_ui: bool) -> None:
        # From the UI this operator's own undo step holds the result.
        start_lipsync(context, push_undo=not from_ui)


TRANSCRIPT_TEXT_BLOCK = "SteadyTalk Transcript"


class STEADYTALK_OT_use_as_transcript(bpy.types.Operator):
    """Copy the recognized words into a text block to correct; the next lip-sync aligns to them"""

    bl_idname = "steadytalk.use_as_transcript"
    bl_label = "Use as Transcript"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and bool(context.scene.steadytalk.recognized_text)

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.steadytalk
        # A text block of the user's own is never overwritten: a fresh one is made beside it.
        text = bpy.data.texts.get(TRANSCRIPT_TEXT_BLOCK)
        if text is None or text.get("steadytalk_recognized") is None:
            text = bpy.data.texts.new(TRANSCRIPT_TEXT_BLOCK)
            text["steadytalk_recognized"] = True
        text.from_string(settings.recognized_text + "\n")
        settings.transcript_text = text
        settings.transcript_source = "TEXT"
        self.report({"INFO"}, f"Correct the words in the text block {text.name!r}, then run Lip-sync again")
        return {"FINISHED"}


class STEADYTALK_OT_cancel(bpy.types.Operator):
    """Cancel the running Steady Talk job (Esc does the same while it runs)"""

    bl_idname = "steadytalk.cancel"
    bl_label = "Cancel"

    def execute(self, context: bpy.types.Context) -> set[str]:
        return {"FINISHED"} if backend_link.cancel_current() else {"CANCELLED"}


class STEADYTALK_OT_test_connection(bpy.types.Operator):
    """Ask the backend for its version, device and GPU"""

    bl_idname = "steadytalk.test_connection"
    bl_label = "Test Connection"

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            connection = preferences.connection(context)
        except UserFacingError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}

        def on_done(job: Job) -> None:
            text = backend_link.describe_backend(job.result)
            prefs = preferences.get()
            if prefs is not None:
                prefs.connection_status = text
            backend_link.set_message("INFO", f"Connected: {text}")

        try:
            backend_link.submit(Job("Test connection", lambda job: backend_link.connect(connection, job), on_done))
        except RuntimeError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        _ensure_timer()
        return {"FINISHED"}


class STEADYTALK_OT_stop_local_backend(bpy.types.Operator):
    """Stop the backend this Blender started"""

    bl_idname = "steadytalk.stop_local_backend"
    bl_label = "Stop Local Backend"

    def execute(self, context: bpy.types.Context) -> set[str]:
        backend_link.stop_local_backend()
        return {"FINISHED"}


class STEADYTALK_OT_add_face_rig(bpy.types.Operator):
    """Add the canonical face mesh with all ARKit shape keys at the 3D cursor"""

    bl_idname = "steadytalk.add_face_rig"
    bl_label = "Face Rig (Steady Talk)"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        collection = context.collection or context.scene.collection
        obj = create_face_rig(collection, FaceModel.load(), location=tuple(context.scene.cursor.location))
        for other in context.selected_objects:
            other.select_set(False)
        obj.select_set(True)
        context.view_layer.objects.active = obj
        return {"FINISHED"}


class STEADYTALK_OT_load_avatar(bpy.types.Operator):
    """Build a trained avatar's rig, cameras, head-pose animation and plate in this scene"""

    bl_idname = "steadytalk.load_avatar"
    bl_label = "Load Avatar"
    bl_options = {"REGISTER", "UNDO"}

    directory: bpy.props.StringProperty(subtype="DIR_PATH", name="Avatar Folder")

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        from . import avatar

        try:
            rig = avatar.load_avatar(context, self.directory)
        except UserFacingError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        context.scene.steadytalk.start = "CURRENT"
        self.report({"INFO"}, f"Loaded {rig.name}: lip-sync it, then render its photoreal pass.")
        return {"FINISHED"}


class STEADYTALK_OT_render_photoreal(JobOperator, bpy.types.Operator):
    """Render the avatar's photoreal frames for the scene's frame range through the backend
    (only frames not rendered yet; they go to the sequencer as an image strip)"""

    bl_idname = "steadytalk.render_photoreal"
    bl_label = "Render Photoreal Pass"
    tick_seconds = 0.02  # each tick also draws a few shape passes

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        from . import avatar

        return avatar.avatar_of(context.active_object) is not None and super().poll(context)

    def start(self, context: bpy.types.Context, from_ui: bool) -> None:
        from . import avatar

        scene = context.scene
        avatar.start_photoreal_pass(context, scene.steadytalk.photoreal_dir, scene.frame_start, scene.frame_end)


CLASSES = (
    STEADYTALK_OT_load_avatar,
    STEADYTALK_OT_render_photoreal,
    STEADYTALK_OT_lipsync,
    STEADYTALK_OT_use_as_transcript,
    STEADYTALK_OT_cancel,
    STEADYTALK_OT_test_connection,
    STEADYTALK_OT_stop_local_backend,
    STEADYTALK_OT_add_face_rig,
)
