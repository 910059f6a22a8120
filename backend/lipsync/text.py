"""Written words to the spoken words a pronunciation dictionary holds.

Typed transcripts and recognized text both pass through here: numbers, years, ordinals,
money and percentages spelled out, common abbreviations expanded, letter-digit codes split
("S5" -> "s five", as Whisper writes GRID's letters), punctuation stripped, lower case.
"""

from __future__ import annotations

import re

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()  # noqa: E501
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINALS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip
ABBREVIATIONS = {
    "mr": "mister", "mrs": "missus", "ms": "miz", "dr": "doctor", "st": "saint", "jr": "junior",
    "sr": "senior", "vs": "versus", "etc": "etcetera", "prof": "professor", "mt": "mount",
    "&": "and", "+": "plus", "@": "at",
}  # fmt: skip


def number_words(n: int) -> str:
    """Cardinal number in words ("one hundred twenty three"); digit by digit past a million."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    if n < 1_000_000:
        rest = n % 1000
        return number_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + number_words(rest))
    return " ".join(_ONES[int(d)] for d in str(n))


def year_words(n: int) -> str:
    """A four-digit year as it is read: 1961 -> nineteen sixty one, 2008 -> two thousand eight."""
    high, low = divmod(n, 100)
    if 2000 <= n < 2010:
        return number_words(n)
    if low == 0:
        return number_words(high) + " hundred"
    return number_words(high) + (" oh " if low < 10 else " ") + number_words(low)


def ordinal_words(n: int) -> str:
    words = number_words(n).split()
    last = words[-1]
    if last in _ORDINALS:
        words[-1] = _ORDINALS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _spell_number(match: re.Match) -> str:
    text = match.group()
    currency, digits, fraction, suffix = match.group("cur"), match.group("int"), match.group("frac"), match.group("suf")
    digits = digits.replace(",", "")
    value = int(digits)
    if suffix and suffix.lower() in ("st", "nd", "rd", "th"):
        return f" {ordinal_words(value)} "
    if not currency and not fraction and len(digits) == 4 and 1100 <= value < 2100 and "," not in text:
        spoken = year_words(value)
    else:
        spoken = number_words(value)
    if fraction:
        spoken += " point " + " ".join(_ONES[int(d)] for d in fraction)
    if suffix == "%":
        spoken += " percent"
    if currency:
        spoken += {"$": " dollars", "£": " pounds", "€": " euros"}[currency]
    return f" {spoken} "


_NUMBER = re.compile(r"(?P<cur>[$£€])?(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<frac>\d+))?(?P<suf>%|st|nd|rd|th)?")


def normalize_transcript(text: str) -> list[str]:
    """Lower-case words the dictionary can know: punctuation stripped, numbers spelled out."""
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z](?![a-z]))", " ", text)  # S5 -> S 5, 5B -> 5 B
    text = _NUMBER.sub(_spell_number, text)
    text = re.sub(r"[&+@]", lambda m: f" {ABBREVIATIONS[m.group()]} ", text)
    words = []
    for raw in re.sub(r"[^a-z' ]+", " ", text.lower()).split():
        word = raw.strip("'")
        if word:
            words += ABBREVIATIONS.get(word, word).split()
    return words
