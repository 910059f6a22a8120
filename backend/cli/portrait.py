"""``steadytalk portrait``: one picture and a speech recording -> a talking-portrait mp4."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import SteadyTalkError
from .common import (
    ProgressBar,
    add_face_options,
    add_transcript_options,
    check_outputs,
    face_options,
    positive_fps,
    read_transcript,
    smoothing_strength,
)


def _size(text: str) -> int:
    try:
        return int(text)  # the range is the pipeline's to check (it says which)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be a whole number of pixels, got {text!r}") from None


def _face(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"face must be a number (1 is the leftmost face), got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("faces are numbered from 1, left to right")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    portrait = sub.add_parser("portrait", help="one picture + speech -> a talking-portrait mp4 (no training)")
    portrait.add_argument("image", type=Path, help="a photo or painting with a face (PNG, JPEG, WebP, TIFF, BMP)")
    portrait.add_argument("--audio", type=Path, required=True, help="speech: WAV, FLAC, MP3, OGG, M4A/AAC, a video")
    add_transcript_options(portrait, "the words spoken (forced alignment: better timing)")
    portrait.add_argument("--out", type=Path, required=True, help="output mp4 (H.264 + AAC)")
    portrait.add_argument("--size", type=_size, default=512, help="the video's longer side in pixels (512)")
    portrait.add_argument("--fps", type=positive_fps, default=25.0, help="frame rate (25; 29.97 works)")
    portrait.add_argument("--face", type=_face, help="which face when the picture has several: 1 is the leftmost")
    portrait.add_argument(
        "--smoothing", type=smoothing_strength, default=1.0, help="adaptive smoothing strength: 0 off, 1 default"
    )
    add_face_options(portrait)
    portrait.add_argument("--quiet", action="store_true", help="no progress bar")
    portrait.set_defaults(handler=cmd_portrait)


def cmd_portrait(args: argparse.Namespace) -> int:
    from ..portrait.pipeline import PortraitOptions, render_portrait

    check_outputs(args.out)
    if args.out.suffix.lower() != ".mp4":
        raise SteadyTalkError(f"{args.out} does not end in .mp4.", "The portrait is written as an mp4: --out NAME.mp4.")
    if not args.audio.is_file():
        raise SteadyTalkError(f"The audio file {args.audio} does not exist.", "Check the path.")
    transcript = read_transcript(args)
    options = PortraitOptions(
        size=args.size,
        fps=args.fps,
        face=args.face,
        smoothing=args.smoothing,
        face_options=face_options(args),
        whole_face=not args.mouth_only,
    )
    started = time.monotonic()
    bar = ProgressBar(not args.quiet)
    try:
        summary = render_portrait(args.image, args.audio, args.out, transcript, options, bar)
    finally:
        bar.close()
    seconds = time.monotonic() - started
    width, height = summary["size"]
    print(
        f"{summary['out']}: {summary['frames']} frames ({summary['duration']:.2f} s of audio, {width}x{height} "
        f"at {summary['fps']:g} fps, face {summary['face']} of {summary['faces']}) in {seconds:.1f} s"
    )
    for warning in summary["warnings"]:
        print(f"  warning: {warning}")
    return 0
