"""The prepare stages that draw what the renderer and Blender read: the stable face crops, the
mouth-region masks, the background plate and preview (``crops``), and the person's rig, camera and
per-frame head pose (``blender``). A part of ``prepare.Preparer`` (it mixes these in), kept apart
so that module stays readable."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict

import numpy as np

from steadytalk_shared import render_contract as rc

from ..atomic import atomic_output, save_atomic, savez_atomic, write_text_atomic
from ..face.fitting import identity_model
from ..face.landmarks import NUM_MESH_POINTS
from .crops import PREVIEW_FRAMES, crop_image, stable_crop_centres, write_preview
from .manifest import Manifest
from .video import CfrReport, VideoWriter, frames_at_constant_rate

Progress = Callable[[str, int, int], None]  # stage, done, total


class DrawingStages:
    """``crops`` and ``blender``; needs ``self.out``, ``self.config``, ``self.model`` and ``self.video``."""

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
