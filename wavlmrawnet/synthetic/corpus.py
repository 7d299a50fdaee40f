"""Deterministic synthetic speaker corpus in VoxCeleb layout (for the CPU demo and tests).

Voices are source-filter models. A speaker is a set of parameters: F0 mean and
range, vocal-tract length (formant scaling) plus an "accent" (per-vowel formant
offsets), formant bandwidths, spectral tilt, jitter, shimmer, breathiness,
nasality, speaking rate and fricative placement. A glottal pulse train plus
aspiration noise goes through a cascade of formant resonators; frication noise
goes through its own band-pass. Filtering is time-varying, done frame by frame
in the FFT domain (overlap-add), with numpy only.

Utterances are random phone sequences (vowels, glides, nasals, fricatives,
plosives, pauses) with smooth formant transitions and an intonation contour.
Each "video" (session) shifts the speaker's pitch, effort and rate a little.
Every utterance then gets its own random channel (EQ, band limits, optional
reverb, additive noise at 5-30 dB SNR, random level), so the channel carries no
speaker information.

Layout written by :func:`generate_corpus` (same as VoxCeleb1)::

    <root>/train/wav/<speaker>/<video>/<utt>.wav
    <root>/test/wav/<speaker>/<video>/<utt>.wav
    <root>/test/veri_test2.txt   "label path1 path2", paths relative to <root>/test/wav
    <root>/metadata.jsonl        one JSON line per utterance (voice and channel values)

CLI::

    python -m wavlmrawnet.synthetic.corpus --out DIR [--train-speakers N --test-speakers N --seed S ...]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = [
    "ChannelParams",
    "CorpusInfo",
    "Phone",
    "SessionParams",
    "Utterance",
    "VoiceProfile",
    "apply_channel",
    "build_trials",
    "draw_channel",
    "draw_session",
    "draw_voice_profile",
    "generate_corpus",
    "plan_utterance",
    "synthesize_speech",
    "synthesize_utterance",
]

TRIALS_FILENAME = "veri_test2.txt"
METADATA_FILENAME = "metadata.jsonl"
FIRST_SPEAKER_NUMBER = 10001  # speaker ids are id10001, id10002, ...
_SPLIT_CODES = {"train": 1, "test": 2}  # part of every random seed

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

_BLOCK_FRAMES = 64  # frames filtered per FFT call

# Source levels (calibrated so fricatives sit ~10-15 dB below vowels).
_FRICATION_GAIN = 0.018
_ASPIRATION_GAIN = 0.5


# ---------------------------------------------------------------------------
# Parameters
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
class ChannelParams:
    """Per-utterance recording channel."""

    level_dbfs: float  # RMS level of the final mix
    snr_db: float  # active speech power over noise power
    noise_kind: str  # white, pink, brown, speech_shaped or hum
    eq_tilt_db_per_octave: float
    eq_bumps: tuple[tuple[float, float, float], ...]  # (centre Hz, gain dB, width octaves)
    highpass_hz: float
    lowpass_hz: float | None
    reverb_rt60_s: float | None
    reverb_direct_to_reverberant_db: float | None


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


def draw_channel(rng: np.random.Generator, sampling_rate: int) -> ChannelParams:
    """Draw a random recording channel for one utterance."""
    nyquist = sampling_rate / 2
    bumps = tuple(
        (
            float(math.exp(rng.uniform(math.log(150.0), math.log(0.8 * nyquist)))),
            float(rng.normal(0.0, 2.0)),
            float(rng.uniform(0.3, 1.2)),
        )
        for _ in range(int(rng.integers(0, 4)))
    )
    has_lowpass = rng.random() < 0.25
    has_reverb = rng.random() < 0.3
    return ChannelParams(
        level_dbfs=float(rng.uniform(-32.0, -16.0)),
        snr_db=float(rng.uniform(5.0, 30.0)),
        noise_kind=str(rng.choice(["white", "pink", "brown", "speech_shaped", "hum"])),
        eq_tilt_db_per_octave=float(rng.uniform(-1.5, 1.5)),
        eq_bumps=bumps,
        highpass_hz=float(rng.uniform(50.0, 200.0)),
        lowpass_hz=float(rng.uniform(0.5, 0.95) * min(7500.0, nyquist)) if has_lowpass else None,
        reverb_rt60_s=float(rng.uniform(0.15, 0.6)) if has_reverb else None,
        reverb_direct_to_reverberant_db=float(rng.uniform(0.0, 10.0)) if has_reverb else None,
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
        return [Phone(rng.uniform(0.05, 0.09) * stretch, p.formants(name), voicing=0.45, nasal=1.0, nasal_zero_hz=zero)]
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


# ---------------------------------------------------------------------------
# Signal processing helpers
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _FrameGrid:
    """Frame layout of the time-varying filters."""

    sampling_rate: int
    hop: int  # samples between frames (8 ms); frames are 2 * hop long
    nfft: int  # FFT size, leaves >= 30 ms for the filter impulse response

    @classmethod
    def for_rate(cls, sampling_rate: int) -> _FrameGrid:
        hop = sampling_rate // 125
        needed = 2 * hop + 0.03 * sampling_rate
        nfft = min(n for n in (2**k * m for k in range(4, 16) for m in (2, 3)) if n >= needed)
        return cls(sampling_rate, hop, nfft)

    @property
    def frame_seconds(self) -> float:
        return self.hop / self.sampling_rate

    @property
    def bin_hz(self) -> np.ndarray:
        return np.fft.rfftfreq(self.nfft, 1.0 / self.sampling_rate)


def _klatt_coefficients(freq_hz, bandwidth_hz, sampling_rate):
    """(a, b, c) of the Klatt resonator a / (1 - b z^-1 - c z^-2) (unity gain at DC)."""
    c = -np.exp(-2 * np.pi * bandwidth_hz / sampling_rate)
    b = 2 * np.exp(-np.pi * bandwidth_hz / sampling_rate) * np.cos(2 * np.pi * freq_hz / sampling_rate)
    return 1 - b - c, b, c


def _multiply_quadratic(poly: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Row-wise product of polynomials in z^-1: poly * (1 - b z^-1 - c z^-2)."""
    out = np.zeros((poly.shape[0], poly.shape[1] + 2))
    out[:, :-2] += poly
    out[:, 1:-1] -= b[:, None] * poly
    out[:, 2:] -= c[:, None] * poly
    return out


