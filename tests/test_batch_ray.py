"""``render --batch --ray``: the Ray path of the batch renderer (the optional ``[scale]`` extra),
against a local Ray started by the test, on a tiny trained avatar; it must write what the local
batch writes. Skipped when Ray is not installed; without it ``--ray`` is a one-line error."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import av
import numpy as np
import pytest

from steadytalk_backend.cli import main


def _frames(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _batch(trained_avatar, tmp_path):
    good = trained_avatar / "audio.wav"
    shutil.copyfile(good, tmp_path / "second.wav")
    (tmp_path / "broken.wav").write_text("not audio")
    listing = tmp_path / "jobs.txt"
    listing.write_text(f"{good}\nbroken.wav\nsecond.wav\tbin blue at s five soon\n")
    return listing


def _report(folder) -> dict:
    return {r["audio"].rsplit("/", 1)[-1]: r for r in json.loads((folder / "batch_report.json").read_text())}


@pytest.mark.slow
def test_ray_batch_writes_what_the_local_batch_writes(trained_avatar, tmp_path, capsys):
    ray = pytest.importorskip("ray", reason="Ray is the optional [scale] extra: pip install '.[scale]'")
    listing = _batch(trained_avatar, tmp_path)
    argv = ["render", "--avatar", str(trained_avatar), "--batch", str(listing), "--device", "cpu", "--quiet"]
    started = time.perf_counter()
    assert main([*argv, "--out-dir", str(tmp_path / "local")]) == 1  # broken.wav fails, the rest go on
    local_seconds = time.perf_counter() - started

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert ray.cluster_resources().get("CPU") == 2
        assert main([*argv, "--out-dir", str(tmp_path / "ray"), "--ray"]) == 1
    finally:
        ray.shutdown()
    ray_seconds = time.perf_counter() - started
    print(f"local batch {local_seconds:.1f} s, Ray batch {ray_seconds:.1f} s (Ray start-up included)")

    local, remote = _report(tmp_path / "local"), _report(tmp_path / "ray")
    assert {k: v["status"] for k, v in remote.items()} == {k: v["status"] for k, v in local.items()} == {
        "audio.wav": "done", "second.wav": "done", "broken.wav": "failed",
    }  # fmt: skip
    assert remote["broken.wav"]["error"] == local["broken.wav"]["error"]
    here = f"{socket.gethostname()}:{os.getpid()}"
    assert {r["worker"] for r in local.values()} == {here}
    assert len({r["worker"] for r in remote.values()}) == 1 and here not in {r["worker"] for r in remote.values()}
    names = sorted(p.name for p in (tmp_path / "local").glob("*.mp4"))
    assert names == sorted(p.name for p in (tmp_path / "ray").glob("*.mp4")) == ["audio.mp4", "second.mp4"]
    for name in names:
        a, b = _frames(tmp_path / "local" / name), _frames(tmp_path / "ray" / name)
        assert a.shape == b.shape and remote[name.replace(".mp4", ".wav")]["frames"] == len(a)
        # Same network, same frames; the Ray worker runs torch on one thread (float rounding),
        # then both go through the H.264 encoder.
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 0.5, name


def test_ray_flag_without_ray_says_how_to_install_it(tmp_path):
    listing = tmp_path / "jobs.txt"
    listing.write_text("speech.wav\n")
    # A Python in which `import ray` fails, as in an environment without the extra.
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from steadytalk_backend.cli import main\n"
        f"sys.exit(main(['render', '--avatar', {str(tmp_path)!r}, '--batch', {str(listing)!r},"
        f" '--out-dir', {str(tmp_path / 'out')!r}, '--ray']))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install '.[scale]'" in lines[0], run.stderr
    assert not (tmp_path / "out").exists()  # nothing started, nothing written
