"""``steadytalk prepare VIDEO --out AVATAR_DIR``: a reference video -> an avatar folder.

Stages (each one writes its files atomically and is recorded in the manifest, so a rerun
skips what is done; the landmark stage also checkpoints every few hundred frames):

1. landmarks   decode at a constant frame rate, mediapipe face mesh (478 points) per frame
2. fit         identity (once, from rest frames), head pose and ARKit coefficients per frame;
               frames without a face get interpolated landmarks and are marked untracked
3. crops       a stable face-centred crop per output size (256, 512) as H.264, the crop
               window of every frame, the mouth-region masks; the full frame as the plate
4. audio       16 kHz mono WAV, the lip-sync engine's curves and its S2A feature sequence
5. blender     what the add-on needs to rebuild the person: rig (identity mesh with the
               schema's shape keys), camera, per-frame head pose, the plate's path

Folder layout and array meanings are described in ``manifest.json`` itself.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from steadytalk_shared import render_contract as rc
from steadytalk_shared.face_model import FaceModel

# params.npz holds the face model's coefficients: the v1 channels (the upper face has no shapes yet)
from steadytalk_shared.schema import V1_CHANNELS as CHANNELS

from ..atomic import atomic_output, save_atomic, savez_atomic, write_text_atomic
from ..errors import SteadyTalkError
from ..face.fitting import Fitter, identity_model
from ..face.landmarks import NUM_MESH_POINTS
from .crops import PREVIEW_FRAMES, crop_image, stable_crop_centres, write_preview
from .manifest import AVATAR_VERSION, FILES, STAGES, Manifest, source_fingerprint
from .video import CfrReport, VideoError, VideoWriter, constant_rate, frames_at_constant_rate, probe

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # stage, done, total


class PrepareError(SteadyTalkError):
    code = "bad_video"


@dataclass(frozen=True)
class PrepareConfig:
    sizes: tuple[int, ...] = (256,)
    fps: float | None = None  # None: the video's own rate (nearest common rate)
    min_seconds: float = 2.0  # the renderer sees 12-frame windows with context either side
    advised_seconds: float = 60.0  # shorter still works but makes a weak avatar
    # Frames with two or more faces beyond this share stop the run (a second face now and
    # then, e.g. a poster, is ignored: the largest face is the person).
    multi_face_share: float = 0.02
    min_tracked_share: float = 0.5
    # The crop's side, in face heights (forehead to chin): the face fills two thirds of it.
    crop_face_heights: float = 1.5
    # Crop centre smoothed over this many seconds (Gaussian sigma) so the crop does not shake.
    crop_smoothing_seconds: float = 0.5
    crf: int = 12
    checkpoint_frames: int = 500
    transcript: str | None = None

    def fingerprint(self) -> dict:
        """Settings that change the stages' results (a mismatch restarts from scratch)."""
        values = asdict(self)
        values.pop("checkpoint_frames")
        values["sizes"] = list(self.sizes)
        return values


