"""Audio front-end on real speech in every supported container, and every bad input."""

import numpy as np
import pytest
import soundfile as sf
import soxr

from steadytalk_backend.errors import AudioError, AudioTooLongError
from steadytalk_backend.lipsync.audio import SAMPLE_RATE, AudioConfig, AudioStream, load_audio
from steadytalk_backend.lipsync.prosody import frame_energy_db


@pytest.fixture(scope="module")
def variants(tmp_path_factory, demo_samples):
    """The demo clip re-encoded as 44.1 kHz stereo 24-bit WAV, 48 kHz FLAC, OGG and MP3."""
    samples, rate = demo_samples
    folder = tmp_path_factory.mktemp("formats")
    hi = soxr.resample(samples, rate, 44100)
    stereo = np.stack([hi, 0.5 * hi], axis=1)
    files = {}
    files["wav"] = folder / "speech_44k_stereo_24bit.wav"
    sf.write(files["wav"], stereo, 44100, subtype="PCM_24")
    files["flac"] = folder / "speech_48k.flac"
    sf.write(files["flac"], soxr.resample(samples, rate, 48000), 48000)
    files["ogg"] = folder / "speech.ogg"
    sf.write(files["ogg"], samples, rate, format="OGG", subtype="VORBIS")
    files["mp3"] = folder / "speech.mp3"
    sf.write(files["mp3"], soxr.resample(samples, rate, 22050), 22050, format="MP3")
    return files


@pytest.mark.parametrize("kind", ["wav", "flac", "ogg", "mp3"])
def test_every_format_becomes_16k_mono(variants, demo_samples, kind):
    reference, rate = demo_samples
    audio = load_audio(variants[kind])
    assert audio.dtype == np.float32
    duration = len(reference) / rate
    # MP3 encoders add up to a frame of padding
    assert abs(len(audio) / SAMPLE_RATE - duration) < (0.08 if kind == "mp3" else 0.002)
    n = min(len(audio), len(reference)) - 4000
    if kind != "mp3":
        scale = 0.75 if kind == "wav" else 1.0  # the stereo file is mixed down from L and 0.5 L
        corr = np.corrcoef(audio[:n], scale * reference[:n])[0, 1]
        assert corr > 0.98


def test_bytes_and_path_give_the_same_samples(variants):
    np.testing.assert_array_equal(load_audio(variants["flac"].read_bytes()), load_audio(variants["flac"]))


def test_streaming_chunks_equal_whole_file(variants):
    whole = load_audio(variants["flac"])
    with AudioStream(variants["flac"]) as stream:
        pieces = list(stream.chunks(seconds=0.7))
    assert len(pieces) > 5
    joined = np.concatenate(pieces)
    assert abs(len(joined) - len(whole)) <= 2
    n = min(len(joined), len(whole))
    np.testing.assert_allclose(joined[:n], whole[:n], atol=1e-4)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="not found.*Check the path"):
        load_audio(tmp_path / "nope.wav")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(AudioError, match="is a folder"):
        load_audio(tmp_path)


def test_garbage_bytes_are_reported_as_unreadable(tmp_path):
    bad = tmp_path / "fake.mp3"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError, match="Could not read .*WAV, FLAC, MP3, OGG or M4A"):
        load_audio(bad)


def test_text_file_renamed_wav(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio\n" * 50)
    with pytest.raises(AudioError, match="Could not read"):
        load_audio(bad)


def test_zero_length(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(empty)


def test_longer_than_limit(variants):
    with pytest.raises(AudioTooLongError, match="limit is .*--max-duration"):
        load_audio(variants["wav"], AudioConfig(max_seconds=2.0))


def test_aac_in_mp4_and_m4a_through_ffmpeg(tmp_path, demo_samples):
    """AAC (phone recordings, video soundtracks) is read through PyAV; length from the samples."""
    import av

    samples, rate = demo_samples
    for suffix in ("m4a", "mp4"):
        path = tmp_path / f"speech.{suffix}"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("aac", rate=rate)
            stream.layout = "mono"
            pcm = (samples * 32767).astype(np.int16)
            for start in range(0, len(pcm), 1024):
                frame = av.AudioFrame.from_ndarray(pcm[None, start : start + 1024], format="s16", layout="mono")
                frame.sample_rate = rate
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        audio = load_audio(path)
        assert abs(len(audio) / SAMPLE_RATE - len(samples) / rate) < 0.15  # AAC priming and padding
        # AAC shifts the signal by its encoder delay: compare energy envelopes over small lags
        assert rate == SAMPLE_RATE  # the bundled clip
        reference = frame_energy_db(samples)
        decoded = frame_energy_db(audio)
        n = min(len(reference), len(decoded)) - 20
        best = max(
            np.corrcoef(reference[10 : 10 + n - 10], decoded[10 + lag : 10 + lag + n - 10])[0, 1]
            for lag in range(-8, 9)
        )
        assert best > 0.95


def test_video_without_audio_track(tmp_path):
    import av

    path = tmp_path / "silent_film.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height = 64, 48
        for _ in range(10):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(AudioError, match="has no audio track"):
        load_audio(path)
