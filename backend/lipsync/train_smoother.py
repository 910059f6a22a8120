"""Train the default adaptive smoother, reproducibly, from data this repository regenerates.

Task (until the renderer retrains it jointly, as StableFace does): remove frame-level jitter
while keeping closures and onsets. Clean sequences are the rule engine's curves for random
word sequences from the CMU dictionary (random durations, pauses, loudness, frame rates);
the input is the same curves with injected jitter of the kinds per-frame fitting produces
(white noise per channel, noise shared by all channels, one-frame pops). The loss weights
lip-closure frames and fast transitions, where over-smoothing costs most.

    steadytalk smoother-train --out shared/weights/smoother_default.safetensors
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from steadytalk_shared.curves import Phone, num_frames_for
from steadytalk_shared.schema import CHANNEL_INDEX, NUM_V1_CHANNELS
from steadytalk_shared.smoothing import SmootherConfig
from steadytalk_shared.smoothing import gaussian_smooth as np_gaussian_smooth

from .phonetics import pronunciation_dictionary
from .smoother import AdaptiveSmootherNet, gaussian_smooth, save_smoother
from .visemes import DIPHTHONGS, phones_to_curves

VOWELS = {"AA", "AE", "AH", "AO", "EH", "ER", "IH", "IY", "UH", "UW", *DIPHTHONGS}


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 7
    steps: int = 2500
    batch_size: int = 32
    sequence_frames: int = 192
    learning_rate: float = 3e-3
    # Pool of clean sequences drawn once; noise is drawn fresh every step.
    num_sequences: int = 600
    num_validation: int = 64
    # Frame-level jitter: per-sequence std drawn uniformly in this range (coefficient units).
    noise_min: float = 0.0
    noise_max: float = 0.08
    pop_probability: float = 0.02
    closure_weight: float = 4.0
    transition_weight: float = 4.0


def random_utterance(rng: np.random.Generator, words: list[str], lexicon: dict[str, list[str]]) -> list[Phone]:
    """A random sentence of 3-12 dictionary words with plausible phone durations and pauses."""
    phones: list[Phone] = []
    t = rng.uniform(0.2, 0.6)
    phones.append(Phone("SIL", 0.0, t))
    for _ in range(rng.integers(3, 13)):
        word = words[rng.integers(len(words))]
        rate = rng.uniform(0.75, 1.3)  # speaking rate of this word
        for ph in lexicon[word]:
            name = "".join(c for c in ph if c.isalpha())
            duration = (rng.uniform(0.06, 0.20) if name in VOWELS else rng.uniform(0.035, 0.10)) / rate
            phones.append(Phone(name, t, t + duration, word))
            t += duration
        if rng.random() < 0.15:
            pause = rng.uniform(0.1, 0.5)
            phones.append(Phone("SIL", t, t + pause))
            t += pause
    phones.append(Phone("SIL", t, t + rng.uniform(0.2, 0.6)))
    return phones


def clean_sequence(rng: np.random.Generator, words: list[str], lexicon: dict[str, list[str]]) -> np.ndarray:
    phones = random_utterance(rng, words, lexicon)
    fps = float(rng.choice([24.0, 25.0, 30.0, 30000 / 1001, 50.0, 60.0]))
    duration = phones[-1].end
    n = num_frames_for(duration, fps)
    times = np.arange(n) / fps
    # Synthetic loudness: vowels loud, consonants quieter, silence floor, per-word variation.
    energy = np.full(n, -70.0)
    for p in phones:
        lo, hi = np.searchsorted(times, [p.start, p.end])
        if p.phone != "SIL":
            energy[lo:hi] = (-20.0 if p.phone in VOWELS else -32.0) + rng.normal(0, 4)
    speech = energy > -60.0
    # The smoother reads the v1 columns (mouth and blinks); the upper face is not its job.
    return phones_to_curves(phones, n, fps, energy, speech)[:, :NUM_V1_CHANNELS]


def add_jitter(rng: np.random.Generator, clean: np.ndarray, config: TrainConfig) -> np.ndarray:
    level = rng.uniform(config.noise_min, config.noise_max)
    noisy = clean + rng.normal(0, level, clean.shape)  # per-channel white jitter
    noisy += rng.normal(0, 0.5 * level, (clean.shape[0], 1)) * (clean > 0.02)  # shared, on active channels
    pops = rng.random(clean.shape[0]) < config.pop_probability
    noisy[pops] += rng.normal(0, 3 * level + 1e-3, (int(pops.sum()), clean.shape[1]))
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def frame_weights(clean: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """(B, T) loss weights: lip-closure frames and fast transitions count more."""
    jaw = clean[..., CHANNEL_INDEX["jawOpen"]]
    close = clean[..., CHANNEL_INDEX["mouthClose"]]
    closure = ((close > 0.5 * jaw) & (jaw > 0.02)).float()
    speed = torch.zeros_like(jaw)
    speed[:, 1:-1] = (clean[:, 2:] - clean[:, :-2]).abs().sum(-1)
    speed = speed / speed.mean().clamp_min(1e-6)
    return 1.0 + config.closure_weight * closure + config.transition_weight * speed.clamp(max=3.0) / 3.0


def _crop_batch(rng: np.random.Generator, pool: list[np.ndarray], config: TrainConfig) -> np.ndarray:
    batch = np.zeros((config.batch_size, config.sequence_frames, NUM_V1_CHANNELS), dtype=np.float32)
    for b in range(config.batch_size):
        seq = pool[rng.integers(len(pool))]
        if len(seq) <= config.sequence_frames:
            batch[b, : len(seq)] = seq
            batch[b, len(seq) :] = seq[-1]
        else:
            start = rng.integers(len(seq) - config.sequence_frames)
            batch[b] = seq[start : start + config.sequence_frames]
    return batch


def train(config: TrainConfig, arch: SmootherConfig, log=print) -> tuple[AdaptiveSmootherNet, dict]:
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(config.seed)
    lexicon = pronunciation_dictionary()
    words = sorted(w for w in lexicon if w.isalpha() and 2 <= len(w) <= 9)
    pool = [clean_sequence(rng, words, lexicon) for _ in range(config.num_sequences)]
    val_clean = [clean_sequence(rng, words, lexicon) for _ in range(config.num_validation)]
    val_noisy = [add_jitter(rng, c, config) for c in val_clean]

    net = AdaptiveSmootherNet(arch)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
    started = time.time()
    for step in range(1, config.steps + 1):
        clean = _crop_batch(rng, pool, config)
        noisy = np.stack([add_jitter(rng, c, config) for c in clean])
        clean_t, noisy_t = torch.from_numpy(clean), torch.from_numpy(noisy)
        sigma = net(noisy_t)
        smoothed = gaussian_smooth(noisy_t, sigma, radius=int(np.ceil(3 * arch.sigma_max)))
        error = ((smoothed - clean_t) ** 2).mean(-1)
        loss = (error * frame_weights(clean_t, config)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % 250 == 0 or step == config.steps:
            log(f"step {step}/{config.steps}  loss {loss.item():.6f}  {time.time() - started:.0f}s")

    report = validation_report(net, val_clean, val_noisy)
    log("validation RMSE vs clean: " + ", ".join(f"{k} {v:.4f}" for k, v in report.items()))
    training = {"config": asdict(config), "validation_rmse": report, "seconds": round(time.time() - started, 1)}
    return net, training


def validation_report(net: AdaptiveSmootherNet, clean: list[np.ndarray], noisy: list[np.ndarray]) -> dict:
    """RMSE to the clean curves: jittered input, best fixed Gaussian, adaptive smoother."""

    def rmse(outputs: list[np.ndarray]) -> float:
        return float(
            np.sqrt(np.mean(np.concatenate([(o - c).ravel() ** 2 for o, c in zip(outputs, clean, strict=True)])))
        )

    with torch.no_grad():
        adaptive = [
            gaussian_smooth(torch.from_numpy(n)[None], net(torch.from_numpy(n)[None]))[0].numpy() for n in noisy
        ]
    fixed = {s: rmse([np_gaussian_smooth(n, s) for n in noisy]) for s in (0.5, 0.75, 1.0, 1.5, 2.0)}
    best_sigma = min(fixed, key=fixed.get)
    return {
        "jittered_input": rmse(noisy),
        f"fixed_gaussian_best_sigma_{best_sigma}": fixed[best_sigma],
        "adaptive": rmse(adaptive),
    }


def main(out: str, steps: int | None = None) -> None:
    config = TrainConfig() if steps is None else TrainConfig(steps=steps)
    torch.set_num_threads(2)
    net, training = train(config, SmootherConfig())
    save_smoother(net, out, training)
    print(f"wrote {out} ({net.num_parameters()} parameters)")
