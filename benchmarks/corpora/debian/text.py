"""Random text in a voice's language: the word lists of words.json, numbers the synthesiser reads in its language."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import numpy as np

# 24 everyday words per language (house, river, morning, green, table, window, journey, people, water, garden,
# yellow, music, station, quickly, number, letter, market, summer, bright, family, village, open, evening, today),
# keyed by language code. They live in words.json beside this file: data, not code, and 37 lists of them.
WORDS: dict[str, tuple[str, ...]] = {
    language: tuple(words)
    for language, words in json.loads(Path(__file__).with_name("words.json").read_text(encoding="utf-8")).items()
}
# RHVoice's language names and espeak-ng codes that are not the word-list key.
_LANGUAGE_ALIASES = {
    "albanian": "sq",
    "brazilian-portuguese": "pt",
    "english": "en",
    "esperanto": "eo",
    "kyrgyz": "ky",
    "macedonian": "mk",
    "polish": "pl",
    "russian": "ru",
    "tatar": "tt",
    "ukrainian": "uk",
    "cmn": "zh",
}
_NUMBER_SHARE = 0.25  # fraction of tokens that are numbers (the synthesiser reads them in its language)


def base_language(code: str) -> str:
    """The word-list key of an espeak-ng language code (``en-uk`` -> ``en``) or RHVoice language name."""
    key = code.strip().lower()
    key = _LANGUAGE_ALIASES.get(key, key)
    key = _LANGUAGE_ALIASES.get(key.split("-")[0], key.split("-")[0])
    if key not in WORDS:
        raise ValueError(f"no built-in word list for language {code!r} (known: {', '.join(sorted(WORDS))})")
    return key


def _number_token(rng: np.random.Generator) -> str:
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return str(int(rng.integers(0, 100)))
    if kind == 1:
        return str(int(rng.integers(100, 10000)))
    if kind == 2:
        return str(int(rng.integers(1900, 2031)))  # a year
    return " ".join(str(int(d)) for d in rng.integers(0, 10, size=int(rng.integers(3, 6))))  # digit by digit


def make_text(language: str, num_tokens: int, rng: np.random.Generator) -> str:
    """Sentences of 4-9 tokens (words of ``language``, about a quarter numbers), ``num_tokens`` tokens in all."""
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
    words = WORDS[base_language(language)]
    sentences = []
    remaining = num_tokens
    while remaining > 0:
        count = min(remaining, int(rng.integers(4, 10)))
        tokens = [_number_token(rng) if rng.random() < _NUMBER_SHARE else str(rng.choice(words)) for _ in range(count)]
        if count > 3 and rng.random() < 0.4:
            comma = int(rng.integers(1, count - 1))
            tokens[comma] += ","
        sentence = " ".join(tokens)
        sentences.append(sentence[0].upper() + sentence[1:] + ".")
        remaining -= count
    return " ".join(sentences)


def slugify(text: str) -> str:
    """An ASCII file-name id: "Letícia-F123" -> "leticia-f123"."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if not slug:
        raise ValueError(f"cannot make a file-name id from {text!r}")
    return slug
