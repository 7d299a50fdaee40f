"""Signal effects on numpy audio, shared by training augmentation, the evaluation conditions and the synthetic corpus:
FFT convolution, generated room impulse responses, reverberation, coloured noises, noise windows and noise at a
signal-to-noise ratio."""

from __future__ import annotations

import numpy as np

NOISE_KINDS = ("white", "pink", "brown", "speech_shaped", "hum")  # the coloured noises `shaped_noise` makes

__all__ = [
    "NOISE_KINDS", "fft_convolve", "fft_size", "fit_length", "mix_at_snr", "reverberate", "room_impulse_response",
    "shaped_noise",
]  # fmt: skip


def fft_size(n: int) -> int:
    """The power of two >= `n` (numpy's FFT is slow for lengths with large prime factors)."""
    return 1 << (max(n, 2) - 1).bit_length()


def fft_convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Full linear convolution of two 1-D float64 arrays via the FFT (size: the power of two >= len(a) + len(b))."""
    n = a.shape[-1] + b.shape[-1] - 1
    size = fft_size(n + 1)
    return np.fft.irfft(np.fft.rfft(a, size) * np.fft.rfft(b, size), size)[:n]


def reverberate(speech: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolves `speech` with a room impulse response; the output has the length and timing of the input.

    The RIR is scaled to unit energy (Kaldi / WeSpeaker convention) and the output is aligned to the RIR's direct path
    (its largest-magnitude sample), so the speech is not delayed and the reverberant tail past the end is cut.
    A unit impulse therefore returns the input unchanged.
    """
    rir = np.asarray(rir, dtype=np.float64)
    if rir.ndim != 1 or rir.size == 0:
        raise ValueError(f"the room impulse response must be a non-empty 1-D array, got shape {rir.shape}")
    if not np.isfinite(rir).all():
        raise ValueError("the room impulse response contains NaN or Inf samples")
    energy = float(np.sum(np.square(rir)))
    if energy == 0.0:
        raise ValueError("the room impulse response is all zeros")
    if speech.size == 0:
        raise ValueError("speech is empty (no samples)")
    rir = rir / np.sqrt(energy)
    direct_path = int(np.argmax(np.abs(rir)))
    wet = fft_convolve(speech.astype(np.float64), rir)
    return wet[direct_path : direct_path + speech.shape[-1]].astype(np.float32)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`speech + g * noise` with `g` chosen so that 10 log10(P_speech / P_scaled_noise) = `snr_db`.

    Powers are means of squares over the whole segment. Silent speech (SNR undefined) or a silent noise segment (there
    is nothing to add) returns the speech unchanged.
    """
    if speech.shape != noise.shape:
        raise ValueError(f"speech and noise must have the same shape, got {speech.shape} and {noise.shape}")
    if speech.size == 0:
        raise ValueError("speech is empty (no samples)")
    if not np.isfinite(snr_db):
        raise ValueError(f"snr_db must be finite, got {snr_db}")
    speech_power = float(np.mean(np.square(speech, dtype=np.float64)))
    noise_power = float(np.mean(np.square(noise, dtype=np.float64)))
    if speech_power == 0.0 or noise_power == 0.0:
        return speech.astype(np.float32, copy=True)
    gain = np.sqrt(speech_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (speech.astype(np.float64) + gain * noise.astype(np.float64)).astype(np.float32)


def fit_length(noise: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """`num_samples` of `noise`: a random window of longer noise, or shorter noise tiled from a random offset."""
    if noise.size == 0:
        raise ValueError("noise is empty (no samples)")
    length = noise.shape[-1]
    if length >= num_samples:
        start = int(rng.integers(0, length - num_samples + 1))
        return noise[start : start + num_samples]
    start = int(rng.integers(0, length))
    tiled = np.tile(noise, -(-(num_samples + start) // length))
    return tiled[start : start + num_samples]


def room_impulse_response(
    rt60_s: float, sampling_rate: int, rng: np.random.Generator, direct_to_reverberant_db: float = 0.0
) -> np.ndarray:
    """A generated room impulse response: a unit direct path, then a Gaussian-noise tail decaying by 60 dB over
    `rt60_s` seconds (Polack's statistical model), starting 2.5 ms after the direct sound and scaled so that the
    direct-to-reverberant energy ratio is `direct_to_reverberant_db`. Its length is `rt60_s` seconds."""
    if not (np.isfinite(rt60_s) and rt60_s > 0):
        raise ValueError(f"rt60_s must be a positive number of seconds, got {rt60_s}")
    if not np.isfinite(direct_to_reverberant_db):
        raise ValueError(f"direct_to_reverberant_db must be finite, got {direct_to_reverberant_db}")
    length = max(int(rt60_s * sampling_rate), 2)
    t = np.arange(length) / sampling_rate
    tail = rng.standard_normal(length) * np.exp(-6.9 * t / rt60_s)  # exp(-6.9) = -60 dB
    tail[: max(1, int(0.0025 * sampling_rate))] = 0.0
    tail *= 10.0 ** (-direct_to_reverberant_db / 20.0) / np.sqrt(np.sum(tail**2))
    tail[0] = 1.0  # the direct sound
    return tail


def shaped_noise(kind: str, num_samples: int, sampling_rate: int, rng) -> np.ndarray:
    """Unit-power noise of a given colour."""
    size = fft_size(num_samples)
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
