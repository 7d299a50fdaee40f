"""Who speaks and what they say: synthetic voices, their per-video shifts, and random phone plans.

A speaker is a set of source-filter parameters: F0 mean and range, vocal-tract length (formant scaling) plus an
"accent" (per-vowel formant offsets), formant bandwidths, spectral tilt, jitter, shimmer, breathiness, nasality,
speaking rate and fricative placement. Each "video" (session) shifts the speaker's pitch, effort and rate a little.
Utterances are random phone sequences (vowels, glides, nasals, fricatives, plosives, pauses) with pitch accents;
`wavlmrawnet.synthetic.speech` turns them into sound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Phone",
    "SessionParams",
    "VoiceProfile",
    "draw_session",
    "draw_voice_profile",
    "plan_utterance",
]

# ---------------------------------------------------------------------------
# Phone inventory (formants in Hz for an adult male reference vocal tract)
# ---------------------------------------------------------------------------
VOWELS = {  # F1, F2, F3 (Peterson & Barney averages)
    "iy": (270, 2290, 3010),
    "ih": (390, 1990, 2550),
    "eh": (530, 1840, 2480),
    "ae": (660, 1720, 2410),
    "ah": (520, 1190, 2390),
    "aa": (730, 1090, 2440),
    "ao": (570, 840, 2410),
    "uh": (440, 1020, 2240),
    "uw": (300, 870, 2240),
    "er": (490, 1350, 1690),
}
GLIDES = {"l": (360, 1300, 2700), "r": (420, 1300, 1600), "w": (300, 610, 2200), "y": (260, 2100, 3000)}
NASALS = {  # F1, F2, F3, antiresonance (nasal zero)
    "m": (280, 1100, 2300, 900),
    "n": (280, 1600, 2600, 1600),
    "ng": (280, 2000, 2700, 2800),
}
FRICATIVES = {  # centre Hz, bandwidth Hz, level, voiced
    "s": (5500, 1800, 1.0, False),
    "z": (5500, 1800, 0.6, True),
    "sh": (3000, 1400, 1.0, False),
    "zh": (3000, 1400, 0.6, True),
    "f": (4500, 6000, 0.4, False),
    "v": (4500, 6000, 0.3, True),
    "th": (5000, 5000, 0.35, False),
    "h": (0, 0, 0.0, False),  # aspiration through the vocal tract instead of frication
}
PLOSIVES = {  # burst centre Hz, burst bandwidth Hz, voiced
    "p": (1200, 2500, False),
    "b": (1200, 2500, True),
    "t": (4500, 2500, False),
    "d": (4500, 2500, True),
    "k": (2500, 1200, False),
    "g": (2500, 1200, True),
}
HIGHER_FORMANTS = (3500.0, 4500.0)  # F4, F5 of the reference vocal tract
BASE_BANDWIDTHS = (60.0, 80.0, 120.0, 175.0, 250.0)  # B1..B5 in Hz
_ACCENT_PHONES = tuple(VOWELS) + tuple(GLIDES) + tuple(NASALS)


# ---------------------------------------------------------------------------
# Speakers and sessions
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class VoiceProfile:
    """Everything that identifies one synthetic speaker."""

    female: bool
    f0_hz: float  # mean F0
    f0_range_semitones: float  # size of intonation movements
    declination_semitones_per_s: float
    vocal_tract_scale: float  # formant scaling (1.0 = reference male)
    formant_offsets: tuple[float, ...]  # relative offset per formant F1..F5
    accent: tuple[tuple[float, float, float], ...]  # relative F1-F3 offsets per phone in _ACCENT_PHONES
    bandwidth_scale: float
    tilt_db_per_octave: float  # glottal source roll-off
    jitter: float  # relative period perturbation (std)
    shimmer: float  # relative amplitude perturbation (std)
    breathiness: float  # aspiration-to-voicing amplitude ratio
    nasality: float  # 0..1, nasal coupling on vowels
    nasal_zero_hz: float
    speaking_rate: float  # > 1 is faster
    fricative_scale: float  # scales fricative and burst centre frequencies

    def formants(self, phone: str) -> tuple[float, ...]:
        """F1..F5 (Hz) of ``phone`` in this speaker's vocal tract."""
        if phone in VOWELS:
            base = VOWELS[phone]
        elif phone in GLIDES:
            base = GLIDES[phone]
        elif phone in NASALS:
            base = NASALS[phone][:3]
        else:
            raise KeyError(f"no formant targets for phone {phone!r}")
        accent = self.accent[_ACCENT_PHONES.index(phone)]
        values = [f * (1.0 + a) for f, a in zip(base, accent)] + list(HIGHER_FORMANTS)
        values = [v * self.vocal_tract_scale * (1.0 + o) for v, o in zip(values, self.formant_offsets)]
        for k in range(1, len(values)):  # keep formants ordered and apart
            values[k] = max(values[k], values[k - 1] + 200.0)
        return tuple(values)


