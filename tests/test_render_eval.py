"""``steadytalk eval render`` end to end on a real held-out GRID clip and a trained tiny avatar:
the report's figures, the ablation rows and the contact sheet."""

from __future__ import annotations

import json
import shutil

import av
import cv2
import numpy as np

from steadytalk_backend.avatar.video import read_frames
from steadytalk_backend.cli import main
from steadytalk_backend.evaluation.render import detail_correlation, sharpness_ratio
from steadytalk_backend.render.s2a_person import train_s2a


def test_eval_render_reports_figures_ablations_and_a_contact_sheet(trained_avatar, shared_data, tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    source = shared_data / "video" / "grid_s1_val"
    for suffix in (".mpg", ".align", ".16k.wav"):
        (clips / f"bbbs5s{suffix}").symlink_to(source / f"bbbs5s{suffix}")
    (clips / "transcripts.tsv").write_text("grid_id\tduration_s\ttranscript\nbbbs5s\t3.0\tbin blue by s five soon\n")
    avatar = tmp_path / "avatar"
    shutil.copytree(trained_avatar, avatar)
    # The avatar's own model doubles as the "full" ablation: its row must equal the main one.
    shutil.copytree(avatar / "model", avatar / "ablations" / "full")
    # A (briefly trained) person audio-to-expression model: the lip-sync check and the mp4.
    s2a, s2a_report = train_s2a(avatar, steps=30, window=32)
    s2a.save(avatar / "model" / "s2a.safetensors", s2a_report)
    code = main(
        ["eval", "render", str(avatar), "--clips", str(clips), "--work-dir", str(tmp_path / "work"),
         "--out", str(tmp_path / "out"), "--json", str(tmp_path / "report.json")]
    )  # fmt: skip
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    variants = report["variants"]
    assert set(variants) == {
        "full",
        "without adaptive smoothing",
        "ablation: full",
        "ablation: without adaptive smoothing",
    }
    for name, scores in variants.items():
        assert all(np.isfinite(v) for v in scores.values()), name
        assert 10 < scores["psnr_synthesized"] <= scores["psnr_face"] < 60, name
        assert 0 < scores["ssim_face"] <= 1 and scores["lmd"] >= 0, name
        assert 0 < scores["sharpness_ratio"] < 2, name
    assert variants["ablation: full"] == variants["full"]
    assert report["per_clip"]["bbbs5s"]["full"] == variants["full"]  # one clip: its figures are the means
    # The smoother changes the driving curves, so the output and its stability change.
    assert variants["without adaptive smoothing"]["msi_lips"] != variants["full"]["msi_lips"]
    assert report["real_video"]["msi_lips"] > 0 and report["clips"] == 1
    sheet = cv2.imread(report["contact_sheet"])
    # One clip: one row of real | generated | two enlarged mouths | the mouths at 1:1.
    assert sheet.shape == (256, 5 * 256, 3)
    assert set(report["lip_sync"]) == {"person", "engine"}
    with av.open(report["mp4"]) as container:  # real | generated, with the clip's sound
        video = container.streams.video[0]
        assert (video.width, video.height) == (512, 256)
        assert sum(1 for _ in container.decode(video)) == 75
        assert any(s.type == "audio" for s in container.streams)
    printed = capsys.readouterr().out
    assert "PSNR" in printed and "ablation: full" in printed


def _lower_faces(shared_data, clip: str) -> tuple[np.ndarray, np.ndarray]:
    """The first 6 frames of a held-out GRID clip and the lower face of GRID's framing."""
    frames = []
    for frame in read_frames(shared_data / "video" / "grid_s1_val" / f"{clip}.mpg"):
        frames.append(frame)
        if len(frames) == 6:
            break
    real = np.stack(frames)
    masks = np.zeros(real.shape[:3], dtype=bool)
    masks[:, 150:250, 120:240] = True
    return real, masks


def test_sharpness_ratio_is_one_for_the_real_frames_and_lower_when_blurred(shared_data):
    real, masks = _lower_faces(shared_data, "bgbb2p")
    assert sharpness_ratio(real, real, masks) == 1.0
    ratios = [
        sharpness_ratio(np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in real]), real, masks)
        for sigma in (0.7, 1.5, 3.0)
    ]
    assert 1.0 > ratios[0] > ratios[1] > ratios[2] > 0, ratios
    # Blurring outside the region changes nothing inside it (one pixel of Laplacian reach aside).
    outside = real.copy()
    outside[:, :100] = cv2.GaussianBlur(np.ascontiguousarray(real[0, :100]), (0, 0), 3.0)
    assert sharpness_ratio(outside, real, masks) == 1.0


def test_detail_correlation_tells_real_detail_from_blur_and_from_noise(shared_data):
    real, masks = _lower_faces(shared_data, "bragzp")
    assert abs(detail_correlation(real, real, masks) - 1.0) < 1e-9
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 1.5) for f in real])
    # Noise as strong as the real detail: the sharpness ratio calls it sharp, this does not.
    rng = np.random.default_rng(0)
    noisy = np.clip(blurred + rng.normal(0, 6, blurred.shape), 0, 255).astype(np.uint8)
    assert sharpness_ratio(noisy, real, masks) > 0.8
    assert detail_correlation(noisy, real, masks) < 0.5 * detail_correlation(blurred, real, masks) + 0.2
    assert 0 < detail_correlation(blurred, real, masks) < 0.9
    # The same detail 2 px off is not in the right place.
    assert detail_correlation(np.roll(real, 2, axis=2), real, masks) < 0.5
