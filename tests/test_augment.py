"""Tests for wavlmrawnet.training.augment and wavlmrawnet.audio_effects: noise at an SNR, reverberation, speed
perturbation, Augmenter."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from wavlmrawnet.audio_effects import fft_convolve, mix_at_snr, reverberate
from wavlmrawnet.training.augment import (
    AugmentConfig,
    Augmenter,
    fit_length,
    list_audio_files,
    read_noise_segment,
    speed_perturb,
)

SR = 16000


def snr_db(speech: np.ndarray, noisy: np.ndarray) -> float:
    noise = noisy.astype(np.float64) - speech.astype(np.float64)
    return 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise**2))


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.3 * envelope * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def dominant_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.fft.rfftfreq(audio.size, 1 / SR)[np.argmax(spectrum)])


@pytest.fixture
def noise_dir(tmp_path):
    """A MUSAN-like folder: one short noise (tiled), one long noise at another rate (resampled), one in a subfolder."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "musan"
    (folder / "noise" / "free-sound").mkdir(parents=True)
    sf.write(folder / "noise" / "short.wav", 0.1 * rng.standard_normal(SR // 4), SR)  # 0.25 s
    sf.write(folder / "noise" / "free-sound" / "long.flac", 0.2 * rng.standard_normal(8000 * 5), 8000)  # 5 s @ 8 kHz
    sf.write(folder / "music.wav", 0.3 * np.sin(2 * np.pi * 440 * np.arange(SR * 4) / SR), SR)  # 4 s, window reads
    (folder / "README.txt").write_text("not audio")
    return folder


def decaying_rir(seconds: float = 0.4, rt60: float = 0.5, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    rir = 0.03 * rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60)
    rir[:40] = 0.0
    rir[40] = 1.0  # direct path after a 40-sample propagation delay (direct-to-reverberant ratio about 3 dB)
    return rir.astype(np.float32)


# ---------------------------------------------------------------------------------------------------- noise
def test_list_audio_files_recurses_and_filters(noise_dir):
    files = list_audio_files(noise_dir)
    assert [f.split("musan/")[1] for f in files] == ["music.wav", "noise/free-sound/long.flac", "noise/short.wav"]


@pytest.mark.parametrize("target_snr", [-5.0, 0.0, 7.3, 20.0])
def test_mix_at_snr_hits_the_requested_snr(target_snr):
    rng = np.random.default_rng(0)
    speech = speech_like(1.0)
    noise = rng.standard_normal(speech.size).astype(np.float32)
    noisy = mix_at_snr(speech, noise, target_snr)
    assert noisy.dtype == np.float32 and noisy.shape == speech.shape
    assert abs(snr_db(speech, noisy) - target_snr) < 0.1


def test_mix_at_snr_leaves_silence_alone_and_checks_shapes():
    speech = speech_like(0.5)
    np.testing.assert_array_equal(mix_at_snr(speech, np.zeros_like(speech), 5.0), speech)
    silent = np.zeros(100, np.float32)
    np.testing.assert_array_equal(mix_at_snr(silent, np.ones(100, np.float32), 5.0), silent)
    with pytest.raises(ValueError, match="same shape"):
        mix_at_snr(speech, speech[:-1], 5.0)


def test_fit_length_tiles_short_noise_and_crops_long_noise():
    rng = np.random.default_rng(0)
    short = np.arange(10, dtype=np.float32)
    tiled = fit_length(short, 35, rng)
    assert tiled.shape == (35,)
    np.testing.assert_array_equal(np.diff(tiled) % 10, np.ones(34))  # consecutive samples, wrapping around
    long = np.arange(1000, dtype=np.float32)
    window = fit_length(long, 100, rng)
    assert window.shape == (100,)
    np.testing.assert_array_equal(window, long[int(window[0]) : int(window[0]) + 100])


def test_noise_files_reach_the_drawn_snr(noise_dir):
    """Short (tiled), long resampled and long windowed noise files all give exactly the drawn SNR."""
    speech = speech_like(1.5)
    for path in list_audio_files(noise_dir):
        for seed in range(3):
            rng = np.random.default_rng(seed)
            drawn = float(rng.uniform(0, 15))
            noise = read_noise_segment(path, speech.size, SR, rng)
            assert noise.shape == speech.shape and np.mean(noise**2) > 0
            assert abs(snr_db(speech, mix_at_snr(speech, noise, drawn)) - drawn) < 0.1


def test_windowed_noise_read_matches_a_full_decode(noise_dir):
    path = str(noise_dir / "music.wav")
    full, _ = sf.read(path, dtype="float32")
    segment = read_noise_segment(path, 5000, SR, np.random.default_rng(7))
    starts = [s for s in range(full.size - 5000 + 1) if np.array_equal(full[s : s + 5000], segment)]
    assert starts, "the window is not a contiguous part of the file"


def test_augmenter_noise_is_in_the_snr_range_and_reproducible(noise_dir):
    augmenter = Augmenter(noise_dir=noise_dir, snr_db=(5.0, 10.0), noise_prob=1.0)
    speech = speech_like(2.0)
    outputs = []
    for seed in range(6):
        noisy = augmenter(speech, np.random.default_rng(seed))
        assert noisy.shape == speech.shape
        assert 5.0 - 0.1 <= snr_db(speech, noisy) <= 10.0 + 0.1
        np.testing.assert_array_equal(noisy, augmenter(speech, np.random.default_rng(seed)))
        outputs.append(noisy)
    assert not np.array_equal(outputs[0], outputs[1])


# ---------------------------------------------------------------------------------------------------- reverb
@pytest.mark.parametrize("delay", [0, 123])
def test_unit_impulse_rir_returns_the_input(delay):
    speech = speech_like(1.0)
    rir = np.zeros(800, np.float32)
    rir[delay] = 0.25  # any gain: the RIR is normalised to unit energy
    out = reverberate(speech, rir)
    assert out.shape == speech.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, speech, atol=1e-6)


def test_decaying_rir_smears_energy_into_silence_without_delay():
    burst = np.zeros(SR, np.float32)
    burst[4000:4800] = np.random.default_rng(0).standard_normal(800)
    out = reverberate(burst, decaying_rir())
    assert out.shape == burst.shape
    tail = np.sum(out[4800:8000] ** 2) / np.sum(out**2)
    assert tail > 0.05, f"only {tail:.3f} of the energy is after the burst"
    assert np.sum(out[:4000] ** 2) < 1e-6 * np.sum(out**2)  # aligned to the direct path: nothing before the burst
    wet, dry = out[4000:4800], burst[4000:4800]
    # the burst itself is still in place, not delayed
    assert np.dot(wet, dry) / np.linalg.norm(wet) / np.linalg.norm(dry) > 0.8


def test_reverberate_rejects_bad_rirs():
    speech = speech_like(0.2)
    with pytest.raises(ValueError, match="all zeros"):
        reverberate(speech, np.zeros(10))
    with pytest.raises(ValueError, match="NaN or Inf"):
        reverberate(speech, np.array([1.0, np.nan]))


@pytest.mark.parametrize("sizes", [(1, 1), (5, 3), (1000, 25), (1000, 24), (4097, 7)])
def test_fft_convolve_is_the_full_linear_convolution(sizes):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(sizes[0]), rng.standard_normal(sizes[1])
    np.testing.assert_allclose(fft_convolve(a, b), np.convolve(a, b), atol=1e-9)


def test_augmenter_reverb_from_folder(tmp_path):
    (tmp_path / "rirs" / "room1").mkdir(parents=True)
    sf.write(tmp_path / "rirs" / "room1" / "rir.wav", decaying_rir(), SR, subtype="FLOAT")
    augmenter = Augmenter(rir_dir=tmp_path / "rirs", rir_prob=1.0)
    speech = speech_like(1.0)
    out = augmenter(speech, np.random.default_rng(0))
    expected = reverberate(speech, sf.read(tmp_path / "rirs" / "room1" / "rir.wav", dtype="float32")[0])
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert not np.allclose(out, speech, atol=1e-3)


# ---------------------------------------------------------------------------------------------------- speed
@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_changes_length_and_pitch_by_the_factor(factor):
    tone = np.sin(2 * np.pi * 500 * np.arange(SR) / SR).astype(np.float32)
    out = speed_perturb(tone, factor, SR)
    assert out.dtype == np.float32
    assert abs(out.size - tone.size / factor) <= 1
    assert abs(dominant_hz(out) - 500 * factor) < 5


def test_speed_factor_one_is_identity_and_bad_factors_raise():
    tone = speech_like(0.5)
    assert speed_perturb(tone, 1.0, SR) is tone
    with pytest.raises(ValueError, match="positive"):
        speed_perturb(tone, 0.0, SR)
    with pytest.raises(ValueError, match="speed_factors"):
        Augmenter(speed_factors=[1.0, -0.9])


def test_augmenter_speed_draws_from_the_factors_and_respects_min_samples():
    augmenter = Augmenter(speed_factors=[0.9, 1.1], speed_prob=1.0)
    speech = speech_like(1.0)
    lengths = {augmenter.perturb_speed(speech, np.random.default_rng(s)).size for s in range(20)}
    assert lengths == {round(SR / 0.9), round(SR / 1.1)}
    # 1.1 would shrink the clip below min_samples, so it is skipped.
    guarded = {augmenter.perturb_speed(speech, np.random.default_rng(s), min_samples=SR).size for s in range(20)}
    assert guarded == {round(SR / 0.9), SR}


# ---------------------------------------------------------------------------------------------------- Augmenter
def test_augmenter_is_off_unless_configured():
    augmenter = Augmenter()
    assert not augmenter.enabled and repr(augmenter) == "Augmenter(off)"
    speech = speech_like(0.5)
    np.testing.assert_array_equal(augmenter(speech, np.random.default_rng(0)), speech)


def test_probability_zero_disables_an_augmentation(noise_dir):
    augmenter = Augmenter(noise_dir=noise_dir, noise_prob=0.0, speed_factors=[1.1], speed_prob=0.0)
    assert augmenter.enabled
    speech = speech_like(0.5)
    np.testing.assert_array_equal(augmenter(speech, np.random.default_rng(0)), speech)


def test_configured_folders_without_usable_audio_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="noise_dir"):
        Augmenter(noise_dir=tmp_path / "missing")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="rir_dir.*holds no audio files"):
        Augmenter(rir_dir=tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "fake.wav").write_text("this is not audio")
    with pytest.raises(ValueError, match="(?s)noise_dir: 1 of 1 audio files are unusable.*fake.wav"):
        Augmenter(noise_dir=tmp_path / "broken")


