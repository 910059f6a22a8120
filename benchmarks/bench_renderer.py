"""Neural renderer speed: training throughput and inference frames/s at 256 and 512.

    .venv/bin/python benchmarks/bench_renderer.py [--device cuda] [--repeats 5]

Inference is the whole per-frame path of ``AvatarRenderer`` minus video decoding: encoder with
audio fusion, the temporal module over a window of 12 plus its context, decoder, upsampling and
compositing, in bf16 on CUDA. The conditioning (shape pass rasterizer) is timed separately
(``bench_shape_pass.py`` measures it in full). Training is one optimizer step of renderer and
discriminator on windows of 12 frames (no data loading), frames/s = frames per step / time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from steadytalk_backend.device import DeviceError, autocast, pick_device  # noqa: E402
from steadytalk_backend.render.network import (  # noqa: E402
    NeuralRenderer,
    PatchDiscriminator,
    composite,
    feather_mask,
)
from steadytalk_backend.render.presets import PRESETS  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_time(fn, device: torch.device, repeats: int) -> float:
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def bench(preset_name: str, size: int, device: torch.device, repeats: int, windows: int) -> dict:
    config = PRESETS[preset_name].renderer
    work = config.work_size * size // config.size
    from dataclasses import replace

    # A native-resolution preset keeps its mouth window's pixels: a larger crop, a larger window.
    window = tuple(w * size // config.size for w in config.native_window)
    config = replace(config, size=size, work_size=work, native_window=window)
    net = NeuralRenderer(config).to(device)
    frames = 12 * windows
    context = config.context_frames
    h, w = config.network_size
    planes = config.input_planes
    inputs = torch.rand(frames + 2 * context, planes, h, w, device=device)
    audio = torch.randn(frames + 2 * context, 2 * config.audio_context + 1, config.audio_features, device=device)
    background = torch.rand(frames, 3, size, size, device=device)
    erased = (torch.rand(frames, size, size, device=device) > 0.8).float()
    net.eval()

    @torch.no_grad()
    def infer() -> None:
        with autocast(device):
            skips = net.encode(inputs, audio)
            mixed = net.mix(skips[-1], len(inputs))[context : context + frames]
            out = net.decode([s[context : context + frames] for s in skips[:-1]] + [mixed]).float()
        if config.native:
            full = background.clone()
            full[:, :, :h, :w] = out  # pasting the mouth window back
            out = full
        elif work != size:
            out = torch.nn.functional.interpolate(out, size=(size, size), mode="bilinear")
        composite(out, background, feather_mask(erased, config.feather))

    seconds = _median_time(infer, device, repeats)
    result = {"preset": preset_name, "size": size, "work": f"{h}x{w}", "infer_fps": frames / seconds}

    net.train()
    disc = PatchDiscriminator(32 if min(h, w) <= 128 else 64).to(device)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    opt_d = torch.optim.Adam(disc.parameters(), 1e-4)
    batch = PRESETS[preset_name].windows_per_step
    x = torch.rand(12 * batch, planes, h, w, device=device)
    a = torch.randn(12 * batch, 2 * config.audio_context + 1, config.audio_features, device=device)
    target = torch.rand(12 * batch, 3, h, w, device=device)

    def step() -> None:
        with autocast(device):
            out = net(x, a, 12).float()
            score = disc(out, x[:, 4:7]).float()
        loss = (out - target).abs().mean() + 0.01 * ((score - 1) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with autocast(device):
            real = ((disc(target, x[:, 4:7]).float() - 1) ** 2).mean()
            d = real + (disc(out.detach(), x[:, 4:7]).float() ** 2).mean()
        opt_d.zero_grad()
        d.backward()
        opt_d.step()

    seconds = _median_time(step, device, max(2, repeats // 2))
    result["train_fps"] = 12 * batch / seconds
    result["parameters"] = net.num_parameters()
    return result


DEFAULT_RUNS = [
    ("tiny", 256),
    ("tiny-native", 256),
    ("tiny-retrieval", 256),
    ("tiny", 512),
    ("standard", 256),
    ("standard", 512),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: the best one here)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--windows", type=int, default=2, help="windows of 12 frames per inference batch")
    parser.add_argument("--run", dest="runs", nargs=2, action="append", metavar=("PRESET", "SIZE"), help="only these")
    args = parser.parse_args()
    try:
        device = pick_device(args.device)
    except DeviceError as exc:
        parser.exit(2, f"error: {exc}\n")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}")
    print(f"{'preset':14s} {'size':>5s} {'net px':>7s} {'params':>9s} {'infer f/s':>10s} {'train f/s':>10s}")
    runs = [(p, s) for p, s in args.runs] if args.runs else DEFAULT_RUNS
    for preset, size in runs:
        r = bench(preset, int(size), device, args.repeats, args.windows)
        print(
            f"{r['preset']:14s} {r['size']:5d} {r['work']:>7s} {r['parameters']:9,d} "
            f"{r['infer_fps']:10.1f} {r['train_fps']:10.1f}"
        )


if __name__ == "__main__":
    main()
