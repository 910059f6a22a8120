"""What every command group shares: argument types, the transcript options, progress bars and
output-path checks. User errors are ``SteadyTalkError`` (one line, exit status 2)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SteadyTalkError


def positive_fps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"fps must be a number like 25 or 29.97, got {text!r}") from None
    if not (1.0 <= value <= 1000.0):
        raise argparse.ArgumentTypeError(f"fps must be between 1 and 1000, got {text}")
    return value


def smoothing_strength(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"smoothing strength must be a number, got {text!r}") from None
    if not (0.0 <= value <= 10.0):
        raise argparse.ArgumentTypeError("smoothing strength must be between 0 (off) and 10; 1 is the default")
    return value


def add_transcript_options(parser: argparse.ArgumentParser, typed_help: str) -> None:
    """``--transcript TEXT`` or ``--transcript-file FILE`` (one of them at most)."""
    text = parser.add_mutually_exclusive_group()
    text.add_argument("--transcript", help=typed_help)
    text.add_argument("--transcript-file", type=Path, help="a UTF-8 text file with the words spoken")


def add_device_option(parser: argparse.ArgumentParser, what: str = "") -> None:
    """``--device``: resolved by ``steadytalk_backend.device.pick_device`` in the handler, so a
    device this machine lacks is a one-line error naming the ones it has."""
    parser.add_argument(
        "--device",
        help="cpu, cuda, cuda:N or mps (default: CUDA when there is one, else Apple MPS, else the CPU)" + what,
    )


def add_recognizer_options(parser: argparse.ArgumentParser) -> None:
    """How speech without a typed transcript is read: ``--recognizer`` and ``--asr-model``."""
    parser.add_argument(
        "--recognizer",
        choices=("words", "phones"),
        default="words",
        help="without a transcript: recognize the words and align them (default), or phones only (the old path)",
    )
    parser.add_argument(
        "--asr-model",
        help="a faster-whisper model folder for word recognition (default: $STEADYTALK_ASR_MODEL, "
        "else the bundled tiny.en)",
    )


def read_transcript(args: argparse.Namespace) -> str | None:
    if args.transcript_file is None:
        return args.transcript
    try:
        return args.transcript_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SteadyTalkError(f"Transcript file not found: {args.transcript_file}.", "Check the path.") from None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise SteadyTalkError(
            f"Could not read the transcript {args.transcript_file} ({exc}).", "Save it as UTF-8 plain text."
        ) from None


def check_outputs(*paths: Path | None) -> None:
    """Refuse unusable output paths before any work is done (and before anything is written)."""
    for path in paths:
        if path is None:
            continue
        if path.is_dir():
            raise SteadyTalkError(f"{path} is a folder.", "Give a file name, e.g. --out curves.json.")
        if not path.parent.is_dir():
            raise SteadyTalkError(f"Output folder does not exist: {path.parent}.", "Create it or choose another path.")


class ProgressBar:
    """A tqdm percentage bar on stderr, driven by ``(fraction, stage)`` callbacks; silent when disabled."""

    def __init__(self, enabled: bool) -> None:
        self._bar = None
        self._enabled = enabled

    def __call__(self, fraction: float, stage: str) -> None:
        if not self._enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=100, unit="%", bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")
        self._bar.set_description(stage)
        self._bar.update(int(fraction * 100) - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _bounded(name: str, low: float, high: float, hint: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not (low <= value <= high):
            raise argparse.ArgumentTypeError(f"{name} must be between {low:g} and {high:g}{hint}, got {text}")
        return value

    return parse


def seed_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be a whole number, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"seed must be between 0 and 4294967295, got {text}")
    return value


def add_face_options(parser: argparse.ArgumentParser) -> None:
    """The whole-face flags: blinks, head motion, brows and gaze, their seed and style."""
    face = parser.add_argument_group("whole face (blinks, gaze, brows, head motion)")
    face.add_argument(
        "--blink-rate",
        type=_bounded("blink rate", 0.0, 120.0, " per minute"),
        metavar="PER_MINUTE",
        help="average blinks per minute, timed by the speech (0: no blinks; default: the model's natural rate)",
    )
    face.add_argument(
        "--head-motion", type=_bounded("head motion", 0.0, 5.0, ""), default=1.0, metavar="SCALE",
        help="scale of the head motion (0: still head; default 1)",
    )  # fmt: skip
    face.add_argument(
        "--expressiveness", type=_bounded("expressiveness", 0.0, 5.0, ""), default=1.0, metavar="SCALE",
        help="scale of brows and gaze (0: still brows and eyes; default 1)",
    )  # fmt: skip
    face.add_argument(
        "--seed", type=seed_number, default=None, help="seed of blinks, gaze and head (same seed, same face)"
    )
    face.add_argument(
        "--style",
        help="manner learned from video: calm or lively (head motion; default lively), or avatar:PATH, the "
        "blinks, gaze, brows and head of a prepared avatar (its style.json)",
    )
    face.add_argument("--mouth-only", action="store_true", help="only the mouth, as releases before schema v2")


def face_options(args: argparse.Namespace):
    """``FaceOptions`` from the flags of ``add_face_options``."""
    from ..performance.model import DEFAULT_SEED, FaceOptions, default_performer

    style = args.style
    if style is not None and style.startswith("avatar:"):
        from ..performance.style import person_performer, style_path

        style = "avatar:" + str(style_path(style).resolve())  # the lip-sync may run in another folder
        person_performer(style)  # a clear message now if the avatar has no style
    elif style is not None and style not in default_performer().styles:
        raise SteadyTalkError(
            f"Unknown style {style!r}.",
            f"Choose one of: {', '.join(default_performer().styles)}, or avatar:PATH for a prepared avatar.",
        )
    seed = DEFAULT_SEED if args.seed is None else args.seed
    return FaceOptions(args.blink_rate, args.head_motion, args.expressiveness, seed, style)
