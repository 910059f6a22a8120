"""``steadytalk prepare``: real video through PyAV, mediapipe, fitting, crops, audio, Blender export.

Videos of particular kinds (no audio, too short, no face, two faces, variable frame rate) are
made here from a real GRID clip and real speech."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from steadytalk_backend.avatar.prepare import PrepareConfig, PrepareError, Preparer
from steadytalk_backend.avatar.video import CfrReport, frames_at_constant_rate, probe, read_frames
from steadytalk_backend.cli import main
from steadytalk_shared import render_contract as rc
from steadytalk_shared.face_model import FaceModel
from steadytalk_shared.schema import CHANNELS  # the face model's shapes: all 52

CLIP = "bbbs5s"


@pytest.fixture(scope="module")
def clip(shared_data) -> Path:
    return shared_data / "video" / "grid_s1_val" / f"{CLIP}.mpg"


@pytest.fixture(scope="module")
def clip_frames(clip) -> list[np.ndarray]:
    return list(read_frames(clip))


@pytest.fixture(scope="module")
def speech(shared_data) -> np.ndarray:
    samples, rate = sf.read(shared_data / "video" / "grid_s1_val" / f"{CLIP}.16k.wav", dtype="float32")
    assert rate == 16000
    return samples


@pytest.fixture(scope="module")
def avatar(clip, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("avatar") / "bbbs5s"
    assert main(["prepare", str(clip), "--out", str(out), "--size", "256", "--size", "512", "--quiet"]) == 0
    return out


@pytest.mark.realdata
def test_avatar_folder_contents(avatar):
    manifest = json.loads((avatar / "manifest.json").read_text())
    frames = manifest["video"]["frames"]
    assert frames == 75 and manifest["video"]["fps"] == 25.0  # a 3 s GRID clip
    assert set(manifest["stages"]) == {"landmarks", "fit", "crops", "audio", "blender", "style"}
    assert manifest["report"]["tracked_share"] == 1.0
    assert manifest["report"]["reprojection_error_iod"]["mean"] < 0.02
    for name in manifest["files"]:  # every documented file exists
        assert (avatar / name).is_file(), name

    with np.load(avatar / "params.npz") as params:
        assert params["coefficients"].shape == (frames, len(CHANNELS))
        assert tuple(params["channels"]) == CHANNELS  # stored by name
        assert params["coefficients"].min() >= 0 and params["coefficients"].max() <= 1
        assert params["rotation"].shape == (frames, 3, 3) and params["tracked"].all()
        jaw = params["coefficients"][:, CHANNELS.index("jawOpen")]
        assert jaw.max() > 0.1 and jaw.min() < 0.05  # the person speaks, and rests

    for size in (256, 512):
        crops = list(read_frames(avatar / f"crop_{size}" / "frames.mp4"))
        assert len(crops) == frames and crops[0].shape == (size, size, 3)
        windows = np.load(avatar / f"crop_{size}" / "crop.npy")
        assert windows.shape == (frames, 3)
        # A stable crop: constant scale, the centre moving smoothly.
        assert np.ptp(windows[:, 0]) < 1e-9 and np.abs(np.diff(windows[:, 1:], axis=0)).max() < 2.0
        with np.load(avatar / f"crop_{size}" / "mouth_masks.npz") as data:
            masks = np.unpackbits(data["bits"], axis=-1)[..., :size].astype(bool)
        share = masks.mean(axis=(1, 2))
        assert masks.shape == (frames, size, size) and 0.03 < share.min() and share.max() < 0.3

    audio, rate = sf.read(avatar / "audio.wav")
    assert rate == 16000 and abs(len(audio) / rate - frames / 25.0) < 0.1
    with np.load(avatar / "features.npz") as features:
        assert abs(len(features["values"]) / float(features["rate"]) - len(audio) / rate) < 0.05
    lipsync = json.loads((avatar / "lipsync.json").read_text())
    assert lipsync["fps"] == 25.0

    rig = FaceModel.load(avatar / "blender" / "rig.npz")
    assert rig.deltas.shape == FaceModel.load().deltas.shape
    assert not np.allclose(rig.vertices, FaceModel.load().vertices)  # the person's own shape
    scene = json.loads((avatar / "blender" / "scene.json").read_text())
    assert (avatar / "blender" / scene["plate"]).resolve() == (avatar / "plate.mp4").resolve()
    head = np.load(avatar / "blender" / "head_pose.npy")
    assert head.shape == (frames, 4, 4)
    # The rig, placed by the exported head pose, lands on the face's landmarks in the frame.
    with np.load(avatar / "params.npz") as params, np.load(avatar / "landmarks.npz") as landmarks:
        for index in (0, 37, 74):
            model_points = rig.pose(params["coefficients"][index])[:468]
            placed = rc.project(head[index], model_points)
            found = landmarks["points"][index, :468]
            interocular = np.linalg.norm(found[263, :2] - found[33, :2])
            assert np.linalg.norm(placed[:, :2] - found[:, :2], axis=1).mean() < 0.03 * interocular
    assert (avatar / "preview.png").stat().st_size > 10_000


@pytest.mark.realdata
def test_crops_and_shape_pass_line_up(avatar, clip_frames):
    """The fitted model, through the crop window, lands on the landmarks found in the crop."""
    from steadytalk_backend.avatar.crops import crop_image
    from steadytalk_backend.face.landmarks import FaceLandmarker, LandmarkerConfig

    with np.load(avatar / "params.npz") as data:
        params = {k: data[k] for k in data.files}
    windows = np.load(avatar / "crop_256" / "crop.npy")
    with FaceLandmarker(LandmarkerConfig(video=False)) as landmarker:
        for index in (10, 40, 70):
            crop = rc.Crop(*windows[index], 256, 256)
            found = landmarker.detect(crop_image(clip_frames[index], crop))[0][:468]
            matrix = rc.model_matrix(
                params["scale"][index], params["rotation"][index], params["translation"][index], crop
            )
            rig = FaceModel.load(avatar / "blender" / "rig.npz")
            model_points = rig.pose(params["coefficients"][index])[:468]
            screen = rc.project(matrix, model_points)
            interocular = np.linalg.norm(found[263, :2] - found[33, :2])
            assert np.linalg.norm(screen[:, :2] - found[:, :2], axis=1).mean() < 0.05 * interocular


@pytest.mark.realdata
def test_rerun_skips_finished_stages_and_resumes_landmarks(clip, tmp_path):
    out = tmp_path / "avatar"
    seen = []

    def interrupt(stage, done, total):
        seen.append((stage, done))
        if stage == "landmarks" and done == 45:
            raise KeyboardInterrupt

    config = PrepareConfig(checkpoint_frames=20)
    with pytest.raises(KeyboardInterrupt):
        Preparer(clip, out, config).run(interrupt)
    assert (out / "landmarks.partial.npz").exists() and not (out / "landmarks.npz").exists()

    seen.clear()
    manifest = Preparer(clip, out, config).run(lambda stage, done, total: seen.append((stage, done)))
    assert manifest.stages["landmarks"]["resumed_at"] == 40
    assert min(done for stage, done in seen if stage == "landmarks") == 41
    assert not (out / "landmarks.partial.npz").exists()

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"}
    seen.clear()
    Preparer(clip, out, config).run(lambda stage, done, total: seen.append((stage, done, total)))
    assert all(done == total == 1 for _, done, total in seen)  # every stage skipped
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}


@pytest.mark.realdata
def test_variable_frame_rate_is_resampled_and_reported(clip_frames, speech, tmp_path, make_video):
    # Irregular intervals as a phone camera writes them: 33 to 70 ms.
    rng = np.random.default_rng(0)
    times = np.concatenate([[0.0], np.cumsum(rng.choice([0.033, 0.040, 0.047, 0.070], len(clip_frames) - 1))])
    path = make_video(tmp_path / "vfr.mp4", clip_frames, 25.0, audio=speech, times=list(times))
    report = CfrReport()
    frames = list(frames_at_constant_rate(path, 25.0, int(round(probe(path).duration * 25.0)), report))
    assert report.variable and report.output_frames == len(frames)
    assert report.repeated > 0 or report.dropped > 0
    # Each output frame shows the source frame nearest its time (ties within a millisecond).
    source = [f for f in read_frames(path)]
    for index, frame in frames[::7]:
        nearest = np.abs(times - index / 25.0)
        candidates = np.nonzero(nearest <= nearest.min() + 1e-3)[0]
        assert any(np.array_equal(frame, source[c]) for c in candidates)

    out = tmp_path / "avatar"
    assert main(["prepare", str(path), "--out", str(out), "--fps", "25", "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["landmarks"]["variable_frame_rate"] is True
    assert "variable frame rate" in manifest["stages"]["landmarks"]["cfr"]


def _error(capsys, *args: str) -> str:
    assert main(["prepare", *args, "--quiet"]) == 2
    message = capsys.readouterr().err
    assert message.startswith("error: ") and "Traceback" not in message
    return message


@pytest.mark.realdata
def test_user_errors_are_clear_and_leave_nothing_broken(clip, clip_frames, speech, tmp_path, capsys, make_video):
    out = str(tmp_path / "out")
    assert "not found" in _error(capsys, str(tmp_path / "missing.mp4"), "--out", out)
    (tmp_path / "notes.txt").write_text("not a video")
    assert "could not read" in _error(capsys, str(tmp_path / "notes.txt"), "--out", out).lower()

    silent = make_video(tmp_path / "silent.mp4", clip_frames[:60], 25.0)
    assert "no audio track" in _error(capsys, str(silent), "--out", out)

    short = make_video(tmp_path / "short.mp4", clip_frames[:30], 25.0, audio=speech[:19200])
    assert "at least 2 s" in _error(capsys, str(short), "--out", out)

    blank = [np.full_like(f, 90) for f in clip_frames[:60]]
    faceless = make_video(tmp_path / "faceless.mp4", blank, 25.0, audio=speech[:40000])
    assert "No face was found" in _error(capsys, str(faceless), "--out", str(tmp_path / "faceless"))

    pairs = [np.concatenate([f, f[:, ::-1]], axis=1) for f in clip_frames[:60]]
    crowd = make_video(tmp_path / "two.mp4", pairs, 25.0, audio=speech[:40000])
    message = _error(capsys, str(crowd), "--out", str(tmp_path / "two"))
    assert "More than one face" in message and "trim" in message

    # An output folder that holds something else is refused, and left as it was.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("precious")
    assert "not empty" in _error(capsys, str(clip), "--out", str(mine))
    assert os.listdir(mine) == ["thesis.txt"]
    (tmp_path / "file").write_text("x")
    assert "not a folder" in _error(capsys, str(clip), "--out", str(tmp_path / "file"))


@pytest.mark.realdata
def test_an_avatar_of_another_video_needs_force(avatar, clip_frames, speech, tmp_path, capsys, make_video):
    other = make_video(tmp_path / "other.mp4", clip_frames, 25.0, audio=speech)
    assert "another video" in _error(capsys, str(other), "--out", str(avatar))
    assert json.loads((avatar / "manifest.json").read_text())["source"]["path"].endswith(f"{CLIP}.mpg")


def test_bad_sizes_are_refused(tmp_path):
    with pytest.raises(PrepareError, match="not supported"):
        Preparer(tmp_path / "x.mp4", tmp_path / "out", PrepareConfig(sizes=(300,)))._check()


@pytest.mark.realdata
def test_eval_tracking_reports_the_avatar(avatar, tmp_path, capsys):
    report_path = tmp_path / "tracking.json"
    assert main(["eval", "tracking", str(avatar), "--json", str(report_path)]) == 0
    assert "MSI" in capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert report["frames"] == 75 and report["tracked_share"] == 1.0
    assert report["prepare_frames_per_second"] > 0
    for row in report["msi"].values():
        assert 0 < row["lips"] <= 2 and 0 < row["jaw"] <= 2
    # Smoothing the same track can only make it steadier.
    raw, smoothed = report["msi"]["mediapipe landmarks, raw"], report["msi"]["mediapipe landmarks, adaptive smoother"]
    assert smoothed["lips"] > raw["lips"]


@pytest.mark.realdata
def test_an_avatar_prepared_before_schema_v2_still_loads_and_trains(avatar, tmp_path):
    """params.npz of 33 coefficients and a 33-shape rig (avatars prepared before): the renderer
    takes its v1 channels by name from either, so old and new avatars give it the same input."""
    import shutil

    from conftest import tiny_preset

    from steadytalk_backend.avatar.params import load_coefficients
    from steadytalk_backend.render.data import AvatarFrames
    from steadytalk_backend.render.s2a_person import load_avatar_sequences
    from steadytalk_backend.render.train import RendererTrainer
    from steadytalk_shared.schema import V1_CHANNELS

    old = tmp_path / "old"
    shutil.copytree(avatar, old, ignore=shutil.ignore_patterns("crop_512", "plate.mp4"))
    with np.load(old / "params.npz") as data:
        arrays = {k: data[k] for k in data.files}
    wide = arrays["coefficients"]
    arrays["coefficients"] = wide[:, :33]
    arrays.pop("channels")  # the first releases wrote no names
    np.savez(old / "params.npz", **arrays)
    FaceModel.load(old / "blender" / "rig.npz").with_shapes(V1_CHANNELS).save(old / "blender" / "rig.npz")

    np.testing.assert_array_equal(load_coefficients(old), wide[:, :33])
    np.testing.assert_array_equal(load_coefficients(avatar), wide[:, :33])  # v2: picked by name
    brows = load_coefficients(old, CHANNELS)[:, CHANNELS.index("browInnerUp")]
    assert not brows.any()  # a channel the old file lacks is at rest
    for folder in (old, avatar):
        frames = AvatarFrames.load(folder, 256, frames=False)
        assert frames.coefficients.shape == (75, 33) and len(frames.rig.deltas) == 33
        assert load_avatar_sequences(folder)[2].shape == (75, 33)
    summary = RendererTrainer(old, tiny_preset(joint_epochs=0), device="cpu", log=lambda line: None).run()
    assert np.isfinite(summary["validation_l1"])
