"""The sinc filters pass the band they claim: checked in the frequency domain, filter by filter."""

import numpy as np
import pytest
import torch

from wavlmrawnet import WavLMRawNetConfig
from wavlmrawnet.layers import SincConv, hz_to_mel

SAMPLE_RATE = 16000
FFT_SIZE = 1 << 15


def passband_violations(filters: np.ndarray, low: np.ndarray, high: np.ndarray, kernel_size: int) -> list[str]:
    """Problems with each filter's magnitude response, judged against its [low, high] cutoffs.

    Tolerance: half the Hamming window's main lobe, 2 * sr / kernel_size Hz (127.5 Hz for 251 taps), on each edge.
    - the response peak must lie inside [low - tol, high + tol];
    - every frequency at or above half the peak (-6 dB) must lie inside [low - tol, high + tol];
    - a band wider than 4 main lobes must have unit gain (within 5 %) at its centre.
    """
    tolerance = 2 * SAMPLE_RATE / kernel_size
    freqs = np.fft.rfftfreq(FFT_SIZE, 1 / SAMPLE_RATE)
    problems = []
    for k, (h, lo, hi) in enumerate(zip(filters, low, high)):
        response = np.abs(np.fft.rfft(h, FFT_SIZE))
        inside = (freqs >= lo - tolerance) & (freqs <= hi + tolerance)
        peak = freqs[response.argmax()]
        if not inside[response.argmax()]:
            problems.append(f"filter {k} [{lo:.0f}, {hi:.0f}] Hz peaks at {peak:.0f} Hz")
        passband = response >= 0.5 * response.max()
        if (passband & ~inside).any():
            problems.append(f"filter {k} [{lo:.0f}, {hi:.0f}] Hz passes {freqs[passband & ~inside][0]:.0f} Hz")
        if hi - lo > 4 * 2 * tolerance:
            centre_gain = response[np.argmin(np.abs(freqs - (lo + hi) / 2))]
            if abs(centre_gain - 1) > 0.05:
                problems.append(f"filter {k} [{lo:.0f}, {hi:.0f}] Hz has centre gain {centre_gain:.3f}")
    return problems


def reference_filters(low: np.ndarray, high: np.ndarray, kernel_size: int) -> np.ndarray:
    """The seed implementation's formula: twice the frequency in the sines, centre tap 0, no 2f/sr gain."""
    n = np.arange(kernel_size) - (kernel_size - 1) // 2
    t = n / SAMPLE_RATE
    with np.errstate(divide="ignore", invalid="ignore"):
        h = (np.sin(2 * np.pi * 2 * high[:, None] * t) - np.sin(2 * np.pi * 2 * low[:, None] * t)) / (np.pi * t)
    h[:, n == 0] = 0.0
    return h * np.hamming(kernel_size)


@pytest.fixture
def sinc() -> SincConv:
    return SincConv(WavLMRawNetConfig())


def test_every_initialised_filter_passes_its_band(sinc):
    low, high = (c.detach().numpy() for c in sinc.cutoffs())
    filters = sinc.filters().detach().numpy()[:, 0]
    assert filters.shape == (128, 251)
    assert np.allclose(filters[:, 125], 2 * (high - low) / SAMPLE_RATE, rtol=1e-5), "centre tap must be 2(f2-f1)/sr"
    assert passband_violations(filters, low, high, sinc.kernel_size) == []


def test_reference_formula_fails_the_same_check(sinc):
    low, high = (c.detach().numpy().astype(np.float64) for c in sinc.cutoffs())
    problems = passband_violations(reference_filters(low, high, sinc.kernel_size), low, high, sinc.kernel_size)
    # Nearly every filter fails: its response sits at twice its cutoffs.
    assert len({p.split()[1] for p in problems}) > 100


def test_mel_initialisation_is_mel_spaced(sinc):
    low, high = (c.detach().numpy() for c in sinc.cutoffs())
    assert np.all(np.diff(low) > 0)
    widths = np.diff(hz_to_mel(np.append(low, high[-1])))
    wide = (high - low) > sinc.min_band_hz + 1  # bands above the minimum-width clamp
    assert np.allclose(widths[wide], widths[wide].mean(), rtol=1e-3)


def test_cutoffs_stay_inside_limits_whatever_the_parameters(sinc):
    with torch.no_grad():
        sinc.low_hz_.copy_(torch.linspace(-20000, 20000, 128))
        sinc.band_hz_.copy_(torch.linspace(20000, -20000, 128))
    low, high = sinc.cutoffs()
    assert (low >= sinc.min_low_hz).all() and (high <= SAMPLE_RATE / 2).all()
    assert ((high - low) >= sinc.min_band_hz - 1e-3).all()
    assert torch.isfinite(sinc.filters()).all()


def test_cutoffs_are_learnable(sinc):
    out = sinc(torch.randn(2, 4000))
    out.pow(2).mean().backward()
    assert sinc.low_hz_.grad is not None and sinc.low_hz_.grad.abs().sum() > 0
    assert sinc.band_hz_.grad.abs().sum() > 0


def test_linear_initialisation_is_evenly_spaced():
    sinc = SincConv(WavLMRawNetConfig(sinc_init="linear"))
    low, high = (c.detach().numpy() for c in sinc.cutoffs())
    assert np.allclose(np.diff(low), (SAMPLE_RATE / 2 - sinc.min_low_hz) / 128, rtol=1e-4)
    assert np.isclose(high[-1], SAMPLE_RATE / 2)
