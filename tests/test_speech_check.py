"""No speech, no score: `wavlmrawnet.speech_check` refuses silence, DC, hum, tones and steady noise, passes speech
(the synthetic corpus' voices, short crops and quiet takes, and the tests' `voice_like`), and the pipelines refuse a
comparison without speech instead of answering "same speaker, 1.0000"."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from conftest import missing_system_tool, voice_like
from transformers import pipeline

from wavlmrawnet.speech_check import MIN_SPECTRAL_CHANGE_DB, NoSpeechError, check_speech, speech_evidence
from wavlmrawnet.synthetic.channel import draw_channel
from wavlmrawnet.synthetic.corpus import synthesize_utterance
from wavlmrawnet.synthetic.voice import draw_session, draw_voice_profile

RATE = 16000
T = np.arange(2 * RATE) / RATE


def hum(f0: float, harmonics: int) -> np.ndarray:
    return sum(0.2 / k * np.sin(2 * np.pi * f0 * k * T + k) for k in range(1, harmonics + 1))


def synthetic_speech(seed: int, seconds: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    profile, session, channel = draw_voice_profile(rng), draw_session(rng), draw_channel(rng, RATE)
    return synthesize_utterance(profile, session, channel, int(seconds * RATE), RATE, rng)


NOISE = np.random.default_rng(0).standard_normal(T.size)
NOT_SPEECH = {
    "silence": (np.zeros(T.size), "silence"),
    "dc": (np.full(T.size, 0.3), "silence"),
    "dc with dither": (0.3 + 1e-5 * NOISE, "silence"),
    "tone 440 Hz": (0.5 * np.sin(2 * np.pi * 440 * T), "steady"),
    "tone 64 Hz": (np.sin(np.linspace(0, 800, T.size)), "steady"),
    "two tones": (0.3 * np.sin(2 * np.pi * 440 * T) + 0.3 * np.sin(2 * np.pi * 660 * T), "steady"),
    "square 200 Hz": (0.3 * np.sign(np.sin(2 * np.pi * 200 * T)), "steady"),
    "hum 50 Hz": (hum(50, 11), "steady"),
    "hum 60 Hz": (hum(60, 7), "steady"),
    "hum with noise": (hum(50, 11) + 0.003 * NOISE, "steady"),
    "white noise": (0.01 * NOISE, "steady"),
    "tone in noise": (0.5 * np.sin(2 * np.pi * 440 * T) + 0.01 * NOISE, "steady"),
}


@pytest.mark.parametrize("name", list(NOT_SPEECH))
def test_silence_dc_hum_tones_and_noise_are_refused(name):
    audio, kind = NOT_SPEECH[name]
    expected = "silence: the loudest" if kind == "silence" else "a steady sound such as a tone, hum or noise"
    with pytest.raises(NoSpeechError, match=f"^{name}: no speech found \\({expected}"):
        check_speech(audio.astype(np.float32), RATE, name)


def test_speech_passes_short_quiet_and_resampled():
    changes = []
    for seed in range(6, 16):
        speech = synthetic_speech(seed)
        for clip in (speech, 0.01 * speech, speech[RATE // 2 : RATE]):  # whole, at -40 dB, a 0.5 s crop
            changes.append(check_speech(clip, RATE)["spectral_change_db"])
    for seed in range(1, 6):
        for clip in (voice_like(1.5, RATE, seed), voice_like(0.5, RATE, seed), 0.01 * voice_like(1.5, RATE, seed)):
            changes.append(check_speech(clip, RATE)["spectral_change_db"])
        narrowband = soxr.resample(voice_like(2.0, 8000, seed), 8000, RATE)  # nothing above 4 kHz
        changes.append(check_speech(narrowband, RATE)["spectral_change_db"])
    assert min(changes) >= MIN_SPECTRAL_CHANGE_DB + 1.0  # a margin, not a coin toss
    refused = [speech_evidence(audio)["spectral_change_db"] for audio, _ in NOT_SPEECH.values()]
    assert max(refused) <= MIN_SPECTRAL_CHANGE_DB - 1.0


def test_pipelines_refuse_to_compare_recordings_without_speech(saved_tiny_model):
    """Silence vs silence, DC vs silence and tone vs tone scored 1.0000, "same speaker", before the check."""
    verify = pipeline("speaker-verification", model=saved_tiny_model, trust_remote_code=True, precision="fp32")
    silence = {"array": np.zeros(RATE, np.float32), "sampling_rate": RATE, "path": "silence.wav"}
    dc = {"array": np.full(RATE, 0.3, np.float32), "sampling_rate": RATE, "path": "dc.wav"}
    tone = {"array": (0.5 * np.sin(2 * np.pi * 440 * T)).astype(np.float32), "sampling_rate": RATE, "path": "tone"}
    for pair, where in (((silence, silence), "silence.wav"), ((dc, silence), "dc.wav"), ((tone, tone), "tone")):
        with pytest.raises(ValueError, match=f"{where}: no speech found") as raised:
            verify(pair)
        assert type(raised.value).__name__ == "NoSpeechError"  # the remote code's own copy of the class
    speech = {"array": voice_like(1.5, RATE, seed=1), "sampling_rate": RATE}
    assert verify((speech, speech))["same_speaker"] is True
    # Asked for explicitly, a non-speech recording is still embedded.
    assert verify((tone, tone), require_speech=False)["score"] == pytest.approx(1.0, abs=1e-4)
    assert issubclass(NoSpeechError, ValueError)
    # Speech after 20 s of digital silence is compared, with a warning that the silence weighs on it.
    padded = {"array": np.concatenate([np.zeros(20 * RATE, np.float32), speech["array"]]), "sampling_rate": RATE}
    with pytest.warns(UserWarning, match=r"^audio: 93 % of the recording .* is silence below -70 dBFS") as warned:
        verify((padded, speech))
    assert type(warned[0].message).__name__ == "MostlySilentWarning"


def test_espeak_ng_speech_passes_loud_quiet_and_cropped(tmp_path):
    """Real synthesized speech (Debian's espeak-ng voices: apt-get install espeak-ng): whole sentences,
    at -40 dB, and 0.5 s crops all pass, far above the threshold."""
    import shutil
    import subprocess

    from wavlmrawnet.audio_io import load_audio

    if shutil.which("espeak-ng") is None:
        missing_system_tool("espeak-ng is not installed (apt-get install espeak-ng)")
    changes = []
    for voice in ("en", "de", "fr"):
        path = tmp_path / f"{voice}.wav"
        text = "The quick brown fox jumps over the lazy dog. One, two, three."
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)
        speech = load_audio(str(path), RATE)
        for clip in (speech, 0.01 * speech, speech[len(speech) // 3 :][: RATE // 2]):
            changes.append(check_speech(clip, RATE, voice)["spectral_change_db"])
    assert min(changes) >= 3 * MIN_SPECTRAL_CHANGE_DB


def test_a_recording_that_is_mostly_silence_is_embedded_with_a_warning():
    import warnings

    from wavlmrawnet.speech_check import MostlySilentWarning

    speech = voice_like(2.0, RATE, 0)
    padded = np.concatenate([np.zeros(120 * RATE, np.float32), speech])
    with pytest.warns(MostlySilentWarning, match=r"^padded: 98 % of the recording \(120\.\d s\) is silence below"):
        check_speech(padded, RATE, "padded", warn_mostly_silent=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: asked not to, speech alone, the synthetic voices, half silence
        check_speech(padded, RATE, "padded")
        check_speech(speech, RATE, "speech", warn_mostly_silent=True)
        for seed in range(6, 10):
            check_speech(synthetic_speech(seed), RATE, "synthetic", warn_mostly_silent=True)
        check_speech(np.concatenate([np.zeros(2 * RATE - 4096, np.float32), speech]), RATE, warn_mostly_silent=True)
