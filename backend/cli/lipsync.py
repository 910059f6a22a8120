"""``steadytalk lipsync``, ``demo`` and ``smoother-train``: audio to curves, and the default smoother."""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np

from steadytalk_shared.schema import CHANNELS, lip_aperture

from ..atomic import atomic_output
from .common import (
    ProgressBar,
    add_recognizer_options,
    add_transcript_options,
    check_outputs,
    positive_fps,
    read_transcript,
    smoothing_strength,
)

DEMO_AUDIO = "demo_speech.wav"
DEMO_TRANSCRIPT = "demo_speech.txt"


def register(sub: argparse._SubParsersAction) -> None:
    lipsync = sub.add_parser("lipsync", help="audio -> smoothed ARKit mouth curves (JSON, CSV)")
    lipsync.add_argument("audio", type=Path, help="speech: WAV, FLAC, MP3, OGG, M4A/AAC or a video's soundtrack")
    add_transcript_options(lipsync, "the words spoken (forced alignment to exactly these words)")
    add_recognizer_options(lipsync)
    lipsync.add_argument("--fps", type=positive_fps, default=25.0, help="frame rate of the curves (29.97 works)")
    lipsync.add_argument(
        "--smoothing", type=smoothing_strength, default=1.0, help="adaptive smoothing strength: 0 off, 1 default"
    )
    lipsync.add_argument("--out", type=Path, required=True, help="output JSON file")
    lipsync.add_argument("--csv", type=Path, help="also write the smoothed curves as CSV (frame, time, channels)")
    lipsync.add_argument(
        "--max-duration", type=float, default=None, help="longest audio accepted, in seconds (default 7200)"
    )
    lipsync.add_argument("--quiet", action="store_true", help="no progress bar")
    lipsync.set_defaults(handler=cmd_lipsync)

    demo = sub.add_parser("demo", help="lip-sync the bundled speech clip (the README's main job)")
    demo.add_argument("--out", type=Path, default=Path("demo_output"), help="folder for the results")
    demo.set_defaults(handler=cmd_demo)

    train = sub.add_parser("smoother-train", help="retrain the default adaptive smoother (reproducible)")
    train.add_argument("--out", type=Path, required=True, help="output .safetensors (a .json config is written beside)")
    train.add_argument("--steps", type=int, default=None)
    train.set_defaults(handler=cmd_smoother_train)


def summary(result, elapsed: float) -> str:
    aperture = lip_aperture(result.smoothed)
    speech = [p for p in result.phones if p.phone != "SIL"]
    heard = [f'  heard        "{result.transcript_text}"'] if result.transcript_source == "recognized" else []
    active = [CHANNELS[i] for i in np.argsort(-result.smoothed.max(axis=0))[:5] if result.smoothed[:, i].max() > 0.05]
    return "\n".join(
        [
            f"  audio        {result.duration:.2f} s, {result.mode} ({len(speech)} phones)",
            *heard,
            f"  frames       {result.num_frames} at {result.fps:g} fps, {len(result.channels)} channels",
            f"  smoothing    strength {result.smoothing_strength:g}, kernel sigma {result.sigma.min():.2f}"
            f"-{result.sigma.max():.2f} frames (median {np.median(result.sigma):.2f})",
            f"  mouth        open {np.mean(aperture > 0.1):.0%} of frames, "
            f"peak jawOpen {result.smoothed[:, CHANNELS.index('jawOpen')].max():.2f}",
            f"  most active  {', '.join(active)}",
            f"  took         {elapsed:.2f} s ({result.duration / max(elapsed, 1e-9):.0f}x real time)",
        ]
    )


def write_outputs(result, out: Path, csv_path: Path | None) -> None:
    check_outputs(out, csv_path)
    with atomic_output(out) as tmp:
        result.write_json(tmp)
    if csv_path is not None:
        with atomic_output(csv_path) as tmp:
            tmp.write_text(result.to_csv())


def cmd_lipsync(args: argparse.Namespace) -> int:
    from ..lipsync.audio import AudioConfig
    from ..lipsync.engine import EngineConfig, LipsyncEngine
    from ..lipsync.recognizer import WordRecognizerConfig

    check_outputs(args.out, args.csv)
    transcript = read_transcript(args)
    audio = AudioConfig() if args.max_duration is None else AudioConfig(max_seconds=args.max_duration)
    engine = LipsyncEngine(EngineConfig(audio=audio, words=WordRecognizerConfig(model=args.asr_model)))
    bar = ProgressBar(enabled=not args.quiet and sys.stderr.isatty())
    # Loading the recognizer is reported apart: a server loads it once, not per request.
    loading = engine.load() if transcript is None and args.recognizer == "words" else 0.0
    started = time.perf_counter()
    try:
        result = engine.run(
            args.audio, transcript, fps=args.fps, strength=args.smoothing, progress=bar, recognizer=args.recognizer
        )
    finally:
        bar.close()
        engine.close()
    elapsed = time.perf_counter() - started
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    write_outputs(result, args.out, args.csv)
    print(f"wrote {args.out}" + (f" and {args.csv}" if args.csv else ""))
    print(summary(result, elapsed))
    if loading:
        print(f"               (+ {loading:.2f} s loading the word recognizer)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..lipsync.engine import LipsyncEngine

    data = resources.files("steadytalk_backend.data")
    args.out.mkdir(parents=True, exist_ok=True)
    with resources.as_file(data / DEMO_AUDIO) as audio:
        transcript = (data / DEMO_TRANSCRIPT).read_text(encoding="utf-8").strip()
        print(f'Lip-sync of the bundled clip {DEMO_AUDIO}: "{transcript}"')
        engine = LipsyncEngine()
        print(f"(word recognizer loaded in {engine.load():.2f} s, once per process)")
        for label, text in (("with_transcript", transcript), ("without_transcript", None)):
            started = time.perf_counter()
            result = engine.run(audio, text, fps=30.0)
            elapsed = time.perf_counter() - started
            out = args.out / f"demo_{label}.json"
            write_outputs(result, out, out.with_suffix(".csv"))
            print(f"\nwrote {out} and {out.with_suffix('.csv')}")
            print(summary(result, elapsed))
        engine.close()
    return 0


def cmd_smoother_train(args: argparse.Namespace) -> int:
    from ..lipsync.train_smoother import main as train_main

    train_main(str(args.out), steps=args.steps)
    return 0
