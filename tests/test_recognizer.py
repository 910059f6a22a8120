"""Word recognition (faster-whisper tiny.en, bundled) then alignment: real speech of several
speakers, words no dictionary holds, and what must fall back to phones (other languages,
noise, music) or be refused (a model setting that points nowhere)."""

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from steadytalk_backend.lipsync.g2p import arpabet_from_espeak, letters_to_arpabet, pronounce
from steadytalk_backend.lipsync.recognizer import ModelSettingError, WordRecognizer, WordRecognizerConfig, resolve_model
from steadytalk_backend.lipsync.text import normalize_transcript
from steadytalk_shared.schema import lip_aperture

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng not installed (scripts/setup.sh)"
)


def speak(tmp_path, text: str, voice: str = "en-us") -> str:
    wav = tmp_path / f"{voice}-{abs(hash(text))}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), text], check=True)
    return str(wav)


def assert_aligned_in_order(aligned: list[str], heard: list[str]) -> None:
    """The aligned words are the heard ones in order; a piece may leave out up to 15% of its
    words (one the recognizer heard but nobody said) rather than fall back to phones."""
    remaining = iter(heard)
    assert all(word in remaining for word in aligned), (aligned, heard)
    assert len(aligned) >= 0.85 * len(heard), (aligned, heard)


def word_error_rate(reference: list[str], hypothesis: list[str]) -> float:
    from steadytalk_backend.evaluation.lipsync import word_error_rate as wer

    return wer(reference, hypothesis)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("BIM BLUE by S5 soon.", ["bim", "blue", "by", "s", "five", "soon"]),
        (
            "Mr. Fish, in 1961, paid $3 for 5% & more",
            "mister fish in nineteen sixty one paid three dollars for five percent and more".split(),
        ),
        ("the 21st of 2,500", ["the", "twenty", "first", "of", "two", "thousand", "five", "hundred"]),
        ("rock\u2019n\u2019roll it's", ["rock'n'roll", "it's"]),
    ],
)
def test_normalization_of_what_recognizers_write(text, words):
    assert normalize_transcript(text) == words


def test_espeak_mnemonics_map_to_arpabet():
    assert arpabet_from_espeak("b 'I m b l 3:") == ["B", "IH", "M", "B", "L", "ER"]
    assert arpabet_from_espeak("tS 'OI s") == ["CH", "OY", "S"]
    assert arpabet_from_espeak("f 'aI3") == ["F", "AY", "ER"]
    assert letters_to_arpabet("bmp") == ["B", "M", "P"]


@needs_espeak
def test_g2p_reads_words_no_dictionary_holds():
    said = pronounce(["bimblur", "dashwood", "zorblaxian"])
    assert said["bimblur"] == ["B", "IH", "M", "B", "L", "ER"]
    assert said["dashwood"][:2] == ["D", "AE"] and "SH" in said["dashwood"]
    assert said["zorblaxian"][0] == "Z" and "B" in said["zorblaxian"]


@needs_espeak
def test_typed_transcript_with_made_up_words_is_aligned(engine, tmp_path):
    text = "the zorblaxian bimblur moved past my boat"
    result = engine.run(speak(tmp_path, text), text, fps=25.0)
    assert result.mode == "alignment" and result.transcript == {"text": text, "source": "typed"}
    assert [w.word for w in result.words] == text.split()
    aperture = lip_aperture(result.smoothed)
    bimblur = next(w for w in result.words if w.word == "bimblur")
    lo = int(bimblur.start * 25)
    assert aperture[lo : lo + 3].min() <= 0.2 * np.percentile(aperture, 95)  # the b closes the lips


@needs_espeak
@pytest.mark.parametrize("voice", ["de", "es", "fr"])
def test_other_languages_fall_back_to_phones_with_a_warning(engine, tmp_path, voice):
    sentences = {
        "de": "Guten Morgen, ich heiße Anna und wohne seit vielen Jahren in einer kleinen Stadt im Süden.",
        "es": "Buenos días, me llamo Carmen y vivo desde hace muchos años en una pequeña ciudad del norte.",
        "fr": "Bonjour, je m'appelle Pierre et j'habite depuis longtemps dans une petite ville au bord de la mer.",
    }
    result = engine.run(speak(tmp_path, sentences[voice], voice), None, fps=25.0)
    assert result.mode == "phones" and result.transcript is None
    assert any("used phone recognition there" in w for w in result.warnings), result.warnings
    assert lip_aperture(result.smoothed).max() > 0.3  # the mouth still moves with the speech