def _evaluate(poly: np.ndarray, grid: _FrameGrid) -> np.ndarray:
    """Row-wise polynomials in z^-1 evaluated on the FFT bins: (frames, bins).

    sum_k p_k exp(-2j pi k m / nfft) is exactly the FFT of the coefficients.
    """
    return np.fft.rfft(poly, grid.nfft, axis=1)


def _resonator_response(freq_hz, bandwidth_hz, grid: _FrameGrid) -> np.ndarray:
    """Response of one resonator per frame, (frames, bins)."""
    a, b, c = _klatt_coefficients(np.asarray(freq_hz, float), np.asarray(bandwidth_hz, float), grid.sampling_rate)
    response = _evaluate(_multiply_quadratic(np.ones((len(a), 1)), b, c), grid)
    np.divide(a[:, None], response, out=response)
    return response


def _tilt_gain(bin_hz: np.ndarray, db_per_octave: float, knee_hz: float = 200.0) -> np.ndarray:
    """Magnitude falling by ``db_per_octave`` above ``knee_hz``."""
    exponent = db_per_octave / (20 * math.log10(2.0))
    return (1.0 + (bin_hz / knee_hz) ** 2) ** (-exponent / 2)


def _highpass_gain(bin_hz: np.ndarray, cutoff_hz: float) -> np.ndarray:
    """2nd-order high-pass magnitude."""
    ratio = (bin_hz / cutoff_hz) ** 2
    return ratio / np.sqrt(1.0 + ratio**2)


