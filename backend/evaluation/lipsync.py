"""`steadytalk eval lipsync DIR`: articulation and stability metrics on GRID-style clips.

For each clip (``NAME.16k.wav`` or ``NAME.wav``, ``NAME.align`` with word times in 1/25000 s,
transcripts in ``transcripts.tsv``) the engine runs in its three modes: aligned to the typed
transcript, aligned to the words it recognized (the default without a transcript), and phone
recognition; the recognizer's word error rate against the transcript is reported. The
lip aperture of the smoothed curves (``steadytalk_shared.schema.lip_aperture``) is scored:

- bilabial closure rate: of the words whose pronunciation starts with P, B or M (CMU
  dictionary; so "em" for the letter m does not count, "please" does), the share where the
  minimum aperture within the first 80 ms of the word is at most 20% of the clip's
  95th-percentile aperture;
- open-vowel rate: of the words containing an open vowel (AA AE AH AO AW AY), the share whose
  maximum aperture inside the word is at least 40% of that percentile;
- rest rate: of the frames in the leading and trailing silence (more than 100 ms away from
  speech, where anticipation and release legitimately move the lips), the share whose aperture
  is at most 20% of that percentile.

Stability: curve MSI (``steadytalk_shared.msi.curve_msi``) of raw, adaptive, fixed-Gaussian
and moving-average curves, with the closure rate of each so over-smoothing shows.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from steadytalk_shared.curves import frame_times
from steadytalk_shared.msi import curve_msi
from steadytalk_shared.schema import lip_aperture
from steadytalk_shared.smoothing import gaussian_smooth, moving_average

from ..errors import SteadyTalkError
from ..lipsync.audio import SAMPLE_RATE, load_audio
from ..lipsync.engine import LipsyncEngine
from ..lipsync.phonetics import pronunciation_dictionary
from ..lipsync.text import normalize_transcript

ALIGN_UNITS_PER_SECOND = 25_000.0
SILENCE_WORDS = {"sil", "sp"}  # GRID marks silence and short pauses as words
BILABIALS = {"P", "B", "M"}
OPEN_VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY"}
CLOSURE_WINDOW = 0.08
CLOSURE_FRACTION = 0.2
OPEN_FRACTION = 0.4
REST_GUARD = 0.1
FIXED_SIGMA = 1.5  # frames: the width that removes most jitter in the training validation
MOVING_AVERAGE_WIDTH = 5


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float


@dataclass
class Clip:
    name: str
    audio: Path | bytes
    words: list[Word]  # including silence entries (SILENCE_WORDS)
    transcript: str


@dataclass
class Counts:
    hits: int = 0
    total: int = 0

    def add(self, hit: bool) -> None:
        self.hits += int(hit)
        self.total += 1

    @property
    def rate(self) -> float:
        return self.hits / self.total if self.total else float("nan")


@dataclass
class Scores:
    closure: Counts = field(default_factory=Counts)
    open_vowel: Counts = field(default_factory=Counts)
    rest: Counts = field(default_factory=Counts)
    msi: list[float] = field(default_factory=list)


def read_align(path: Path) -> list[Word]:
    words = []
    for line in path.read_text().split("\n"):
        parts = line.split()
        if len(parts) == 3:
            words.append(Word(parts[2], int(parts[0]) / ALIGN_UNITS_PER_SECOND, int(parts[1]) / ALIGN_UNITS_PER_SECOND))
    return words


def find_clips(source: Path) -> list[Clip]:
    """Clips of a GRID folder (NAME.align + NAME.16k.wav), or of a joined video with
    ``<stem>.clips.tsv`` and ``<stem>.words.tsv`` beside it (times on the video's timeline)."""
    if source.is_file():
        return _video_clips(source)
    directory = source
    if not directory.is_dir():
        raise SteadyTalkError(
            f"{directory} is neither a folder of clips nor a video.",
            "Pass a folder of GRID clips (.align + audio) or a video with .clips.tsv and .words.tsv beside it.",
        )
    transcripts: dict[str, str] = {}
    tsv = directory / "transcripts.tsv"
    if tsv.exists():
        for line in tsv.read_text().splitlines()[1:]:
            name, _, text = line.split("\t")
            transcripts[name] = text
    clips = []
    for align in sorted(directory.glob("*.align")):
        name = align.stem
        audio = next((p for p in (directory / f"{name}.16k.wav", directory / f"{name}.wav") if p.exists()), None)
        if audio is None:
            continue
        words = read_align(align)
        text = transcripts.get(name) or " ".join(w.word for w in words if w.word not in SILENCE_WORDS)
        clips.append(Clip(name, audio, words, text))
    if not clips:
        raise SteadyTalkError(f"No clips found in {directory}.", "Expected NAME.align with NAME.16k.wav or NAME.wav.")
    return clips


def _video_clips(video: Path) -> list[Clip]:
    clips_tsv, words_tsv = video.with_suffix(".clips.tsv"), video.with_suffix(".words.tsv")
    if not (clips_tsv.exists() and words_tsv.exists()):
        raise SteadyTalkError(f"{video} has no {clips_tsv.name} and {words_tsv.name} beside it.", "")
    samples = load_audio(video)
    words_by_clip: dict[str, list[tuple[float, float, str]]] = {}
    for line in words_tsv.read_text().splitlines()[1:]:
        start, end, word, clip_id = line.split("\t")
        words_by_clip.setdefault(clip_id, []).append((float(start), float(end), word))
    clips = []
    for line in clips_tsv.read_text().splitlines()[1:]:
        _, clip_id, start, end, text = line.split("\t")
        t0, t1 = float(start), float(end)
        buffer = io.BytesIO()
        sf.write(buffer, samples[int(t0 * SAMPLE_RATE) : int(t1 * SAMPLE_RATE)], SAMPLE_RATE, format="WAV")
        words = [Word(w, a - t0, b - t0) for a, b, w in words_by_clip.get(clip_id, [])]
        clips.append(Clip(clip_id, buffer.getvalue(), words, text))
    return clips


def _pronunciation(word: str) -> list[str]:
    """CMU phones of a transcript word (empty when the dictionary lacks it)."""
    return pronunciation_dictionary().get(normalize_transcript(word)[0], [])


def _first_phone(word: str) -> str:
    return next(iter(_pronunciation(word)), "")


def score_clip(aperture: np.ndarray, fps: float, clip: Clip, scores: Scores) -> None:
    times = frame_times(len(aperture), fps)
    reference = np.percentile(aperture, 95)
    speech = [w for w in clip.words if w.word not in SILENCE_WORDS]
    for w in speech:
        in_word = (times >= w.start) & (times <= w.end)
        if _first_phone(w.word) in BILABIALS:
            onset = (times >= w.start) & (times <= w.start + CLOSURE_WINDOW)
            scores.closure.add(bool(onset.any()) and aperture[onset].min() <= CLOSURE_FRACTION * reference)
        phones = set(_pronunciation(w.word))
        if phones & OPEN_VOWELS and in_word.any():
            scores.open_vowel.add(aperture[in_word].max() >= OPEN_FRACTION * reference)
    if speech:
        lead = times < speech[0].start - REST_GUARD
        trail = times > speech[-1].end + REST_GUARD
        for hit in aperture[lead | trail] <= CLOSURE_FRACTION * reference:
            scores.rest.add(bool(hit))


def smoothing_variants(raw: np.ndarray, smoothed: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "raw": raw,
        "adaptive": smoothed,
        f"fixed Gaussian (sigma {FIXED_SIGMA})": gaussian_smooth(raw, FIXED_SIGMA),
        f"moving average ({MOVING_AVERAGE_WIDTH})": moving_average(raw, MOVING_AVERAGE_WIDTH),
    }


def word_error_rate(reference: list[str], hypothesis: list[str]) -> float:
    """(substitutions + deletions + insertions) / reference words, by edit distance."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, start=1):
        current = [i]
        for j, hyp in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1] / max(len(reference), 1)


# The three ways the engine finds phones: (report name, transcript?, recognizer).
MODES = (
    ("typed transcript", True, "words"),
    ("recognized words", False, "words"),
    ("phones only", False, "phones"),
)


def evaluate_lipsync(
    directory: Path, fps: float = 25.0, speech_dir: Path | None = None, log=print, modes: tuple[str, ...] | None = None
) -> dict:
    """The report; ``modes`` picks some of MODES by name (all by default)."""
    engine = LipsyncEngine()
    clips = find_clips(directory)
    chosen = [m for m in MODES if modes is None or m[0] in modes]
    by_mode = {name: Scores() for name, _, _ in chosen}
    errors, reference_words, fell_back = 0.0, 0, 0
    stability: dict[str, Scores] = {}
    for index, clip in enumerate(clips, start=1):
        for mode, typed, recognizer in chosen:
            transcript = clip.transcript if typed else None
            result = engine.run(clip.audio, transcript=transcript, fps=fps, recognizer=recognizer)
            score_clip(lip_aperture(result.smoothed), fps, clip, by_mode[mode])
            if not typed and recognizer == "words":
                reference = normalize_transcript(clip.transcript)
                heard = normalize_transcript(result.transcript["text"]) if result.transcript else []
                errors += word_error_rate(reference, heard) * len(reference)
                reference_words += len(reference)
                fell_back += result.mode != "recognized"
            if transcript is not None:
                for name, curves in smoothing_variants(result.raw, result.smoothed).items():
                    scores = stability.setdefault(name, Scores())
                    score_clip(lip_aperture(curves), fps, clip, scores)
                    scores.msi.append(curve_msi(curves))
        log(f"  [{index}/{len(clips)}] {clip.name}")

    speech_msi: dict[str, list[float]] = {}
    speech_files = sorted(
        p for p in (speech_dir.iterdir() if speech_dir else []) if p.suffix in {".wav", ".flac", ".mp3", ".ogg"}
    )
    for path in speech_files:
        result = engine.run(path, fps=fps, transcript=None)
        for name, curves in smoothing_variants(result.raw, result.smoothed).items():
            speech_msi.setdefault(name, []).append(curve_msi(curves))

    engine.close()
    report = {
        "fps": fps,
        "clips": len(clips),
        "recognizer": {
            "model": engine.word_recognizer().model_name,
            "word_error_rate": errors / max(reference_words, 1),
            "reference_words": reference_words,
            "clips_on_phones": fell_back,
        },
        "articulation": {
            mode: {
                "bilabial_closure_rate": s.closure.rate,
                "bilabial_words": s.closure.total,
                "open_vowel_rate": s.open_vowel.rate,
                "open_vowel_words": s.open_vowel.total,
                "rest_rate": s.rest.rate,
                "rest_frames": s.rest.total,
            }
            for mode, s in by_mode.items()
        },
        "stability": {
            name: {
                "curve_msi_grid": float(np.mean(s.msi)),
                "curve_msi_speech": float(np.mean(speech_msi[name])) if speech_msi.get(name) else None,
                "bilabial_closure_rate": s.closure.rate,
                "open_vowel_rate": s.open_vowel.rate,
            }
            for name, s in stability.items()
        },
        "speech_files": [p.name for p in speech_files],
    }
    return report


def format_report(report: dict) -> str:
    lines = [f"Lip-sync evaluation on {report['clips']} clips at {report['fps']:g} fps", ""]
    lines.append(f"{'':22s}{'closure':>10s}{'open vowel':>12s}{'rest':>8s}")
    for mode, a in report["articulation"].items():
        lines.append(
            f"{mode:22s}{a['bilabial_closure_rate']:>9.1%} {a['open_vowel_rate']:>11.1%} {a['rest_rate']:>7.1%}"
            f"   (n = {a['bilabial_words']} / {a['open_vowel_words']} words, {a['rest_frames']} frames)"
        )
    if "recognizer" in report:
        r = report["recognizer"]
        lines += [
            "",
            f"recognizer word error rate {r['word_error_rate']:.1%} over {r['reference_words']} words "
            f"({r['clips_on_phones']} clips fell back to phones); model {r['model']}",
        ]
    lines += ["", "Stability (curve MSI, higher is steadier; with transcript)", ""]
    lines.append(f"{'':30s}{'MSI GRID':>10s}{'MSI speech':>12s}{'closure':>10s}{'open vowel':>12s}")
    for name, s in report["stability"].items():
        speech = f"{s['curve_msi_speech']:.3f}" if s["curve_msi_speech"] is not None else "-"
        lines.append(
            f"{name:30s}{s['curve_msi_grid']:>10.3f}{speech:>12s}"
            f"{s['bilabial_closure_rate']:>9.1%} {s['open_vowel_rate']:>11.1%}"
        )
    return "\n".join(lines)


def write_report(report: dict, path: Path) -> None:
    path.write_text(json.dumps(report, indent=2) + "\n")
