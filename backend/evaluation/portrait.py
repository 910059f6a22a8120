"""``steadytalk eval portrait``: the one-picture talking portrait on held-out GRID clips, and a
contact sheet of the widest mouth of every picture in a folder.

Per clip, the clip's own first frame is the portrait and the clip's sound (with its transcript)
drives it; the output is compared with the real video, frame by frame, at the clip's size:

- LMD: mean distance (pixels) between mediapipe's lip landmarks on the output and on the real
  frames (both tracked in video mode, as ``prepare`` does);
- PSNR and SSIM over the face (the hull of the real frame's face mesh);
- mouth opening: Pearson r between the output's and the real inner-lip gap over mouth width;
- MSI (BRIEF definition) of the output's lip and jaw landmarks, and the real video's.

The baseline is the still picture (the first frame held for the whole clip): what a portrait
that does not move scores. The trained avatar renderer re-renders the clips from their own
tracked expression (``eval render``, README), so its figures bound what a photoreal path
trained on the person reaches; the portrait needs no training and sees one frame.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from steadytalk_shared.face_model import FaceModel
from steadytalk_shared.msi import landmark_msi
from steadytalk_shared.schema import lip_aperture

from ..avatar.video import CfrReport, frames_at_constant_rate, probe
from ..errors import SteadyTalkError
from ..face.landmarks import NUM_MESH_POINTS, lip_gap_ratio
from ..portrait.pipeline import PortraitOptions, animate, perform, prepare_portrait
from .lipsync import find_clips
from .render import _fill, _landmarks, _psnr
from .tracking import keypoint_sets

Log = Callable[[str], None]
SHEET_HEIGHT = 240  # pixels per row of the contact sheet
FPS = 25.0


def _png(rgb: np.ndarray) -> bytes:
    import cv2

    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def _clip_frames(video: Path) -> np.ndarray:
    info = probe(video)
    count = int(round(info.duration * FPS))
    return np.stack([frame for _, frame in frames_at_constant_rate(video, FPS, count, CfrReport())])


def _face_masks(tracks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(T, H, W) the convex hull of each frame's face mesh points (T, 468, 2)."""
    import cv2

    masks = np.zeros((len(tracks), *shape), dtype=np.uint8)
    for t, points in enumerate(tracks):
        if np.isfinite(points).all():
            hull = cv2.convexHull(np.round(points * 4).astype(np.int32))
            cv2.fillConvexPoly(masks[t], hull, 1, shift=2)
    return masks.astype(bool)


