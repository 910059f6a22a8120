"""A person's own manner (MakeItTalk's speaker-aware part): blinks, gaze, brows and head motion
learned from their tracked video and kept in their avatar folder (``style.json``).

Fitted with the code ``face-motion-train`` uses, on the one clip of the person, and leaning on
the shipped models where one clip says little:

- blinks: the person's blink rate, durations and profile from their detected blinks
  (``detect_blinks``); the timing weights (pauses, phrase boundaries, fast speech) stay the
  shipped ones, and the rate is the shipped one's shape scaled to the person's average. With
  few blinks the rate and durations lean toward the shipped ones (a prior worth
  ``PRIOR_BLINKS`` blinks at the shipped rate);
- head: ``fit_head`` on the person's head track: amplitude per axis, moves per beat, their
  duration and rate, sway;
- gaze: ``fit_gaze`` on the person's iris gaze (fixation times from the shipped model when the
  clip has too few saccades to tell);
- brows: the shipped response to the speech, scaled to the person's brow activity (std of
  their tracked brows over the shipped model's on the same speech).

Chosen with the style ``avatar:PATH`` (PATH: the avatar folder or its ``style.json``) anywhere a
named style is accepted; over the wire, ``avatar:NAME`` for an avatar the server knows.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from .blinks import BlinkModel, detect_blinks, fit_blinks
from .gaze import fit_gaze
from .head import fit_head
from .model import Performer, default_performer
from .train import TrainingClip

FORMAT = "steadytalk.face_style"
STYLE_FILE = "style.json"
AVATAR_PREFIX = "avatar:"
PRIOR_BLINKS = 2.0  # the shipped rate counts as this many blinks' worth of evidence
MIN_FIXATIONS = 5
PERSON = "avatar"  # the person's head style inside their Performer


def fit_person_style(clip: TrainingClip, base: Performer | None = None) -> tuple[Performer, dict]:
    """(the person's Performer, what was measured on their clip)."""
    base = base or default_performer()
    timeline = clip.timeline
    minutes = timeline.num_frames / timeline.fps / 60.0
    events = detect_blinks(clip.closure, timeline.fps)
    blinks = _person_blinks(base.blinks, timeline, events, minutes)
    open_eyes = clip.closure.max(axis=1) < 0.3
    gaze = fit_gaze([timeline], [clip.gaze], [open_eyes])
    if gaze.fitted_on.get("fixations", 0) < MIN_FIXATIONS:
        gaze = replace(gaze, fixation_log_mean=base.gaze.fixation_log_mean, fixation_log_std=base.gaze.fixation_log_std)
    head = fit_head([timeline], [clip.head])
    brows, brow_scale = _person_brows(base, clip)
    performer = Performer(blinks, gaze, brows, {PERSON: head}, PERSON, {"clips": [clip.name], "person": True})
    measured = {
        "seconds": round(timeline.num_frames / timeline.fps, 2),
        "blinks": len(events),
        "blinks_per_minute_tracked": round(len(events) / max(minutes, 1e-9), 2),
        "blinks_per_minute_style": round(blinks.blinks_per_minute, 2),
        "blink_median_seconds": round(float(np.exp(blinks.duration_log_mean)), 3),
        "head_std_degrees": [round(float(np.degrees(v)), 2) for v in head.target_std],
        "head_moves_per_beat": round(head.move_per_beat, 3),
        "brow_std_mm": round(float(np.std(clip.brows[:, 0])), 3),
        "brow_scale": round(brow_scale, 3),
        "gaze_std_degrees": [round(float(np.degrees(v)), 2) for v in gaze.speech_spread],
    }
    return performer, measured


def _person_blinks(base: BlinkModel, timeline, events: list[dict], minutes: float) -> BlinkModel:
    count = len(events)
    per_minute = (count + PRIOR_BLINKS) / (minutes + PRIOR_BLINKS / max(base.blinks_per_minute, 1e-6))
    # the shipped timing, its average over this speech moved to the person's rate
    shipped = float(base.rate(timeline).mean()) * 60.0
    bias = base.bias + float(np.log(max(per_minute, 1e-3) / max(shipped, 1e-6)))
    blinks = replace(base, bias=bias, blinks_per_minute=float(per_minute), fitted_on={"blinks": count})
    if count:
        own = fit_blinks([timeline], [events])
        share = count / (count + PRIOR_BLINKS)
        blinks = replace(
            blinks,
            duration_log_mean=share * own.duration_log_mean + (1 - share) * base.duration_log_mean,
            duration_log_std=share * own.duration_log_std + (1 - share) * base.duration_log_std,
            close_share=share * own.close_share + (1 - share) * base.close_share,
            single_eye=share * own.single_eye + (1 - share) * base.single_eye,
        )
    return blinks


def _person_brows(base: Performer, clip: TrainingClip):
    """The shipped brow model scaled by how much this person's brows move on their speech
    against how much the shipped model moves them there (seeded, so reproducible)."""
    generated = base.brows.heights(clip.timeline, np.random.default_rng(0))
    own = float(np.std(clip.brows - np.median(clip.brows, axis=0)))
    shipped = float(np.std(generated))
    scale = float(np.clip(own / max(shipped, 1e-6), 0.2, 4.0))
    weights = tuple(tuple(scale * w for w in row) for row in base.brows.weights)
    residual = tuple(scale * r for r in base.brows.residual_mm)
    return replace(base.brows, weights=weights, residual_mm=residual, fitted_on={"scaled_by": scale}), scale


def write_style(path: Path, performer: Performer, measured: dict) -> None:
    from ..atomic import write_text_atomic

    data = {"format": FORMAT, "version": 1, "measured": measured, "performer": performer.to_dict()}
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


_LOADED: dict[tuple[str, int], Performer] = {}


def style_path(spec: str) -> Path:
    """The ``style.json`` named by an ``avatar:PATH`` style (PATH: the folder or the file)."""
    path = Path(spec.removeprefix(AVATAR_PREFIX)).expanduser()
    return path / STYLE_FILE if path.is_dir() else path


def person_performer(spec: str) -> Performer:
    """The Performer of an ``avatar:PATH`` style (read once per file version)."""
    from ..errors import SteadyTalkError

    path = style_path(spec)
    if not path.is_absolute():  # resolved by the CLI or the server, never taken from a client as is
        raise SteadyTalkError(f"Style {spec!r} names no avatar folder.", "Pass avatar:PATH with the avatar's folder.")
    if not path.is_file():
        raise SteadyTalkError(
            f"No learned style at {path}.",
            "Prepare the avatar with this release (steadytalk prepare VIDEO --out AVATAR), or run "
            "'steadytalk style AVATAR' on an avatar prepared before.",
        )
    key = (str(path.resolve()), path.stat().st_mtime_ns)
    if key not in _LOADED:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise ValueError("not a Steady Talk style file")
            _LOADED[key] = Performer.from_dict(data["performer"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SteadyTalkError(
                f"{path} is damaged ({exc}).", "Run 'steadytalk style AVATAR' to learn it again."
            ) from None
    return _LOADED[key]
