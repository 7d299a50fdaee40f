"""The voices (one real person each): what espeak-ng's MBROLA voices and RHVoice's voice files say, and the seeded
choice of speakers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .text import base_language, slugify


@dataclass(frozen=True)
class Voice:
    """One synthesiser voice. ``speaker`` names the real person (one folder in the corpus)."""

    engine: str  # "mbrola" or "rhvoice" (which synthesiser speaks it)
    name: str  # what the synthesiser is given: espeak-ng voice ("mb-en1") or RHVoice profile ("Slt")
    speaker: str  # speaker id (folder name), e.g. "mbrola-en1", "rhvoice-evgeniy"
    language: str  # language of the text, e.g. "en-uk", "Russian"
    gender: str  # "male", "female" or "unknown"
    package: str  # Debian package holding the voice data

    @property
    def key(self) -> str:
        return f"{self.engine}/{self.name}"


def parse_espeak_mbrola_voices(voices_dir: Path) -> dict[str, dict[str, str]]:
    """espeak-ng's ``voices/mb`` files: ``{espeak voice: {"language", "database", "gender"}}``."""
    voices = {}
    for path in sorted(Path(voices_dir).glob("mb-*")):
        fields: dict[str, str] = {}
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] in ("language", "gender", "mbrola") and parts[0] not in fields:
                fields[parts[0]] = parts[1]
        if "mbrola" in fields and "language" in fields:
            voices[path.name] = {
                "language": fields["language"],
                "database": fields["mbrola"],
                "gender": fields.get("gender", "unknown"),
            }
    return voices


def mbrola_candidates(espeak_voices: Mapping[str, Mapping[str, str]], packages: Iterable[str]):
    """One Voice per MBROLA database that has both a Debian package (``mbrola-<id>``) and espeak-ng's primary
    voice ``mb-<id>`` (variants such as ``mb-de2-en`` reuse the same speaker and are left out).

    Returns ``(voices, unusable)``; ``unusable`` maps package -> why it cannot be used.
    """
    voices, unusable = [], {}
    for package in sorted(packages):
        database = package.removeprefix("mbrola-")
        espeak_name = f"mb-{database}"
        info = espeak_voices.get(espeak_name)
        if info is None:
            unusable[package] = f"espeak-ng has no voice {espeak_name} for this MBROLA database"
            continue
        try:
            base_language(info["language"])
        except ValueError as error:
            unusable[package] = str(error)
            continue
        voices.append(Voice("mbrola", espeak_name, f"mbrola-{database}", info["language"], info["gender"], package))
    return voices, unusable


RHVOICE_LANGUAGE_PACKAGES = {  # RHVoice language folder -> Debian package
    "Albanian": "rhvoice-albanian",
    "Brazilian-Portuguese": "rhvoice-brazilian-portuguese",
    "English": "rhvoice-english",
    "Esperanto": "rhvoice-esperanto",
    "Kyrgyz": "rhvoice-kyrgyz",
    "Macedonian": "rhvoice-macedonian",
    "Polish": "rhvoice-polish",
    "Russian": "rhvoice-russian",
    "Tatar": "rhvoice-tatar",
    "Ukrainian": "rhvoice-ukrainian",
}
RHVOICE_SAME_PERSON = {"aleksandr-hq": "aleksandr", "evgeniy-eng": "evgeniy", "evgeniy-rus": "evgeniy"}


def parse_rhvoice_voices(voices_dir: Path) -> list[Voice]:
    """RHVoice voices from ``<data>/voices/<voice>/voice.info``; voices of one person share a speaker id."""
    voices = []
    for info_path in sorted(Path(voices_dir).glob("*/voice.info")):
        fields = dict(line.split("=", 1) for line in info_path.read_text(encoding="utf-8").splitlines() if "=" in line)
        name, language = fields.get("name", "").strip(), fields.get("language", "").strip()
        if not name or not language:
            raise ValueError(f"{info_path} names no voice name or language")
        slug = slugify(info_path.parent.name)
        person = RHVOICE_SAME_PERSON.get(slug, slug)
        package = RHVOICE_LANGUAGE_PACKAGES.get(language, f"rhvoice-{slugify(language)}")
        voices.append(Voice("rhvoice", name, f"rhvoice-{person}", language, fields.get("gender", "unknown"), package))
    return voices


def select_speakers(voices: Sequence[Voice], max_speakers: int | None, seed: int, salt: int) -> list[Voice]:
    """The voices of a seeded random choice of at most ``max_speakers`` speakers (all when None)."""
    speakers = sorted({v.speaker for v in voices})
    if max_speakers is not None and max_speakers < len(speakers):
        order = np.random.default_rng(np.random.SeedSequence([seed, salt])).permutation(len(speakers))
        chosen = {speakers[i] for i in order[:max_speakers]}
    else:
        chosen = set(speakers)
    return [v for v in voices if v.speaker in chosen]
