"""The installed ``steadytalk`` command, run as a user runs it (a subprocess)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from steadytalk_shared.schema import CHANNELS, SCHEMA_VERSION

CLI = [sys.executable, "-m", "steadytalk_backend.cli"]


def run(*args, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != "STEADYTALK_DEBUG"}
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def assert_user_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error:") or "error:" in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def test_lipsync_writes_json_and_csv(demo_wav, demo_transcript, tmp_path):
    out, csv = tmp_path / "curves.json", tmp_path / "curves.csv"
    proc = run("lipsync", demo_wav, "--transcript", demo_transcript, "--fps", "29.97", "--out", out, "--csv", csv)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout and "alignment" in proc.stdout
    data = json.loads(out.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["fps"] == pytest.approx(29.97)
    assert data["channels"] == list(CHANNELS)
    raw, smoothed = np.array(data["raw"]), np.array(data["smoothed"])
    assert raw.shape == smoothed.shape == (len(data["sigma"]), len(CHANNELS))
    assert {"phone", "start", "end", "word"} <= set(data["phones"][1])
    assert len(csv.read_text().splitlines()) == len(raw) + 1


def test_transcript_file_and_smoothing_strength(demo_wav, demo_transcript, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(demo_transcript)
    out = tmp_path / "c.json"
    assert run("lipsync", demo_wav, "--transcript-file", text, "--smoothing", "0", "--out", out).returncode == 0
    data = json.loads(out.read_text())
    assert data["mode"] == "alignment"
    np.testing.assert_allclose(data["raw"], data["smoothed"], atol=1e-5)


def test_missing_audio(tmp_path):
    assert_user_error(run("lipsync", tmp_path / "missing.wav", "--out", tmp_path / "o.json"), "not found")
    assert not (tmp_path / "o.json").exists()


def test_corrupt_audio(tmp_path):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"ID3" + os.urandom(3000))
    assert_user_error(run("lipsync", bad, "--out", tmp_path / "o.json"), "Could not read")


def test_too_long_audio(demo_wav, tmp_path):
    assert_user_error(run("lipsync", demo_wav, "--max-duration", "1", "--out", tmp_path / "o.json"), "limit")


def test_missing_transcript_file(demo_wav, tmp_path):
    proc = run("lipsync", demo_wav, "--transcript-file", tmp_path / "nope.txt", "--out", tmp_path / "o.json")
    assert_user_error(proc, "Transcript file not found")


def test_missing_output_folder_leaves_nothing(demo_wav, tmp_path):
    proc = run("lipsync", demo_wav, "--out", tmp_path / "no" / "such" / "o.json")
    assert_user_error(proc, "Output folder does not exist")


def test_existing_output_is_not_clobbered_by_a_failed_run(tmp_path):
    out = tmp_path / "keep.json"
    out.write_text('{"mine": true}')
    run("lipsync", tmp_path / "missing.wav", "--out", out)
    assert out.read_text() == '{"mine": true}'


@pytest.mark.parametrize(("flag", "value"), [("--fps", "abc"), ("--fps", "0"), ("--smoothing", "-2")])
def test_bad_numbers_are_argparse_errors(demo_wav, tmp_path, flag, value):
    proc = run("lipsync", demo_wav, flag, value, "--out", tmp_path / "o.json")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and flag in proc.stderr


def test_silent_audio_warns(tmp_path):
    import soundfile as sf

    silent = tmp_path / "s.wav"
    sf.write(silent, np.zeros(16000), 16000)
    proc = run("lipsync", silent, "--out", tmp_path / "o.json")
    assert proc.returncode == 0 and "warning:" in proc.stderr and "silent" in proc.stderr


def test_demo_main_job(tmp_path):
    proc = run("demo", "--out", tmp_path / "demo")
    assert proc.returncode == 0, proc.stderr
    for name in ("demo_with_transcript", "demo_without_transcript"):
        assert (tmp_path / "demo" / f"{name}.json").exists() and (tmp_path / "demo" / f"{name}.csv").exists()
    assert "real time" in proc.stdout


def test_help_lists_commands():
    proc = run("--help")
    assert proc.returncode == 0
    for command in ("lipsync", "serve", "eval", "demo", "smoother-train"):
        assert command in proc.stdout


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "steadytalk"
    assert script.exists(), "pip install -e . should create .venv/bin/steadytalk"


def test_output_path_that_is_a_folder(demo_wav, tmp_path):
    proc = run("lipsync", demo_wav, "--out", tmp_path)
    assert_user_error(proc, "is a folder")
    assert list(tmp_path.parent.glob("*.partial")) == []


def test_without_transcript_the_words_heard_are_printed_and_written(demo_wav, tmp_path):
    out = tmp_path / "o.json"
    proc = run("lipsync", demo_wav, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "recognized" in proc.stdout and 'heard        "' in proc.stdout
    assert "loading the word recognizer" in proc.stdout
    data = json.loads(out.read_text())
    assert data["mode"] == "recognized" and data["transcript"]["source"] == "recognized"
    assert data["words"] and {"word", "start", "end"} <= set(data["words"][0])
    phones = run("lipsync", demo_wav, "--recognizer", "phones", "--out", out)
    assert phones.returncode == 0 and json.loads(out.read_text())["mode"] == "phones"


def test_a_model_setting_that_points_nowhere_is_a_user_error(demo_wav, tmp_path):
    proc = run("lipsync", demo_wav, "--asr-model", tmp_path / "nope", "--out", tmp_path / "o.json")
    assert_user_error(proc, "(--asr-model) does not exist")
    assert not (tmp_path / "o.json").exists()
    serve = run("serve", "--bind", "tcp://127.0.0.1:0", "--asr-model", tmp_path)
    assert_user_error(serve, "is not a faster-whisper model folder")
