"""Packaging: Blender's own extension command validates the manifest and builds one zip per
platform with only what Blender needs; the built zip installs and works in ``bpy``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("bpy")

REPO = Path(__file__).resolve().parents[1]
PLATFORMS = {"linux_x64": "linux", "windows_x64": "win_amd64", "macos_arm64": "macosx", "macos_x64": "macosx"}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("extension")
    for command in (["validate"], ["build", "--out", str(out)]):
        done = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "extension.py"), *command], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_one_zip_per_platform_with_only_what_blender_needs(built):
    zips = {p.name for p in built.glob("*.zip")}
    assert zips == {f"steadytalk-0.1.0-{platform}.zip" for platform in PLATFORMS}
    for platform, wheel_tag in PLATFORMS.items():
        names = zipfile.ZipFile(built / f"steadytalk-0.1.0-{platform}.zip").namelist()
        tops = {name.split("/")[0] for name in names}
        assert tops == {"__init__.py", "blender_manifest.toml", "LICENSE", "addon", "shared", "wheels"}, tops
        assert "shared/data/face_model.npz" in names and "shared/data/phone_shapes.json" in names
        assert "shared/weights/smoother_default.safetensors" in names
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        wheels = [n for n in names if n.startswith("wheels/")]
        assert {w.split("-")[0].removeprefix("wheels/") for w in wheels} == {"pyzmq", "msgpack"}
        assert all(wheel_tag in w and "cp311" in w for w in wheels), wheels  # only this platform's wheels


def test_the_built_zip_installs_and_lipsyncs(built, backend_process, tmp_path, demo_wav):
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "blender")}
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests" / "blender_install_check.py"),
            str(built / "steadytalk-0.1.0-linux_x64.zip"),
            backend_process[1],
            str(demo_wav),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["message"][0] == "INFO", report
    # Only the channels the result animates are keyed (squint, wide, sneer and others at rest are not).
    assert report["action"] == "SteadyTalk demo_speech" and 10 <= report["fcurves"] < 52
    assert report["bundled_zmq"], "Blender did not install the bundled pyzmq wheel"
