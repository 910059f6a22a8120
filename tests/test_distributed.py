"""Training across processes: a real torchrun starts two CPU ranks on gloo (rendezvous on a free
loopback port); they must train the same tiny renderer as one process at the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import unused_loopback_port
from safetensors.torch import load_file

from steadytalk_backend.render import distributed
from steadytalk_backend.render.train_log import read_log

WORKER = Path(__file__).with_name("ddp_train_worker.py")


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.mark.slow
def test_two_gloo_ranks_train_what_one_process_trains(grid_avatar, tmp_path):
    from ddp_train_worker import train

    port = unused_loopback_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(port), str(WORKER), str(grid_avatar), str(tmp_path / "ddp")],
        capture_output=True, text=True, timeout=300, env=env, cwd=WORKER.parent,
    )  # fmt: skip
    ddp_seconds = time.perf_counter() - started
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "rank 0/2" in run.stdout and "rank 1/2" in run.stdout, run.stdout

    torch.set_num_threads(1)
    started = time.perf_counter()
    one = train(grid_avatar, tmp_path / "one", distributed.World(), torch.device("cpu"))
    one_seconds = time.perf_counter() - started
    print(f"two ranks {ddp_seconds:.1f} s wall (torchrun and start-up included), one process {one_seconds:.1f} s")

    ddp, one = tmp_path / "ddp", tmp_path / "one"
    assert not list(ddp.glob("*.partial")), "a write was left half done"
    # Rank 0 alone writes: one log row per epoch (two writers would append each row twice).
    ddp_log, one_log = read_log(ddp / "train_log.tsv"), read_log(one / "train_log.tsv")
    assert [r["step"] for r in ddp_log] == [r["step"] for r in one_log] == [1, 2]
    for ddp_row, one_row in zip(ddp_log, one_log, strict=True):  # the global batch's losses
        for name in ("l1", "lip", "ssim", "temporal", "adversarial", "val_l1"):
            assert ddp_row[name] == pytest.approx(one_row[name], rel=1e-4, abs=1e-6), (name, ddp_row, one_row)

    # The gradient of the first step, seen through Adam's first moment (0.1 of it) after the
    # renderer stage (its one step): the same global batch's gradient to float rounding (measured 5e-6 of each
    # tensor's largest value; a rank that trained its half alone would be off by tens of percent).
    ddp_state = load_file(str(ddp / "train_state.safetensors"))
    one_state = load_file(str(one / "train_state.safetensors"))
    moments = [k for k in one_state if k.startswith("opt.") and k.endswith(".exp_avg")]
    assert len(moments) > 20
    for name in moments:
        scale = float(one_state[name].abs().max()) + 1e-12
        assert float((ddp_state[name] - one_state[name]).abs().max()) <= 1e-4 * scale, name

    # The weights after two Adam steps at lr 2e-3: Adam moves a weight by about lr per step
    # whatever its gradient's size, so rounding in a near-zero gradient can show as a fraction of
    # a step (measured 1.7e-4); a missed sync or a wrong share shows as whole steps.
    ddp_net = load_file(str(ddp / "renderer.safetensors"))
    one_net = load_file(str(one / "renderer.safetensors"))
    assert _max_difference(ddp_net, one_net) < 1e-3
    smoothers = [load_file(str(folder / "smoother.safetensors")) for folder in (ddp, one)]
    assert _max_difference(*smoothers) < 1e-3
    median = torch.cat([(ddp_net[k] - one_net[k]).abs().flatten() for k in one_net]).median()
    assert float(median) < 1e-5, float(median)
