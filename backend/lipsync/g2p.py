"""Pronunciations for words the CMU dictionary lacks, offline: espeak-ng's phonemes in ARPAbet.

Recognized speech brings words no dictionary holds ("bimblur", "Dashwood", "neighbour"); the
aligner needs a pronunciation for every word, and what matters for the lips is the phonetic
shape, not the spelling. espeak-ng (installed by set-up) reads any spelling with its English
rules; its phoneme mnemonics (``-x``) map onto the 39 ARPAbet phones of the acoustic model.
Without espeak-ng a letter-by-letter reading keeps alignment possible (coarser, never a crash).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from functools import lru_cache

log = logging.getLogger(__name__)

# espeak-ng en-us mnemonics -> ARPAbet (several expand to two phones: r-coloured vowels).
_ESPEAK_TO_ARPABET: dict[str, tuple[str, ...]] = {
    "p": ("P",), "b": ("B",), "t": ("T",), "d": ("D",), "k": ("K",), "g": ("G",),
    "f": ("F",), "v": ("V",), "T": ("TH",), "D": ("DH",), "s": ("S",), "z": ("Z",),
    "S": ("SH",), "Z": ("ZH",), "h": ("HH",), "m": ("M",), "n": ("N",), "N": ("NG",),
    "l": ("L",), "r": ("R",), "w": ("W",), "j": ("Y",), "tS": ("CH",), "dZ": ("JH",),
    "t#": ("T",), "?": ("T",), "n-": ("AH", "N"), "m-": ("AH", "M"), "l-": ("AH", "L"),
    "x": ("K",), "C": ("HH",), "W": ("W",),
    "a": ("AE",), "aa": ("AE",), "a#": ("AH",), "A:": ("AA",), "A": ("AA",), "0": ("AA",),
    "A@": ("AA", "R"), "O:": ("AO",), "O": ("AO",), "O2": ("AO",), "O@": ("AO", "R"),
    "o@": ("AO", "R"), "E": ("EH",), "E2": ("EH",), "e@": ("EH", "R"), "eI": ("EY",),
    "I": ("IH",), "I2": ("IH",), "I#": ("IH",), "i": ("IY",), "i:": ("IY",), "i@": ("IH", "R"),
    "i@3": ("IH", "R"), "U": ("UH",), "u:": ("UW",), "u": ("UW",), "U@": ("UH", "R"),
    "@": ("AH",), "@2": ("AH",), "@5": ("AH",), "@L": ("AH", "L"), "@r": ("ER",), "V": ("AH",),
    "3": ("ER",), "3:": ("ER",), "aI": ("AY",), "aI@": ("AY", "ER"), "aI3": ("AY", "ER"),
    "aU": ("AW",), "aU@": ("AW", "ER"), "oU": ("OW",), "o": ("OW",), "OI": ("OY",),
}  # fmt: skip
# Longest first, so "aI3" is read before "aI" and "tS" before "t".
_SYMBOLS = sorted(_ESPEAK_TO_ARPABET, key=len, reverse=True)

# A letter-by-letter reading for machines without espeak-ng.
_LETTERS: dict[str, tuple[str, ...]] = {
    "a": ("AE",), "b": ("B",), "c": ("K",), "d": ("D",), "e": ("EH",), "f": ("F",), "g": ("G",),
    "h": ("HH",), "i": ("IH",), "j": ("JH",), "k": ("K",), "l": ("L",), "m": ("M",), "n": ("N",),
    "o": ("AA",), "p": ("P",), "q": ("K",), "r": ("R",), "s": ("S",), "t": ("T",), "u": ("AH",),
    "v": ("V",), "w": ("W",), "x": ("K", "S"), "y": ("Y",), "z": ("Z",),
}  # fmt: skip


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def arpabet_from_espeak(mnemonics: str) -> list[str]:
    """ARPAbet phones of one word's espeak-ng ``-x --sep=' '`` output (stress marks dropped)."""
    phones: list[str] = []
    for token in mnemonics.split():
        token = token.lstrip("'%,=")
        while token:
            symbol = next((s for s in _SYMBOLS if token.startswith(s)), None)
            if symbol is None:  # a length or tie mark, or a symbol English never uses
                token = token[1:]
                continue
            phones += _ESPEAK_TO_ARPABET[symbol]
            token = token[len(symbol) :]
    return phones


def letters_to_arpabet(word: str) -> list[str]:
    """A crude reading that at least gives the aligner the right number of lip events."""
    phones: list[str] = []
    for letter in word.lower():
        phones += _LETTERS.get(letter, ())
    return phones or ["AH"]


def pronounce(words: list[str]) -> dict[str, list[str]]:
    """ARPAbet pronunciation of each (normalized, lower-case) word (espeak-ng, cached per word)."""
    unique = [w for w in dict.fromkeys(words) if w]
    return {word: _pronounce_one(word) for word in unique}


@lru_cache(maxsize=4096)
def _pronounce_one(word: str) -> list[str]:
    spelled = re.sub(r"[^a-z']", "", word.lower())
    if not spelled:
        return ["AH"]
    if espeak_available():
        try:
            out = subprocess.run(
                ["espeak-ng", "-q", "-v", "en-us", "-x", "--sep= ", spelled],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout
            phones = arpabet_from_espeak(out)
            if phones:
                return phones
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("espeak-ng could not read %r (%s); spelled it letter by letter", word, exc)
    return letters_to_arpabet(spelled)
