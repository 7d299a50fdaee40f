"""Is there speech at all? A cheap, explainable check run before a recording is embedded and compared.

Silence, a DC offset, mains hum, a steady tone or steady noise embed to a vector like any other, and two of them
score as "the same speaker" with full confidence. Speech differs from all of them in one way this check measures:
its spectrum changes every few tens of milliseconds (phones, syllables at 2-8 Hz), while theirs stays put.

The rule, at 16 kHz after the recording is made mono (`check_speech`):

1. Energy: the mean is removed (a DC offset is no sound) and the audio is cut into 32 ms frames every 16 ms. A frame
   sounds when its RMS is above `ENERGY_FLOOR_DBFS` (-70 dBFS). Fewer than `MIN_SOUNDING_FRAMES` sounding frames is
   silence: refused.
2. Spectral change: each frame's power in 20 mel bands (150-7000 Hz), averaged over 3 frames (48 ms), in dB and
   floored `DYNAMIC_RANGE_DB` (50 dB) below the recording's loudest band level. The change between two frames 96 ms
   apart is the mean absolute difference of their band levels; the recording's score is the 90th percentile of the
   change over the pairs where a frame sounds. Below `MIN_SPECTRAL_CHANGE_DB` (3 dB) it is refused as no speech.

Measured (`tests/test_speech_check.py`): tones, two tones, square waves, 50/60 Hz hum with harmonics, white and pink
noise, and a harmonic tone with vibrato score at most 1.9 dB; the synthetic speech of `wavlmrawnet.synthetic` (2 s
utterances, 0.5 s crops, and at -40 dB) at least 4.7 dB. Music or a siren changes too and passes: this check
refuses recordings with nothing in them, it is not a speech detector (`vad=True` runs silero-vad).

Only numpy: this file travels with the remote code.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = [
    "ENERGY_FLOOR_DBFS",
    "MIN_SPECTRAL_CHANGE_DB",
    "MostlySilentWarning",
    "NoSpeechError",
    "check_speech",
    "speech_evidence",
]

ENERGY_FLOOR_DBFS = -70.0
MIN_SOUNDING_FRAMES = 6  # about 0.1 s
MIN_SPECTRAL_CHANGE_DB = 3.0
DYNAMIC_RANGE_DB = 50.0
RATE = 16000
FRAME, HOP = 512, 256  # 32 ms frames every 16 ms
LAG = 6  # frames: changes are measured 96 ms apart
SMOOTH = 3  # frames averaged per band level
PERCENTILE = 90
BANDS = 20
MAX_SILENT_FRACTION = 0.5  # more of the recording than this below the energy floor: a warning (`check_speech`)
_BLOCK_FRAMES = 4096  # frames per FFT block: memory stays bounded on a 10-minute recording


class NoSpeechError(ValueError):
    """A recording without speech (silence, DC, hum, a steady tone or noise): it is not embedded or scored."""

    def __init__(self, where: str, reason: str):
        self.where = where
        self.reason = f"no speech found ({reason})"
        super().__init__(f"{where}: {self.reason}")


class MostlySilentWarning(UserWarning):
    """A recording that passed the check but is mostly silence: its embedding is pooled over every frame, so long
    silence weighs on it as much as the speech and pulls recordings of different speakers together."""


def _band_matrix() -> np.ndarray:
    freqs = np.fft.rfftfreq(FRAME, 1.0 / RATE)
    mel = 2595.0 * np.log10(1.0 + np.array([150.0, 7000.0]) / 700.0)
    edges = 700.0 * (10.0 ** (np.linspace(mel[0], mel[1], BANDS + 1) / 2595.0) - 1.0)
    band = np.digitize(freqs, edges) - 1
    return np.stack([(band == b).astype(np.float64) for b in range(BANDS)], axis=1)  # (bins, bands)


def speech_evidence(waveform: np.ndarray, sampling_rate: int = RATE) -> dict:
    """The numbers the rule looks at: `frames` (32 ms frames every 16 ms), `sounding_frames` (frames above the energy
    floor), `loudest_dbfs` (the loudest frame's RMS) and `spectral_change_db` (90th percentile of the band-level
    change 96 ms apart; 0 when nothing sounds). `waveform` is mono at 16 kHz."""
    if sampling_rate != RATE:
        raise ValueError(f"the speech check runs at {RATE} Hz, got {sampling_rate} Hz")
    x = np.asarray(waveform, dtype=np.float64).reshape(-1)
    x = x - x.mean()
    frames = 1 + max(0, (len(x) - FRAME) // HOP)
    if len(x) < FRAME:
        x = np.pad(x, (0, FRAME - len(x)))
    window, bands = np.hanning(FRAME), _band_matrix()
    energy_db, levels = np.empty(frames), np.empty((frames, BANDS))
    for first in range(0, frames, _BLOCK_FRAMES):
        count = min(_BLOCK_FRAMES, frames - first)
        index = np.arange(FRAME)[None] + HOP * (first + np.arange(count))[:, None]
        block = x[index]
        energy_db[first : first + count] = 10 * np.log10((block**2).mean(axis=1) + 1e-20)
        levels[first : first + count] = (np.abs(np.fft.rfft(block * window, axis=1)) ** 2) @ bands
    sounding = energy_db > ENERGY_FLOOR_DBFS
    evidence = {
        "frames": frames,
        "sounding_frames": int(sounding.sum()),
        "loudest_dbfs": float(energy_db.max()),
        "spectral_change_db": 0.0,
    }
    if sounding.sum() < MIN_SOUNDING_FRAMES or frames <= LAG:
        return evidence
    padded = np.concatenate([levels[:1], levels, levels[-1:]])
    smooth = (padded[:-2] + padded[1:-1] + padded[2:]) / SMOOTH
    db = 10 * np.log10(smooth + 1e-20)
    db = np.maximum(db, db.max() - DYNAMIC_RANGE_DB)
    pairs = sounding[LAG:] | sounding[:-LAG]
    change = np.abs(db[LAG:] - db[:-LAG]).mean(axis=1)[pairs]
    evidence["spectral_change_db"] = float(np.percentile(change, PERCENTILE))
    return evidence


def check_speech(
    waveform: np.ndarray, sampling_rate: int = RATE, where: str = "audio", warn_mostly_silent: bool = False
) -> dict:
    """Raises `NoSpeechError` when `waveform` (mono, 16 kHz) is silence or a steady sound (module docstring);
    returns the evidence otherwise. With `warn_mostly_silent` (what embedding a whole recording uses; diarization,
    which finds the speech itself, does not), a recording more than half of which is below the energy floor also
    gives a `MostlySilentWarning`: it is embedded, but the silence weighs on its embedding."""
    evidence = speech_evidence(waveform, sampling_rate)
    if evidence["sounding_frames"] < MIN_SOUNDING_FRAMES:
        raise NoSpeechError(
            where,
            f"silence: the loudest 32 ms is at {max(evidence['loudest_dbfs'], -200):.0f} dBFS, the floor is "
            f"{ENERGY_FLOOR_DBFS:.0f} dBFS",
        )
    if evidence["spectral_change_db"] < MIN_SPECTRAL_CHANGE_DB:
        raise NoSpeechError(
            where,
            f"a steady sound such as a tone, hum or noise: its spectrum changes by "
            f"{evidence['spectral_change_db']:.1f} dB, speech by at least {MIN_SPECTRAL_CHANGE_DB:.0f} dB",
        )
    silent = 1 - evidence["sounding_frames"] / evidence["frames"]
    if warn_mostly_silent and silent > MAX_SILENT_FRACTION:
        warnings.warn(
            f"{where}: {100 * silent:.0f} % of the recording ({silent * evidence['frames'] * HOP / RATE:.1f} s) is "
            f"silence below {ENERGY_FLOOR_DBFS:.0f} dBFS, and it weighs on the embedding as much as the speech: trim "
            "it, or remove silence first (vad=True, --vad)",
            MostlySilentWarning,
            stacklevel=2,
        )
    return evidence