@dataclass(frozen=True)
class SessionParams:
    """Per-video (session) shifts of a speaker's voice."""

    f0_shift_semitones: float
    tilt_shift_db_per_octave: float  # vocal effort
    rate_factor: float


@dataclass(frozen=True)
class Phone:
    """Targets of one phone (or sub-phone such as a plosive burst)."""

    seconds: float
    formants: tuple[float, ...] | None = None  # None: glide between neighbours' targets
    voicing: float = 0.0  # glottal pulse amplitude
    aspiration: float = 0.0  # noise through the vocal tract
    frication: float = 0.0  # noise through the frication band-pass
    fric_center_hz: float = 4000.0
    fric_bandwidth_hz: float = 2000.0
    nasal: float = 0.0  # nasal antiresonance strength 0..1
    nasal_zero_hz: float = 1000.0
    accent_semitones: float = 0.0  # pitch accent on this phone
    pause: bool = False  # starts a new intonation phrase


def draw_voice_profile(rng: np.random.Generator) -> VoiceProfile:
    """Draw a random speaker."""
    female = bool(rng.random() < 0.5)
    if female:
        f0 = 205.0 * math.exp(0.12 * rng.standard_normal())
        scale = 1.16 + 0.07 * rng.standard_normal()
    else:
        f0 = 118.0 * math.exp(0.14 * rng.standard_normal())
        scale = 1.0 + 0.07 * rng.standard_normal()
    accent = rng.normal(0.0, [0.08, 0.08, 0.04], size=(len(_ACCENT_PHONES), 3))
    return VoiceProfile(
        female=female,
        f0_hz=float(np.clip(f0, 70.0, 300.0)),
        f0_range_semitones=float(rng.uniform(1.0, 3.5)),
        declination_semitones_per_s=float(rng.uniform(0.5, 2.5)),
        vocal_tract_scale=float(np.clip(scale, 0.85, 1.35)),
        formant_offsets=tuple(float(x) for x in rng.normal(0.0, 0.06, size=5)),
        accent=tuple(tuple(float(x) for x in row) for row in accent),
        bandwidth_scale=float(rng.uniform(0.7, 1.8)),
        tilt_db_per_octave=float(rng.uniform(4.0, 12.0)),
        jitter=float(rng.uniform(0.003, 0.02)),
        shimmer=float(rng.uniform(0.02, 0.12)),
        breathiness=float(rng.uniform(0.03, 0.4)),
        nasality=float(rng.uniform(0.0, 0.5)),
        nasal_zero_hz=float(rng.uniform(900.0, 1500.0)),
        speaking_rate=float(rng.uniform(0.8, 1.25)),
        fricative_scale=float(np.clip(rng.normal(1.0, 0.08), 0.8, 1.2)),
    )


def draw_session(rng: np.random.Generator) -> SessionParams:
    """Draw the per-video shifts of a speaker's voice."""
    return SessionParams(
        f0_shift_semitones=float(rng.normal(0.0, 0.7)),
        tilt_shift_db_per_octave=float(rng.normal(0.0, 1.0)),
        rate_factor=float(np.clip(rng.normal(1.0, 0.05), 0.85, 1.15)),
    )


