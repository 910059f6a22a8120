"""The ``steadytalk`` command line. Thin: parses arguments, calls the library, reports.

User errors end with ``error: <what went wrong> <what to do>`` and exit status 2, never a
traceback; ``STEADYTALK_DEBUG=1`` shows the traceback for bug reports.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np

from steadytalk_shared.schema import CHANNELS, lip_aperture

from . import __version__
from .atomic import atomic_output
from .errors import SteadyTalkError

DEMO_AUDIO = "demo_speech.wav"
DEMO_TRANSCRIPT = "demo_speech.txt"


def _positive_fps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"fps must be a number like 25 or 29.97, got {text!r}") from None
    if not (1.0 <= value <= 1000.0):
        raise argparse.ArgumentTypeError(f"fps must be between 1 and 1000, got {text}")
    return value


def _strength(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"smoothing strength must be a number, got {text!r}") from None
    if not (0.0 <= value <= 10.0):
        raise argparse.ArgumentTypeError("smoothing strength must be between 0 (off) and 10; 1 is the default")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="steadytalk", description="Motion-stable audio-driven facial animation.")
    parser.add_argument("--version", action="version", version=f"steadytalk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    lipsync = sub.add_parser("lipsync", help="audio -> smoothed ARKit mouth curves (JSON, CSV)")
    lipsync.add_argument("audio", type=Path, help="speech: WAV, FLAC, MP3, OGG, M4A/AAC or a video's soundtrack")
    text = lipsync.add_mutually_exclusive_group()
    text.add_argument("--transcript", help="the words spoken (forced alignment: much more accurate)")
    text.add_argument("--transcript-file", type=Path, help="a UTF-8 text file with the words spoken")
    lipsync.add_argument("--fps", type=_positive_fps, default=25.0, help="frame rate of the curves (29.97 works)")
    lipsync.add_argument(
        "--smoothing", type=_strength, default=1.0, help="adaptive smoothing strength: 0 off, 1 default"
    )
    lipsync.add_argument("--out", type=Path, required=True, help="output JSON file")
    lipsync.add_argument("--csv", type=Path, help="also write the smoothed curves as CSV (frame, time, channels)")
    lipsync.add_argument(
        "--max-duration", type=float, default=None, help="longest audio accepted, in seconds (default 7200)"
    )
    lipsync.add_argument("--quiet", action="store_true", help="no progress bar")

    prep = sub.add_parser("prepare", help="reference video -> avatar folder (tracking, crops, audio features)")
    prep.add_argument("video", type=Path, help="a video of one person talking, with sound (mp4, mov, mkv, webm, mpg)")
    prep.add_argument("--out", type=Path, required=True, help="avatar folder (created; a rerun resumes it)")
    prep.add_argument(
        "--size", type=int, action="append", choices=(256, 512), help="crop size; repeat for both (default 256)"
    )
    prep.add_argument("--fps", type=_positive_fps, default=None, help="output frame rate (default: the video's)")
    ptext = prep.add_mutually_exclusive_group()
    ptext.add_argument("--transcript", help="the words spoken, for a more accurate phone alignment")
    ptext.add_argument("--transcript-file", type=Path, help="a UTF-8 text file with the words spoken")
    prep.add_argument("--force", action="store_true", help="rebuild an avatar folder made from another video")
    prep.add_argument("--quiet", action="store_true", help="no progress bar")

    serve = sub.add_parser("serve", help="run the ZeroMQ backend (loopback by default)")
    serve.add_argument("--bind", default="tcp://127.0.0.1:5757", help="ZeroMQ endpoint to bind (loopback by default)")
    serve.add_argument("--workers", type=int, default=2, help="jobs processed at once")
    serve.add_argument(
        "--avatars",
        type=Path,
        action="append",
        default=[],
        help="a folder of trained avatars (or one avatar folder) that clients may render with; repeatable",
    )
    serve.add_argument("--jobs-dir", type=Path, help="the only folder the server writes to (default: temporary)")
    serve.add_argument("--keys", type=Path, help="CURVE keys folder (steadytalk keys); required off loopback")
    serve.add_argument("--device", help="renderer device: cpu, cuda or cuda:N (default: cuda when there is one)")
    serve.add_argument("--max-frames", type=int, default=64, help="most frames in one render request")

    keys = sub.add_parser("keys", help="CURVE keys so the backend can listen beyond this computer")
    keys.add_argument("folder", type=Path, help="keys folder (created; the server key is made once)")
    keys.add_argument("--client", action="append", default=[], help="make a key pair for this client; repeatable")

    render = sub.add_parser("render", help="audio -> photoreal mp4 of a trained avatar (one file or a batch)")
    render.add_argument("--avatar", type=Path, required=True, help="a trained avatar folder (steadytalk train)")
    what = render.add_mutually_exclusive_group(required=True)
    what.add_argument("--audio", type=Path, help="one speech file")
    what.add_argument("--batch", type=Path, help="a list: one audio path per line, optionally TAB transcript")
    rtext = render.add_mutually_exclusive_group()
    rtext.add_argument("--transcript", help="the words spoken (with --audio)")
    rtext.add_argument("--transcript-file", type=Path, help="a UTF-8 text file with the words spoken")
    render.add_argument("--out", type=Path, help="output mp4 (with --audio)")
    render.add_argument("--out-dir", type=Path, help="output folder (with --batch); a rerun skips finished files")
    render.add_argument("--smoothing", type=_strength, default=1.0, help="adaptive smoothing strength (1 default)")
    render.add_argument("--crop", action="store_true", help="write the face crop instead of the full frame")
    render.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when there is one)")
    render.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run the batch on Ray: one worker per GPU (ADDRESS of a cluster, or none for a local one)",
    )
    render.add_argument("--quiet", action="store_true", help="no progress bar")

    demo = sub.add_parser("demo", help="lip-sync the bundled speech clip (the README's main job)")
    demo.add_argument("--out", type=Path, default=Path("demo_output"), help="folder for the results")

    evaluate = sub.add_parser("eval", help="evaluation reports")
    eval_sub = evaluate.add_subparsers(dest="target", required=True)
    eval_lipsync = eval_sub.add_parser("lipsync", help="closure/open-vowel/rest rates and stability on GRID clips")
    eval_lipsync.add_argument(
        "directory",
        type=Path,
        help="folder with NAME.align and NAME.16k.wav (GRID layout), or a video with .clips.tsv/.words.tsv beside it",
    )
    eval_lipsync.add_argument("--fps", type=_positive_fps, default=25.0)
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

    face = sub.add_parser("face-model", help="the canonical face model (mesh + ARKit blendshapes)")
    face_sub = face.add_subparsers(dest="action", required=True)
    face_build = face_sub.add_parser("build", help="rebuild shared/data/face_model.npz from a talking-head video")
    face_build.add_argument(
        "--video", type=Path, default=Path("../shared/data/video/grid_s1_train_300s.mp4"), help="frontal talking head"
    )
    face_build.add_argument("--out", type=Path, default=None, help="default: the model the package loads")
    face_sheet = face_sub.add_parser("sheet", help="pictures of every blendshape (neutral vs 1.0, front and side)")
    face_sheet.add_argument("--out", type=Path, default=Path("face_model_sheets"))

    trainer = sub.add_parser("train", help="train an avatar's neural renderer and audio-to-expression model")
    trainer.add_argument("avatar", type=Path, help="an avatar folder made by steadytalk prepare")
    trainer.add_argument(
        "--preset",
        choices=("tiny", "standard", "high"),
        default="standard",
        help="tiny: minutes on a CPU; standard: 256x256 on one GPU; high: 512x512 crops",
    )
    trainer.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when there is one)")
    trainer.add_argument("--restart", action="store_true", help="discard an unfinished run instead of resuming it")
    trainer.add_argument(
        "--ablation",
        choices=("full", "no_erosion", "no_transformer", "no_audio_fusion"),
        help="train a model without one component (or the full one) into AVATAR/ablations/NAME, for eval render",
    )
    trainer.add_argument("--epochs", type=int, help="override the preset's renderer-alone epochs")
    trainer.add_argument("--joint-epochs", type=int, help="override the preset's joint epochs (with the smoother)")
    trainer.add_argument("--max-seconds", type=float, help="train on the avatar's first seconds only")
    trainer.add_argument("--quiet", action="store_true", help="no progress bar")

    train = sub.add_parser("smoother-train", help="retrain the default adaptive smoother (reproducible)")
    train.add_argument("--out", type=Path, required=True, help="output .safetensors (a .json config is written beside)")
    train.add_argument("--steps", type=int, default=None)
    return parser


class _ProgressBar:
    """tqdm on stderr when it is a terminal or the audio is long; silent otherwise."""

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


def _read_transcript(args: argparse.Namespace) -> str | None:
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


def _summary(result, elapsed: float) -> str:
    aperture = lip_aperture(result.smoothed)
    speech = [p for p in result.phones if p.phone != "SIL"]
    active = [CHANNELS[i] for i in np.argsort(-result.smoothed.max(axis=0))[:5] if result.smoothed[:, i].max() > 0.05]
    return "\n".join(
        [
            f"  audio        {result.duration:.2f} s, {result.mode} ({len(speech)} phones)",
            f"  frames       {result.num_frames} at {result.fps:g} fps, {len(result.channels)} channels",
            f"  smoothing    strength {result.smoothing_strength:g}, kernel sigma {result.sigma.min():.2f}"
            f"-{result.sigma.max():.2f} frames (median {np.median(result.sigma):.2f})",
            f"  mouth        open {np.mean(aperture > 0.1):.0%} of frames, "
            f"peak jawOpen {result.smoothed[:, CHANNELS.index('jawOpen')].max():.2f}",
            f"  most active  {', '.join(active)}",
            f"  took         {elapsed:.2f} s ({result.duration / max(elapsed, 1e-9):.0f}x real time)",
        ]
    )


def _check_outputs(*paths: Path | None) -> None:
    """Refuse unusable output paths before any work is done (and before anything is written)."""
    for path in paths:
        if path is None:
            continue
        if path.is_dir():
            raise SteadyTalkError(f"{path} is a folder.", "Give a file name, e.g. --out curves.json.")
        if not path.parent.is_dir():
            raise SteadyTalkError(f"Output folder does not exist: {path.parent}.", "Create it or choose another path.")


def _write_outputs(result, out: Path, csv_path: Path | None) -> None:
    _check_outputs(out, csv_path)
    with atomic_output(out) as tmp:
        result.write_json(tmp)
    if csv_path is not None:
        with atomic_output(csv_path) as tmp:
            tmp.write_text(result.to_csv())


def cmd_lipsync(args: argparse.Namespace) -> int:
    from .audio import AudioConfig
    from .engine import EngineConfig, LipsyncEngine

    _check_outputs(args.out, args.csv)
    transcript = _read_transcript(args)
    config = (
        EngineConfig() if args.max_duration is None else EngineConfig(audio=AudioConfig(max_seconds=args.max_duration))
    )
    bar = _ProgressBar(enabled=not args.quiet and sys.stderr.isatty())
    started = time.perf_counter()
    try:
        result = LipsyncEngine(config).run(args.audio, transcript, fps=args.fps, strength=args.smoothing, progress=bar)
    finally:
        bar.close()
    elapsed = time.perf_counter() - started
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    _write_outputs(result, args.out, args.csv)
    print(f"wrote {args.out}" + (f" and {args.csv}" if args.csv else ""))
    print(_summary(result, elapsed))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .engine import LipsyncEngine

    data = resources.files("steadytalk_backend.data")
    args.out.mkdir(parents=True, exist_ok=True)
    with resources.as_file(data / DEMO_AUDIO) as audio:
        transcript = (data / DEMO_TRANSCRIPT).read_text(encoding="utf-8").strip()
        print(f'Lip-sync of the bundled clip {DEMO_AUDIO}: "{transcript}"')
        engine = LipsyncEngine()
        for label, text in (("with_transcript", transcript), ("without_transcript", None)):
            started = time.perf_counter()
            result = engine.run(audio, text, fps=30.0)
            elapsed = time.perf_counter() - started
            out = args.out / f"demo_{label}.json"
            _write_outputs(result, out, out.with_suffix(".csv"))
            print(f"\nwrote {out} and {out.with_suffix('.csv')}")
            print(_summary(result, elapsed))
    return 0


class _StageBars:
    """One tqdm bar per stage of ``prepare`` (frames/s shown), on stderr."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._bar = None
        self._stage = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self._enabled:
            return
        if stage != self._stage:
            self.close()
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=f"{stage:<9}", unit="frame" if total > 3 else "step", leave=True)
            self._stage = stage
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def cmd_prepare(args: argparse.Namespace) -> int:
    from .prepare import PrepareConfig, prepare

    sizes = tuple(sorted(set(args.size or [256])))
    config = PrepareConfig(sizes=sizes, fps=args.fps, transcript=_read_transcript(args))
    bars = _StageBars(not args.quiet)
    started = time.perf_counter()
    try:
        manifest = prepare(args.video, args.out, config, force=args.force, progress=bars)
    finally:
        bars.close()
    elapsed = time.perf_counter() - started
    video, report = manifest.video, manifest.report
    worked = sum(stage.get("seconds", 0.0) for stage in manifest.stages.values())
    print(f"avatar written to {args.out}")
    print(f"  video        {video['width']}x{video['height']}, {video['frames']} frames at {video['fps']:g} fps")
    print(f"               {manifest.stages['landmarks']['cfr']}")
    print(
        f"  tracked      {report['tracked_share']:.1%} of frames ({report['interpolated_frames']} interpolated), "
        f"reprojection {report['reprojection_error_iod']['mean']:.2%} of the eye distance"
    )
    print(f"  audio        {manifest.stages['audio']['mode']}")
    print(
        f"  took         {elapsed:.1f} s this run; {worked:.1f} s in all "
        f"({video['frames'] / max(worked, 1e-9):.1f} frames/s)"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import LipsyncServer, ServerConfig

    for folder in args.avatars:
        if not folder.is_dir():
            raise SteadyTalkError(f"--avatars {folder} is not a folder.", "Give the folder that holds your avatars.")
    config = ServerConfig(
        bind=args.bind,
        workers=args.workers,
        avatars=tuple(args.avatars),
        jobs_dir=args.jobs_dir,
        keys=args.keys,
        device=args.device,
        max_frames_per_request=args.max_frames,
    )
    server = LipsyncServer(config)
    server.install_signal_handlers()
    secured = " with CURVE authentication" if args.keys else ""
    print(f"steadytalk {__version__} serving on {server.endpoint}{secured} (Ctrl+C to stop)", flush=True)
    avatars = server.avatar_names()
    print(f"avatars: {', '.join(avatars) if avatars else 'none (add --avatars FOLDER to render)'}", flush=True)
    server.serve_forever()
    print("stopped")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_lipsync, format_report, write_report

    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    if args.target == "tracking":
        import tempfile

        from .tracking_eval import evaluate_tracking, format_tracking_report

        if not (args.avatar / "manifest.json").exists():
            raise SteadyTalkError(f"{args.avatar} is not an avatar folder.", "Make one with steadytalk prepare VIDEO.")
        with tempfile.TemporaryDirectory() as scratch:
            report = evaluate_tracking(args.avatar, args.clips, args.work_dir or Path(scratch), log)
        print(format_tracking_report(report))
    elif args.target == "render":
        import tempfile

        from .render_eval import evaluate_render, format_render_report

        if not args.clips.is_dir():
            raise SteadyTalkError(f"No clips folder at {args.clips}.", "Pass --clips with NAME.mpg + NAME.align files.")
        with tempfile.TemporaryDirectory() as scratch:
            report = evaluate_render(args.avatar, args.clips, args.work_dir or Path(scratch), args.out, log)
        print(format_render_report(report))
    else:
        report = evaluate_lipsync(args.directory, fps=args.fps, speech_dir=args.speech_dir, log=log)
        print(format_report(report))
    if args.json:
        write_report(report, args.json)
        print(f"\nwrote {args.json}")
    return 0


def cmd_face_model(args: argparse.Namespace) -> int:
    from steadytalk_shared.face_model import DEFAULT_PATH, FaceModel

    if args.action == "build":
        from .face_model_build import build

        if not args.video.exists():
            raise SteadyTalkError(f"Video not found: {args.video}.", "Pass --video with a frontal talking-head video.")
        build(args.video, args.out or DEFAULT_PATH)
        return 0
    from .face_model_preview import write_sheets

    paths = write_sheets(FaceModel.load(), args.out)
    print(f"wrote {len(paths)} pictures to {args.out} (start with {paths[0].name})")
    return 0


def cmd_smoother_train(args: argparse.Namespace) -> int:
    from .train_smoother import main as train_main

    train_main(str(args.out), steps=args.steps)
    return 0


class _TrainBar:
    """One tqdm bar over all epochs (ETA shown) with the current losses."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._bar = None
        self._desc = None

    def __call__(self, stage: str, done: int, total: int, losses: dict) -> None:
        if not self._enabled:
            return
        if self._bar is None or self._desc != stage:
            self.close()
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=done - 1, desc=f"{stage:<8}", unit="step", leave=True)
            self._desc = stage
        self._bar.update(done - self._bar.n)
        self._bar.set_postfix(l1=f"{losses['l1']:.4f}", lip=f"{losses['lip']:.4f}", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def cmd_train(args: argparse.Namespace) -> int:
    from .s2a_person import train_s2a
    from .train_renderer import ABLATIONS, MODEL_DIR, RendererTrainer, preset_with

    avatar: Path = args.avatar
    if not (avatar / "manifest.json").exists():
        raise SteadyTalkError(f"{avatar} is not an avatar folder.", "Make one with: steadytalk prepare VIDEO --out DIR")
    changes = dict(ABLATIONS.get(args.ablation or "", {}))
    for name in ("epochs", "joint_epochs", "max_seconds"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    preset = preset_with(args.preset, **changes)
    out = avatar / "ablations" / args.ablation if args.ablation else avatar / MODEL_DIR
    s2a_path = avatar / MODEL_DIR / "s2a.safetensors"
    if not args.ablation and (args.restart or not s2a_path.exists()):
        print("audio-to-expression: fitting the person's residual over the rule engine", file=sys.stderr)
        model, report = train_s2a(avatar)
        model.save(s2a_path, report)
        v = report["validation"]
        print(
            f"  held-back frames: mouth RMSE {v['person']['rmse_mouth']:.4f} "
            f"(rule engine {v['engine']['rmse_mouth']:.4f}), jawOpen r {v['person']['pearson_jaw_open']:.3f} "
            f"(rule engine {v['engine']['pearson_jaw_open']:.3f})"
        )
    bar = _TrainBar(not args.quiet)
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    try:
        trainer = RendererTrainer(avatar, preset, device=args.device, progress=bar, log=log, out=out)
        summary = trainer.run(restart=args.restart)
    except KeyboardInterrupt:
        bar.close()
        print("interrupted: run the same command again to resume from the last finished epoch", file=sys.stderr)
        return 130
    finally:
        bar.close()
    print(f"model written to {out}")
    print(
        f"  {summary['epochs']} epochs, {summary['steps']} steps in {summary['seconds']:.0f} s "
        f"({summary['frames_per_second']:.1f} frames/s on {trainer.device}); "
        f"held-back L1 {summary['validation_l1']:.4f}"
    )
    print(f"  losses: {out / 'train_log.tsv'} and {out / 'losses.png'}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from .keys import generate

    made = generate(args.folder, args.client)
    print(f"server public key: {made.pop('server')} (give it to clients; server.key_secret stays here)")
    for name, path in made.items():
        print(f"client {name}: {path} (copy it to that client only; authorized/{name}.key lets it in)")
    print(f"serve with: steadytalk serve --bind tcp://0.0.0.0:5757 --keys {args.folder}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    if not args.avatar.is_dir():
        raise SteadyTalkError(
            f"The avatar folder {args.avatar} does not exist.",
            "Make one with steadytalk prepare, then steadytalk train.",
        )
    transcript = _read_transcript(args)
    if args.audio is not None:
        if args.out is None:
            raise SteadyTalkError("--audio needs --out OUT.mp4.")
        if not args.audio.is_file():
            raise SteadyTalkError(f"The audio file {args.audio} does not exist.")
        from .inference import AvatarRenderer
        from .render_service import Reference, RenderConfig, render_audio

        started = time.monotonic()
        renderer = AvatarRenderer(args.avatar, device=args.device)
        reference = Reference(args.avatar, renderer.config.size)
        bar = _ProgressBar(not args.quiet)
        try:
            summary = render_audio(
                renderer, reference, args.audio, args.out, transcript, RenderConfig(full_frame=not args.crop), bar
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
    from .batch import read_list, run_batch

    if args.out_dir is None:
        raise SteadyTalkError("--batch needs --out-dir DIR.")
    if transcript is not None:
        raise SteadyTalkError("--transcript is for one file; in a batch list put it after a TAB on each line.")
    jobs = read_list(args.batch, args.out_dir)
    outcomes = run_batch(args.avatar, jobs, args.out_dir, args.device, not args.crop, args.ray, log=print)
    failed = [o for o in outcomes if o.status == "failed"]
    done = sum(o.status == "done" for o in outcomes)
    skipped = sum(o.status == "skipped" for o in outcomes)
    print(
        f"{done} rendered, {skipped} already there, {len(failed)} failed; report: {args.out_dir / 'batch_report.json'}"
    )
    return 1 if failed else 0


COMMANDS = {
    "keys": cmd_keys,
    "render": cmd_render,
    "train": cmd_train,
    "lipsync": cmd_lipsync,
    "demo": cmd_demo,
    "serve": cmd_serve,
    "eval": cmd_eval,
    "smoother-train": cmd_smoother_train,
    "face-model": cmd_face_model,
    "prepare": cmd_prepare,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except SteadyTalkError as exc:
        if os.environ.get("STEADYTALK_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        if os.environ.get("STEADYTALK_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
