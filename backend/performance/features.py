"""What the performance models hear: the speech timeline per output frame.

From the engine's phones and its 100 Hz energy and pitch: speech and pauses (a pause is
silence of at least ``MIN_PAUSE`` seconds; shorter gaps are part of the phrase), phrase
boundaries and utterance onsets, loudness, pitch in semitones from the speaker's median,
syllable rate, and per vowel a pitch-accent strength (pitch and loudness above the phrase's,
raised brows and nods go with it) and a low-stress strength (loud but low pitch: frowns).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from steadytalk_shared.curves import Phone

RATE = 100.0  # Hz of the energy and pitch tracks (the engine's 10 ms hop)
MIN_PAUSE = 0.15
VOWELS = frozenset("AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split())
SILENCES = frozenset({"SIL", "sil", "SP", "+NSN+", "+SPN+", ""})


@dataclass
class SpeechTimeline:
    fps: float
    speech: np.ndarray  # (T,) bool
    pause_length: np.ndarray  # (T,) seconds of the pause the frame is in (0 in speech)
    since_pause: np.ndarray  # (T,) seconds since the current pause began (inf in speech)
    since_speech: np.ndarray  # (T,) seconds since the current stretch of speech began (inf in pauses)
    until_speech: np.ndarray  # (T,) seconds until speech resumes (0 in speech, inf at the end)
    energy: np.ndarray  # (T,) loudness in [0, 1] over this clip's speech
    pitch: np.ndarray  # (T,) semitones from the median voiced pitch, 0 unvoiced
    syllable_rate: np.ndarray  # (T,) vowels per second of speech around the frame
    accent: np.ndarray  # (T,) pitch-accent strength at vowel frames, 0 elsewhere
    low_stress: np.ndarray  # (T,) loud low-pitch strength at vowel frames
    beats: np.ndarray  # (B,) seconds of accented vowel onsets (prosodic beats)

    @property
    def num_frames(self) -> int:
        return len(self.speech)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def speech_timeline(
    phones: list[Phone], energy_db: np.ndarray, f0: np.ndarray, num_frames: int, fps: float
) -> SpeechTimeline:
    times = np.arange(num_frames) / fps
    spoken = [p for p in phones if p.phone not in SILENCES]
    speech = np.zeros(num_frames, bool)
    for p in spoken:
        speech[(times >= p.start) & (times < p.end)] = True
    # gaps shorter than MIN_PAUSE belong to the phrase
    for lo, hi in _runs(~speech):
        if 0 < lo and hi < num_frames and (hi - lo) / fps < MIN_PAUSE:
            speech[lo:hi] = True
    pause_length = np.zeros(num_frames)
    since_pause = np.full(num_frames, np.inf)
    since_speech = np.full(num_frames, np.inf)
    until_speech = np.zeros(num_frames)
    for lo, hi in _runs(~speech):
        pause_length[lo:hi] = (hi - lo) / fps
        since_pause[lo:hi] = (np.arange(hi - lo)) / fps
        until_speech[lo:hi] = np.inf if hi == num_frames else (hi - np.arange(lo, hi)) / fps
    for lo, hi in _runs(speech):
        since_speech[lo:hi] = np.arange(hi - lo) / fps

    at = np.clip(np.round(times * RATE).astype(int), 0, max(len(energy_db) - 1, 0))
    energy = np.asarray(energy_db, np.float64)[at] if len(energy_db) else np.full(num_frames, -100.0)
    if speech.any():
        low, high = np.percentile(energy[speech], [10, 95])
        energy = np.clip((energy - low) / max(high - low, 1e-6), 0.0, 1.0)
    else:
        energy = np.zeros(num_frames)
    f0_frames = np.asarray(f0, np.float64)[np.clip(at, 0, max(len(f0) - 1, 0))] if len(f0) else np.zeros(num_frames)
    voiced = f0_frames > 0
    median = np.median(f0_frames[voiced]) if voiced.any() else 100.0
    pitch = np.where(voiced, 12.0 * np.log2(np.maximum(f0_frames, 1.0) / median), 0.0)

    vowels = [p for p in spoken if p.phone.rstrip("012") in VOWELS]
    rate = np.zeros(num_frames)
    centres = np.array([0.5 * (p.start + p.end) for p in vowels])
    speaking = np.convolve(speech.astype(float), np.ones(int(2 * fps) | 1), "same") / fps  # s of speech in 2 s
    if len(centres):
        counts = np.array([np.sum(np.abs(centres - t) <= 1.0) for t in times])
        rate = np.where(speaking > 0.3, counts / np.maximum(speaking, 0.3), 0.0)
    accent, low_stress, beats = np.zeros(num_frames), np.zeros(num_frames), []
    spread = np.std(pitch[voiced]) if voiced.sum() > 2 else 2.0
    for p in vowels:
        lo, hi = np.searchsorted(times, [p.start, p.end])
        if hi <= lo:
            continue
        v = voiced[lo:hi]
        peak_pitch = pitch[lo:hi][v].max() if v.any() else 0.0
        loud = energy[lo:hi].max()
        up = max(0.0, peak_pitch / max(spread, 0.5) - 0.5) * loud
        down = max(0.0, -peak_pitch / max(spread, 0.5) - 0.5) * loud
        accent[lo:hi] = min(up, 3.0)
        low_stress[lo:hi] = min(down, 3.0)
        if up > 0.5 or loud > 0.85:
            beats.append(p.start)
    return SpeechTimeline(
        fps=float(fps),
        speech=speech,
        pause_length=pause_length,
        since_pause=since_pause,
        since_speech=since_speech,
        until_speech=until_speech,
        energy=energy,
        pitch=pitch,
        syllable_rate=rate,
        accent=accent,
        low_stress=low_stress,
        beats=np.array(beats),
    )
