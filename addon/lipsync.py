"""Applying a lip-sync result to a rig, and re-smoothing it later without the backend.

Main thread only (it edits Blender data). The raw curves of a result are cached on its
Action (ID properties, saved with the .blend), so the smoothing-strength slider re-runs the
numpy adaptive smoother (``shared/smoothing.py``) and rewrites the keys locally.

What a result owns, and therefore what a re-run replaces: its Action (pointed to by the
rig's ``steadytalk.result_action``), its NLA strip in the "Steady Talk" track and the sound
strip it added. A user's own action that was active on the shape keys is kept (given a fake
user so saving does not drop it), never deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from ..shared import mapping
from ..shared.curves import LipsyncResult
from ..shared.schema import CHANNELS, NUM_CHANNELS
from ..shared.smoothing import default_smoother
from . import keying
from .backend_link import UserFacingError

NLA_TRACK = "Steady Talk"
RAW_PROPERTY = "steadytalk_raw"  # (T * C) float32 raw curves, on the Action
META_PROPERTY = "steadytalk"  # {fps, frames, start_frame, audio, ...}, on the Action
SOUND_TAG = "steadytalk_result"  # on sound strips we added: the name of the result


@dataclass(frozen=True)
class ApplySettings:
    """Everything the apply step needs, taken from the UI when the request starts."""

    object_name: str
    start_frame: int
    audio_name: str
    audio_path: str | None  # a file to add as a sound strip; None when the audio is a strip already
    add_sound_strip: bool
    push_to_nla: bool
    tolerance: float | None  # None: dense keys


# Blender 4.4 renamed the sequencer's ``sequences``/``sequences_all`` to ``strips``/``strips_all``.
STRIPS_PROPERTY, ALL_STRIPS_PROPERTY = (
    ("strips", "strips_all")
    if "strips" in bpy.types.SequenceEditor.bl_rna.properties
    else ("sequences", "sequences_all")
)


def strips_of(editor: bpy.types.SequenceEditor) -> bpy.types.bpy_prop_collection:
    """Top-level strips of a sequencer."""
    return getattr(editor, STRIPS_PROPERTY)


def all_strips(editor: bpy.types.SequenceEditor) -> bpy.types.bpy_prop_collection:
    """Strips at every level (inside meta strips too)."""
    return getattr(editor, ALL_STRIPS_PROPERTY)


def shape_key_names(obj: bpy.types.Object) -> list[str]:
    """The rig's shape keys other than the basis."""
    return [k.name for k in obj.data.shape_keys.key_blocks[1:]] if obj.data.shape_keys else []


def scene_fps(scene: bpy.types.Scene) -> float:
    return scene.render.fps / scene.render.fps_base


def rig_targets(obj: bpy.types.Object) -> tuple[mapping.Preset, list[tuple[str, str, float]], list[str]]:
    """(preset, [(source, shape key, scale)], unmatched sources) for a rig, custom mapping or preset."""
    settings = obj.steadytalk
    preset = mapping.PRESETS[settings.preset]
    names = shape_key_names(obj)
    if settings.use_custom_mapping:
        present = set(names)
        targets = [(e.source, e.target, e.scale) for e in settings.mapping if e.target in present]
        driven = {source for source, _, _ in targets}
        return preset, targets, [s for s in preset.sources if s not in driven]
    found, unmatched = mapping.match_targets(preset, names)
    return preset, [(source, key, 1.0) for source, key in found.items()], unmatched


def check_rig(obj: bpy.types.Object | None) -> bpy.types.Object:
    if obj is None or obj.type != "MESH":
        raise UserFacingError("Select the face mesh to animate (a mesh with shape keys), or add a face rig first.")
    if obj.data.shape_keys is None or len(obj.data.shape_keys.key_blocks) < 2:
        raise UserFacingError(f"{obj.name} has no shape keys to animate. Add a face rig, or use a rig with shape keys.")
    preset, targets, _ = rig_targets(obj)
    if not targets:
        raise UserFacingError(
            f"None of {obj.name}'s shape keys matches the {preset.label} preset. "
            "Choose another preset or set up a custom mapping in the Steady Talk panel."
        )
    return obj


