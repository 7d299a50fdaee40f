"""The recording channel of one utterance: reverb, EQ and band limits, additive noise, level.

Every utterance gets its own random channel, so the channel carries no speaker information.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..audio_effects import NOISE_KINDS, fft_convolve, fft_size, shaped_noise

__all__ = ["ChannelParams", "apply_channel", "draw_channel"]


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
        noise_kind=str(rng.choice(list(NOISE_KINDS))),
        eq_tilt_db_per_octave=float(rng.uniform(-1.5, 1.5)),
        eq_bumps=bumps,
        highpass_hz=float(rng.uniform(50.0, 200.0)),
        lowpass_hz=float(rng.uniform(0.5, 0.95) * min(7500.0, nyquist)) if has_lowpass else None,
        reverb_rt60_s=float(rng.uniform(0.15, 0.6)) if has_reverb else None,
        reverb_direct_to_reverberant_db=float(rng.uniform(0.0, 10.0)) if has_reverb else None,
    )


def _active_power(signal: np.ndarray, sampling_rate: int) -> float:
    """Mean power over frames within 30 dB of the loudest ones (ignores pauses)."""
    frame = sampling_rate // 50
    usable = len(signal) // frame * frame
    powers = np.mean(signal[:usable].reshape(-1, frame) ** 2, axis=1)
    active = powers[powers >= np.percentile(powers, 95) * 1e-3]
    return float(active.mean())


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
    return fft_convolve(signal, impulse_response)[: len(signal)]


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
    size = fft_size(len(signal))
    spectrum = np.fft.rfft(signal, size) * _eq_gain(channel, np.fft.rfftfreq(size, 1.0 / sampling_rate))
    signal = np.fft.irfft(spectrum, size)[: len(signal)]
    speech_power = _active_power(signal, sampling_rate)
    if not speech_power > 0:
        raise ValueError("speech is silent; cannot set an SNR")
    noise = shaped_noise(channel.noise_kind, len(signal), sampling_rate, rng)
    mix = signal + noise * math.sqrt(speech_power / 10.0 ** (channel.snr_db / 10.0))
    mix *= 10.0 ** (channel.level_dbfs / 20.0) / np.sqrt(np.mean(mix**2))
    peak = np.abs(mix).max()
    return mix * (0.95 / peak) if peak > 0.95 else mix