def test_invalid_settings_raise():
    with pytest.raises(ValueError, match="snr_db"):
        Augmenter(snr_db=(10, 0))
    with pytest.raises(ValueError, match="noise_prob"):
        Augmenter(noise_prob=1.5)
    with pytest.raises(ValueError, match="unknown augmentation option"):
        Augmenter.from_config({"noise_folder": "x"})


def test_from_config_matches_direct_construction(noise_dir):
    # A YAML section gives lists; the dataclass and the mapping build the same augmenter.
    section = {"noise_dir": str(noise_dir), "snr_db": [3, 8], "noise_prob": 1.0, "speed_factors": [0.9, 1.0, 1.1]}
    from_mapping = Augmenter.from_config(section)
    from_dataclass = Augmenter.from_config(AugmentConfig(**section))
    direct = Augmenter(noise_dir=noise_dir, snr_db=(3, 8), noise_prob=1.0, speed_factors=(0.9, 1.0, 1.1))
    speech = speech_like(1.0)
    reference = direct(speech, np.random.default_rng(5))
    for augmenter in (from_mapping, from_dataclass):
        assert augmenter.snr_db == (3.0, 8.0) and augmenter.speed_factors == (0.9, 1.0, 1.1)
        np.testing.assert_array_equal(augmenter(speech, np.random.default_rng(5)), reference)
    assert AugmentConfig().to_dict()["noise_dir"] is None
