"""``steadytalk render``: audio to a photoreal mp4 of a trained avatar, one file or a batch."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import SteadyTalkError
from .common import ProgressBar, add_device_option, add_transcript_options, read_transcript, smoothing_strength


def register(sub: argparse._SubParsersAction) -> None:
    render = sub.add_parser("render", help="audio -> photoreal mp4 of a trained avatar (one file or a batch)")
    render.add_argument("--avatar", type=Path, required=True, help="a trained avatar folder (steadytalk train)")
    what = render.add_mutually_exclusive_group(required=True)
    what.add_argument("--audio", type=Path, help="one speech file")
    what.add_argument("--batch", type=Path, help="a list: one audio path per line, optionally TAB transcript")
    add_transcript_options(render, "the words spoken (with --audio)")
    render.add_argument("--out", type=Path, help="output mp4 (with --audio)")
    render.add_argument("--out-dir", type=Path, help="output folder (with --batch); a rerun skips finished files")
    render.add_argument(
        "--smoothing", type=smoothing_strength, default=1.0, help="adaptive smoothing strength (1 default)"
    )
    render.add_argument("--crop", action="store_true", help="write the face crop instead of the full frame")
    add_device_option(render, " (with --ray: each Ray worker's)")
    render.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run the batch on Ray: one worker per GPU (ADDRESS of a cluster, or none for a local one)",
    )
    render.add_argument("--quiet", action="store_true", help="no progress bar")
    render.set_defaults(handler=cmd_render)


def cmd_render(args: argparse.Namespace) -> int:
    if not args.avatar.is_dir():
        raise SteadyTalkError(
            f"The avatar folder {args.avatar} does not exist.",
            "Make one with steadytalk prepare, then steadytalk train.",
        )
    from ..device import pick_device

    # Checked here before any work; with Ray each worker resolves it on its own machine.
    device = args.device if args.ray is not None and args.audio is None else pick_device(args.device)
    transcript = read_transcript(args)
    if args.audio is not None:
        return _render_one(args, transcript, device)
    from ..service.batch import read_list, run_batch

    if args.out_dir is None:
        raise SteadyTalkError("--batch needs --out-dir DIR.")
    if transcript is not None:
        raise SteadyTalkError("--transcript is for one file; in a batch list put it after a TAB on each line.")
    jobs = read_list(args.batch, args.out_dir)
    outcomes = run_batch(args.avatar, jobs, args.out_dir, device, not args.crop, args.ray, log=print)
    failed = [o for o in outcomes if o.status == "failed"]
    done = sum(o.status == "done" for o in outcomes)
    skipped = sum(o.status == "skipped" for o in outcomes)
    print(
        f"{done} rendered, {skipped} already there, {len(failed)} failed; report: {args.out_dir / 'batch_report.json'}"
    )
    return 1 if failed else 0


def _render_one(args: argparse.Namespace, transcript: str | None, device) -> int:
    if args.out is None:
        raise SteadyTalkError("--audio needs --out OUT.mp4.")
    if not args.audio.is_file():
        raise SteadyTalkError(f"The audio file {args.audio} does not exist.")
    from ..render.inference import AvatarRenderer
    from ..render.pipeline import Reference, RenderConfig, render_audio

    started = time.monotonic()
    renderer = AvatarRenderer(args.avatar, device=device)
    reference = Reference(args.avatar, renderer.config.size)
    bar = ProgressBar(not args.quiet)
    try:
        summary = render_audio(
            renderer,
            reference,
            args.audio,
            args.out,
            transcript,
            RenderConfig(full_frame=not args.crop, smoothing=args.smoothing),
            bar,
        )
    finally:
        bar.close()
    seconds = time.monotonic() - started
    print(
        f"{summary['out']}: {summary['frames']} frames ({summary['duration']:.2f} s of audio, "
        f"{summary['size'][0]}x{summary['size'][1]} at {summary['fps']:g} fps) in {seconds:.1f} s "
        f"on {renderer.device}"
    )
    for warning in summary["warnings"]:
        print(f"  warning: {warning}")
    return 0
