"""The device, chosen once at the edge: what ``--device`` accepts on this machine, the one-line
errors for what it lacks (on every command that takes the flag), and autocast's precision."""

from __future__ import annotations

import pytest
import torch

from steadytalk_backend.cli import main
from steadytalk_backend.device import DeviceError, autocast, available_devices, default_device, pick_device
from steadytalk_backend.render import distributed
from steadytalk_shared.client import BackendClient

HAS_CUDA = torch.cuda.is_available()


def test_the_default_is_the_best_device_here():
    assert str(default_device()) in {"cuda", "mps", "cpu"}
    assert pick_device() == pick_device("") == default_device()
    assert available_devices()[-1] == "cpu"
    if HAS_CUDA:
        assert default_device().type == "cuda" and "cuda:0" in available_devices()
    assert pick_device("CPU") == pick_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "gpu", "opencl"])
def test_an_unknown_device_names_the_ones_here(name):
    with pytest.raises(DeviceError) as caught:
        pick_device(name)
    message = str(caught.value)
    assert message.startswith(f"Unknown device {name!r}") and "cpu" in message and "\n" not in message


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
def test_cuda_without_cuda_says_what_there_is():
    for name in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(DeviceError, match=r"CUDA was asked for but .*Use one of: .*cpu"):
            pick_device(name)


def test_a_gpu_index_past_the_last_is_refused():
    with pytest.raises(DeviceError, match="CUDA was asked for" if not HAS_CUDA else "There is no cuda:99"):
        pick_device("cuda:99")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has Apple MPS")
def test_mps_where_there_is_none():
    with pytest.raises(DeviceError, match="Apple MPS was asked for but is not available"):
        pick_device("mps")


def test_autocast_is_bf16_on_cuda_only():
    x = torch.ones(4, 4)
    with autocast(torch.device("cpu")):
        assert (x @ x).dtype == torch.float32
    if HAS_CUDA:
        y = x.cuda()
        with autocast(torch.device("cuda")):
            assert (y @ y).dtype == torch.bfloat16


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "{tmp}"],
        ["prepare", "{tmp}/video.mp4", "--out", "{tmp}/avatar"],
        ["render", "--avatar", "{tmp}", "--audio", "{tmp}/a.wav", "--out", "{tmp}/a.mp4"],
        ["render", "--avatar", "{tmp}", "--batch", "{tmp}/jobs.txt", "--out-dir", "{tmp}/out"],
        ["eval", "render", "{tmp}", "--clips", "{tmp}"],
        ["serve", "--bind", "tcp://127.0.0.1:0"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_every_device_flag_is_checked_first_in_one_line(argv, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--device", "tpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: Unknown device 'tpu'. Use one of: "), err
    assert "cpu" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing made


def test_ping_reports_the_renderers_device(server):
    with BackendClient(server.endpoint, timeout=10) as client:
        info = client.ping()
    assert info["device"] == str(default_device())
    assert info["torch"] == torch.__version__
    assert (info["gpu"] is None) == (default_device().type == "cpu")


def test_a_global_batch_must_split_over_the_processes():
    distributed.check_batch(4, distributed.World(1, 2))
    distributed.check_batch(1, distributed.World())
    with pytest.raises(distributed.DistributedError, match="does not split over 3 processes"):
        distributed.check_batch(4, distributed.World(0, 3))
    with pytest.raises(distributed.DistributedError, match="at least one window"):
        distributed.check_batch(0, distributed.World())
    starts = torch.arange(6)
    shares = [distributed.shard(starts, distributed.World(rank, 3)) for rank in range(3)]
    assert torch.equal(torch.cat(shares), starts)  # every window once, in order


def test_one_process_without_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    world, device = distributed.start("cpu")
    assert world == distributed.World() and not world.distributed and device == torch.device("cpu")
