"""Speed benchmark of the lip-sync engine and of the ZeroMQ round trip (prints figures).

    .venv/bin/python benchmarks/bench_lipsync.py [--speech mixed|grid] [--seconds 60] [--fps 30]
        [--repeats 3] [--long-minutes 10]

Speech: ``mixed`` (default) joins the real recordings of ../shared/data/audio (several speakers,
MP3/FLAC/WAV) to the requested length; ``grid`` the GRID s1 held-out clips; without
../shared/data the bundled demo clip, repeated. Reports the word recognizer's load time (once
per process, excluded from the rest), then the median wall time of warm runs and the real-time
factor for the three modes: recognized words (the default without a transcript), phones only,
and forced alignment to a transcript (GRID's own, or for mixed speech the recognized text); the
same through a `steadytalk serve` subprocess on a random loopback port, as a ratio to the direct
call; and the wall time and peak memory of a long file without transcript in a fresh process.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def speech(seconds: float, kind: str = "mixed") -> tuple[np.ndarray, str | None, str]:
    """(16 kHz samples, transcript or None, description) of about ``seconds`` of real speech."""
    from steadytalk_backend.lipsync.audio import SAMPLE_RATE, load_audio

    pieces, words = [], []
    grid = SHARED_DATA / "video" / "grid_s1_val"
    audio_dir = SHARED_DATA / "audio"
    if kind == "mixed" and audio_dir.is_dir():
        files = sorted(p for p in audio_dir.iterdir() if p.suffix in {".wav", ".flac", ".mp3"})
        clips = [load_audio(p) for p in files]
        samples = np.concatenate(clips * int(np.ceil(seconds * SAMPLE_RATE / sum(map(len, clips)))))
        return samples[: int(seconds * SAMPLE_RATE)], None, f"mixed real speech of {len(files)} recordings"
    if grid.is_dir():
        transcripts = dict(line.split("\t")[::2] for line in (grid / "transcripts.tsv").read_text().splitlines()[1:])
        sources = [(grid / f"{name}.16k.wav", text) for name, text in sorted(transcripts.items())]
        description = "GRID s1 held-out clips (real speech), repeated"
    else:
        data = REPO / "backend" / "data"
        sources = [(data / "demo_speech.wav", (data / "demo_speech.txt").read_text().strip())]
        description = "bundled demo clip, repeated"
    total = 0.0
    while total < seconds:
        for path, text in sources:
            audio = load_audio(path)
            pieces.append(audio)
            words.append(text)
            total += len(audio) / SAMPLE_RATE
            if total >= seconds:
                break
    return np.concatenate(pieces), " ".join(words), description


def wav_bytes(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: decoders, caches
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def long_file_run(minutes: float) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of lip-syncing a long file in a fresh process that does
    nothing else (the file is written here first, piece by piece)."""
    samples, _, _ = speech(60.0)
    code = """
import resource, sys, time
from steadytalk_backend.lipsync.engine import LipsyncEngine
started = time.perf_counter()
engine = LipsyncEngine()
engine.load()
engine.run(sys.argv[1], None, fps=30.0)
engine.close()
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        with sf.SoundFile(path, "w", samplerate=16000, channels=1, subtype="PCM_16") as out:
            for _ in range(int(np.ceil(minutes * 60 / (len(samples) / 16000)))):
                out.write(samples)
        result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    wall, peak = result.stdout.split()
    return float(wall), float(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech", choices=("mixed", "grid"), default="mixed")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-minutes", type=float, default=10.0, help="0 to skip the long-file run")
    args = parser.parse_args()

    from steadytalk_backend.lipsync.engine import LipsyncEngine
    from steadytalk_shared.client import BackendClient

    samples, transcript, description = speech(args.seconds, args.speech)
    duration = len(samples) / 16000
    audio = wav_bytes(samples)
    engine = LipsyncEngine()
    loading = engine.load()
    if transcript is None:  # mixed speech has no typed transcript: align to what was heard
        transcript = engine.run(audio, None, fps=args.fps).transcript_text
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"speech: {duration:.1f} s, {description}; curves at {args.fps:g} fps; median of {args.repeats} warm runs")
    print(f"word recognizer ({engine.word_recognizer().model_name}) and aligner processes loaded in {loading:.2f} s\n")

    modes = {
        "recognized": lambda run: run(audio, None, recognizer="words"),
        "phones": lambda run: run(audio, None, recognizer="phones"),
        "alignment": lambda run: run(audio, transcript),
    }
    direct = {mode: timed(lambda m=call: m(lambda a, t, **kw: engine.run(a, t, fps=args.fps, **kw)), args.repeats)
              for mode, call in modes.items()}  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "steadytalk_backend.cli", "serve", "--bind", f"tcp://127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with BackendClient(f"tcp://127.0.0.1:{port}", timeout=120.0) as client:
            client.ping()
            remote = {
                mode: timed(lambda m=call: m(lambda a, t, **kw: client.lipsync(a, t, fps=args.fps, **kw)), args.repeats)
                for mode, call in modes.items()
            }
            ping = timed(lambda: client.ping(), 20)
    finally:
        server.terminate()
        server.wait(timeout=30)
    engine.close()

    print(f"{'mode':14s}{'direct s':>10s}{'x real time':>13s}{'via ZeroMQ s':>14s}{'overhead':>10s}")
    for mode in direct:
        overhead = remote[mode] / direct[mode] - 1.0
        print(
            f"{mode:14s}{direct[mode]:>10.2f}{duration / direct[mode]:>12.1f}x{remote[mode]:>14.2f}{overhead:>+10.1%}"
        )
    print(f"\nping round trip: {ping * 1000:.2f} ms")
    target = 4.0 * duration / 60.0
    verdict = "met" if direct["recognized"] <= target else "MISSED"
    seconds = direct["recognized"]
    print(f"target recognized words: <= {target:.2f} s for {duration:.0f} s of speech: {verdict} ({seconds:.2f} s)")
    if args.long_minutes > 0:
        wall, peak = long_file_run(args.long_minutes)
        print(
            f"\nlong file: {args.long_minutes:g} min without transcript in {wall:.1f} s "
            f"({args.long_minutes * 60 / wall:.0f}x real time), peak memory {peak:.0f} MB"
        )


if __name__ == "__main__":
    main()
