"""Talking Portrait Video: a picture and the panel's audio go to the backend (``portrait``),
the mp4 it renders comes back, is written next to the .blend (write-then-rename) and lands in
the sequencer as a movie strip (with its sound where this Blender has audio) at the audio's
start frame, at the scene's frame rate. Running it again replaces the file and its strips."""

from __future__ import annotations

import os
from pathlib import Path

import bpy

from . import backend_link, lipsync, operators, preferences
from .backend_link import Job, UserFacingError
from .portrait import PicturePicker, picture_file

VIDEO_TAG = "steadytalk_portrait_video"  # on the strips: the mp4 they show


def output_path(scene: bpy.types.Scene) -> Path:
    text = scene.steadytalk.portrait_video
    if not text.lower().endswith(".mp4"):
        raise UserFacingError(f"The portrait video {text!r} must be an .mp4 file (Steady Talk panel > Portrait).")
    if text.startswith("//") and not bpy.data.filepath:
        raise UserFacingError("Save the .blend first (the video goes next to it), or give the video an absolute path.")
    path = Path(bpy.path.abspath(text))
    if not path.parent.is_dir():
        raise UserFacingError(f"The folder {path.parent} does not exist; choose another place for the video.")
    return path


def write_video(path: Path, data: bytes) -> None:
    """``data`` to ``path`` through ``path.partial``: a video file is complete or absent."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)


def add_video_strips(scene: bpy.types.Scene, path: Path, frame: int) -> list[str]:
    """The mp4 as movie (and sound) strips at ``frame`` on free channels; replaces the strips of
    an earlier run into the same file. Returns notes for the message."""
    editor = scene.sequence_editor or scene.sequence_editor_create()
    strips = lipsync.strips_of(editor)
    for strip in [s for s in strips if s.get(VIDEO_TAG) == str(path)]:
        strips.remove(strip)
    channel = 1 + max((s.channel for s in lipsync.all_strips(editor)), default=0)
    movie = strips.new_movie(path.stem, str(path), channel, int(frame))
    movie[VIDEO_TAG] = str(path)
    notes = []
    try:
        sound = strips.new_sound(f"{path.stem} sound", str(path), channel + 1, int(frame))
        sound[VIDEO_TAG] = str(path)
    except RuntimeError:  # a Blender built without audio (the bpy 4.2 module)
        notes.append("no sound strip (this Blender has no audio)")
    return notes


def start_portrait_video(context: bpy.types.Context, picture: str, size: int, face: int, push_undo: bool) -> Job:
    scene = context.scene
    file = picture_file(picture)
    source = operators.audio_source(scene)
    transcript, _ = operators.transcript_of(scene)  # the portrait request recognizes words itself
    out = output_path(scene)
    fps = lipsync.scene_fps(scene)
    connection = preferences.connection(context)
    scene_name = scene.name

    def work(job: Job) -> dict:
        backend_link.connect(connection, job)
        job.progress(0.02, "sending the picture and audio")
        job.check_cancelled()
        audio = source.data if source.data is not None else Path(source.path).read_bytes()
        with connection.client() as client:
            data, summary = client.portrait(
                file.read_bytes(), audio, transcript, size=size, fps=fps, face=face or None, name=file.name,
                progress=job.progress, cancelled=job.is_cancel_requested,
            )  # fmt: skip
        job.check_cancelled()
        write_video(out, data)
        return summary

    def on_done(job: Job) -> None:
        scene_now = bpy.data.scenes.get(scene_name)
        if scene_now is None:
            raise UserFacingError("The scene was deleted before the portrait video arrived.")
        summary = job.result
        notes = add_video_strips(scene_now, out, source.start_frame)
        extra = "".join(f"; {w}" for w in [*summary.get("warnings", []), *notes])
        backend_link.set_message(
            "INFO",
            f"{out.name}: talking portrait of {file.stem}, {summary['frames']} frames ({summary['duration']:.1f} s, "
            f"{summary['mode']}) in the sequencer at frame {source.start_frame}{extra}",
        )
        if push_undo:
            operators.push_undo_step("Talking Portrait Video")

    job = Job("Talking portrait video", work, on_done)
    backend_link.submit(job)
    return job


class STEADYTALK_OT_portrait_video(PicturePicker, bpy.types.Operator):
    """Make a talking-portrait video on the backend from one picture and the panel's audio, into the sequencer"""

    bl_idname = "steadytalk.portrait_video"
    bl_label = "Talking Portrait Video"
    bl_options = {"REGISTER", "UNDO"}

    size: bpy.props.IntProperty(
        name="Size", description="The video's longer side in pixels", default=512, min=128, max=4096
    )

    def start(self, context: bpy.types.Context, from_ui: bool) -> None:
        start_portrait_video(context, self.filepath, self.size, self.face, push_undo=not from_ui)


CLASSES = (STEADYTALK_OT_portrait_video,)