# ---------------------------------------------------------------------------
# Utterance plan: a phone sequence
# ---------------------------------------------------------------------------
def _vowel(p: VoiceProfile, stretch: float, rng, stressed: bool) -> Phone:
    name = str(rng.choice(list(VOWELS)))
    seconds = rng.uniform(0.09, 0.18) if stressed else rng.uniform(0.06, 0.11)
    accent = p.f0_range_semitones * rng.uniform(0.5, 1.5) if stressed and rng.random() < 0.6 else 0.0
    return Phone(
        seconds * stretch,
        p.formants(name),
        voicing=1.0 if stressed else 0.7,
        nasal=0.5 * p.nasality,
        nasal_zero_hz=p.nasal_zero_hz,
        accent_semitones=accent,
    )


def _consonant(p: VoiceProfile, stretch: float, rng) -> list[Phone]:
    kind = rng.choice(["fricative", "plosive", "nasal", "glide"], p=[0.3, 0.35, 0.15, 0.2])
    if kind == "glide":
        name = str(rng.choice(list(GLIDES)))
        return [Phone(rng.uniform(0.04, 0.08) * stretch, p.formants(name), voicing=0.6)]
    if kind == "nasal":
        name = str(rng.choice(list(NASALS)))
        zero = NASALS[name][3] * p.vocal_tract_scale
        seconds = rng.uniform(0.05, 0.09) * stretch
        return [Phone(seconds, p.formants(name), voicing=0.45, nasal=1.0, nasal_zero_hz=zero)]
    if kind == "fricative":
        name = str(rng.choice(list(FRICATIVES)))
        centre, width, level, voiced = FRICATIVES[name]
        seconds = rng.uniform(0.06, 0.14) * stretch
        if name == "h":
            return [Phone(seconds, aspiration=0.35)]
        return [
            Phone(
                seconds,
                voicing=0.35 if voiced else 0.0,
                frication=level,
                fric_center_hz=centre * p.fricative_scale,
                fric_bandwidth_hz=width,
            )
        ]
    name = str(rng.choice(list(PLOSIVES)))
    centre, width, voiced = PLOSIVES[name]
    centre *= p.fricative_scale
    closure = Phone(rng.uniform(0.04, 0.08) * stretch, voicing=0.12 if voiced else 0.0)
    burst = Phone(rng.uniform(0.008, 0.018), frication=1.0, fric_center_hz=centre, fric_bandwidth_hz=width)
    if voiced:
        return [closure, burst]
    return [closure, burst, Phone(rng.uniform(0.02, 0.05), aspiration=0.25)]


def _word(p: VoiceProfile, stretch: float, rng) -> list[Phone]:
    syllables = int(rng.integers(1, 4))
    stressed = int(rng.integers(0, syllables))
    phones: list[Phone] = []
    for s in range(syllables):
        if rng.random() < 0.8:
            phones += _consonant(p, stretch, rng)
        phones.append(_vowel(p, stretch, rng, stressed=s == stressed))
        if rng.random() < 0.35:
            phones += _consonant(p, stretch, rng)
    return phones


def plan_utterance(
    profile: VoiceProfile, session: SessionParams, seconds: float, rng: np.random.Generator
) -> list[Phone]:
    """Random phone sequence filling ``seconds`` (leading/trailing silence included)."""
    stretch = 1.0 / (profile.speaking_rate * session.rate_factor)
    phones = [Phone(rng.uniform(0.1, 0.3), pause=True)]
    total = phones[0].seconds
    while total < seconds - 0.3:
        word = _word(profile, stretch, rng)
        if rng.random() < 0.2:
            word.append(Phone(rng.uniform(0.08, 0.3), pause=True))
        phones += word
        total += sum(ph.seconds for ph in word)
    phones.append(Phone(0.3, pause=True))  # trailing silence; the signal is cut to length
    return phones