def interpolate_missing(points: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Fill frames without a face linearly between the nearest found frames (held at the ends)."""
    if found.all():
        return points
    index = np.arange(len(points))
    good = np.nonzero(found)[0]
    flat = points.reshape(len(points), -1)
    filled = np.stack([np.interp(index, good, flat[good, j]) for j in range(flat.shape[1])], axis=1)
    return filled.reshape(points.shape)


class Preparer:
    def __init__(self, video: Path, out: Path, config: PrepareConfig | None = None, force=False, device=None) -> None:
        self.video = Path(video)
        self.device = device  # torch.device or name, for the shape pass (mouth masks); not in the fingerprint
        self.out = Path(out)
        self.config = config or PrepareConfig()
        self.force = force
        self.model = FaceModel.load()
        self.fitter = Fitter(self.model)

    # -- checks -------------------------------------------------------------------------
    def _check(self):
        for size in self.config.sizes:
            if size not in (256, 512):
                raise PrepareError(f"Crop size {size} is not supported.", "Use --size 256 and/or --size 512.")
        info = probe(self.video)
        if not info.has_audio:
            raise PrepareError(
                f"{self.video.name} has no audio track.",
                "An avatar learns from speech and face together: use a video recorded with sound.",
            )
        if info.duration < self.config.min_seconds:
            raise PrepareError(
                f"{self.video.name} is {info.duration:.1f} s long; prepare needs at least "
                f"{self.config.min_seconds:g} s.",
                f"Use a longer recording (a good avatar wants {self.config.advised_seconds:g} s or more).",
            )
        if self.out.exists() and not self.out.is_dir():
            raise PrepareError(f"{self.out} exists and is not a folder.", "Choose another --out.")
        return info

    def _open_manifest(self, info) -> Manifest:
        path = self.out / "manifest.json"
        fps = self.config.fps or constant_rate(info.fps)
        source = source_fingerprint(self.video)
        settings = self.config.fingerprint() | {"fps": fps}
        if path.exists():
            try:
                manifest = Manifest.load(path)
            except (ValueError, TypeError) as exc:
                raise PrepareError(f"{path} is damaged ({exc}).", "Use --force to rebuild the avatar.") from None
            same = manifest.version == AVATAR_VERSION and manifest.source == source and manifest.settings == settings
            if same:
                return manifest
            if not self.force:
                raise PrepareError(
                    f"{self.out} holds an avatar of another video or other settings.",
                    "Choose another --out, or pass --force to rebuild it there.",
                )
            log.warning("rebuilding %s (--force)", self.out)
        elif self.out.exists() and any(self.out.iterdir()) and not self.force:
            raise PrepareError(
                f"{self.out} is not empty and is not an avatar folder.",
                "Choose an empty or new folder, or pass --force to write into it.",
            )
        self.out.mkdir(parents=True, exist_ok=True)
        num_frames = int(round(info.duration * fps))
        manifest = Manifest(
            source=source,
            settings=settings,
            video={
                "width": info.width,
                "height": info.height,
                "source_fps": info.fps,
                "fps": fps,
                "frames": num_frames,
                "duration": num_frames / fps,
                "codec": info.codec,
                # mediapipe's depth is on the x scale, so a weak-perspective camera fits it exactly.
                "camera": "scaled orthographic: source_pixels = scale * rotation @ model_metres + translation",
            },
            schema={
                "version": 1,  # of the coefficients tracked here (schema v1's channels)
                "channels": list(CHANNELS),
                "render_contract": rc.RENDER_CONTRACT_VERSION,
            },
        )
        manifest.files = {
            name.replace("{size}", str(size)): text
            for name, text in FILES.items()
            for size in (self.config.sizes if "{size}" in name else (0,))
        }
        manifest.save(path)
        return manifest

    # -- the run ------------------------------------------------------------------------
    def run(self, progress: Progress | None = None) -> Manifest:
        report = progress or (lambda stage, done, total: None)
        info = self._check()
        manifest = self._open_manifest(info)
        if info.duration < self.config.advised_seconds:
            log.warning(
                "%s is %.0f s long; %g s or more makes a better avatar",
                self.video.name,
                info.duration,
                self.config.advised_seconds,
            )
        steps = {
            "landmarks": self._landmarks,
            "fit": self._fit,
            "crops": self._crops,
            "audio": self._audio,
            "blender": self._blender,
        }
        for stage in STAGES:
            if stage in manifest.stages:
                report(stage, 1, 1)
                continue
            started = time.perf_counter()
            details = steps[stage](manifest, report) or {}
            manifest.stages[stage] = {"seconds": round(time.perf_counter() - started, 2), **details}
            manifest.save(self.out / "manifest.json")
        return manifest

    def _landmarks(self, manifest: Manifest, report: Progress) -> dict:
        from ..face.landmarks import FaceLandmarker

        total, fps = manifest.video["frames"], manifest.video["fps"]
        checkpoint = self.out / "landmarks.partial.npz"
        points = np.zeros((total, 478, 3), dtype=np.float32)
        found = np.zeros(total, dtype=bool)
        faces = np.zeros(total, dtype=np.int8)
        start = 0
        if checkpoint.exists():
            with np.load(checkpoint) as data:
                start = int(data["done"])
                points[:start], found[:start], faces[:start] = data["points"], data["found"], data["faces"]
            log.info("resuming landmarks at frame %d of %d", start, total)
        cfr = CfrReport()
        with FaceLandmarker() as landmarker:
            for index, rgb in frames_at_constant_rate(self.video, fps, total, cfr, start=start):
                detected = landmarker.detect(rgb)
                faces[index] = len(detected)
                if detected:
                    # Several faces: the largest (nearest) is the person.
                    widest = max(detected, key=lambda p: np.ptp(p[:NUM_MESH_POINTS, 0]))
                    points[index, : len(widest)] = widest
                    found[index] = True
                if (index + 1) % self.config.checkpoint_frames == 0:
                    savez_atomic(
                        checkpoint,
                        done=np.array(index + 1),
                        points=points[: index + 1],
                        found=found[: index + 1],
                        faces=faces[: index + 1],
                    )
                report("landmarks", index + 1, total)
        self._check_faces(found, faces, fps)
        savez_atomic(self.out / "landmarks.npz", points=points, found=found, faces=faces)
        checkpoint.unlink(missing_ok=True)
        return {"cfr": cfr.describe(), "variable_frame_rate": cfr.variable, "resumed_at": start}

    def _check_faces(self, found: np.ndarray, faces: np.ndarray, fps: float) -> None:
        if not found.any():
            raise PrepareError(
                f"No face was found in {self.video.name}.",
                "Use a video where one face is clearly visible, frontal, and well lit.",
            )
        if found.mean() < self.config.min_tracked_share:
            raise PrepareError(
                f"A face was found in only {found.mean():.0%} of the frames of {self.video.name}.",
                "Trim the video to the part where the face is visible.",
            )
        several = faces > 1
        if several.mean() > self.config.multi_face_share:
            first = int(np.argmax(several)) / fps
            raise PrepareError(
                f"More than one face in {several.sum()} frames of {self.video.name} (first at "
                f"{int(first // 60)}:{first % 60:04.1f}).",
                "An avatar is one person: crop or trim the video so that only they are in view.",
            )

    def _fit(self, manifest: Manifest, report: Progress) -> dict:
        with np.load(self.out / "landmarks.npz") as data:
            points, found = data["points"].astype(np.float64), data["found"]
        filled = interpolate_missing(points, found)
        identity, fits = self.fitter.track(list(filled), progress=lambda done, total: report("fit", done, total))
        errors = np.array([f.error for f in fits])
        savez_atomic(
            self.out / "params.npz",
            coefficients=np.stack([f.coefficients for f in fits]).astype(np.float32),
            scale=np.array([f.pose.scale for f in fits]),
            rotation=np.stack([f.pose.rotation for f in fits]),
            translation=np.stack([f.pose.translation for f in fits]),
            tracked=found,
            error=errors,
            identity=identity.astype(np.float32),
            channels=np.array(CHANNELS),
        )
        tracked = found.mean()
        manifest.report.update(
            {
                "tracked_share": round(float(tracked), 4),
                "interpolated_frames": int((~found).sum()),
                "reprojection_error_iod": {
                    "mean": round(float(errors[found].mean()), 5),
                    "p95": round(float(np.quantile(errors[found], 0.95)), 5),
                },
            }
        )
        if (~found).any():
            log.warning("no face in %d frames: filled by interpolation", int((~found).sum()))
        return {}

    def _params(self) -> dict[str, np.ndarray]:
        with np.load(self.out / "params.npz") as data:
            return {k: data[k] for k in data.files}

    def _crop_windows(self, params: dict[str, np.ndarray], fps: float, size: int) -> list[rc.Crop]:
        """A crop of fixed side (from the median face size) around the smoothed face centre."""
        face = self.model.vertices[:NUM_MESH_POINTS]
        centre_model = 0.5 * (face.min(axis=0) + face.max(axis=0))
        height_model = float(np.ptp(face[:, 1]))
        centres = params["scale"][:, None] * (params["rotation"] @ centre_model) + params["translation"]
        centres = stable_crop_centres(centres[:, :2], self.config.crop_smoothing_seconds * fps)
        side = self.config.crop_face_heights * height_model * float(np.median(params["scale"]))
        return [rc.Crop.around(float(x), float(y), side, size) for x, y in centres]

    def _crops(self, manifest: Manifest, report: Progress) -> dict:
        from ..device import pick_device
        from ..face.shape_pass import ShapePassRenderer

        params = self._params()
        fps, total = manifest.video["fps"], manifest.video["frames"]
        rig = identity_model(self.model, params["identity"])
        windows = {size: self._crop_windows(params, fps, size) for size in self.config.sizes}
        writers, masks = {}, {}
        for size in self.config.sizes:
            (self.out / f"crop_{size}").mkdir(exist_ok=True)
            writers[size] = VideoWriter(self.out / f"crop_{size}" / "frames.mp4", size, size, fps, self.config.crf)
            masks[size] = np.zeros((total, size, (size + 7) // 8), dtype=np.uint8)
        width, height = manifest.video["width"], manifest.video["height"]
        plate = VideoWriter(self.out / "plate.mp4", width - width % 2, height - height % 2, fps, self.config.crf)
        device = pick_device(self.device)  # batched on the GPU where there is one
        renderers = {size: ShapePassRenderer(self.model, size, size, device) for size in self.config.sizes}
        batch: list[int] = []
        # A contact sheet for the user: a few frames with the shape pass and mouth region on top.
        preview_size = min(self.config.sizes)
        preview_frames = set(np.linspace(0, total - 1, PREVIEW_FRAMES).round().astype(int).tolist())
        previews: dict[int, list[np.ndarray]] = {}

        def flush() -> None:
            posed = rig.pose(params["coefficients"][batch]).astype(np.float64)  # (B, V, 3), every size
            rows = [row for row, index in enumerate(batch) if index in previews]
            for size in self.config.sizes:
                mats = np.stack([self._matrix(params, i, windows[size][i]) for i in batch])
                screen = rc.project(mats, posed)
                shape = renderers[size].render(screen.astype(np.float32), mats[:, 2, 3])
                mouth = shape.mouth.cpu().numpy()
                masks[size][batch] = np.packbits(mouth, axis=-1)
                if size == preview_size and rows:
                    colors = shape.color_uint8()
                    for row in rows:
                        previews[batch[row]] += [colors[row], shape.mask[row].cpu().numpy(), mouth[row]]
            batch.clear()

        try:
            # A second pass over the source, at the same constant rate.
            for index, frame in frames_at_constant_rate(self.video, fps, total, CfrReport()):
                plate.write(frame[: height - height % 2, : width - width % 2])
                for size in self.config.sizes:
                    cropped = crop_image(frame, windows[size][index])
                    writers[size].write(cropped)
                    if size == preview_size and index in preview_frames:
                        previews[index] = [cropped]
                batch.append(index)
                if len(batch) == 64:
                    flush()
                report("crops", index + 1, total)
            if batch:
                flush()
        except BaseException:
            plate.abort()
            for writer in writers.values():
                writer.abort()
            raise
        plate.close()
        write_preview(self.out / "preview.png", [previews[i] for i in sorted(previews)])
        for size in self.config.sizes:
            writers[size].close()
            windows_array = np.array([[c.scale, c.offset_x, c.offset_y] for c in windows[size]])
            save_atomic(self.out / f"crop_{size}" / "crop.npy", windows_array)
            savez_atomic(self.out / f"crop_{size}" / "mouth_masks.npz", bits=masks[size], width=np.array(size))
        return {}

    @staticmethod
    def _matrix(params: dict[str, np.ndarray], index: int, crop: rc.Crop) -> np.ndarray:
        return rc.model_matrix(
            float(params["scale"][index]), params["rotation"][index], params["translation"][index], crop
        )

    def _audio(self, manifest: Manifest, report: Progress) -> dict:
        import soundfile as sf

        from ..lipsync.audio import load_audio
        from ..lipsync.engine import LipsyncEngine
        from ..lipsync.prosody import s2a_features

        report("audio", 0, 3)
        try:
            samples = load_audio(self.video)
        except SteadyTalkError as exc:
            raise PrepareError(f"The audio track of {self.video.name} could not be used: {exc}") from None
        with atomic_output(self.out / "audio.wav") as partial:
            sf.write(partial, samples, 16000, subtype="PCM_16", format="WAV")
        report("audio", 1, 3)
        result = LipsyncEngine().run(self.out / "audio.wav", self.config.transcript, fps=manifest.video["fps"])
        with atomic_output(self.out / "lipsync.json") as partial:
            result.write_json(partial)
        report("audio", 2, 3)
        features = s2a_features(samples, result.phones)
        savez_atomic(
            self.out / "features.npz",
            values=features.values,
            rate=np.array(features.rate),
            n_mels=np.array(features.n_mels),
        )
        report("audio", 3, 3)
        return {"mode": result.mode, "warnings": list(result.warnings)}

    def _blender(self, manifest: Manifest, report: Progress) -> dict:
        params = self._params()
        folder = self.out / "blender"
        folder.mkdir(exist_ok=True)
        rig = identity_model(self.model, params["identity"])
        with atomic_output(folder / "rig.npz") as partial:
            rig.save(partial)
        width, height = manifest.video["width"], manifest.video["height"]
        full = rc.Crop.full_frame(width, height)
        matrices = np.stack([self._matrix(params, i, full) for i in range(len(params["scale"]))])
        save_atomic(folder / "head_pose.npy", matrices.astype(np.float32))
        camera = rc.camera(width, height)
        scene = {
            "render_contract": rc.RENDER_CONTRACT_VERSION,
            "fps": manifest.video["fps"],
            "frames": len(matrices),
            "resolution": [width, height],
            "camera": asdict(camera) | {"type": "ORTHO", "rotation_euler": [0.0, 0.0, 0.0]},
            "plate": "../plate.mp4",
            "head_pose": "head_pose.npy",
            "rig": "rig.npz",
        }
        write_text_atomic(folder / "scene.json", json.dumps(scene, indent=2) + "\n")
        report("blender", 1, 1)
        return {}


def prepare(video: Path, out: Path, config: PrepareConfig | None = None, force=False, progress=None, device=None):
    try:
        return Preparer(video, out, config, force, device).run(progress)
    except VideoError as exc:
        raise PrepareError(exc.message, exc.hint) from None
