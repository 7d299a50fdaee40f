import numpy as np
import pytest
import soundfile as sf
import torch

from wavlmrawnet import AudioDecodingError, WavLMRawNetFeatureExtractor, load_audio
from wavlmrawnet.audio_io import to_float32


@pytest.fixture
def extractor():
    return WavLMRawNetFeatureExtractor()


def test_accepts_every_input_form(extractor, wav_files):
    clip = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    forms = [
        clip,
        torch.from_numpy(clip),
        (clip * 10000).astype(np.int16),
        np.stack([clip, clip]),  # channels-first stereo
        {"array": clip, "sampling_rate": 16000},
        wav_files["mono_16k"],
    ]
    for form in forms:
        out = extractor(form, sampling_rate=16000, return_tensors="pt")
        assert out["input_values"].shape[0] == 1 and out["input_values"].dtype == torch.float32
        assert out["attention_mask"].shape == out["input_values"].shape
    batch = extractor(forms, sampling_rate=16000, return_tensors="np")
    assert batch["input_values"].shape == (len(forms), 24000)  # the 1.5 s file is the longest


def test_int16_is_scaled_and_stereo_is_averaged():
    assert to_float32(np.array([-32768, 0, 16384], dtype=np.int16)).tolist() == [-1.0, 0.0, 0.5]
    extractor = WavLMRawNetFeatureExtractor(do_normalize=False)
    left, right = np.full(8000, 0.2, np.float32), np.full(8000, 0.4, np.float32)
    out = extractor(np.stack([left, right]), sampling_rate=16000)["input_values"][0]
    assert np.allclose(out, 0.3)


def test_resampling_follows_sampling_rate(wav_files):
    extractor = WavLMRawNetFeatureExtractor(do_normalize=False)
    tone = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100).astype(np.float32)
    out = extractor(tone, sampling_rate=44100)["input_values"][0]
    assert out.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 16000 / out.size - 440) < 2
    assert load_audio(wav_files["mono_8k"]).shape == (32000,)
    assert load_audio(wav_files["stereo_44k"]).shape == (round(1.2 * 16000),)


def test_normalisation_uses_only_unpadded_samples(extractor):
    rng = np.random.default_rng(0)
    short, long = 3 + 2 * rng.standard_normal(8000), rng.standard_normal(16000)
    out = extractor([short, long], sampling_rate=16000)
    values, mask = out["input_values"][0], out["attention_mask"][0].astype(bool)
    assert abs(values[mask].mean()) < 1e-4 and abs(values[mask].std() - 1) < 1e-3
    assert np.all(values[~mask] == 0.0) and mask.sum() == 8000
    alone = extractor(short, sampling_rate=16000)["input_values"][0]
    assert np.allclose(alone, values[mask], atol=1e-6)


def test_padding_truncation_and_segments(extractor):
    clip = np.random.default_rng(0).standard_normal(40000).astype(np.float32)
    out = extractor(clip, sampling_rate=16000, padding="max_length", max_length=48000, return_tensors="np")
    assert out["input_values"].shape == (1, 48000) and out["attention_mask"].sum() == 40000
    out = extractor(
        clip, sampling_rate=16000, padding="max_length", max_length=16000, truncation=True, return_tensors="np"
    )
    assert out["input_values"].shape == (1, 16000)
    deterministic = [extractor(clip, sampling_rate=16000, segment_seconds=1.0)["input_values"][0] for _ in range(2)]
    assert np.array_equal(*deterministic) and deterministic[0].shape == (16000,)
    rng = np.random.default_rng(0)
    random_crops = [
        extractor(clip, sampling_rate=16000, segment_seconds=1.0, random_segment=True, rng=rng)["input_values"][0]
        for _ in range(2)
    ]
    assert not np.array_equal(*random_crops)
    assert not extractor(clip, sampling_rate=16000, return_attention_mask=False).get("attention_mask")


@pytest.mark.parametrize(
    "audio, sampling_rate, message",
    [
        (np.zeros(0, np.float32), 16000, "empty"),
        (np.full(16000, np.nan, np.float32), 16000, "NaN or Inf"),
        (np.full(16000, np.inf, np.float32), 16000, "NaN or Inf"),
        (np.zeros((2, 2, 4000), np.float32), 16000, "3 dimensions"),
        (np.zeros(16000, np.float32), 0, "positive integer"),
        (np.zeros(16000, np.float32), -8000, "positive integer"),
        (np.zeros(800, np.float32), 16000, r"too short: 0.050 s, the minimum is 0.500 s"),
        (np.zeros((16000, 2), np.float32), 16000, "channels-last"),
    ],
)
def test_bad_input_raises_clear_errors(extractor, audio, sampling_rate, message):
    with pytest.raises(ValueError, match=message):
        extractor(audio, sampling_rate=sampling_rate)


def test_bad_files_raise_audio_decoding_error(extractor, tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    for path, reason in [
        (text, "not a readable audio file"),
        (empty, "no audio samples"),
        (tmp_path / "x.wav", "no such file"),
    ]:
        with pytest.raises(AudioDecodingError, match=reason) as error:
            extractor(str(path))
        assert error.value.path == str(path)


def test_round_trip(tmp_path):
    extractor = WavLMRawNetFeatureExtractor(min_seconds=1.0, do_normalize=False)
    extractor.save_pretrained(tmp_path)
    loaded = WavLMRawNetFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.min_seconds == 1.0 and loaded.do_normalize is False and loaded.sampling_rate == 16000
