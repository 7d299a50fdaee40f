"""Silence removal (silero-vad): speech regions of synthetic speech, errors without speech, and embeddings that a
long silence or low noise around a clip hardly changes with `vad=True`."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from transformers import pipeline

from wavlmrawnet.evaluation.embedding import embed_files
from wavlmrawnet.synthetic.channel import draw_channel
from wavlmrawnet.synthetic.corpus import synthesize_utterance
from wavlmrawnet.synthetic.voice import draw_session, draw_voice_profile
from wavlmrawnet.vad import NoSpeechError, remove_silence, speech_regions

RATE = 16000
PAD_SECONDS = 5.0


def speech_clip(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    profile, session, channel = draw_voice_profile(rng), draw_session(rng), draw_channel(rng, RATE)
    return synthesize_utterance(profile, session, channel, int(seconds * RATE), RATE, rng).astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, str]:
    """A 3 s speech clip, the same clip between 5 s of silence, and between 5 s of low noise (-50 dBFS)."""
    folder = tmp_path_factory.mktemp("vad")
    speech = speech_clip(3.0, seed=7)
    silence = np.zeros(int(PAD_SECONDS * RATE), np.float32)
    noise = (0.003 * np.random.default_rng(1).standard_normal(silence.size)).astype(np.float32)
    waveforms = {
        "speech": speech,
        "silence_padded": np.concatenate([silence, speech, silence]),
        "noise_padded": np.concatenate([noise, speech, noise]),
        "only_silence": silence,
        "only_noise": noise,
    }
    paths = {}
    for name, waveform in waveforms.items():
        paths[name] = str(folder / f"{name}.wav")
        sf.write(paths[name], waveform, RATE, subtype="FLOAT")
    return paths


def test_speech_regions_lie_inside_the_speech(clips):
    waveform, _ = sf.read(clips["silence_padded"], dtype="float32")
    regions = speech_regions(waveform, RATE)
    assert regions, "no speech found in synthetic speech"
    start, end = regions[0][0], regions[-1][1]
    pad = int(PAD_SECONDS * RATE)
    tolerance = int(0.1 * RATE)
    assert pad - tolerance <= start and end <= pad + 3 * RATE + tolerance
    kept = sum(e - s for s, e in regions)
    assert kept >= 0.6 * 3 * RATE  # most of the 3 s of speech is kept


def test_padding_is_removed_from_the_waveform(clips):
    kept = {}
    for name in ("speech", "silence_padded", "noise_padded"):
        waveform, _ = sf.read(clips[name], dtype="float32")
        kept[name] = remove_silence(waveform, RATE).size
    assert abs(kept["silence_padded"] - kept["speech"]) < 0.1 * RATE, kept
    assert abs(kept["noise_padded"] - kept["speech"]) < 0.25 * RATE, kept  # the 10 s of noise are dropped


def test_resampled_input_gives_regions_at_its_own_rate(clips):
    import soxr

    waveform, _ = sf.read(clips["silence_padded"], dtype="float32")
    at_8k = soxr.resample(waveform, RATE, 8000).astype(np.float32)
    regions_8k = speech_regions(at_8k, 8000)
    regions_16k = speech_regions(waveform, RATE)
    assert abs(regions_8k[0][0] * 2 - regions_16k[0][0]) < 0.05 * RATE


@pytest.mark.parametrize("name", ["only_silence", "only_noise"])
def test_no_speech_is_an_error_never_empty_audio(clips, name):
    waveform, _ = sf.read(clips[name], dtype="float32")
    with pytest.raises(NoSpeechError, match="no speech found"):
        remove_silence(waveform, RATE, where=name)


def test_bad_waveforms_are_refused():
    with pytest.raises(ValueError, match="mono"):
        speech_regions(np.zeros((2, 16000), np.float32), RATE)
    with pytest.raises(ValueError, match="NaN"):
        speech_regions(np.full(16000, np.nan, np.float32), RATE)


def cosine(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_padding_barely_changes_the_embedding_with_vad(tiny_model, clips, capsys):
    extractor = tiny_model.default_feature_extractor()
    names = ["speech", "silence_padded", "noise_padded"]
    off = embed_files(tiny_model, extractor, [clips[n] for n in names], precision="fp32", progress=False)
    on = embed_files(tiny_model, extractor, [clips[n] for n in names], precision="fp32", progress=False, vad=True)
    assert not off.failures and not on.failures
    changes = {}
    for padded in ("silence_padded", "noise_padded"):
        before = cosine(off.embeddings[clips["speech"]], off.embeddings[clips[padded]])
        after = cosine(on.embeddings[clips["speech"]], on.embeddings[clips[padded]])
        changes[padded] = (before, after)
        assert after > 0.99, (padded, before, after)
        assert after >= before - 1e-3, (padded, before, after)
    # This random model barely notices low noise, but it does notice 10 s of silence: VAD removes most of that change.
    before, after = changes["silence_padded"]
    assert 1 - after < 0.2 * (1 - before), changes
    with capsys.disabled():
        print(f"\ncosine to the unpadded clip, vad off -> on: {changes}")


def test_embed_files_reports_a_file_without_speech(tiny_model, clips):
    extractor = tiny_model.default_feature_extractor()
    result = embed_files(
        tiny_model, extractor, [clips["speech"], clips["only_silence"]], precision="fp32", progress=False, vad=True
    )
    assert set(result.embeddings) == {clips["speech"]}
    assert "no speech found" in result.failures[clips["only_silence"]]


def test_pipelines_take_vad_true_or_a_callable(saved_tiny_model, clips):
    embed = pipeline("feature-extraction", model=saved_tiny_model, trust_remote_code=True, precision="fp32")
    plain = embed(clips["speech"])
    with_vad = embed(clips["silence_padded"], vad=True)
    assert cosine(plain, with_vad) > 0.99
    calls = []

    def keep_middle(waveform, sampling_rate):
        calls.append(sampling_rate)
        return waveform[int(PAD_SECONDS * sampling_rate) : int((PAD_SECONDS + 3) * sampling_rate)]

    custom = embed(clips["silence_padded"], vad=keep_middle)
    assert calls == [RATE] and cosine(plain, custom) > 0.999
    with pytest.raises(NoSpeechError):
        embed(clips["only_silence"], vad=True)
    with pytest.raises(ValueError, match="vad must be"):
        embed(clips["speech"], vad="yes")
    verify = pipeline("speaker-verification", model=saved_tiny_model, trust_remote_code=True, precision="fp32")
    result = verify((clips["speech"], clips["noise_padded"]), vad=True)
    assert result["score"] > 0.99
