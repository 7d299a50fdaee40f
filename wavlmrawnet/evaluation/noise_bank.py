"""The noise the `noiseN` evaluation conditions add: a bank generated from a seed, with nothing downloaded.

Three families, each drawn with equal chance for a test file:

- **babble**: for each speaker of the corpus, `BABBLE_TALKERS` utterances of *other* corpus speakers summed at equal
  power (so a test file never hears its own speaker in the babble);
- **music**: music-like tones, a melody of chords of harmonic notes with decaying envelopes;
- **channel**: the synthetic corpus's channel noises (`audio_effects.NOISE_KINDS`: white, pink, brown,
  speech-shaped and mains hum).

The bank is the same for every model evaluated with the same seed and corpus; the seed is recorded in the results.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..audio_effects import NOISE_KINDS, fit_length, shaped_noise
from ..audio_io import load_audio

__all__ = [
    "BABBLE_TALKERS",
    "CLIP_SECONDS",
    "NOISE_FAMILIES",
    "NoiseBank",
    "music_like_tones",
    "seeded_rng",
    "speakers_of",
]

BABBLE_TALKERS = 4  # other speakers summed into one babble clip
CLIP_SECONDS = 8.0  # length of every clip of the bank (a longer test file gets a clip tiled from a random offset)
MUSIC_CLIPS = 4
NOISE_FAMILIES = ("babble", "music", "channel")


def seeded_rng(seed: int, *parts: str) -> np.random.Generator:
    """A generator fixed by `seed` and the text `parts` (a condition's name, a file's key): the same audio for every
    run and every model, independent of the order in which files are processed."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return np.random.default_rng([seed, *np.frombuffer(digest[:16], dtype=np.uint32).tolist()])


def _unit_power(signal: np.ndarray) -> np.ndarray:
    power = float(np.mean(np.square(signal)))
    if power == 0.0:
        raise ValueError("a generated noise clip is silent")
    return (signal / np.sqrt(power)).astype(np.float32)


def music_like_tones(num_samples: int, sampling_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power music-like audio: notes of 0.15-0.6 s, each a chord of 1-3 equal-tempered pitches (MIDI 45-84)
    with 6 harmonics at 1/h amplitude and an exponentially decaying envelope."""
    out = np.zeros(num_samples)
    start = 0
    while start < num_samples:
        length = min(int(rng.uniform(0.15, 0.6) * sampling_rate), num_samples - start)
        t = np.arange(length) / sampling_rate
        envelope = np.exp(-t / rng.uniform(0.1, 0.5)) * np.minimum(1.0, t / 0.01)
        for pitch in rng.integers(45, 85, size=int(rng.integers(1, 4))):
            f0 = 440.0 * 2.0 ** ((pitch - 69) / 12)
            for h in range(1, 7):
                if h * f0 < sampling_rate / 2:
                    out[start : start + length] += envelope * np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 6.3)) / h
        start += length
    return _unit_power(out)


@dataclass
class NoiseBank:
    """The bank for one corpus and seed. `speakers` maps each corpus file to its speaker (babble sources).

    Clips are made when first needed and kept: the music and channel clips at once, the babble clip of a speaker
    from `BABBLE_TALKERS` files of other speakers. A corpus of a single speaker has no babble (a `ValueError`).
    """

    seed: int
    sampling_rate: int
    speakers: Mapping[str, str] = field(default_factory=dict)  # corpus file -> speaker
    _clips: dict[str, list[np.ndarray]] = field(default_factory=dict, init=False, repr=False)
    _babble: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def _family(self, family: str) -> list[np.ndarray]:
        if family not in self._clips:
            samples = int(CLIP_SECONDS * self.sampling_rate)
            if family == "music":
                self._clips[family] = [
                    music_like_tones(samples, self.sampling_rate, seeded_rng(self.seed, "music", str(i)))
                    for i in range(MUSIC_CLIPS)
                ]
            else:
                self._clips[family] = [
                    _unit_power(shaped_noise(kind, samples, self.sampling_rate, seeded_rng(self.seed, kind)))
                    for kind in NOISE_KINDS
                ]
        return self._clips[family]

    def babble(self, speaker: str) -> np.ndarray:
        """The babble clip heard with `speaker`'s test files: utterances of other speakers only."""
        if speaker not in self._babble:
            others = sorted({s for s in self.speakers.values() if s != speaker})
            if not others:
                raise ValueError(
                    f"babble noise needs files of at least 2 speakers; the corpus has only {speaker!r} (the speaker "
                    "is the folder two levels above a file, as in VoxCeleb's <speaker>/<video>/<utt>.wav)"
                )
            rng = seeded_rng(self.seed, "babble", speaker)
            talkers = rng.choice(others, size=min(BABBLE_TALKERS, len(others)), replace=False)
            samples = int(CLIP_SECONDS * self.sampling_rate)
            mix = np.zeros(samples)
            for talker in talkers:
                files = sorted(path for path, s in self.speakers.items() if s == talker)
                utterance = load_audio(files[int(rng.integers(len(files)))], self.sampling_rate)
                mix += _unit_power(fit_length(utterance, samples, rng))
            self._babble[speaker] = _unit_power(mix)
        return self._babble[speaker]

    def draw(self, num_samples: int, speaker: str | None, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """(`num_samples` of noise, its family): a family, then a clip and a window of it, all drawn from `rng`.
        Without a known `speaker` (or corpus) babble is not drawn."""
        families = NOISE_FAMILIES if speaker is not None and self.speakers else NOISE_FAMILIES[1:]
        family = families[int(rng.integers(len(families)))]
        if family == "babble":
            clip = self.babble(speaker)
        else:
            clips = self._family(family)
            clip = clips[int(rng.integers(len(clips)))]
        return fit_length(clip, num_samples, rng), family

    def describe(self) -> dict:
        """What the results JSON records about the bank."""
        return {
            "seed": self.seed,
            "families": list(NOISE_FAMILIES),
            "babble_talkers": BABBLE_TALKERS,
            "corpus_speakers": len(set(self.speakers.values())),
            "channel_noises": list(NOISE_KINDS),
            "music_clips": MUSIC_CLIPS,
            "clip_seconds": CLIP_SECONDS,
        }


def speakers_of(keys: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    """{path: speaker}: the folder two levels above the file, as in VoxCeleb's `<speaker>/<video>/<utt>.wav` (relative
    or absolute), or the file's only folder (`<speaker>/<utt>.wav`). `keys` maps paths to their keys (relative trial
    paths), or is a list of paths used as their own keys."""
    items = keys.items() if isinstance(keys, Mapping) else ((k, k) for k in keys)
    speakers = {}
    for path, key in items:
        parts = [part for part in key.replace("\\", "/").split("/") if part]
        speakers[path] = parts[-3] if len(parts) >= 3 else parts[0]
    return speakers
