"""Phonetic content with pocketsphinx (its wheel ships the en-us acoustic model, the CMU
dictionary and a phone language model, so nothing is downloaded).

Two modes:
- forced alignment to a transcript (words -> phones with timings; accurate), and
- phone recognition without a transcript (allphone search with the phone LM; noisier).
A transcript that does not match the audio makes alignment fail; we then fall back to
recognition with a warning instead of failing the job (BRIEF section 8).
"""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from pocketsphinx import Decoder, get_model_path

from steadytalk_shared.curves import Phone

from ..errors import TranscriptError
from .audio import SAMPLE_RATE, to_int16
from .g2p import pronounce

FRAME_SECONDS = 0.01  # pocketsphinx's frame rate is 100 frames/s
# Silence added around every utterance before decoding: tightly trimmed clips otherwise make the
# search end inside the last word, which drops it from the alignment or fails it altogether.
PAD_SECONDS = 0.3
SILENCE = "SIL"
# Noise and filler units of the en-us model: mouth at rest for our purposes.
_NON_SPEECH = {"SIL", "+SPN+", "+NSN+", "+BREATH+", "+COUGH+", "+NOISE+", "+UM+", "+UH+", "<sil>", "</s>", "<s>"}


@dataclass(frozen=True)
class RecognizerConfig:
    # Language weight of the phone LM: lower trusts the acoustics more. The LM's prior for
    # "the" turns utterance-initial /b/ into DH. Chosen by a sweep (0.1-3.0) of the bilabial
    # closure rate on the 100 clips of the GRID training video, not on the held-out clips.
    phone_lm_weight: float = 0.25
    # Context-independent phone search is several times faster than triphones at small cost.
    context_independent: bool = True
    # Shortest phone a recognizer may emit, in 10 ms frames (3 = 30 ms, a fast stop burst).
    min_phone_frames: int = 3


def model_dir() -> Path:
    return Path(get_model_path()) / "en-us"


@lru_cache(maxsize=1)
def pronunciation_dictionary() -> dict[str, list[str]]:
    """CMU dictionary of the pocketsphinx wheel: word -> phones (first pronunciation)."""
    entries: dict[str, list[str]] = {}
    with open(model_dir() / "cmudict-en-us.dict", encoding="utf-8") as handle:
        for line in handle:
            word, *phones = line.split()
            if "(" not in word:
                entries.setdefault(word, phones)
    return entries


def _clean_phone(name: str) -> str:
    return SILENCE if name in _NON_SPEECH else re.sub(r"\d", "", name.upper())


def _merge_silences(phones: list[Phone]) -> list[Phone]:
    merged: list[Phone] = []
    for p in phones:
        if merged and p.phone == SILENCE and merged[-1].phone == SILENCE:
            merged[-1] = Phone(SILENCE, merged[-1].start, p.end)
        else:
            merged.append(p)
    return merged


def _decoder(**options: object) -> Decoder:
    """A pocketsphinx decoder on the wheel's en-us acoustic model, quiet, at 16 kHz."""
    return Decoder(hmm=str(model_dir() / "en-us"), samprate=SAMPLE_RATE, loglevel="FATAL", **options)


def _padded_pcm(samples: np.ndarray) -> bytes:
    pad = np.zeros(int(PAD_SECONDS * SAMPLE_RATE), dtype=np.int16)
    return np.concatenate([pad, to_int16(samples), pad]).tobytes()


def _unpad(phones: list[Phone], offset: float, duration: float, pad: float = PAD_SECONDS) -> list[Phone]:
    """Shift phones decoded on padded audio back onto the original timeline, clipped to it."""
    out = []
    for p in phones:
        start = min(max(p.start - pad, 0.0), duration) + offset
        end = min(max(p.end - pad, 0.0), duration) + offset
        if end > start:
            out.append(Phone(p.phone, start, end, p.word))
    return _merge_silences(out)


