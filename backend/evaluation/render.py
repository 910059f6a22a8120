"""``steadytalk eval render``: the trained avatar on held-out clips of the same speaker.

Each clip is tracked like the training video (``prepare``), then re-rendered from its own
tracked pose and expression over its own frames with the mouth (and eyes) erased:

- PSNR and SSIM on the face region (the shape pass coverage), and PSNR on the synthesized
  region alone (the erased pixels, where all the work is);
- LMD: mean distance (px at the crop size) between mediapipe's lip landmarks on the output and
  on the real frames;
- MSI (BRIEF definition) of the output's lip and jaw landmarks, against the real video's;
- lip sync from audio: the person model's and the rule engine's curves against the tracked ones;
- ablations in StableFace's manner: the full model, the same without adaptive smoothing (raw
  tracked coefficients), and the models trained without augmented erosion, without the
  transformer module and without audio fusion (``steadytalk train --ablation NAME``), where
  present.

Writes a contact sheet (real vs generated, with mouth crops) and one mp4 with audio, driven by
the person's audio-to-expression model from the clip's sound.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from steadytalk_shared.face_model import FaceModel
from steadytalk_shared.msi import landmark_msi
from steadytalk_shared.schema import CHANNELS

from ..face.landmarks import FaceLandmarker, LandmarkerConfig
from ..render.data import AvatarFrames, to_tensor
from ..render.inference import AvatarRenderer
from ..render.network import ssim
from ..render.presets import ABLATIONS, MODEL_DIR
from ..render.s2a_person import MOUTH, S2AModel, compare_to_tracked
from .lipsync import find_clips
from .tracking import keypoint_sets

SHEET_ROWS = 6  # contact sheet: one frame from each of the first clips

Log = Callable[[str], None]


def prepare_clips(clips_dir: Path, work_dir: Path, size: int, log: Log) -> list[Path]:
    from ..avatar.prepare import PrepareConfig, Preparer

    folders = []
    for clip in find_clips(clips_dir):
        video = clips_dir / f"{clip.name}.mpg"
        if not video.exists():
            continue
        out = work_dir / clip.name
        Preparer(video, out, PrepareConfig(sizes=(size,), transcript=clip.transcript)).run()
        folders.append(out)
        log(f"  tracked {clip.name}")
    if not folders:
        from ..errors import SteadyTalkError

        raise SteadyTalkError(f"No clips (NAME.mpg + NAME.align) in {clips_dir}.")
    return folders


def _landmarks(frames: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """(T, K, 2) mediapipe landmarks (NaN where no face), tracked in video mode as prepare does."""
    out = np.full((len(frames), len(indices), 2), np.nan)
    with FaceLandmarker(LandmarkerConfig(max_faces=1)) as landmarker:
        for t, frame in enumerate(frames):
            faces = landmarker.detect(frame)
            if faces:
                out[t] = faces[0][indices, :2]
    return out


def _fill(track: np.ndarray) -> np.ndarray:
    """Interpolate frames without a face (rare) so MSI sees a continuous track."""
    found = ~np.isnan(track[:, 0, 0])
    if found.all() or not found.any():
        return track
    t = np.arange(len(track))
    filled = track.copy()
    for k in range(track.shape[1]):
        for d in range(2):
            filled[:, k, d] = np.interp(t, t[found], track[found, k, d])
    return filled


@torch.no_grad()
def _regions(renderer: AvatarRenderer, clip: AvatarFrames) -> tuple[np.ndarray, np.ndarray]:
    """Face coverage and erased region (T, S, S) of the clip's own tracked frames."""
    face, erased = [], []
    for start in range(0, clip.num_frames, 32):
        sl = slice(start, start + 32)
        cond = renderer.conditioner(
            torch.as_tensor(clip.coefficients[sl], device=renderer.device),
            torch.as_tensor(clip.matrices[sl], device=renderer.device),
            to_tensor(clip.frames[sl], renderer.device),
            torch.as_tensor(clip.mouth[sl], device=renderer.device),
        )
        face.append((cond.shape.sum(1) > 0).cpu().numpy())
        erased.append((cond.erased > 0.5).cpu().numpy())
    return np.concatenate(face), np.concatenate(erased)


