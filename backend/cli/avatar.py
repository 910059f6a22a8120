"""``steadytalk prepare``, ``style``, ``train`` and ``face-model``: a person's video into a trained
avatar with its own manner, and the canonical face model."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import SteadyTalkError
from .common import add_device_option, add_transcript_options, positive_fps, read_transcript


def register(sub: argparse._SubParsersAction) -> None:
    prep = sub.add_parser("prepare", help="reference video -> avatar folder (tracking, crops, audio features)")
    prep.add_argument("video", type=Path, help="a video of one person talking, with sound (mp4, mov, mkv, webm, mpg)")
    prep.add_argument("--out", type=Path, required=True, help="avatar folder (created; a rerun resumes it)")
    prep.add_argument(
        "--size", type=int, action="append", choices=(256, 512), help="crop size; repeat for both (default 256)"
    )
    prep.add_argument("--fps", type=positive_fps, default=None, help="output frame rate (default: the video's)")
    add_transcript_options(prep, "the words spoken, for a more accurate phone alignment")
    prep.add_argument("--force", action="store_true", help="rebuild an avatar folder made from another video")
    add_device_option(prep, " for the face-shape pass of the mouth masks")
    prep.add_argument("--quiet", action="store_true", help="no progress bar")
    prep.set_defaults(handler=cmd_prepare)

    style = sub.add_parser("style", help="learn an avatar's blinks, gaze, brows and head motion from its video")
    style.add_argument("avatar", type=Path, help="an avatar folder made by steadytalk prepare")
    style.set_defaults(handler=cmd_style)

    trainer = sub.add_parser("train", help="train an avatar's neural renderer and audio-to-expression model")
    trainer.add_argument("avatar", type=Path, help="an avatar folder made by steadytalk prepare")
    trainer.add_argument(
        "--preset",
        choices=("tiny", "tiny-native", "tiny-retrieval", "standard", "high"),
        default="standard",
        help="tiny: minutes on a CPU; tiny-native: the mouth at the crop's own resolution; tiny-retrieval: "
        "that plus the person's own frames as texture; standard: 256x256 on one GPU; high: 512x512 crops",
    )
    add_device_option(trainer, " (under torchrun: each process takes the GPU of its local rank)")
    trainer.add_argument("--restart", action="store_true", help="discard an unfinished run instead of resuming it")
    trainer.add_argument(
        "--ablation",
        choices=("full", "no_erosion", "no_transformer", "no_audio_fusion"),
        help="train a model without one component (or the full one) into AVATAR/ablations/NAME, for eval render",
    )
    trainer.add_argument("--epochs", type=int, help="override the preset's renderer-alone epochs")
    trainer.add_argument("--joint-epochs", type=int, help="override the preset's joint epochs (with the smoother)")
    trainer.add_argument("--max-seconds", type=float, help="train on the avatar's first seconds only")
    trainer.add_argument(
        "--windows-per-step",
        type=int,
        help="override the preset's global batch (windows of 12 frames per step), split over torchrun's processes",
    )
    trainer.add_argument(
        "--out", type=Path, help="model folder (default AVATAR/model; a second one: eval render --model)"
    )
    trainer.add_argument("--quiet", action="store_true", help="no progress bar")
    trainer.set_defaults(handler=cmd_train)

    face = sub.add_parser("face-model", help="the canonical face model (mesh + ARKit blendshapes)")
    face_sub = face.add_subparsers(dest="action", required=True)
    face_build = face_sub.add_parser("build", help="rebuild shared/data/face_model.npz from a talking-head video")
    face_build.add_argument(
        "--video", type=Path, default=Path("../shared/data/video/grid_s1_train_300s.mp4"), help="frontal talking head"
    )
    face_build.add_argument("--out", type=Path, default=None, help="default: the model the package loads")
    face_build.add_argument(
        "--shapes-only", action="store_true", help="rebuild the blendshapes on the shipped neutral (no video)"
    )
    face_sheet = face_sub.add_parser("sheet", help="pictures of every blendshape (neutral vs 1.0, front and side)")
    face_sheet.add_argument("--out", type=Path, default=Path("face_model_sheets"))
    face_sheet.add_argument("--only", help="just the shapes whose name contains this (e.g. brow)")
    face.set_defaults(handler=cmd_face_model)


class StageBars:
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
    from ..avatar.prepare import PrepareConfig, prepare
    from ..device import pick_device

    device = pick_device(args.device)
    sizes = tuple(sorted(set(args.size or [256])))
    config = PrepareConfig(sizes=sizes, fps=args.fps, transcript=read_transcript(args))
    bars = StageBars(not args.quiet)
    started = time.perf_counter()
    try:
        manifest = prepare(args.video, args.out, config, force=args.force, progress=bars, device=device)
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


class TrainBar:
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


def cmd_style(args: argparse.Namespace) -> int:
    from ..avatar.person_style import learn_style

    report_style(args.avatar, learn_style(args.avatar))
    return 0


def report_style(avatar: Path, measured: dict) -> None:
    print(
        f"style of {avatar.name} ({measured['seconds']:.0f} s): {measured['blinks']} blinks "
        f"({measured['blinks_per_minute_tracked']:.1f}/min tracked, {measured['blinks_per_minute_style']:.1f}/min "
        f"learned), median blink {measured['blink_median_seconds']:.2f} s, head std "
        f"{'/'.join(f'{v:.1f}' for v in measured['head_std_degrees'])} deg, brows x{measured['brow_scale']:.2f}; "
        f"written to {avatar / 'style.json'} (use: --style avatar:{avatar})"
    )


def cmd_train(args: argparse.Namespace) -> int:
    """One process, or one of torchrun's (``torchrun --nproc_per_node N -m steadytalk_backend.cli train``):
    every rank trains its share of each batch; rank 0 alone fits the audio-to-expression model,
    writes and prints."""
    from ..device import pick_device
    from ..render import distributed

    pick_device(args.device)  # a device this machine lacks: one line, before anything else
    avatar: Path = args.avatar
    if not (avatar / "manifest.json").exists():
        raise SteadyTalkError(f"{avatar} is not an avatar folder.", "Make one with: steadytalk prepare VIDEO --out DIR")
    world, device = distributed.start(args.device)
    try:
        status = _train(args, world, device)
    except BaseException as exc:
        distributed.leave(world)  # no waiting for the others: they may have stopped too
        if world.distributed and isinstance(exc, RuntimeError):  # a collective whose peer is gone
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SteadyTalkError(
                f"Training process {world.rank} of {world.size} lost the others ({first[:160]}).",
                "One of them stopped first: its error is above.",
            ) from exc
        raise
    distributed.stop(world)
    return status


def _train(args: argparse.Namespace, world, device) -> int:
    from ..render import distributed
    from ..render.presets import ABLATIONS, MODEL_DIR, preset_with
    from ..render.s2a_person import train_s2a
    from ..render.train import RendererTrainer

    avatar: Path = args.avatar
    changes = dict(ABLATIONS.get(args.ablation or "", {}))
    for name in ("epochs", "joint_epochs", "max_seconds", "windows_per_step"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    preset = preset_with(args.preset, **changes)
    distributed.check_batch(preset.windows_per_step, world)
    out = avatar / "ablations" / args.ablation if args.ablation else avatar / MODEL_DIR
    if args.out is not None:
        out = args.out
    s2a_path = avatar / MODEL_DIR / "s2a.safetensors"
    if world.is_main and not (avatar / "style.json").exists():  # prepared before avatars learned their manner
        from ..avatar.person_style import learn_style

        report_style(avatar, learn_style(avatar))
    if world.is_main and not args.ablation and (args.restart or not s2a_path.exists()):
        print("audio-to-expression: fitting the person's residual over the rule engine", file=sys.stderr)
        model, report = train_s2a(avatar)
        model.save(s2a_path, report)
        v = report["validation"]
        print(
            f"  held-back frames: mouth RMSE {v['person']['rmse_mouth']:.4f} "
            f"(rule engine {v['engine']['rmse_mouth']:.4f}), jawOpen r {v['person']['pearson_jaw_open']:.3f} "
            f"(rule engine {v['engine']['pearson_jaw_open']:.3f})"
        )
    distributed.barrier(world)  # the others wait while rank 0 fits it
    if world.distributed and world.is_main:
        share, total = preset.windows_per_step // world.size, preset.windows_per_step
        print(f"training on {world.size} processes ({device.type}): {share} of the {total} windows of a step each")
    bar = TrainBar(not args.quiet and world.is_main)
    log = (lambda line: print(line, file=sys.stderr)) if world.is_main else (lambda line: None)  # noqa: E731
    try:
        trainer = RendererTrainer(avatar, preset, device=device, progress=bar, log=log, out=out, world=world)
        summary = trainer.run(restart=args.restart)
    except KeyboardInterrupt:
        bar.close()
        print("interrupted: run the same command again to resume from the last finished epoch", file=sys.stderr)
        return 130
    finally:
        bar.close()
    if not world.is_main:
        return 0
    print(f"model written to {out}")
    print(
        f"  {summary['epochs']} epochs, {summary['steps']} steps in {summary['seconds']:.0f} s "
        f"({summary['frames_per_second']:.1f} frames/s on "
        f"{f'{world.size} x {device.type}' if world.distributed else trainer.device}); "
        f"held-back L1 {summary['validation_l1']:.4f}"
    )
    print(f"  losses: {out / 'train_log.tsv'} and {out / 'losses.png'}")
    return 0


def cmd_face_model(args: argparse.Namespace) -> int:
    from steadytalk_shared.face_model import DEFAULT_PATH, FaceModel

    if args.action == "build":
        from ..face.model_build import build, rebuild_shapes

        if args.shapes_only:
            rebuild_shapes(FaceModel.load(), args.out or DEFAULT_PATH)
            return 0
        if not args.video.exists():
            raise SteadyTalkError(f"Video not found: {args.video}.", "Pass --video with a frontal talking-head video.")
        build(args.video, args.out or DEFAULT_PATH)
        return 0
    from ..face.preview import write_sheets

    paths = write_sheets(FaceModel.load(), args.out, args.only)
    print(f"wrote {len(paths)} pictures to {args.out} (start with {paths[0].name})")
    return 0
