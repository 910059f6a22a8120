"""Talking portrait from one picture: real pictures from ../shared/data/images (skipped when
absent) and pictures the tests make from them or from nothing; the real mediapipe, the real
lip-sync engine, real mp4 files read back with PyAV."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from steadytalk_backend.portrait.picture import PictureConfig, PortraitError, read_picture
from steadytalk_backend.portrait.pipeline import PortraitOptions, prepare_portrait
from steadytalk_shared.schema import CHANNELS

IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "images"
GRID = IMAGES / "grid_s1_frame_bbaf2n.png"
PAINTINGS = ["monalisa_leonardo.jpg", "pearl_earring_vermeer.jpg", "obama_official_portrait_2012.jpg"]
needs_images = pytest.mark.skipif(not GRID.exists(), reason="../shared/data/images is not present")


def pose(**values: float) -> np.ndarray:
    c = np.zeros(len(CHANNELS))
    for name, value in values.items():
        c[CHANNELS.index(name)] = value
    return c


def png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def grid_rgb() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(GRID)), cv2.COLOR_BGR2RGB)


def face_box(portrait, margin: float = 0.1) -> tuple[slice, slice]:
    points = portrait.face.landmarks[:468, :2]
    lo, hi = points.min(axis=0), points.max(axis=0)
    pad = margin * (hi - lo)
    x0, y0 = np.maximum(lo - pad, 0).astype(int)
    x1, y1 = (hi + pad).astype(int)
    return slice(y0, y1), slice(x0, x1)


def mouth_box(portrait) -> tuple[slice, slice]:
    lm = portrait.face.landmarks
    lo, hi = lm[[61, 291, 0, 17], :2].min(axis=0), lm[[61, 291, 0, 17], :2].max(axis=0)
    return slice(int(lo[1]), int(hi[1]) + 1), slice(int(lo[0]), int(hi[0]) + 1)


@pytest.fixture(scope="module")
def grid_portrait():
    if not GRID.exists():
        pytest.skip("../shared/data/images is not present")
    portrait = prepare_portrait(GRID, PortraitOptions(size=360))
    return portrait, portrait.animator()


# -- the picture itself -----------------------------------------------------------------------
@needs_images
@pytest.mark.parametrize("name", ["grid_s1_frame_bbaf2n.png", *PAINTINGS])
def test_first_frame_at_rest_is_the_picture(name):
    portrait = prepare_portrait(IMAGES / name, PortraitOptions(size=512))
    assert max(portrait.video.shape[:2]) == 512 and portrait.video.shape[0] % 2 == portrait.video.shape[1] % 2 == 0
    animator = portrait.animator()
    np.testing.assert_array_equal(animator.frame(pose()), portrait.video)
    # Speech starts from all but zero: the face stays within a few levels, nothing else moves.
    barely = animator.frame(pose(jawOpen=0.005, mouthClose=0.002)).astype(int)
    rows, cols = face_box(portrait, margin=0.35)
    outside = np.ones(barely.shape[:2], dtype=bool)
    outside[rows, cols] = False
    assert np.array_equal(barely[outside], portrait.video[outside])
    assert np.abs(barely - portrait.video).max() <= 12
    assert np.abs(barely - portrait.video).mean() < 0.05


@needs_images
def test_open_jaw_opens_a_dark_mouth_and_leaves_the_corners(grid_portrait):
    portrait, animator = grid_portrait
    opened = animator.frame(pose(jawOpen=0.6)).astype(float)
    rest = portrait.video.astype(float)
    rows, cols = mouth_box(portrait)
    assert np.abs(opened[rows, cols] - rest[rows, cols]).mean() > 10
    corners = [(slice(0, 30), slice(0, 30)), (slice(0, 30), slice(-30, None)), (slice(-30, None), slice(0, 30))]
    for r, c in [*corners, (slice(-30, None), slice(-30, None))]:
        assert np.array_equal(opened[r, c], rest[r, c])
    # The new opening is dark (a cavity), not smeared lip: the darkest tenth of the mouth box.
    grey = opened[rows, cols] @ [0.299, 0.587, 0.114]
    assert np.quantile(grey, 0.1) < 0.5 * np.median(rest[rows, cols] @ [0.299, 0.587, 0.114])


@needs_images
def test_teeth_appear_below_the_upper_lip(grid_portrait):
    """At a wide opening the upper teeth show: a band brighter than the cavity just below the
    upper lip, and the painted teeth are lit like the face (not paper white on a dim picture)."""
    portrait, animator = grid_portrait
    frame = animator.frame(pose(jawOpen=0.6)).astype(float)
    lm = portrait.face.landmarks
    column = int(round(lm[13, 0]))
    top, bottom = int(lm[13, 1]), int(round(animator.drivers(pose(jawOpen=0.6))[14, 1]))
    profile = frame[top:bottom, column - 1 : column + 2].mean(axis=1) @ [0.299, 0.587, 0.114]
    assert profile[: len(profile) // 2].max() > 2.0 * profile.min()
    teeth = animator.interior.colours.teeth
    assert teeth.max() <= 255 and teeth.mean() > 80


@needs_images
def test_tongue_comes_forward_for_tongue_out(grid_portrait):
    """th, dh, l: the tongue comes forward past the lower teeth (the depth test then draws it in
    front of them) and up toward the upper teeth, where it shows in the opening."""
    portrait, animator = grid_portrait
    interior = animator.interior
    n, start = interior.num_columns, interior.tongue_start
    placed = {}
    for name, c in (("in", pose(jawOpen=0.3)), ("out", pose(jawOpen=0.3, tongueOut=0.8))):
        placed[name] = animator._project(interior.model_points(animator.model_coefficients(c)))
    lower_teeth_front = placed["out"][2 * n : 3 * n, 2].max()
    crest = slice(start + 2 * n, start + 3 * n)  # the dome's top row
    assert placed["out"][crest, 2].max() > lower_teeth_front > placed["in"][crest, 2].max()
    assert placed["out"][crest, 1].min() < placed["in"][crest, 1].min()  # higher in the picture
    rows, cols = mouth_box(portrait)
    red = lambda c: (lambda f: (f[..., 0] - f[..., 2] > 60) & (f[..., 0] > 90))(  # noqa: E731
        animator.frame(c).astype(float)[rows, cols]
    )
    upper_half = lambda mask: mask[: mask.shape[0] // 2].sum()  # noqa: E731
    assert upper_half(red(pose(jawOpen=0.3, tongueOut=0.8))) > upper_half(red(pose(jawOpen=0.3)))


@needs_images
def test_blink_covers_the_eye_with_the_lid_and_leaves_the_mouth(grid_portrait):
    portrait, animator = grid_portrait
    closed = animator.frame(pose(eyeBlinkLeft=1.0)).astype(float)
    rest = portrait.video.astype(float)
    loop = portrait.face.model.regions.eye_left
    eye = portrait.face.landmarks[loop, :2]
    (x0, y0), (x1, y1) = eye.min(axis=0).astype(int), eye.max(axis=0).astype(int) + 1
    assert np.abs(closed[y0:y1, x0:x1] - rest[y0:y1, x0:x1]).mean() > 5
    rows, cols = mouth_box(portrait)
    assert np.array_equal(closed[rows, cols], rest[rows, cols])
    right = portrait.face.landmarks[portrait.face.model.regions.eye_right, :2]
    (a0, b0), (a1, b1) = right.min(axis=0).astype(int), right.max(axis=0).astype(int) + 1
    assert np.array_equal(closed[b0:b1, a0:a1], rest[b0:b1, a0:a1])


@needs_images
def test_gaze_moves_the_iris_and_shows_the_white(grid_portrait):
    portrait, animator = grid_portrait
    rest = portrait.video.astype(float)
    looking = animator.frame(pose(), gaze=np.array([[0.2, 0.0], [0.2, 0.0]])).astype(float)
    changed = np.abs(looking - rest).max(axis=2) > 0
    rows, cols = np.nonzero(changed)
    eyes = portrait.face.landmarks[np.concatenate([portrait.face.model.regions.eye_left,
                                                   portrait.face.model.regions.eye_right]), :2]  # fmt: skip
    lo, hi = eyes.min(axis=0) - 3, eyes.max(axis=0) + 3
    assert len(rows) > 20
    assert (cols >= lo[0]).all() and (cols <= hi[0]).all() and (rows >= lo[1]).all() and (rows <= hi[1]).all()
    # Where the iris was, the white shows: some changed pixels got brighter.
    grey = lambda img: img @ [0.299, 0.587, 0.114]  # noqa: E731
    assert (grey(looking[changed]) - grey(rest[changed])).max() > 30


@needs_images
def test_head_turn_moves_face_and_hair_not_the_corners(grid_portrait):
    """MakeItTalk's warp: the head carries the hair with it, the warp fades out toward the
    image border, whose corners stay where they are."""
    portrait, animator = grid_portrait
    turned = animator.frame(pose(), head=np.array([0.15, 0.0, 0.05])).astype(float)
    rest = portrait.video.astype(float)
    rows, cols = face_box(portrait, margin=0.0)
    face_change = np.abs(turned[rows, cols] - rest[rows, cols]).mean()
    assert face_change > 5
    band = np.ones(rest.shape[:2], dtype=bool)
    band[8:-8, 8:-8] = False
    assert np.abs(turned[band] - rest[band]).mean() < 0.1 * face_change
    for r, c in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        assert np.array_equal(turned[r, c], rest[r, c])


@needs_images
def test_shapes_are_matched_by_name_not_position(grid_portrait):
    """The face model's shapes in another order (or with shapes the schema lacks) pose the same
    face: the animator reads them by name."""
    portrait, animator = grid_portrait
    model = portrait.face.model
    order = np.arange(len(model.shape_names))[::-1]
    names = tuple(model.shape_names[i] for i in order) + ("someShapeTheSchemaLacks",)
    deltas = np.concatenate([model.deltas[order], np.ones_like(model.deltas[:1])])
    shuffled = replace(portrait.face, model=replace(model, shape_names=names, deltas=deltas))
    other = type(animator)(portrait.video, shuffled)
    c = pose(jawOpen=0.4, mouthSmileLeft=0.3, mouthFunnel=0.2)
    np.testing.assert_allclose(other.posed_model(c), animator.posed_model(c), atol=1e-6)


@needs_images
def test_greyscale_and_transparent_pictures_work(tmp_path):
    rgb = grid_rgb()
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    portrait = prepare_portrait(cv2.imencode(".png", grey)[1].tobytes(), PortraitOptions(size=256))
    frame = portrait.animator().frame(pose(jawOpen=0.4))
    assert frame.shape[2] == 3 and np.allclose(frame[..., 0], frame[..., 1], atol=40)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:20, :20, 3] = 0  # a transparent corner
    data = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))[1].tobytes()
    portrait = prepare_portrait(data, PortraitOptions(size=360))
    assert any("transparent" in w for w in portrait.warnings)
    assert (portrait.video[:10, :10] >= 250).all()  # shown on white
    np.testing.assert_array_equal(portrait.animator().frame(pose()), portrait.video)


@needs_images
def test_huge_picture_is_downscaled_and_says_so():
    huge = cv2.resize(grid_rgb(), None, fx=13, fy=13, interpolation=cv2.INTER_LINEAR)  # 4680 x 3744
    data = cv2.imencode(".jpg", cv2.cvtColor(huge, cv2.COLOR_RGB2BGR))[1].tobytes()
    portrait = prepare_portrait(data, PortraitOptions(size=256))
    assert portrait.picture.size == (4096, 3277)
    assert any("4680x3744" in w and "downscaled" in w for w in portrait.warnings)


@needs_images
def test_several_faces_listed_left_to_right():
    rgb = grid_rgb()
    smaller = np.zeros_like(rgb)
    small = cv2.resize(rgb, None, fx=0.75, fy=0.75)
    smaller[: small.shape[0], : small.shape[1]] = small
    data = png(np.concatenate([smaller, rgb], axis=1))
    portrait = prepare_portrait(data)
    assert (portrait.choice.index, portrait.choice.count) == (2, 2)
    assert any("2 faces" in w and "1 (left" in w and "--face N" in w for w in portrait.warnings)
    first = prepare_portrait(data, PortraitOptions(face=1))
    assert first.choice.index == 1 and first.face.landmarks[:, 0].mean() < rgb.shape[1] * 512 / (2 * rgb.shape[1])
    assert not any("faces" in w for w in first.warnings)
    with pytest.raises(PortraitError, match=r"no face 3 .* it has 2 .*--face 1 to 2"):
        prepare_portrait(data, PortraitOptions(face=3))


@needs_images
def test_small_face_names_the_minimum():
    canvas = np.full((300, 400, 3), 128, np.uint8)
    small = cv2.resize(grid_rgb(), None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)
    canvas[50 : 50 + small.shape[0], 60 : 60 + small.shape[1]] = small
    with pytest.raises(PortraitError, match=r"\d+ pixels tall .* at least 64"):
        prepare_portrait(png(canvas))
    # A face big enough in the picture but not at the chosen --size: the message names a size.
    with pytest.raises(PortraitError, match=r"--size 128 .* Use --size \d+"):
        prepare_portrait(png(np.concatenate([grid_rgb()] * 3, axis=1)[:, :720]), PortraitOptions(size=128, face=1))


@needs_images
def test_turned_face_warns():
    portrait = prepare_portrait(IMAGES / "pearl_earring_vermeer.jpg", PortraitOptions(size=256))
    assert any("turned" in w and "degrees" in w for w in portrait.warnings)
    frontal = prepare_portrait(GRID, PortraitOptions(size=256))
    assert not any("turned" in w for w in frontal.warnings)


# -- bad input without any real picture --------------------------------------------------------
def test_not_a_picture(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("these are words, not pixels")
    with pytest.raises(PortraitError, match="notes.png is not a picture"):
        read_picture(text)
    with pytest.raises(PortraitError, match="empty"):
        read_picture(b"")
    with pytest.raises(PortraitError, match="not found"):
        read_picture(tmp_path / "missing.jpg")
    with pytest.raises(PortraitError, match="folder"):
        read_picture(tmp_path)


def test_no_face_in_a_made_picture():
    ramp = np.tile(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], (240, 1, 3))
    with pytest.raises(PortraitError, match="No face was found"):
        prepare_portrait(png(ramp))


def test_pictures_of_every_kind_decode_to_rgb():
    from PIL import Image

    made = {
        "grey": Image.fromarray(np.full((40, 60), 90, np.uint8), "L"),
        "16-bit": Image.fromarray(np.full((40, 60), 40000, np.uint16)),
        "rgba": Image.fromarray(np.zeros((40, 60, 4), np.uint8), "RGBA"),
        "palette": Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).convert("P"),
        "cmyk": Image.fromarray(np.full((40, 60, 3), 30, np.uint8)).convert("CMYK"),
    }
    for kind, image in made.items():
        buffer = io.BytesIO()
        image.save(buffer, format="TIFF" if kind in ("16-bit", "cmyk") else "PNG")
        picture = read_picture(buffer.getvalue())
        assert picture.rgb.shape == (40, 60, 3) and picture.rgb.dtype == np.uint8, kind
    assert read_picture(_saved(made["16-bit"], "TIFF")).rgb[0, 0, 0] == round(40000 / 65535 * 255)
    assert (read_picture(_saved(made["rgba"], "PNG")).rgb == 255).all()  # transparent: white
    rotated = Image.fromarray(np.zeros((40, 60, 3), np.uint8))
    exif = rotated.getexif()
    exif[0x0112] = 6  # EXIF orientation: the camera was turned; the picture is shown upright
    buffer = io.BytesIO()
    rotated.save(buffer, format="JPEG", exif=exif)
    assert read_picture(buffer.getvalue()).rgb.shape == (60, 40, 3)
    notes = read_picture(_saved(made["grey"], "PNG"), config=PictureConfig(max_side=30)).notes
    assert any("downscaled to 30x20" in n for n in notes)


def _saved(image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


# -- the video ------------------------------------------------------------------------------
@needs_images
def test_portrait_mp4_has_the_audio_and_its_duration(demo_wav, demo_transcript, tmp_path):
    import av

    from steadytalk_backend.portrait.pipeline import render_portrait

    out = tmp_path / "talk.mp4"
    stages = []
    summary = render_portrait(
        GRID, demo_wav, out, demo_transcript, PortraitOptions(size=256), lambda f, s: stages.append((f, s))
    )
    assert out.exists() and not (tmp_path / "talk.mp4.partial").exists()
    assert stages[-1][0] == pytest.approx(1.0) and all(b[0] >= a[0] for a, b in zip(stages, stages[1:], strict=False))
    with av.open(str(out)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video)])
    assert len(frames) == summary["frames"]
    assert abs(len(frames) / summary["fps"] - summary["duration"]) <= 1.0 / summary["fps"]
    portrait = prepare_portrait(GRID, PortraitOptions(size=256))
    assert frames.shape[1:3] == portrait.video.shape[:2]
    # The mouth moves with the speech; the picture's corners stay (up to the codec's rounding).
    rows, cols = mouth_box(portrait)
    mouth = frames[:, rows, cols].astype(float)
    assert mouth.std(axis=0).mean() > 4
    corner = frames[:, :24, :24].astype(float)
    assert corner.std(axis=0).max() <= 1.0  # H.264 rounds a still corner the same way each frame
    assert np.abs(frames[0].astype(float) - portrait.video).mean() < 3.0  # the first frame: the picture (4:2:0)


@needs_images
def test_bytes_in_mp4_bytes_out(demo_wav):
    from steadytalk_backend.portrait.pipeline import render_portrait_bytes

    data, summary = render_portrait_bytes(GRID.read_bytes(), demo_wav.read_bytes(), options=PortraitOptions(size=256))
    assert data[4:8] == b"ftyp" and "out" not in summary and summary["size"][0] == 256


@needs_images
def test_rig_for_blender(grid_portrait):
    from steadytalk_backend.portrait.rig import rig_of
    from steadytalk_shared import render_contract as rc

    portrait, _ = grid_portrait
    rig = rig_of(portrait)
    assert rig.vertices.shape == (len(rig.uvs), 3) and rig.deltas.shape[0] == len(rig.shape_names)
    assert rig.texture.shape == portrait.video.shape and (rig.uvs >= 0).all() and (rig.uvs <= 1).all()
    height, width = portrait.video.shape[:2]
    pixels = rc.project(rig.matrix, rig.vertices[:468])[:, :2]
    uv_pixels = np.stack([rig.uvs[:468, 0] * width, (1 - rig.uvs[:468, 1]) * height], axis=1)
    assert np.abs(pixels - uv_pixels).max() < 1.0  # the mesh lands where its texture is
    assert rig.card[:, 2].max() < rc.project(rig.matrix, rig.vertices)[:, 2].min()  # behind the head


# -- the command line -----------------------------------------------------------------------
def _run(*args):
    env = {k: v for k, v in os.environ.items() if k != "STEADYTALK_DEBUG"}
    command = [sys.executable, "-m", "steadytalk_backend.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)


def test_cli_bad_pictures_leave_no_file(demo_wav, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not pixels")
    ramp = tmp_path / "ramp.png"
    ramp.write_bytes(png(np.tile(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], (240, 1, 3))))
    for picture, fragment in ((text, "is not a picture"), (ramp, "No face was found")):
        out = tmp_path / "out.mp4"
        proc = _run("portrait", picture, "--audio", demo_wav, "--out", out, "--quiet")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and fragment in errors[0], proc.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.jpg", "ramp.png"]


@needs_images
def test_cli_renders_a_portrait(demo_wav, demo_transcript, tmp_path):
    out = tmp_path / "talk.mp4"
    proc = _run("portrait", GRID, "--audio", demo_wav, "--transcript", demo_transcript, "--out", out, "--size", "256",
                "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and "256x204" in proc.stdout and "face 1 of 1" in proc.stdout
    missing = _run("portrait", GRID, "--audio", tmp_path / "none.wav", "--out", tmp_path / "x.mp4")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    tiny = _run("portrait", GRID, "--audio", demo_wav, "--out", tmp_path / "x.mp4", "--size", "64")
    assert tiny.returncode == 2 and "--size 64 is out of range" in tiny.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.mp4"]


# -- the evaluation -------------------------------------------------------------------------
@needs_images
def test_eval_portrait_on_one_held_out_clip(tmp_path, demo_wav):
    from steadytalk_backend.evaluation.portrait import evaluate_portrait, format_portrait_report

    source = IMAGES.parent / "video" / "grid_s1_val"
    clips = tmp_path / "clips"
    clips.mkdir()
    for suffix in (".mpg", ".align", ".16k.wav"):
        (clips / f"lgbm3s{suffix}").symlink_to(source / f"lgbm3s{suffix}")
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    (pictures / GRID.name).symlink_to(GRID)
    (pictures / "notes.txt").write_text("not a picture: listed, skipped")
    report = evaluate_portrait(clips, pictures, tmp_path / "out", log=lambda line: None, sheet_audio=demo_wav)
    rows = report["rows"]
    assert report["clips"] == 1 and report["size"] == [360, 288]
    for name in ("portrait", "still picture"):
        assert 0 < rows[name]["lmd"] < 10 and 15 < rows[name]["psnr_face"] < 50 and 0 < rows[name]["ssim_face"] <= 1
        assert 0 < rows[name]["msi_lips"] <= 2
    # The portrait's mouth opens and closes with the real one; a still picture's does not.
    assert rows["portrait"]["mouth_opening_r"] > 0.4 > rows["still picture"]["mouth_opening_r"]
    sheet = cv2.imread(report["contact_sheet"])
    assert sheet is not None and sheet.shape[0] == 240
    assert "still picture" in format_portrait_report(report)
