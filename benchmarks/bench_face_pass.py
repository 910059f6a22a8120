"""What the whole face costs on top of lip-sync: CPU seconds per minute of speech.

    python benchmarks/bench_face_pass.py [--audio SPEECH] [--seconds 60] [--avatar AVATAR_DIR]

Runs the lip-sync engine once with the whole face and once mouth-only (``whole_face=False``) on
the first ``--seconds`` of the audio, and times the whole-face models alone (speech timeline,
blinks, gaze, brows, head; the pitch track is collected by the engine as it reads, so it is in
the difference of the two runs) with the shipped style and, given ``--avatar``, the avatar's
own. CPU time (``time.process_time``), since the shared machine's wall clock is polluted.
Target: the whole face adds at most 10% to lip-sync.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from steadytalk_backend.lipsync.audio import load_audio
from steadytalk_backend.lipsync.engine import LipsyncEngine
from steadytalk_backend.lipsync.prosody import frame_energy_db, pitch_hz
from steadytalk_backend.performance.model import FaceOptions, default_performer


def cpu(fn):
    start = time.process_time()
    value = fn()
    return value, time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, default=Path("../shared/data/video/grid_s1_train_300s.mp4"))
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--avatar", type=Path)
    args = parser.parse_args()
    samples = load_audio(args.audio)[: int(args.seconds * 16000)]
    minutes = len(samples) / 16000 / 60
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "speech.wav"
        sf.write(wav, samples, 16000)
        engine = LipsyncEngine()
        engine.run(wav, fps=25.0, whole_face=False)  # warm: models loaded, caches filled
        mouth_runs = [cpu(lambda: engine.run(wav, fps=25.0, whole_face=False))[1] for _ in range(2)]
        face_runs = [cpu(lambda: engine.run(wav, fps=25.0))[1] for _ in range(2)]
        result = engine.run(wav, fps=25.0, whole_face=False)
    energy, (f0, _) = frame_energy_db(samples), pitch_hz(samples)
    n = min(len(energy), len(f0))
    frames = int(round(len(samples) / 16000 * 25))
    performer = default_performer()
    styles = {"lively (shipped)": None}
    if args.avatar:
        styles[f"avatar:{args.avatar.name}"] = "avatar:" + str(args.avatar.resolve())
    mouth, face = min(mouth_runs), min(face_runs)
    print(f"{args.audio.name}, first {minutes * 60:.0f} s; CPU seconds per minute of speech (best of 2)")
    print(f"  lip-sync mouth only {mouth / minutes:.2f} s, with the whole face {face / minutes:.2f} s: "
          f"+{100 * (face - mouth) / mouth:.1f}%")  # fmt: skip
    _, pitch_cost = cpu(lambda: pitch_hz(samples))
    print(f"  of it the pitch track {pitch_cost / minutes:.3f} s")
    for label, style in styles.items():
        options = FaceOptions(style=style)
        performer.perform_speech(result.phones, energy[:n], f0[:n], frames, 25.0, options)  # a style loads once
        costs = [
            cpu(lambda o=options: performer.perform_speech(result.phones, energy[:n], f0[:n], frames, 25.0, o))[1]
            for _ in range(3)
        ]
        print(f"  the models alone, {label}: {np.min(costs) / minutes:.3f} s ({100 * np.min(costs) / mouth:.1f}%)")


if __name__ == "__main__":
    main()