def apply_result(
    scene: bpy.types.Scene, result: LipsyncResult, settings: ApplySettings
) -> tuple[bpy.types.Action, list[str]]:
    """Key ``result`` (its backend-smoothed curves) on the rig and cache its raw curves.

    Returns the action and notes for the user (e.g. a sound strip that could not be added)."""
    obj = bpy.data.objects.get(settings.object_name)
    if obj is None:
        raise UserFacingError(f"The rig {settings.object_name!r} was deleted before the lip-sync arrived.")
    check_rig(obj)
    if tuple(result.channels) != CHANNELS:
        raise UserFacingError("The backend sent curves of another schema; install the same release on both sides.")
    meta = {
        "fps": float(result.fps),
        "frames": int(result.num_frames),
        "start_frame": int(settings.start_frame),
        "audio": settings.audio_name,
        "tolerance": -1.0 if settings.tolerance is None else float(settings.tolerance),
        "nla": bool(settings.push_to_nla),
        "mode": result.mode,
    }
    action = write_keys(obj, result.raw, result.smoothed, meta, f"SteadyTalk {settings.audio_name}")
    obj.steadytalk["smoothing_strength"] = float(result.smoothing_strength)  # no update callback: keys are fresh
    notes = []
    if settings.audio_path is not None and settings.add_sound_strip:
        try:
            add_sound_strip(scene, settings.audio_path, settings.start_frame, result.num_frames, action.name)
        except RuntimeError as exc:  # e.g. a Blender built without audio; the keys are still good
            notes.append(f"the sound strip could not be added ({str(exc).removeprefix('Error: ').strip()})")
    return action, notes


def write_keys(
    obj: bpy.types.Object, raw: np.ndarray, smoothed: np.ndarray, meta: dict, action_name: str
) -> bpy.types.Action:
    """Replace the rig's previous Steady Talk result with keys of ``smoothed`` (T, CHANNELS);
    the new Action caches ``raw`` and ``meta`` for re-smoothing."""
    preset, targets, _ = rig_targets(obj)
    curves = mapping.rig_curves(mapping.source_curves(preset, smoothed), targets)
    key = obj.data.shape_keys
    animation = key.animation_data or key.animation_data_create()
    previous = obj.steadytalk.result_action
    if animation.action is not None and animation.action != previous:
        animation.action.use_fake_user = True  # the user's own action: keep it safe, just not active
    _remove_result(obj, previous)
    tolerance = meta["tolerance"] if meta["tolerance"] > 0 else None
    action = keying.key_curves(obj, curves, meta["start_frame"], action_name, tolerance=tolerance)
    action[META_PROPERTY] = meta
    action[RAW_PROPERTY] = np.ascontiguousarray(raw, dtype=np.float32).ravel()
    obj.steadytalk.result_action = action
    if meta["nla"]:
        track = animation.nla_tracks.get(NLA_TRACK) or animation.nla_tracks.new()
        track.name = NLA_TRACK
        track.strips.new(action.name, int(meta["start_frame"]), action)
        animation.action = None
    return action


def _remove_result(obj: bpy.types.Object, action: bpy.types.Action | None) -> None:
    if action is None:
        return
    animation = obj.data.shape_keys.animation_data
    if animation is not None:
        if animation.action == action:
            animation.action = None
        track = animation.nla_tracks.get(NLA_TRACK)
        if track is not None:
            for strip in [s for s in track.strips if s.action == action]:
                track.strips.remove(strip)
    obj.steadytalk.result_action = None
    if action.users == 0:
        bpy.data.actions.remove(action)


def cached_raw(action: bpy.types.Action) -> np.ndarray | None:
    if RAW_PROPERTY not in action or META_PROPERTY not in action:
        return None
    flat = np.asarray(action[RAW_PROPERTY], dtype=np.float32)
    if flat.size % NUM_CHANNELS:
        return None
    return flat.reshape(-1, NUM_CHANNELS)


def smoother_for(obj: bpy.types.Object):
    """The avatar's jointly trained smoother for an avatar rig (when its folder is at hand),
    else the default weights: the slider then matches what the backend did."""
    from ..shared.smoothing import AdaptiveSmoother

    folder = obj.get("steadytalk_avatar")
    weights = Path(folder) / "model" / "smoother.safetensors" if folder else None
    if weights is not None and weights.is_file():
        return AdaptiveSmoother.load(weights)
    return default_smoother()


def resmooth(obj: bpy.types.Object, strength: float) -> bpy.types.Action | None:
    """Re-key the rig's result at another smoothing strength, from the cached raw curves."""
    action = obj.steadytalk.result_action
    if action is None:
        return None
    raw = cached_raw(action)
    if raw is None:
        return None
    smoothed, _ = smoother_for(obj).smooth(raw, strength)
    # write_keys removes the old action first, so the new one takes its name.
    return write_keys(obj, raw, smoothed, action[META_PROPERTY].to_dict(), action.name)


def add_sound_strip(
    scene: bpy.types.Scene, filepath: str, frame: int, length: int, result_name: str
) -> bpy.types.Sequence:
    """The audio as a sound strip starting at ``frame``, on the first free channel; replaces the
    strip an earlier run of the same result added."""
    editor = scene.sequence_editor or scene.sequence_editor_create()
    for strip in [s for s in strips_of(editor) if s.get(SOUND_TAG) == result_name]:
        strips_of(editor).remove(strip)
    channel = 1
    while any(
        s.channel == channel and s.frame_final_start < frame + length and s.frame_final_end > frame
        for s in all_strips(editor)
    ):
        channel += 1
    strip = strips_of(editor).new_sound(Path(filepath).stem, filepath, channel, int(frame))
    strip[SOUND_TAG] = result_name
    return strip
