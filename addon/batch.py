"""Lip-sync All Sound Strips: every dialogue strip of the sequencer on the character who speaks it.

Each sound strip names its character (``strip.steadytalk_target``, set in the panel; empty: the
rig whose name the strip's name contains, the longest such name). The strips are sent one
after another from one worker, with one progress bar across them and one Cancel; a strip that
fails is reported and the others go on. When all have come back, each result is keyed at its
strip's frame, in the NLA of its character (a character may speak several strips), and one undo
step holds them all. A text block named like the strip (or ``<strip>.txt``) is its transcript.
Strips the add-on added itself for a single lip-sync are results already and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bpy

from ..shared.client import BackendError, BackendUnavailable
from ..shared.protocol import ErrorCode
from . import backend_link, lipsync, operators, preferences
from .backend_link import Job, JobCancelled, UserFacingError


def _speaker_candidates(scene: bpy.types.Scene) -> list[bpy.types.Object]:
    return [
        o
        for o in scene.objects
        if o.type == "ARMATURE" or (o.type == "MESH" and o.data.shape_keys is not None) or o.steadytalk.use_mouth_index
    ]


def strip_target(scene: bpy.types.Scene, strip) -> bpy.types.Object | None:
    """Who speaks a strip: its Character, else the rig whose name its name contains."""
    if strip.steadytalk_target is not None:
        return strip.steadytalk_target
    name = strip.name.lower()
    named = [o for o in _speaker_candidates(scene) if o.name.lower() in name]
    return max(named, key=lambda o: len(o.name)) if named else None


def dialogue_strips(scene: bpy.types.Scene) -> list:
    """The sound strips to lip-sync, in time order (muted ones and the add-on's own left out)."""
    editor = scene.sequence_editor
    if editor is None:
        return []
    strips = [
        s
        for s in lipsync.all_strips(editor)
        if s.type == "SOUND" and s.sound is not None and not s.mute and not s.get(lipsync.SOUND_TAG)
    ]
    return sorted(strips, key=lambda s: (s.frame_final_start, s.channel))


def strip_transcript(strip) -> str | None:
    text = bpy.data.texts.get(strip.name) or bpy.data.texts.get(f"{strip.name}.txt")
    words = " ".join(text.as_string().split()) if text is not None else ""
    return words or None


@dataclass(frozen=True)
class StripJob:
    strip: str
    audio: operators.AudioSource
    transcript: str | None
    settings: lipsync.ApplySettings


def start_batch(context: bpy.types.Context, push_undo: bool) -> Job:
    """Check every strip, then send them all from one worker; raises UserFacingError when there
    is nothing to do."""
    scene = context.scene
    strips = dialogue_strips(scene)
    if not strips:
        raise UserFacingError("The sequencer has no sound strips to lip-sync. Add the dialogue as sound strips.")
    connection = preferences.connection(context)
    keys = operators.key_settings(scene)
    fps = lipsync.scene_fps(scene)
    strength = scene.steadytalk.smoothing_strength
    face = operators.face_request(scene)
    work_list: list[StripJob] = []
    failures: list[str] = []
    for strip in strips:
        target = strip_target(scene, strip)
        try:
            if target is None:
                raise UserFacingError("no character (set its Character in the Steady Talk panel)")
            lipsync.check_character(target)
            audio = operators.strip_audio(strip)
        except UserFacingError as exc:
            failures.append(f"{strip.name}: {exc}")
            continue
        settings = lipsync.ApplySettings(
            object_name=target.name,
            start_frame=int(strip.frame_start),
            audio_name=strip.name,
            audio_path=None,
            add_sound_strip=False,
            batch=True,
            **keys,
        )
        work_list.append(StripJob(strip.name, audio, strip_transcript(strip), settings))
    if not work_list:
        raise UserFacingError("No sound strip can be lip-synced: " + "; ".join(failures))
    scene_name = scene.name

    def work(job: Job):
        backend_link.connect(connection, job)
        done = []
        count = len(work_list)
        with connection.client() as client:
            for n, item in enumerate(work_list):
                job.check_cancelled()

                def progress(fraction: float, stage: str, n=n, item=item) -> None:
                    job.progress((n + fraction) / count, f"{item.strip} ({n + 1}/{count}): {stage}")

                progress(0.0, "sending audio")
                data = item.audio.data if item.audio.data is not None else Path(item.audio.path).read_bytes()
                try:
                    result = client.lipsync(
                        data,
                        item.transcript,
                        fps=fps,
                        smoothing=strength,
                        progress=progress,
                        cancelled=job.is_cancel_requested,
                        face=face,
                    )
                except BackendUnavailable:
                    raise  # the backend is gone: every other strip would wait for it too
                except BackendError as exc:
                    if exc.code == ErrorCode.CANCELLED or job.is_cancel_requested():
                        raise JobCancelled from exc
                    failures.append(f"{item.strip}: {backend_link.describe_backend_error(exc)}")
                    continue
                done.append((item, result))
        return done

    def on_done(job: Job) -> None:
        scene_now = bpy.data.scenes.get(scene_name)
        if scene_now is None:
            raise UserFacingError("The scene was deleted before the lip-sync arrived.")
        keyed: dict[str, list[str]] = {}
        for item, result in job.result:
            try:
                lipsync.apply_result(scene_now, result, item.settings)
            except UserFacingError as exc:
                failures.append(f"{item.strip}: {exc}")
                continue
            keyed.setdefault(item.settings.object_name, []).append(item.strip)
        total = sum(len(v) for v in keyed.values())
        who = "; ".join(f"{name}: {', '.join(lines)}" for name, lines in keyed.items())
        end = f"; scene ends at frame {scene_now.frame_end}" if keys["extend_range"] else ""
        failed = f"; failed: {' | '.join(failures)}" if failures else ""
        level = "INFO" if total else "ERROR"
        backend_link.set_message(level, f"Lip-synced {total} of {len(strips)} sound strips ({who}){end}{failed}")
        if push_undo and total:
            operators.push_undo_step("Lip-sync All Sound Strips")

    job = Job("Lip-sync all strips", work, on_done)
    backend_link.submit(job)
    return job


class STEADYTALK_OT_lipsync_all_strips(operators.JobOperator, bpy.types.Operator):
    """Lip-sync every sound strip of the sequencer on the character it is assigned to (each at its strip's frame)"""

    bl_idname = "steadytalk.lipsync_all_strips"
    bl_label = "Lip-sync All Sound Strips"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        job = backend_link.current()
        return context.scene is not None and (job is None or job.finished)

    def start(self, context: bpy.types.Context, from_ui: bool) -> None:
        start_batch(context, push_undo=not from_ui)


CLASSES = (STEADYTALK_OT_lipsync_all_strips,)