@pytest.mark.parametrize("kind", ["noise", "music"])
def test_noise_or_music_only_warns(engine, tmp_path, kind):
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 6) / 16000
    if kind == "noise":
        audio = 0.1 * rng.standard_normal(len(t))
    else:
        audio = sum(0.1 * np.sin(2 * np.pi * f * t) * (np.sin(2 * np.pi * 2 * t) > 0) for f in (220, 277, 330, 440))
    path = tmp_path / f"{kind}.wav"
    sf.write(path, audio.astype(np.float32), 16000)
    result = engine.run(path, None, fps=25.0)
    assert result.mode == "phones"
    assert any("used phone recognition there" in w for w in result.warnings)


def test_model_setting_that_points_nowhere_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(ModelSettingError, match=r"\(--asr-model\) does not exist"):
        resolve_model(str(tmp_path / "missing"))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    with pytest.raises(ModelSettingError, match="not a faster-whisper model folder: it has no model.bin"):
        WordRecognizer(WordRecognizerConfig(model=str(tmp_path / "model")))
    monkeypatch.setenv("STEADYTALK_ASR_MODEL", str(tmp_path / "elsewhere"))
    with pytest.raises(ModelSettingError, match="STEADYTALK_ASR_MODEL"):
        resolve_model(None)


def test_another_model_folder_is_used(engine, demo_wav, tmp_path):
    """--asr-model with a copy of the bundled model: loaded from there, same words."""
    from steadytalk_backend.lipsync.recognizer import default_model_path

    copy = tmp_path / "tiny-copy"
    shutil.copytree(default_model_path(), copy)
    recognizer = WordRecognizer(WordRecognizerConfig(model=str(copy)))
    from steadytalk_backend.lipsync.audio import load_audio

    samples = load_audio(demo_wav)
    assert recognizer.model_path == copy
    assert recognizer.recognize(samples).text == engine.word_recognizer().recognize(samples).text


REFERENCES = {
    "jfk_inaugural_1961_11s.flac": "and so my fellow americans ask not what your country can do for you ask what you "
    "can do for your country",
    "vctk_p240_00000.mp3": "the norsemen considered the rainbow as a bridge over which the gods passed from earth "
    "to their home in the sky",
    "librivox_sense_and_sensibility_0870.wav": "and mister john dashwood had then leisure to consider how much there "
    "might be prudently in his power to do for them",
    "pocketsphinx_goforward_16k.wav": "go forward ten meters",
}


SPEECH_FILES = [
    *REFERENCES,
    "librispeech_testother_1688-142285-0000.flac",
    "librispeech_testother_3080-5032-0009.flac",
]


@pytest.mark.parametrize("name", sorted(SPEECH_FILES))
def test_real_speakers_are_recognized_and_aligned(engine, shared_data, name):
    """Every recording of ../shared/data/audio (six speakers; MP3, FLAC, WAV; 3-23 s)."""
    result = engine.run(shared_data / "audio" / name, None, fps=30.0)
    assert result.mode == "recognized" and not result.warnings, result.warnings
    heard = normalize_transcript(result.transcript["text"])
    if name in REFERENCES:
        assert word_error_rate(REFERENCES[name].split(), heard) <= 0.25, heard
    assert_aligned_in_order([w.word for w in result.words], heard)
    aperture = lip_aperture(result.smoothed)
    assert aperture.max() > 0.3 and np.mean(aperture > 0.1) > 0.2


def test_aligner_processes_give_what_aligning_here_gives(demo_wav):
    """The pool's worker processes (fresh interpreters over pipes) and an in-process aligner
    produce the same phones for the same recognized words."""
    from steadytalk_backend.lipsync.engine import EngineConfig, LipsyncEngine

    pooled, here = LipsyncEngine(), LipsyncEngine(EngineConfig(alignment_workers=1))
    try:
        a, b = pooled.run(demo_wav, None, fps=25.0), here.run(demo_wav, None, fps=25.0)
        assert pooled.alignment_pool()._started, "the pool did not start its workers"
    finally:
        pooled.close()
        here.close()
    # The same warnings too (none where every recognized word aligns; on CPUs where tiny.en
    # mishears the demo, both retry the same confident runs).
    assert a.mode == b.mode == "recognized" and a.warnings == b.warnings
    assert [(p.phone, round(p.start, 3), p.word) for p in a.phones] == [
        (p.phone, round(p.start, 3), p.word) for p in b.phones
    ]
