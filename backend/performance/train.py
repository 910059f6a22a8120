"""Fitting the performance models on tracked clips (``steadytalk performance train``).

Input: per clip the speech timeline and the tracked measures (``face.upper``, gathered by
``evaluation.face_tracks``), each clip tagged with a style. Blinks, gaze and brows pool every
clip; the head is fitted per style ("calm": GRID s1, who reads sentences keeping still;
"lively": the Obama addresses), so styles come from data, not typed in. Deterministic: the
same clips give the same file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .blinks import detect_blinks, fit_blinks
from .brows import fit_brows
from .features import SpeechTimeline
from .gaze import fit_gaze
from .head import fit_head
from .model import Performer


@dataclass
class TrainingClip:
    name: str
    style: str
    timeline: SpeechTimeline
    closure: np.ndarray  # (T, 2)
    gaze: np.ndarray  # (T, 2)
    brows: np.ndarray  # (T, 2)
    head: np.ndarray  # (T, 3)


def fit_performer(clips: list[TrainingClip], default_style: str, log=print) -> Performer:
    timelines = [c.timeline for c in clips]
    events = [detect_blinks(c.closure, c.timeline.fps) for c in clips]
    blinks = fit_blinks(timelines, events)
    log(
        f"blinks: {blinks.fitted_on['blinks']} in {blinks.fitted_on['minutes']} min "
        f"({blinks.blinks_per_minute:.1f}/min), duration {np.exp(blinks.duration_log_mean):.3f} s, "
        f"close share {blinks.close_share:.2f}, single-eye {blinks.single_eye:.1%}, weights "
        + ", ".join(f"{k} {v:+.2f}" for k, v in blinks.to_dict()["weights"].items())
    )
    open_eyes = [c.closure.max(axis=1) < 0.3 for c in clips]
    gaze = fit_gaze(timelines, [c.gaze for c in clips], open_eyes)
    log(
        f"gaze: fixation {np.exp(gaze.fixation_log_mean):.2f} s, spread speech "
        f"{np.round(gaze.speech_spread, 3)}, pause {np.round(gaze.pause_spread, 3)}"
    )
    brows = fit_brows(timelines, [c.brows for c in clips])
    log(
        f"brows: fitted response r = {brows.correlation:.3f} with the tracked inner brow, "
        f"residual {np.round(brows.residual_mm, 3)} mm"
    )
    heads = {}
    for style in sorted({c.style for c in clips}):
        chosen = [c for c in clips if c.style == style]
        heads[style] = fit_head([c.timeline for c in chosen], [c.head for c in chosen])
        h = heads[style]
        log(
            f"head ({style}): target std {np.round(h.target_std, 4)} rad, rho {h.hold_rho:.2f}, moves of "
            f"{h.move_seconds:.2f} s, {h.move_per_beat:.0%} of beats + {h.extra_rate:.2f}/s, "
            f"sway {np.round(h.sway_std, 4)}"
        )
    source = {"clips": [c.name for c in clips], "styles": {s: sum(c.style == s for c in clips) for s in heads}}
    return Performer(blinks, gaze, brows, heads, default_style, source)
