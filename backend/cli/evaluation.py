"""``steadytalk eval lipsync|tracking|render|portrait|face``: the evaluation reports (printed, optionally JSON)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from ..errors import SteadyTalkError
from .common import add_device_option, positive_fps


def register(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser("eval", help="evaluation reports")
    eval_sub = evaluate.add_subparsers(dest="target", required=True)
    eval_lipsync = eval_sub.add_parser("lipsync", help="closure/open-vowel/rest rates and stability on GRID clips")
    eval_lipsync.add_argument(
        "directory",
        type=Path,
        help="folder with NAME.align and NAME.16k.wav (GRID layout), or a video with .clips.tsv/.words.tsv beside it",
    )
    eval_lipsync.add_argument("--fps", type=positive_fps, default=25.0)
    eval_lipsync.add_argument("--speech-dir", type=Path, help="folder of other speech for the stability table")
    eval_lipsync.add_argument("--json", type=Path, help="also write the report as JSON")
    eval_tracking = eval_sub.add_parser("tracking", help="tracked share, reprojection error, MSI, prepare speed")
    eval_tracking.add_argument("avatar", type=Path, help="an avatar folder made by steadytalk prepare")
    eval_tracking.add_argument(
        "--clips", type=Path, help="held-out GRID clips (NAME.mpg + NAME.align): jawOpen vs the lip-sync engine"
    )
    eval_tracking.add_argument(
        "--work-dir", type=Path, help="where the held-out clips' avatars go (default: a temporary folder)"
    )
    eval_tracking.add_argument("--json", type=Path, help="also write the report as JSON")
    eval_render = eval_sub.add_parser("render", help="the trained renderer on held-out clips: PSNR, SSIM, LMD, MSI")
    eval_render.add_argument("avatar", type=Path, help="a trained avatar folder (steadytalk train)")
    eval_render.add_argument(
        "--clips",
        type=Path,
        default=Path("../shared/data/video/grid_s1_val"),
        help="held-out clips of the same speaker (NAME.mpg + NAME.align)",
    )
    eval_render.add_argument("--work-dir", type=Path, help="where the clips' tracking goes (default: temporary)")
    eval_render.add_argument("--out", type=Path, default=Path("eval_render"), help="contact sheet and mp4 go here")
    eval_render.add_argument("--json", type=Path, help="also write the report as JSON")
    add_device_option(eval_render, " for the renderer")
    eval_render.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also evaluate the model in DIR (steadytalk train --out DIR) as row NAME; repeatable",
    )
    eval_portrait = eval_sub.add_parser("portrait", help="the one-picture portrait on held-out clips: LMD, PSNR, MSI")
    eval_portrait.add_argument(
        "--clips",
        type=Path,
        default=Path("../shared/data/video/grid_s1_val"),
        help="held-out clips (NAME.mpg + NAME.align + NAME.16k.wav): each clip's first frame is the portrait",
    )
    eval_portrait.add_argument(
        "--images", type=Path, help="a folder of pictures: a contact sheet of each one's widest mouth"
    )
    eval_portrait.add_argument(
        "--speech", type=Path, help="speech for the contact sheet (default: the JFK clip in ../shared/data/audio)"
    )
    eval_portrait.add_argument("--out", type=Path, default=Path("eval_portrait"), help="the contact sheet goes here")
    eval_portrait.add_argument("--json", type=Path, help="also write the report as JSON")
    eval_face = eval_sub.add_parser("face", help="blinks, head motion and brows on held-out real video vs baselines")
    eval_face.add_argument("--data", type=Path, default=Path("../shared/data"), help="the shared data folder")
    eval_face.add_argument("--out", type=Path, default=Path("eval_face"), help="plots and face_report.json go here")
    eval_face.add_argument("--cache", type=Path, default=Path("build/face_tracks"), help="tracking cache folder")
    eval_face.add_argument("--json", type=Path, help="also write the report as JSON")
    eval_face.add_argument("--model", type=Path, help="face-motion parameters to evaluate (default: the shipped ones)")
    evaluate.set_defaults(handler=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from ..evaluation.lipsync import evaluate_lipsync, format_report, write_report

    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    if args.target == "tracking":
        from ..evaluation.tracking import evaluate_tracking, format_tracking_report

        if not (args.avatar / "manifest.json").exists():
            raise SteadyTalkError(f"{args.avatar} is not an avatar folder.", "Make one with steadytalk prepare VIDEO.")
        with tempfile.TemporaryDirectory() as scratch:
            report = evaluate_tracking(args.avatar, args.clips, args.work_dir or Path(scratch), log)
        print(format_tracking_report(report))
    elif args.target == "render":
        from ..device import pick_device
        from ..evaluation.render import evaluate_render, format_render_report

        device = pick_device(args.device)
        if not args.clips.is_dir():
            raise SteadyTalkError(f"No clips folder at {args.clips}.", "Pass --clips with NAME.mpg + NAME.align files.")
        with tempfile.TemporaryDirectory() as scratch:
            extra = {}
            for item in args.model:
                name, sep, folder = item.partition("=")
                if not sep or not name or not (Path(folder) / "renderer.safetensors").exists():
                    raise SteadyTalkError(
                        f"--model {item}: expected NAME=DIR with a trained renderer in DIR.",
                        "Train one with: steadytalk train AVATAR --out DIR",
                    )
                extra[name] = Path(folder)
            work = args.work_dir or Path(scratch)
            report = evaluate_render(args.avatar, args.clips, work, args.out, log, device, extra_models=extra)
        print(format_render_report(report))
    elif args.target == "portrait":
        from ..evaluation.portrait import evaluate_portrait, format_portrait_report

        if not args.clips.is_dir():
            raise SteadyTalkError(f"No clips folder at {args.clips}.", "Pass --clips with NAME.mpg + NAME.align files.")
        report = evaluate_portrait(args.clips, args.images, args.out, log, args.speech)
        print(format_portrait_report(report))
    elif args.target == "face":
        from ..evaluation.face import evaluate_face, format_face_report

        if not (args.data / "video").is_dir():
            raise SteadyTalkError(f"No video folder in {args.data}.", "Pass --data pointing at the shared data folder.")
        from ..performance.model import Performer

        performer = Performer.load(args.model) if args.model else None
        report = evaluate_face(args.data, args.out, args.cache, performer, log=log)
        print(format_face_report(report))
    else:
        report = evaluate_lipsync(args.directory, fps=args.fps, speech_dir=args.speech_dir, log=log)
        print(format_report(report))
    if args.json:
        write_report(report, args.json)
        print(f"\nwrote {args.json}")
    return 0