def ssim_masked(a: np.ndarray, b: np.ndarray, mask: np.ndarray, window: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM over ``mask`` of (T, H, W, 3) uint8 frames: ``render.network.ssim``'s definition
    (Wang et al. 2004: Gaussian window, valid region, mean over channels) with OpenCV's separable
    filter, which at full frames is a hundred times faster than the batched torch one."""
    import cv2

    kernel = cv2.getGaussianKernel(window, sigma).astype(np.float64)
    half = window // 2
    c1, c2 = 0.01**2, 0.03**2

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(z, cv2.CV_64F, kernel, kernel)[half:-half, half:-half]

    values = []
    for x8, y8, m in zip(a, b, mask, strict=True):
        x, y = x8.astype(np.float64) / 255.0, y8.astype(np.float64) / 255.0
        mx, my = blur(x), blur(y)
        vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
        smap = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        values.append(smap.mean(axis=2)[m[half:-half, half:-half]])
    return float(np.concatenate(values).mean())


def _scores(output: np.ndarray, real: np.ndarray, real_track: np.ndarray, face: np.ndarray, sets) -> dict:
    (lips, lip_corners), (jaw, jaw_corners) = sets["lips"], sets["jaw"]
    n_lips = len(lips)
    points = np.concatenate([lips, jaw, np.arange(NUM_MESH_POINTS)])
    track = _landmarks(output, points)
    both = ~np.isnan(track[:, 0, 0]) & ~np.isnan(real_track[:, 0, 0])
    lmd = float(np.linalg.norm(track[both, :n_lips] - real_track[both, :n_lips], axis=-1).mean())
    filled = _fill(track)
    return {
        "lmd": lmd,
        "psnr_face": _psnr(output, real, face),
        "ssim_face": ssim_masked(output, real, face),
        "msi_lips": landmark_msi(filled[:, :n_lips], lip_corners),
        "msi_jaw": landmark_msi(filled[:, n_lips : n_lips + len(jaw)], jaw_corners),
        "gap": _gap_ratio(filled, n_lips + len(jaw)),
    }


def _gap_ratio(track: np.ndarray, mesh_start: int) -> np.ndarray:
    """Inner-lip gap over mouth width per frame, from the full mesh part of a track."""
    mesh = np.concatenate([track[:, mesh_start:], np.zeros((len(track), NUM_MESH_POINTS, 1))], axis=2)
    return lip_gap_ratio(mesh)


def evaluate_portrait(
    clips_dir: Path, images_dir: Path | None, out_dir: Path, log: Log = print, sheet_audio: Path | None = None
) -> dict:
    """Held-out clips (NAME.mpg + NAME.align + NAME.16k.wav) and, when given, the contact sheet
    of ``images_dir`` driven by ``sheet_audio`` (see ``contact_sheet``)."""
    out_dir = Path(out_dir)
    clips = [c for c in find_clips(clips_dir) if (clips_dir / f"{c.name}.mpg").exists()]
    if not clips:
        raise SteadyTalkError(f"No clips (NAME.mpg + NAME.align) in {clips_dir}.")
    out_dir.mkdir(parents=True, exist_ok=True)
    sets = keypoint_sets(FaceModel.load())
    rows: dict[str, dict[str, list]] = {"portrait": {}, "still picture": {}, "real video": {}}
    gaps: dict[str, list[np.ndarray]] = {"portrait": [], "still picture": [], "real video": []}
    per_clip = {}
    for index, clip in enumerate(clips):
        real = _clip_frames(clips_dir / f"{clip.name}.mpg")
        height, width = real.shape[1:3]
        options = PortraitOptions(size=max(height, width), fps=FPS)
        portrait = prepare_portrait(_png(real[0]), options, name=f"{clip.name} frame 0")
        performance = perform(clip.audio, clip.transcript, options)
        frames = min(len(real), performance.num_frames)
        output = np.stack(list(animate(portrait.animator(), performance)))[:frames]
        real = real[:frames]
        if output.shape[1:3] != real.shape[1:3]:
            raise SteadyTalkError(f"{clip.name}: the portrait is {output.shape[1:3]}, the clip {real.shape[1:3]}.")
        lips, jaw = sets["lips"][0], sets["jaw"][0]
        points = np.concatenate([lips, jaw, np.arange(NUM_MESH_POINTS)])
        real_track = _landmarks(real, points)
        face = _face_masks(real_track[:, len(lips) + len(jaw) :], real.shape[1:3])
        still = np.repeat(real[:1], frames, axis=0)
        per_clip[clip.name] = {}
        for name, frames_out in (("portrait", output), ("still picture", still)):
            scores = _scores(frames_out, real, real_track, face, sets)
            gaps[name].append(scores.pop("gap"))
            per_clip[clip.name][name] = scores
            for key, value in scores.items():
                rows[name].setdefault(key, []).append(value)
        filled = _fill(real_track)
        rows["real video"].setdefault("msi_lips", []).append(landmark_msi(filled[:, : len(lips)], sets["lips"][1]))
        jaw_part = filled[:, len(lips) : len(lips) + len(jaw)]
        rows["real video"].setdefault("msi_jaw", []).append(landmark_msi(jaw_part, sets["jaw"][1]))
        gaps["real video"].append(_gap_ratio(filled, len(lips) + len(jaw)))
        log(f"  [{index + 1}/{len(clips)}] {clip.name}: LMD {per_clip[clip.name]['portrait']['lmd']:.2f} px")
    real_gap = np.concatenate(gaps["real video"])
    report = {
        "clips": len(clips),
        "size": [int(width), int(height)],
        "rows": {name: {k: float(np.mean(v)) for k, v in values.items()} for name, values in rows.items()},
        "per_clip": per_clip,
    }
    for name in ("portrait", "still picture"):
        gap = np.concatenate(gaps[name])
        r = float(np.corrcoef(gap, real_gap)[0, 1]) if np.ptp(gap) > 0 else 0.0
        report["rows"][name]["mouth_opening_r"] = r
    if images_dir is not None and Path(images_dir).is_dir():
        sheet = contact_sheet(Path(images_dir), out_dir / "portrait_sheet.png", log, sheet_audio)
        report["contact_sheet"] = str(sheet)
    return report


def contact_sheet(images_dir: Path, path: Path, log: Log = print, audio: Path | None = None) -> Path:
    """One row per picture: the picture, its frame of widest mouth (driven by ``audio``, by
    default the JFK clip beside the images), and both mouths enlarged. Pictures without a
    usable face are listed with their message instead."""
    import cv2

    audio = audio or images_dir.parent / "audio" / "jfk_inaugural_1961_11s.flac"
    transcript = None
    if audio.name.startswith("jfk_inaugural"):
        transcript = (
            "And so, my fellow Americans, ask not what your country can do for you, "
            "ask what you can do for your country."
        )
    options = PortraitOptions(size=512)
    performance = perform(audio, transcript, options)
    widest = int(np.argmax(lip_aperture(performance.curves)))
    lines = []
    for picture in sorted(p for p in images_dir.iterdir() if p.is_file()):
        try:
            portrait = prepare_portrait(picture, options)
        except SteadyTalkError as exc:
            log(f"  {picture.name}: {exc}")
            continue
        animator = portrait.animator()
        frame = animator.frame(performance.curves[widest])
        lm = portrait.face.landmarks[:NUM_MESH_POINTS, :2]
        lo, hi = lm.min(axis=0), lm.max(axis=0)
        pad = 0.25 * (hi - lo)
        x0, y0 = np.maximum(lo - pad, 0).astype(int)
        x1, y1 = np.minimum(hi + pad, portrait.video.shape[1::-1]).astype(int)
        mouth = portrait.face.landmarks[[61, 291, 0, 17], :2]
        centre, half = mouth.mean(axis=0), 0.9 * np.ptp(mouth[:, 0])
        mx0, my0 = np.maximum(centre - half, 0).astype(int)
        mx1, my1 = (centre + half).astype(int)
        tiles = []
        for image in (portrait.video, frame):
            face = image[y0:y1, x0:x1]
            tiles.append(cv2.resize(face, (int(SHEET_HEIGHT * face.shape[1] / face.shape[0]), SHEET_HEIGHT)))
        for image in (portrait.video, frame):
            tiles.append(
                cv2.resize(image[my0:my1, mx0:mx1], (SHEET_HEIGHT, SHEET_HEIGHT), interpolation=cv2.INTER_CUBIC)
            )
        line = np.concatenate(tiles, axis=1)
        cv2.putText(line, picture.stem[:28], (6, 18), 0, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        lines.append(line)
        log(f"  {picture.name}: widest mouth at {widest / options.fps:.2f} s")
    if not lines:
        raise SteadyTalkError(f"No picture in {images_dir} has a usable face.")
    width = max(line.shape[1] for line in lines)
    sheet = np.concatenate([np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0))) for line in lines])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return path


def format_portrait_report(report: dict) -> str:
    width, height = report["size"]
    lines = [f"talking portrait on {report['clips']} held-out GRID clips at {width}x{height} (first frame + audio)", ""]
    header = ("LMD px", "PSNR face", "SSIM face", "mouth r", "MSI lips", "MSI jaw")
    lines.append(f"{'':16s} " + " ".join(f"{h:>10s}" for h in header))
    for name, v in report["rows"].items():
        cells = [v.get(k) for k in ("lmd", "psnr_face", "ssim_face", "mouth_opening_r", "msi_lips", "msi_jaw")]
        lines.append(f"{name:16s} " + " ".join(f"{'':>10s}" if x is None else f"{x:10.3f}" for x in cells))
    lines += [
        "",
        "trained avatar renderer (README, eval render: re-rendered from the clips' own tracked expression, 256 crop):",
        "  PSNR face 32.43 dB, SSIM face 0.934, LMD 1.40 px at 256, MSI lips 1.139",
    ]
    if "contact_sheet" in report:
        lines.append(f"contact sheet: {report['contact_sheet']}")
    return "\n".join(lines)
