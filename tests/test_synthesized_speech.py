"""Fresh sentences spoken by espeak-ng in two voices (not the bundled clip): the engine
must align them and seal the lips on every bilabial."""

import shutil
import subprocess

import numpy as np
import pytest

from steadytalk_shared.schema import lip_aperture

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (scripts/setup.sh)")

SENTENCES = [
    "Bob made my puppy a big map of the moon.",
    "Please pass the bread and butter, Pamela.",
]


@pytest.mark.parametrize("voice", ["en-us", "en-gb+f3"])
@pytest.mark.parametrize("sentence", SENTENCES)
def test_bilabials_close_in_new_speech(engine, tmp_path, voice, sentence):
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-w", str(wav), sentence], check=True)
    result = engine.run(wav, sentence, fps=30.0)
    assert result.mode == "alignment"
    aperture = lip_aperture(result.smoothed)
    peak = np.percentile(aperture, 95)
    bilabials = [p for p in result.phones if p.phone in {"P", "B", "M"}]
    assert len(bilabials) >= 5
    closed = [aperture[int(p.start * 30) : int(np.ceil(p.end * 30)) + 1].min() <= 0.2 * peak for p in bilabials]
    assert all(closed), [p for p, ok in zip(bilabials, closed, strict=True) if not ok]