# Word-initial consonants a small recognizer confuses with B or M, and the index of the
# alternative pronunciations added for them (past the CMU dictionary's own (2)..(4)).
CLOSURE_CONFUSABLE = {"DH", "TH", "V", "F", "D", "G", "N", "L"}
VARIANT_BASE = 90


class Phonetizer:
    """Holds the pocketsphinx decoders (creating one costs ~0.25 s, so they are reused).

    Not thread-safe per instance; the lock makes concurrent use from server workers safe.
    """

    def __init__(self, config: RecognizerConfig | None = None) -> None:
        self.config = config or RecognizerConfig()
        self._lock = threading.Lock()
        self._aligner: Decoder | None = None
        self._strict_aligner: Decoder | None = None
        self._recognizer: Decoder | None = None
        # Pronunciations added for words the dictionary lacks (recognized or typed), given to
        # every aligner, including one created later.
        self._added: dict[str, list[str]] = {}

    def _with_added_words(self, decoder: Decoder) -> Decoder:
        for word, phones in self._added.items():
            decoder.add_word(word, " ".join(phones), update=False)
        return decoder

    def _get_aligner(self) -> Decoder:
        if self._aligner is None:
            self._aligner = self._with_added_words(_decoder(dict=str(model_dir() / "cmudict-en-us.dict")))
        return self._aligner

    def _get_strict_aligner(self) -> Decoder:
        if self._strict_aligner is None:
            self._strict_aligner = self._with_added_words(
                _decoder(
                    dict=str(model_dir() / "cmudict-en-us.dict"),
                    fsgusefiller=False,
                    beam=1e-120,
                    wbeam=1e-100,
                    pbeam=1e-120,
                )
            )
        return self._strict_aligner

    def _get_recognizer(self) -> Decoder:
        if self._recognizer is None:
            self._recognizer = _decoder(
                allphone=str(model_dir() / "en-us-phone.lm.bin"),
                allphone_ci=self.config.context_independent,
                lw=self.config.phone_lm_weight,
            )
        return self._recognizer

    def warm_aligners(self) -> None:
        """Make both aligners now (each loads the acoustic model and the dictionary)."""
        with self._lock:
            self._get_aligner()
            self._get_strict_aligner()

    def unknown_words(self, words: list[str]) -> list[str]:
        """Words the aligner's pronunciation dictionary does not know."""
        with self._lock:
            aligner = self._get_aligner()
            return [w for w in words if aligner.lookup_word(w) is None]

    def add_pronunciations(self, words: list[str]) -> dict[str, list[str]]:
        """Give the aligners a pronunciation (offline G2P) for each word they do not know;
        returns what was added, so callers can say which words were read by rule."""
        with self._lock:
            aligner = self._get_aligner()
            missing = [w for w in dict.fromkeys(words) if w not in self._added and aligner.lookup_word(w) is None]
        added = pronounce(missing) if missing else {}
        self.add_known_pronunciations(added)
        return added

    def add_known_pronunciations(self, pronunciations: dict[str, list[str]]) -> None:
        """Add pronunciations made elsewhere (by another process's G2P) to this one's aligners."""
        with self._lock:
            new = {w: p for w, p in pronunciations.items() if w not in self._added}
            for decoder in (self._aligner, self._strict_aligner):
                if decoder is not None:
                    for word, phones in new.items():
                        decoder.add_word(word, " ".join(phones), update=False)
            self._added.update(new)

    def added_for(self, words: list[str]) -> dict[str, list[str]]:
        """The rule-made pronunciations (and onset variants) of ``words``."""
        wanted = set(words)
        return {w: p for w, p in self._added.items() if w.split("(")[0] in wanted}

    def add_onset_variants(self, words: list[str]) -> None:
        """Let the aligner hear a lip closure the recognizer may have missed: for each (uncertain,
        recognized) word that starts with a consonant often heard in place of B or M (tiny.en
        writes GRID's "bin" as "then"), add the same word starting with B and with M. The
        aligner keeps whichever the audio fits best."""
        with self._lock:
            aligner = self._get_aligner()
            pronunciations = {}
            for word in dict.fromkeys(words):
                base = self._added.get(word) or (aligner.lookup_word(word) or "").split()
                if base and base[0] in CLOSURE_CONFUSABLE and f"{word}({VARIANT_BASE})" not in self._added:
                    for k, onset in enumerate(("B", "M")):
                        pronunciations[f"{word}({VARIANT_BASE + k})"] = [onset, *base[1:]]
        self.add_known_pronunciations(pronunciations)

    def recognize(self, samples: np.ndarray, offset: float = 0.0) -> list[Phone]:
        """Phone recognition of float32 16 kHz ``samples``; times shifted by ``offset`` seconds."""
        pcm = _padded_pcm(samples)
        with self._lock:
            decoder = self._get_recognizer()
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            segments = [(s.word, s.start_frame, s.end_frame + 1) for s in decoder.seg()]
        phones = [
            Phone(_clean_phone(name), start * FRAME_SECONDS, end * FRAME_SECONDS) for name, start, end in segments
        ]
        return _unpad(phones, offset, len(samples) / SAMPLE_RATE)

    def align(
        self, samples: np.ndarray, words: list[str], offset: float = 0.0, min_word_fraction: float = 1.0
    ) -> list[Phone]:
        """Forced alignment of ``words`` (normalized, in-dictionary) to ``samples``.

        Two searches: first on silence-padded audio with optional fillers between words (handles
        pauses and breaths); if that finds no path through every word, a strict search without
        fillers and with wide beams on the audio as it is (succeeds on tightly trimmed,
        pause-free clips such as synthetic speech). Raises TranscriptError when neither fits
        at least ``min_word_fraction`` of the words (recognized words may hold one that was
        never said; a typed transcript must fit whole).
        """
        if not words:
            raise TranscriptError("The transcript is empty.", "Pass the words spoken, or no transcript.")
        duration = len(samples) / SAMPLE_RATE
        attempts = (
            (self._get_aligner, _padded_pcm(samples), PAD_SECONDS),
            (self._get_strict_aligner, to_int16(samples).tobytes(), 0.0),
        )
        failure = ""
        best: tuple[int, list[Phone]] | None = None
        with self._lock:
            for get_decoder, pcm, pad in attempts:
                try:
                    phones = _run_alignment(get_decoder(), pcm, words)
                except RuntimeError as exc:
                    failure = str(exc)
                    continue
                aligned = [w for w, _ in itertools.groupby(p.word for p in phones) if w]
                if len(aligned) == len(words):
                    return _unpad(phones, offset, duration, pad)
                if best is None or len(aligned) > best[0]:
                    best = (len(aligned), _unpad(phones, offset, duration, pad))
                failure = f"only {len(aligned)} of the transcript's {len(words)} words fit the audio"
        if best is not None and best[0] >= min_word_fraction * len(words):
            return best[1]
        raise TranscriptError(
            f"The transcript does not match the audio ({failure}).",
            "Check that it is complete and is the text actually spoken, or run without a transcript.",
        )


def _run_alignment(decoder: Decoder, pcm: bytes, words: list[str]) -> list[Phone]:
    """Word pass then phone pass (pocketsphinx 5 recipe, BRIEF section 8); times on ``pcm``."""
    decoder.set_align_text(" ".join(words))
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    if decoder.seg() is None:
        raise RuntimeError("no path through the words")
    decoder.set_alignment()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    alignment = decoder.get_alignment()
    if alignment is None:
        raise RuntimeError("no phone alignment")
    phones: list[Phone] = []
    for word in alignment:
        word_name = "" if word.name in _NON_SPEECH else re.sub(r"\(\d+\)$", "", word.name)
        for p in word:
            start, end = p.start * FRAME_SECONDS, (p.start + p.duration) * FRAME_SECONDS
            phones.append(Phone(_clean_phone(p.name), start, end, word_name))
    return phones
