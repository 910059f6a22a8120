"""The avatar's own manner (``style.json``): its tracked upper face and head (``face.upper`` on
the landmarks ``prepare`` found) against the speech of its soundtrack (the phones of
``lipsync.json``, energy and pitch of ``audio.wav``), fitted by ``performance.style``.

The ``style`` stage of ``prepare``, and ``steadytalk style AVATAR`` for avatars prepared before
it existed (``steadytalk train`` runs it too when the file is missing).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from steadytalk_shared.curves import Phone

from ..errors import SteadyTalkError
from ..face.upper import measure
from ..performance.features import speech_timeline
from ..performance.style import STYLE_FILE, fit_person_style, write_style
from ..performance.train import TrainingClip


def avatar_clip(folder: Path) -> TrainingClip:
    """The avatar's video as the whole-face models see it."""
    import soundfile as sf

    from ..lipsync.prosody import frame_energy_db, pitch_hz

    folder = Path(folder)
    needed = [folder / n for n in ("manifest.json", "landmarks.npz", "audio.wav", "lipsync.json")]
    missing = [p.name for p in needed if not p.exists()]
    if missing:
        raise SteadyTalkError(
            f"{folder} is not a prepared avatar (no {', '.join(missing)}).",
            "Prepare it first: steadytalk prepare VIDEO --out AVATAR.",
        )
    fps = float(json.loads((folder / "manifest.json").read_text())["video"]["fps"])
    with np.load(folder / "landmarks.npz") as data:
        points = [p.astype(np.float64) if f else None for p, f in zip(data["points"], data["found"], strict=True)]
    face = measure(points, fps)
    samples, rate = sf.read(folder / "audio.wav", dtype="float32")
    if rate != 16000:
        raise SteadyTalkError(f"{folder / 'audio.wav'} is not 16 kHz.", "Prepare the avatar again (--force).")
    energy, (f0, _) = frame_energy_db(samples), pitch_hz(samples)
    n = min(len(energy), len(f0))
    result = json.loads((folder / "lipsync.json").read_text())
    phones = [Phone(p["phone"], p["start"], p["end"], p.get("word", "")) for p in result["phones"]]
    timeline = speech_timeline(phones, energy[:n], f0[:n], len(face.found), fps)
    return TrainingClip(folder.name, "avatar", timeline, face.closure, face.gaze, face.brows, face.head)


def learn_style(folder: Path) -> dict:
    """Fit and write ``folder/style.json``; returns what was measured."""
    performer, measured = fit_person_style(avatar_clip(folder))
    write_style(Path(folder) / STYLE_FILE, performer, measured)
    return measured
