"""Source-filter speech synthesis of a phone plan (`wavlmrawnet.synthetic.voice`), with numpy only.

A glottal pulse train (jitter, shimmer) plus aspiration noise goes through a cascade of formant resonators with a
partial nasal antiresonance; frication noise goes through its own band-pass. Filtering is time-varying, done frame by
frame in the FFT domain (overlap-add); formant transitions and the intonation contour are smoothed per frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .voice import BASE_BANDWIDTHS, HIGHER_FORMANTS, VOWELS, Phone, SessionParams, VoiceProfile

__all__ = ["synthesize_speech"]

_BLOCK_FRAMES = 64  # frames filtered per FFT call

# Source levels (calibrated so fricatives sit ~10-15 dB below vowels).
_FRICATION_GAIN = 0.018
_ASPIRATION_GAIN = 0.5


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