def _psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    diff = (a.astype(np.float64) - b.astype(np.float64))[mask]
    mse = float(np.mean(diff**2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def laplacian_variance(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 frames, (T, H, W) bool regions -> (T,) variance of the Laplacian of
    the grey image inside each region: the standard focus measure (Pech-Pacheco et al. 2000);
    a blurred region has less of it."""

    values = np.zeros(len(frames))
    for t, (frame, mask) in enumerate(zip(frames, masks, strict=True)):
        if mask.any():
            values[t] = _laplacian(frame)[mask].var()
    return values


def _laplacian(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> the Laplacian of its grey image (float64): the one fine-detail map both
    focus measures read."""
    import cv2

    return cv2.Laplacian(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float64), cv2.CV_64F, ksize=1)


def sharpness_ratio(output: np.ndarray, real: np.ndarray, masks: np.ndarray) -> float:
    """Variance of the Laplacian of ``output`` over that of ``real`` inside ``masks`` (the
    synthesized region), summed over the frames: 1.0 is as sharp as the real video, below 1
    blurrier, above 1 noisier or over-sharpened."""
    real_value = laplacian_variance(real, masks).sum()
    return float(laplacian_variance(output, masks).sum() / real_value) if real_value > 0 else float("nan")


def detail_correlation(output: np.ndarray, real: np.ndarray, masks: np.ndarray) -> float:
    """Pearson correlation of the Laplacians of ``output`` and ``real`` inside ``masks``, over
    all frames: whether the fine detail is the real detail in the right place. The sharpness
    ratio cannot tell lip texture from a grid of noise (both raise the variance); this can:
    1.0 is the real frame's own detail, a blurred copy keeps a part of it, noise or invented
    texture adds nothing, an absent one gives 0."""

    num, out_energy, real_energy = 0.0, 0.0, 0.0
    for a, b, mask in zip(output, real, masks, strict=True):
        if not mask.any():
            continue
        la, lb = _laplacian(a)[mask], _laplacian(b)[mask]
        la, lb = la - la.mean(), lb - lb.mean()
        num += float(la @ lb)
        out_energy += float(la @ la)
        real_energy += float(lb @ lb)
    return num / np.sqrt(out_energy * real_energy) if out_energy > 0 and real_energy > 0 else float("nan")


def _ssim_masked(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    x, y = to_tensor(a, torch.device("cpu")), to_tensor(b, torch.device("cpu"))
    values = []
    for i in range(0, len(x), 32):
        values.append(ssim(x[i : i + 32].double(), y[i : i + 32].double()).numpy())
    smap = np.concatenate(values)
    inner = mask[:, 5:-5, 5:-5]
    return float(smap[inner].mean())


def _native_mouths(real: np.ndarray, fake: np.ndarray, cy: int, cx: int) -> np.ndarray:
    """The mouth at the crop's own pixels, no resampling (blur and texture as they are): a
    (size/2, size) window around (cy, cx) of the real frame above the same of the generated one."""
    size = real.shape[0]
    h, w = size // 2, size
    y0, x0 = int(np.clip(cy - h // 2, 0, size - h)), int(np.clip(cx - w // 2, 0, size - w))
    return np.concatenate([real[y0 : y0 + h, x0 : x0 + w], fake[y0 : y0 + h, x0 : x0 + w]], axis=0)


def _contact_sheet(path: Path, rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """One line per (real frame, generated frame, face mask): both frames, then their mouths."""
    import cv2

    lines = []
    for real, fake, face in rows:
        ys, xs = np.nonzero(face)
        # Mouth crop: the lower third of the face, enlarged 2x.
        top = int(ys.min() + 0.62 * (ys.max() - ys.min()))
        bottom, cx = int(ys.max()) + 4, int(xs.mean())
        half = (bottom - top) // 2 + 8
        cy = (top + bottom) // 2

        size = real.shape[0]
        y0, x0 = np.clip(cy - half, 0, size - 2 * half), np.clip(cx - half, 0, size - 2 * half)
        crops = [
            cv2.resize(img[y0 : y0 + 2 * half, x0 : x0 + 2 * half], (size, size), interpolation=cv2.INTER_NEAREST)
            for img in (real, fake)
        ]
        lines.append(np.concatenate([real, fake, *crops, _native_mouths(real, fake, cy, cx)], axis=1))
    sheet = np.concatenate(lines, axis=0)
    label = "real | generated | mouth real | mouth generated | 1:1 real over generated"
    cv2.putText(sheet, label, (6, 16), 0, 0.45, (255, 255, 255), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def _engine_raw(clip_dir: Path, frames: int) -> np.ndarray:
    raw = np.asarray(json.loads((clip_dir / "lipsync.json").read_text())["raw"], dtype=np.float32)
    out = np.zeros((frames, raw.shape[1]), dtype=np.float32)
    out[: min(frames, len(raw))] = raw[:frames]
    return out


def evaluate_render(
    avatar: Path,
    clips_dir: Path,
    work_dir: Path,
    out_dir: Path,
    log: Log = print,
    device=None,
    extra_models: dict[str, Path] | None = None,
) -> dict:
    """``extra_models``: other trained models of this avatar (label -> model folder), rows beside
    the main one (an equal-budget comparison of presets)."""
    avatar, out_dir = Path(avatar), Path(out_dir)
    models = {"full": avatar / MODEL_DIR}
    # Ablations may be trained on a shorter schedule than the main model: they are compared with
    # "ablation: full", trained on that same schedule.
    for n in ABLATIONS:
        label = "full" if n == "full" else "without " + n.removeprefix("no_").replace("_", " ")
        models[f"ablation: {label}"] = avatar / "ablations" / n
    models |= dict(extra_models or {})
    models = {name: path for name, path in models.items() if (path / "renderer.safetensors").exists()}
    renderers = {name: AvatarRenderer(avatar, path, device) for name, path in models.items()}
    if "full" not in renderers:
        renderers["full"] = AvatarRenderer(avatar, device=device)  # raises the "train it first" message
    size = renderers["full"].config.size
    out_dir.mkdir(parents=True, exist_ok=True)  # after the models load, before the long part
    variants = [("full", "full", True), ("without adaptive smoothing", "full", False)]
    for name in renderers:
        if name != "full":
            variants.append((name, name, True))
        if name == "ablation: full":
            variants.append(("ablation: without adaptive smoothing", name, False))
    s2a_path = avatar / MODEL_DIR / "s2a.safetensors"
    s2a = S2AModel.load(s2a_path) if s2a_path.exists() else None

    log(f"tracking the held-out clips in {work_dir}")
    clips = prepare_clips(clips_dir, work_dir, size, log)
    lips, lip_corners = keypoint_sets(FaceModel.load())["lips"]
    jaw, jaw_corners = keypoint_sets(FaceModel.load())["jaw"]
    points = np.concatenate([lips, jaw])
    n_lips = len(lips)
    per_variant: dict[str, dict[str, list]] = {name: {} for name, *_ in variants}
    real_msi: dict[str, list] = {"lips": [], "jaw": []}
    curves = {"person": [], "engine": [], "tracked": []}
    sheet_rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for index, clip_dir in enumerate(clips):
        clip = AvatarFrames.load(clip_dir, size)
        frames = clip.num_frames
        real_track = _fill(_landmarks(clip.frames, points))
        real_msi["lips"].append(landmark_msi(real_track[:, :n_lips], lip_corners))
        real_msi["jaw"].append(landmark_msi(real_track[:, n_lips:], jaw_corners))
        for name, model, smoothed in variants:
            renderer = renderers[model]
            renderer.use_clip(clip)
            face, erased = _regions(renderer, clip)
            audio = renderer.audio_for(clip.features, frames, clip.fps)
            coefficients = renderer.smooth(clip.coefficients) if smoothed else clip.coefficients
            output = np.stack(
                list(renderer.stream(renderer.frame_inputs(coefficients, audio, clip, np.arange(frames))))
            )
            track = _landmarks(output, points)
            both = ~np.isnan(track[:, 0, 0]) & ~np.isnan(real_track[:, 0, 0])
            lmd = float(np.linalg.norm(track[both, :n_lips] - real_track[both, :n_lips], axis=-1).mean())
            track = _fill(track)
            scores = {
                "psnr_face": _psnr(output, clip.frames, face),
                "psnr_synthesized": _psnr(output, clip.frames, erased),
                "sharpness_ratio": sharpness_ratio(output, clip.frames, erased),
                "detail_correlation": detail_correlation(output, clip.frames, erased),
                "ssim_face": _ssim_masked(output, clip.frames, face),
                "lmd": lmd,
                "msi_lips": landmark_msi(track[:, :n_lips], lip_corners),
                "msi_jaw": landmark_msi(track[:, n_lips:], jaw_corners),
            }
            for key, value in scores.items():
                per_variant[name].setdefault(key, []).append(value)
            if name == "full" and len(sheet_rows) < SHEET_ROWS:
                # The clip's widest-open mouth: teeth and the inner mouth are the hardest part.
                t = int(np.argmax(clip.coefficients[:, CHANNELS.index("jawOpen")]))
                sheet_rows.append((clip.frames[t], output[t], face[t]))
        if s2a is not None:
            engine = _engine_raw(clip_dir, frames)
            curves["person"].append(s2a.predict(clip.features, engine, clip.fps))
            curves["engine"].append(engine)
            curves["tracked"].append(clip.coefficients)
        log(f"  [{index + 1}/{len(clips)}] {clip_dir.name}")
    report = {
        "avatar": str(avatar),
        "clips": len(clips),
        "size": size,
        "real_video": {"msi_lips": float(np.mean(real_msi["lips"])), "msi_jaw": float(np.mean(real_msi["jaw"]))},
        "variants": {name: {k: float(np.mean(v)) for k, v in values.items()} for name, values in per_variant.items()},
        # Each clip's own figures (clips can come from other recording sessions, other light).
        "per_clip": {
            clip_dir.name: {name: {k: float(v[i]) for k, v in values.items()} for name, values in per_variant.items()}
            for i, clip_dir in enumerate(clips)
        },
    }
    if s2a is not None:
        report["lip_sync"] = compare_to_tracked(*(np.concatenate(curves[k]) for k in ("person", "engine", "tracked")))
        # The clip of median synthesized-region PSNR: a representative one, neither best nor worst.
        scores = per_variant["full"]["psnr_synthesized"]
        demo = clips[int(np.argsort(scores)[len(scores) // 2])]
        report["mp4"] = str(_demo_video(renderers["full"], s2a, demo, out_dir / f"{demo.name}_from_audio.mp4"))
    _contact_sheet(out_dir / "contact_sheet.png", sheet_rows)
    report["contact_sheet"] = str(out_dir / "contact_sheet.png")
    return report


def _demo_video(renderer: AvatarRenderer, s2a: S2AModel, clip_dir: Path, path: Path) -> Path:
    """The clip re-rendered with its mouth driven by the person model from its sound alone."""
    import soundfile as sf

    from ..avatar.video import VideoWriter

    clip = AvatarFrames.load(clip_dir, renderer.config.size)
    renderer.use_clip(clip)
    engine = _engine_raw(clip_dir, clip.num_frames)
    predicted = renderer.smooth(s2a.predict(clip.features, engine, clip.fps))
    coefficients = clip.coefficients.copy()
    coefficients[:, MOUTH] = predicted[:, MOUTH]  # the clip's own blinks stay
    audio = renderer.audio_for(clip.features, clip.num_frames, clip.fps)
    samples, rate = sf.read(clip_dir / "audio.wav", dtype="float32")
    size = renderer.config.size
    with VideoWriter(path, 2 * size, size, clip.fps, crf=18, audio_rate=rate) as writer:
        inputs = renderer.frame_inputs(coefficients, audio, clip, np.arange(clip.num_frames))
        for t, frame in enumerate(renderer.stream(inputs)):
            writer.write(np.concatenate([clip.frames[t], frame], axis=1))
        writer.add_audio(samples)
    return path


def format_render_report(report: dict) -> str:
    lines = [f"avatar {report['avatar']}: {report['clips']} held-out clips at {report['size']}x{report['size']}", ""]
    real = report["real_video"]
    header = ("PSNR face", "PSNR synth", "SSIM face", "LMD px", "MSI lips", "MSI jaw", "sharpness", "detail r")
    lines.append(f"{'':38s} " + " ".join(f"{h:>10s}" for h in header))
    lines.append(
        f"{'real video':38s} {'':43s} {real['msi_lips']:10.3f} {real['msi_jaw']:10.3f} {1.0:10.3f} {1.0:10.3f}"
    )
    for name, v in report["variants"].items():
        keys = ("psnr_face", "psnr_synthesized", "ssim_face", "lmd", "msi_lips", "msi_jaw", "sharpness_ratio")
        values = (*(v[k] for k in keys), v.get("detail_correlation", float("nan")))
        lines.append(f"{name:38s} " + " ".join(f"{x:10.3f}" for x in values))
    if "lip_sync" in report:
        ls = report["lip_sync"]
        lines += [
            "",
            "lip sync from audio vs the tracked expression (all held-out frames):",
            *(
                f"  {label}: mouth RMSE {ls[key]['rmse_mouth']:.4f}, jawOpen r {ls[key]['pearson_jaw_open']:.3f}"
                for key, label in (("person", "person model"), ("engine", "rule engine "))
            ),
            f"video: {report['mp4']}",
        ]
    lines.append(f"contact sheet: {report['contact_sheet']}")
    return "\n".join(lines)