def _filter_framewise(signals: list[np.ndarray], responses, n_frames: int, grid: _FrameGrid) -> np.ndarray:
    """Sum of time-varying filters applied to ``signals``.

    ``responses(block)`` returns, for the frames in ``block`` (a slice), one
    (frames, bins) response per signal. Frame t (centred on sample t*hop) is
    Hann-windowed, zero-padded, multiplied by its response in the FFT domain and
    overlap-added. Frames go in blocks to keep the arrays small.
    """
    hop, nfft = grid.hop, grid.nfft
    n = len(signals[0])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(2 * hop) / (2 * hop))  # periodic Hann, sums to 1
    framed = []
    for signal in signals:
        padded = np.zeros((n_frames + 1) * hop)
        padded[hop : hop + n] = signal
        framed.append(np.lib.stride_tricks.sliding_window_view(padded, 2 * hop)[::hop][:n_frames])
    chunks = -(-nfft // hop)  # hop-sized pieces of one output frame
    result = np.zeros((n_frames + chunks) * hop)
    for start in range(0, n_frames, _BLOCK_FRAMES):
        block = slice(start, min(start + _BLOCK_FRAMES, n_frames))
        total = np.zeros((block.stop - start, nfft // 2 + 1), dtype=complex)
        for frames, response in zip(framed, responses(block)):
            spectrum = np.fft.rfft(frames[block] * window, nfft)
            spectrum *= response
            total += spectrum
        out = np.zeros((block.stop - start, chunks * hop))
        out[:, :nfft] = np.fft.irfft(total, nfft)
        for k in range(chunks):  # overlap-add, one hop-sized column piece at a time
            offset = (start + k) * hop
            result[offset : offset + out.shape[0] * hop] += out[:, k * hop : (k + 1) * hop].reshape(-1)
    return result[hop : hop + n]


def _smooth(track: np.ndarray, seconds: float, frame_seconds: float) -> np.ndarray:
    """Hann-kernel moving average over ``seconds`` along axis 0 (edges held)."""
    frames = int(round(seconds / frame_seconds))
    if frames <= 1:
        return track
    kernel = np.hanning(frames + 2)[1:-1]
    kernel /= kernel.sum()
    pad = frames // 2
    padded = np.pad(track, [(pad, frames - 1 - pad)] + [(0, 0)] * (track.ndim - 1), mode="edge")
    return np.apply_along_axis(lambda x: np.convolve(x, kernel, mode="valid"), 0, padded)


def _fill_gaps(values: np.ndarray) -> np.ndarray:
    """Replace NaN rows by the nearest earlier row (or the first valid row at the start)."""
    valid = ~np.isnan(values[:, 0])
    if not valid.any():  # the plan has targets, but none falls inside the signal
        return np.tile(np.array(VOWELS["ah"] + HIGHER_FORMANTS, dtype=float), (len(values), 1))
    index = np.where(valid, np.arange(len(values)), 0)
    np.maximum.accumulate(index, out=index)
    index[: np.argmax(valid)] = np.argmax(valid)
    return values[index]


def _phone_tracks(phones: list[Phone], n_frames: int, frame_seconds: float) -> dict[str, np.ndarray]:
    """Per-frame parameter tracks from the phone targets (smoothed transitions)."""
    ends = np.rint(np.cumsum([ph.seconds for ph in phones]) / frame_seconds).astype(int)
    counts = np.diff(np.concatenate([[0], ends]))
    index = np.repeat(np.arange(len(phones)), counts)
    index = np.concatenate([index, np.full(max(0, n_frames - len(index)), len(phones) - 1)])[:n_frames]

    def column(name):
        return np.array([getattr(ph, name) for ph in phones], dtype=float)[index]

    formants = np.array([ph.formants if ph.formants else [np.nan] * 5 for ph in phones], dtype=float)
    tracks = {
        "formants": _smooth(_fill_gaps(formants[index]), 0.04, frame_seconds),  # formant transitions
        "nasal": _smooth(column("nasal"), 0.03, frame_seconds),
        "nasal_zero_hz": _smooth(column("nasal_zero_hz"), 0.03, frame_seconds),
        "accent_semitones": _smooth(column("accent_semitones"), 0.2, frame_seconds),
    }
    # Source amplitudes get linear ramps between frames when interpolated to samples.
    for name in ("voicing", "aspiration", "frication", "fric_center_hz", "fric_bandwidth_hz"):
        tracks[name] = column(name)
    tracks["in_pause"] = np.array([ph.pause for ph in phones])[index]
    return tracks


def _f0_contour(profile, session, tracks, frame_seconds, rng) -> np.ndarray:
    """F0 (Hz) per frame: declination that resets after pauses, pitch accents, slow wander."""
    n = len(tracks["accent_semitones"])
    since_pause = np.zeros(n)
    elapsed = 0.0
    for i, in_pause in enumerate(tracks["in_pause"]):
        elapsed = 0.0 if in_pause else elapsed + frame_seconds
        since_pause[i] = elapsed
    wander = _smooth(rng.standard_normal((n, 1)), 0.5, frame_seconds)[:, 0]
    wander *= 0.4 * profile.f0_range_semitones / max(wander.std(), 1e-9)
    semitones = (
        session.f0_shift_semitones
        + 0.5 * profile.f0_range_semitones
        - profile.declination_semitones_per_s * np.minimum(since_pause, 3.0)
        + tracks["accent_semitones"]
        + wander
    )
    return np.clip(profile.f0_hz * 2.0 ** (semitones / 12.0), 50.0, 450.0)


def _glottal_pulses(f0_per_sample, voicing_per_sample, jitter, shimmer, sampling_rate, rng) -> np.ndarray:
    """Jittered, shimmered impulse train (fractional positions by linear interpolation)."""
    n = len(f0_per_sample)
    max_pulses = int(n * f0_per_sample.max() / sampling_rate * 1.2) + 8
    period_noise = np.clip(rng.standard_normal(max_pulses), -3, 3) * jitter
    amplitude_noise = rng.standard_normal(max_pulses) * shimmer
    positions = []
    t = rng.uniform(0, sampling_rate / f0_per_sample[0])
    while t < n - 1 and len(positions) < max_pulses:
        positions.append(t)
        t += sampling_rate / f0_per_sample[int(t)] * (1.0 + period_noise[len(positions) - 1])
    positions = np.array(positions)
    whole = positions.astype(int)
    fraction = positions - whole
    amplitude = voicing_per_sample[whole] * np.maximum(0.0, 1.0 + amplitude_noise[: len(whole)])
    pulses = np.zeros(n + 1)
    np.add.at(pulses, whole, amplitude * (1 - fraction))
    np.add.at(pulses, whole + 1, amplitude * fraction)
    return pulses[:n]


def synthesize_speech(
    phones: list[Phone],
    profile: VoiceProfile,
    session: SessionParams,
    num_samples: int,
    sampling_rate: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Clean (channel-free) speech of ``num_samples`` samples for a phone plan."""
    if num_samples < sampling_rate // 10:
        raise ValueError(f"num_samples must cover at least 0.1 s, got {num_samples} at {sampling_rate} Hz")
    if not any(ph.formants for ph in phones):
        raise ValueError("phone plan has no phone with formant targets (vowel, glide or nasal)")
    grid = _FrameGrid.for_rate(sampling_rate)
    n_frames = num_samples // grid.hop + 2
    tracks = _phone_tracks(phones, n_frames, grid.frame_seconds)
    f0 = _f0_contour(profile, session, tracks, grid.frame_seconds, rng)

    sample_times = np.arange(num_samples) / grid.hop
    frame_times = np.arange(n_frames)

    def per_sample(track):
        return np.interp(sample_times, frame_times, track)

    f0_samples, voicing = per_sample(f0), per_sample(tracks["voicing"])
    pulses = _glottal_pulses(f0_samples, voicing, profile.jitter, profile.shimmer, sampling_rate, rng)
    noise_scale = np.sqrt(f0_samples / sampling_rate)  # matches the pulse train's power
    aspiration = rng.standard_normal(num_samples + 1) * _ASPIRATION_GAIN
    aspiration = (aspiration[1:] - 0.9 * aspiration[:-1]) * noise_scale  # +6 dB/octave: brighter than the pulses
    aspiration *= per_sample(tracks["aspiration"]) + profile.breathiness * voicing
    frication = rng.standard_normal(num_samples) * per_sample(tracks["frication"]) * _FRICATION_GAIN

    source_tilt = _tilt_gain(grid.bin_hz, profile.tilt_db_per_octave + session.tilt_shift_db_per_octave)

    def responses(block: slice) -> list[np.ndarray]:
        part = {name: track[block] for name, track in tracks.items()}
        voice = _vocal_tract_responses(part, profile, grid)
        voice *= source_tilt
        return [voice, _frication_responses(part, grid)]

    return _filter_framewise([pulses + aspiration, frication], responses, n_frames, grid)


def _frication_responses(tracks, grid: _FrameGrid) -> np.ndarray:
    """Frication band-pass per frame, unity peak gain, little energy below 1.5 kHz."""
    centre = np.minimum(tracks["fric_center_hz"], 0.45 * grid.sampling_rate)
    response = _resonator_response(centre, tracks["fric_bandwidth_hz"], grid)
    response /= np.abs(response).max(axis=1, keepdims=True)
    response *= _highpass_gain(grid.bin_hz, 1500.0)
    return response


def _vocal_tract_responses(tracks, profile: VoiceProfile, grid: _FrameGrid) -> np.ndarray:
    """Formant cascade with a partial nasal antiresonance, per frame: (frames, bins).

    All resonators are multiplied out into one polynomial so the response costs
    one FFT for the poles and one for the zeros.
    """
    sr = grid.sampling_rate
    formants = np.minimum(tracks["formants"], 0.47 * sr)
    nasal = tracks["nasal"]
    n_frames = len(formants)
    denominator, gain = np.ones((n_frames, 1)), np.ones(n_frames)
    for k, base_bw in enumerate(BASE_BANDWIDTHS):
        bw = np.full(n_frames, base_bw * profile.bandwidth_scale)
        if k == 0:
            bw = bw * (1.0 + nasal)  # nasal coupling damps F1
        a, b, c = _klatt_coefficients(formants[:, k], bw, sr)
        denominator, gain = _multiply_quadratic(denominator, b, c), gain * a
    # Nasal zero mixed in with strength s: (1 - s) + s * (1 - b z^-1 - c z^-2) / a
    a, b, c = _klatt_coefficients(np.minimum(tracks["nasal_zero_hz"], 0.47 * sr), np.full(n_frames, 100.0), sr)
    numerator = np.stack([(1 - nasal) + nasal / a, -nasal * b / a, -nasal * c / a], axis=1)
    response = _evaluate(numerator, grid)
    response /= _evaluate(denominator, grid)
    response *= gain[:, None]
    return response


# ---------------------------------------------------------------------------
# Channel
# ---------------------------------------------------------------------------
def _active_power(signal: np.ndarray, sampling_rate: int) -> float:
    """Mean power over frames within 30 dB of the loudest ones (ignores pauses)."""
    frame = sampling_rate // 50
    usable = len(signal) // frame * frame
    powers = np.mean(signal[:usable].reshape(-1, frame) ** 2, axis=1)
    active = powers[powers >= np.percentile(powers, 95) * 1e-3]
    return float(active.mean())


def _fft_size(n: int) -> int:
    """Power of two >= n (numpy's FFT is slow for lengths with large prime factors)."""
    return 1 << int(math.ceil(math.log2(max(n, 2))))


def _shaped_noise(kind: str, num_samples: int, sampling_rate: int, rng) -> np.ndarray:
    """Unit-power noise of a given colour."""
    size = _fft_size(num_samples)
    spectrum = rng.standard_normal(size // 2 + 1) + 1j * rng.standard_normal(size // 2 + 1)  # white noise
    freqs = np.maximum(np.fft.rfftfreq(size, 1.0 / sampling_rate), 20.0)
    if kind == "pink":
        spectrum /= np.sqrt(freqs)
    elif kind == "brown":
        spectrum /= freqs
    elif kind == "speech_shaped":  # peak around 500 Hz, -12 dB/octave above
        spectrum *= (freqs / 500.0) / (1.0 + (freqs / 500.0) ** 3)
    noise = np.fft.irfft(spectrum, size)[:num_samples]
    if kind == "hum":
        t = np.arange(num_samples) / sampling_rate
        mains = rng.choice([50.0, 60.0])
        noise = 0.1 * noise / noise.std()
        noise += sum(np.sin(2 * np.pi * mains * h * t + rng.uniform(0, 2 * np.pi)) / h for h in (1, 2, 3, 5))
    return noise / noise.std()


def _eq_gain(channel: ChannelParams, freqs: np.ndarray) -> np.ndarray:
    """Magnitude response of the channel EQ and band limits."""
    f = np.maximum(freqs, 1.0)
    db = channel.eq_tilt_db_per_octave * np.log2(np.maximum(f, 50.0) / 1000.0)
    for centre, gain_db, width in channel.eq_bumps:
        db = db + gain_db * np.exp(-0.5 * (np.log2(f / centre) / width) ** 2)
    gain = 10.0 ** (db / 20.0) / np.sqrt(1.0 + (channel.highpass_hz / f) ** 4)
    if channel.lowpass_hz is not None:
        gain = gain / np.sqrt(1.0 + (f / channel.lowpass_hz) ** 8)
    return gain


def _reverberate(signal, channel: ChannelParams, sampling_rate: int, rng) -> np.ndarray:
    """Convolve with an exponentially decaying noise tail after the direct sound."""
    length = int(channel.reverb_rt60_s * sampling_rate)
    t = np.arange(length) / sampling_rate
    tail = rng.standard_normal(length) * np.exp(-6.9 * t / channel.reverb_rt60_s)
    tail[: int(0.0025 * sampling_rate)] = 0.0
    tail *= 10.0 ** (-channel.reverb_direct_to_reverberant_db / 20.0) / np.sqrt(np.sum(tail**2))
    impulse_response = tail
    impulse_response[0] = 1.0  # direct sound
    size = _fft_size(len(signal) + length)
    wet = np.fft.irfft(np.fft.rfft(signal, size) * np.fft.rfft(impulse_response, size), size)
    return wet[: len(signal)]


def apply_channel(
    speech: np.ndarray, channel: ChannelParams, sampling_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Reverb -> EQ -> additive noise at ``snr_db`` -> level, with peaks kept below 0.95."""
    signal = np.asarray(speech, dtype=float)
    if signal.ndim != 1 or len(signal) < sampling_rate // 10:
        raise ValueError(f"speech must be a 1-D signal of at least 0.1 s, got shape {signal.shape}")
    if not np.isfinite(signal).all():
        raise ValueError("speech contains NaN or infinite samples")
    if channel.reverb_rt60_s is not None:
        signal = _reverberate(signal, channel, sampling_rate, rng)
    size = _fft_size(len(signal))
    spectrum = np.fft.rfft(signal, size) * _eq_gain(channel, np.fft.rfftfreq(size, 1.0 / sampling_rate))
    signal = np.fft.irfft(spectrum, size)[: len(signal)]
    speech_power = _active_power(signal, sampling_rate)
    if not speech_power > 0:
        raise ValueError("speech is silent; cannot set an SNR")
    noise = _shaped_noise(channel.noise_kind, len(signal), sampling_rate, rng)
    mix = signal + noise * math.sqrt(speech_power / 10.0 ** (channel.snr_db / 10.0))
    mix *= 10.0 ** (channel.level_dbfs / 20.0) / np.sqrt(np.mean(mix**2))
    peak = np.abs(mix).max()
    return mix * (0.95 / peak) if peak > 0.95 else mix


def synthesize_utterance(
    profile: VoiceProfile,
    session: SessionParams,
    channel: ChannelParams,
    num_samples: int,
    sampling_rate: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """One finished utterance (float64 in [-0.95, 0.95]): plan, voice, channel."""
    phones = plan_utterance(profile, session, num_samples / sampling_rate, rng)
    speech = synthesize_speech(phones, profile, session, num_samples, sampling_rate, rng)
    return apply_channel(speech, channel, sampling_rate, rng)


# ---------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CorpusInfo:
    """Paths and counts of a generated corpus."""

    root: Path
    train_wav_dir: Path
    test_wav_dir: Path
    trials_path: Path
    metadata_path: Path
    train_speakers: tuple[str, ...]
    test_speakers: tuple[str, ...]
    num_train_utterances: int
    num_test_utterances: int
    num_trials: int
    num_target_trials: int
    total_seconds: float
    sampling_rate: int
    seed: int

    @property
    def num_train_speakers(self) -> int:
        return len(self.train_speakers)

    @property
    def num_test_speakers(self) -> int:
        return len(self.test_speakers)


@dataclass(frozen=True)
class Utterance:
    """One written utterance, as used to build trials."""

    speaker: str
    video: str
    relative_path: str  # <speaker>/<video>/<nnnnn>.wav, relative to <split>/wav


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def _video_sizes(num_utterances: int, num_videos: int, rng) -> list[int]:
    """Random split of utterances over videos, at least one each."""
    extra = rng.multinomial(num_utterances - num_videos, rng.dirichlet(np.full(num_videos, 2.0)))
    return [1 + int(x) for x in extra]


def _speaker_utterances(split: str, speaker_index: int, speaker: str, args: dict) -> list[Utterance]:
    """The utterances (paths) of one speaker, before any audio is made."""
    rng = _rng(args["seed"], _SPLIT_CODES[split], speaker_index, 500)
    sizes = _video_sizes(args["utterances_per_speaker"], args["videos_per_speaker"], rng)
    return [
        Utterance(speaker, f"vid{video:02d}", f"{speaker}/vid{video:02d}/{number:05d}.wav")
        for video, size in enumerate(sizes)
        for number in range(1, size + 1)
    ]


def _write_speaker(job: tuple) -> list[dict]:
    """Write all utterances of one speaker; return their metadata rows.

    Every random draw is seeded from (seed, split, speaker, video/utterance), so
    the result does not depend on the order or the process speakers run in.
    """
    split, speaker_index, speaker, wav_dir, args = job
    seed, code, sr = args["seed"], _SPLIT_CODES[split], args["sampling_rate"]
    profile = draw_voice_profile(_rng(seed, code, speaker_index))
    sessions = {}
    metadata = []
    for utt_index, utterance in enumerate(_speaker_utterances(split, speaker_index, speaker, args)):
        if utterance.video not in sessions:
            sessions[utterance.video] = draw_session(_rng(seed, code, speaker_index, 1000 + len(sessions)))
        session = sessions[utterance.video]
        rng = _rng(seed, code, speaker_index, 2000 + utt_index)
        num_samples = int(round(rng.uniform(args["min_seconds"], args["max_seconds"]) * sr))
        channel = draw_channel(rng, sr)
        audio = synthesize_utterance(profile, session, channel, num_samples, sr, rng)
        path = wav_dir / utterance.relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio, sr, subtype="PCM_16", format="WAV")
        metadata.append(_metadata_row(split, utterance.relative_path, profile, session, channel, num_samples / sr))
    return metadata


def _run_jobs(jobs: list[tuple], num_workers: int) -> list[list[dict]]:
    """_write_speaker over all jobs, in order, optionally in worker processes."""
    if num_workers == 1 or len(jobs) <= 1:
        return [_write_speaker(job) for job in jobs]
    # fork needs no re-import of the caller's __main__ (spawn would re-run unguarded scripts)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(min(num_workers, len(jobs)), mp_context=multiprocessing.get_context(method)) as pool:
        return list(pool.map(_write_speaker, jobs))


def _metadata_row(split, relative, profile, session, channel, seconds) -> dict:
    """One metadata.jsonl row: path, speaker, voice (without accent), session and channel values."""
    def rounded(value):
        if isinstance(value, float):
            return round(value, 4)
        if isinstance(value, (list, tuple)):
            return [rounded(v) for v in value]
        return value

    row = {"split": split, "path": relative, "speaker": relative.split("/")[0], "seconds": seconds}
    voice = {k: v for k, v in asdict(profile).items() if k != "accent"}
    row.update({f"voice_{k}": v for k, v in voice.items()})
    row.update({f"session_{k}": v for k, v in asdict(session).items()})
    row.update({f"channel_{k}": v for k, v in asdict(channel).items()})
    return {k: rounded(v) for k, v in row.items()}


def build_trials(
    utterances: list[Utterance], num_trials: int, rng: np.random.Generator
) -> list[tuple[int, str, str]]:
    """Balanced, duplicate-free trials ``(label, path1, path2)``.

    Target pairs come from different videos of the same speaker (any two
    different utterances when a speaker has a single video).
    """
    if num_trials < 2 or num_trials % 2:
        raise ValueError(f"num_trials must be an even number >= 2, got {num_trials}")
    speakers = np.array([u.speaker for u in utterances])
    videos = np.array([f"{u.speaker}/{u.video}" for u in utterances])
    first, second = np.triu_indices(len(utterances), 1)
    same_speaker = speakers[first] == speakers[second]
    multi_video = {s for s in set(speakers) if len(set(videos[speakers == s])) > 1}
    cross_video = videos[first] != videos[second]
    single = ~np.isin(speakers[first], list(multi_video))
    target = np.flatnonzero(same_speaker & (cross_video | single))
    nontarget = np.flatnonzero(~same_speaker)
    half = num_trials // 2
    for name, pool in (("target", target), ("non-target", nontarget)):
        if len(pool) < half:
            raise ValueError(
                f"num_trials={num_trials} needs {half} {name} pairs but the test set only has {len(pool)}; "
                "use fewer trials or more test speakers/utterances"
            )
    chosen = np.concatenate([rng.choice(target, half, replace=False), rng.choice(nontarget, half, replace=False)])
    labels = np.repeat([1, 0], half)
    order = rng.permutation(num_trials)
    swap = rng.random(num_trials) < 0.5
    trials = []
    for i in order:
        a, b = utterances[first[chosen[i]]], utterances[second[chosen[i]]]
        if swap[i]:
            a, b = b, a
        trials.append((int(labels[i]), a.relative_path, b.relative_path))
    return trials


def _validate(args: dict) -> None:
    def check(condition, message):
        if not condition:
            raise ValueError(message)

    check(args["num_train_speakers"] >= 1, f"num_train_speakers must be >= 1, got {args['num_train_speakers']}")
    check(
        args["num_test_speakers"] >= 2,
        f"num_test_speakers must be >= 2 (non-target trials need two), got {args['num_test_speakers']}",
    )
    total = args["num_train_speakers"] + args["num_test_speakers"]
    check(total <= 99999 - FIRST_SPEAKER_NUMBER + 1, f"too many speakers ({total}) for 5-digit ids")
    check(args["videos_per_speaker"] >= 1, f"videos_per_speaker must be >= 1, got {args['videos_per_speaker']}")
    check(
        args["utterances_per_speaker"] >= max(2, args["videos_per_speaker"]),
        "utterances_per_speaker must be >= 2 and >= videos_per_speaker, "
        f"got {args['utterances_per_speaker']} (videos_per_speaker={args['videos_per_speaker']})",
    )
    check(
        0.5 <= args["min_seconds"] <= args["max_seconds"],
        f"need 0.5 <= min_seconds <= max_seconds, got {args['min_seconds']}, {args['max_seconds']}",
    )
    check(8000 <= args["sampling_rate"] <= 48000, f"sampling_rate must be 8000..48000, got {args['sampling_rate']}")
    check(args["seed"] >= 0, f"seed must be >= 0, got {args['seed']}")
    check(args["num_workers"] >= 1, f"num_workers must be >= 1, got {args['num_workers']}")


def generate_corpus(
    root,
    num_train_speakers: int = 40,
    num_test_speakers: int = 10,
    utterances_per_speaker: int = 20,
    videos_per_speaker: int = 3,
    min_seconds: float = 3.0,
    max_seconds: float = 6.0,
    sampling_rate: int = 16000,
    seed: int = 0,
    num_trials: int = 800,
    overwrite: bool = False,
    num_workers: int = 1,
) -> CorpusInfo:
    """Write a synthetic speaker corpus in VoxCeleb layout under ``root``.

    Train and test speakers are disjoint; the same arguments give byte-identical
    files whatever ``num_workers`` (processes, one speaker per task) is.
    ``num_trials`` (even) trials are written to ``<root>/test/veri_test2.txt``,
    half of them target trials across different videos of a speaker.
    ``overwrite=True`` first deletes an existing ``<root>/train``,
    ``<root>/test`` and metadata file; otherwise their presence is an error.
    """
    args = dict(locals())
    args.pop("root"), args.pop("overwrite")
    _validate(args)
    root = Path(root)
    train_dir, test_dir = root / "train", root / "test"
    metadata_path = root / METADATA_FILENAME
    existing = [p for p in (train_dir, test_dir, metadata_path) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"corpus output already exists: {', '.join(map(str, existing))} (use overwrite=True)")
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    speaker_ids = [f"id{FIRST_SPEAKER_NUMBER + i}" for i in range(num_train_speakers + num_test_speakers)]
    train_speakers, test_speakers = speaker_ids[:num_train_speakers], speaker_ids[num_train_speakers:]
    splits = (("train", train_speakers), ("test", test_speakers))
    utterances = {
        split: [u for index, speaker in enumerate(speakers) for u in _speaker_utterances(split, index, speaker, args)]
        for split, speakers in splits
    }
    trials = build_trials(utterances["test"], num_trials, _rng(seed, 99))  # checks num_trials before any work
    jobs = [
        (split, index, speaker, root / split / "wav", args)
        for split, speakers in splits
        for index, speaker in enumerate(speakers)
    ]
    metadata = [row for rows in _run_jobs(jobs, num_workers) for row in rows]
    test_dir.mkdir(parents=True, exist_ok=True)
    trials_path = test_dir / TRIALS_FILENAME
    trials_path.write_text("".join(f"{label} {a} {b}\n" for label, a, b in trials), encoding="utf-8")
    metadata_path.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in metadata), encoding="utf-8")
    return CorpusInfo(
        root=root,
        train_wav_dir=train_dir / "wav",
        test_wav_dir=test_dir / "wav",
        trials_path=trials_path,
        metadata_path=metadata_path,
        train_speakers=tuple(train_speakers),
        test_speakers=tuple(test_speakers),
        num_train_utterances=len(utterances["train"]),
        num_test_utterances=len(utterances["test"]),
        num_trials=len(trials),
        num_target_trials=sum(label for label, _, _ in trials),
        total_seconds=float(sum(row["seconds"] for row in metadata)),
        sampling_rate=sampling_rate,
        seed=seed,
    )


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------
def _disk_bytes(info: CorpusInfo) -> int:
    files = [info.metadata_path, *info.root.joinpath("train").rglob("*"), *info.root.joinpath("test").rglob("*")]
    return sum(p.stat().st_size for p in files if p.is_file())


def _generate_from_args(a: argparse.Namespace) -> CorpusInfo:
    return generate_corpus(
        a.out,
        num_train_speakers=a.train_speakers,
        num_test_speakers=a.test_speakers,
        utterances_per_speaker=a.utterances_per_speaker,
        videos_per_speaker=a.videos_per_speaker,
        min_seconds=a.min_seconds,
        max_seconds=a.max_seconds,
        sampling_rate=a.sampling_rate,
        seed=a.seed,
        num_trials=a.trials,
        overwrite=a.overwrite,
        num_workers=a.workers,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wavlmrawnet.synthetic.corpus",
        description="Write a deterministic synthetic speaker corpus in VoxCeleb layout.",
    )
    parser.add_argument("--out", required=True, help="corpus root directory")
    parser.add_argument("--train-speakers", type=int, default=40)
    parser.add_argument("--test-speakers", type=int, default=10)
    parser.add_argument("--utterances-per-speaker", type=int, default=20)
    parser.add_argument("--videos-per-speaker", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--max-seconds", type=float, default=6.0)
    parser.add_argument("--sampling-rate", type=int, default=16000)
    parser.add_argument("--trials", type=int, default=800, help="number of trials (even; half are targets)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing corpus under --out")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    a = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        info = _generate_from_args(a)
    except (ValueError, FileExistsError) as error:
        parser.error(str(error))
    elapsed = time.perf_counter() - start
    print(f"synthetic corpus written to {info.root} in {elapsed:.1f} s (seed {info.seed})")
    train, test = info.num_train_utterances, info.num_test_utterances
    print(f"  train: {info.num_train_speakers} speakers, {train} utterances -> {info.train_wav_dir}")
    print(f"  test:  {info.num_test_speakers} speakers, {test} utterances -> {info.test_wav_dir}")
    print(f"  trials: {info.num_trials} ({info.num_target_trials} target) -> {info.trials_path}")
    size_mb = _disk_bytes(info) / 1e6
    print(f"  audio: {info.total_seconds / 60:.1f} min at {info.sampling_rate} Hz, {size_mb:.1f} MB on disk")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
