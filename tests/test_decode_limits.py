"""The decode limits of `wavlmrawnet.audio_io`, on real files: a FLAC bomb, a 655,350 Hz file, too many channels and
a header that understates its length are refused by name before they are decoded whole; the largest accepted input
still reads."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import voice_like, write_flac_bomb

from wavlmrawnet import audio_io
from wavlmrawnet.audio_io import AudioLimitError, check_audio_limits, load_audio, read_audio


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> str:
    path = write_flac_bomb(tmp_path_factory.mktemp("bomb") / "bomb.flac")
    assert sf.info(path).frames * 8 == 61_440_000  # samples x channels promised by the header
    return path


def test_a_flac_bomb_is_refused_by_every_reader(bomb):
    for read in (load_audio, read_audio, lambda path: read_audio(path, mono=True)):
        with pytest.raises(AudioLimitError, match=r"61,440,000 samples x channels .*MAX_DECODED_VALUES"):
            read(bomb)
    from wavlmrawnet import WavLMRawNetFeatureExtractor

    with pytest.raises(AudioLimitError, match="MAX_DECODED_VALUES"):
        WavLMRawNetFeatureExtractor()(bomb)  # the feature extractor, and so both pipelines and the command line


@pytest.mark.slow
def test_a_flac_bomb_is_refused_from_its_header_without_decoding(bomb):
    # In a fresh process: its peak RSS shows nothing was decoded (decoding would need 245 MB, resampling more).
    code = (  # VmHWM, not ru_maxrss: that one keeps the parent's (pytest's) peak across exec
        "import sys\n"
        "from wavlmrawnet.audio_io import load_audio\n"
        "def peak():\n"
        "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
        "before = peak()\n"
        "try:\n"
        f"    load_audio({bomb!r})\n"
        "except ValueError as error:\n"
        "    print(type(error).__name__, error)\n"
        "print('GROWTH_KIB', peak() - before)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "AudioLimitError" in run.stdout and "MAX_DECODED_VALUES" in run.stdout, run.stdout
    assert "61,440,000 samples x channels" in run.stdout and "192,000 Hz, 8 channel(s)" in run.stdout
    assert int(run.stdout.split("GROWTH_KIB")[1]) < 50_000, run.stdout


def test_rates_channels_and_durations_over_the_limits_are_refused_by_name(tmp_path):
    sf.write(tmp_path / "fast.wav", np.zeros(1000, np.float32), 655_350)
    with pytest.raises(AudioLimitError, match=r"655,350 Hz; accepted rates are 1,000 to 192,000 Hz \(MAX_SAMPLE_RATE"):
        load_audio(str(tmp_path / "fast.wav"))
    sf.write(tmp_path / "many.wav", np.zeros((1000, 12), np.float32), 16000)
    with pytest.raises(AudioLimitError, match=r"12 channels; at most 8 are accepted \(MAX_CHANNELS\)"):
        read_audio(str(tmp_path / "many.wav"))
    path = str(tmp_path / "voice.wav")
    sf.write(path, voice_like(4.0, 16000, seed=1), 16000)
    with pytest.raises(AudioLimitError, match=r"voice.wav is refused: it is 4.0 s long; the limit is 3.0 s"):
        load_audio(path, max_seconds=3.0)
    with pytest.raises(AudioLimitError, match="MAX_DECODED_VALUES"):
        check_audio_limits("x", 48_000, 2, audio_io.MAX_DECODED_VALUES // 2 + 1)
    check_audio_limits("x", 48_000, 2, audio_io.MAX_DECODED_VALUES // 2)  # exactly at the limit: accepted
    # Arrays given to the feature extractor (and so the pipelines) meet the same limits.
    from wavlmrawnet import WavLMRawNetFeatureExtractor

    with pytest.raises(ValueError, match="MAX_SAMPLE_RATE"):
        WavLMRawNetFeatureExtractor().prepare_one(np.zeros(1000, np.float32), sampling_rate=655_350)
    with pytest.raises(AudioLimitError, match="MAX_CHANNELS"):
        WavLMRawNetFeatureExtractor().prepare_one(np.zeros((9, 20000), np.float32), sampling_rate=16000)


def test_a_stream_of_unknown_length_is_stopped_while_decoding(tmp_path, monkeypatch):
    """A FLAC whose STREAMINFO says "length unknown" (libsndfile reports 2**63 - 1 frames) is read block by block and
    stopped at the limit, not decoded to its end (reading it whole asked numpy for an impossible array)."""
    path = tmp_path / "unknown_length.flac"
    sf.write(str(path), np.zeros((16000 * 6, 2), np.float32), 16000, format="FLAC")
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC"
    fields = int.from_bytes(data[18:26], "big")  # STREAMINFO: rate, channels, bits, then 36 bits of total samples
    data[18:26] = ((fields >> 36) << 36).to_bytes(8, "big")  # total samples 0: unknown
    path.write_bytes(bytes(data))
    assert sf.info(str(path)).frames > 2**62
    monkeypatch.setattr(audio_io, "MAX_DECODED_VALUES", 16000 * 2 * 4)  # 4 s of stereo
    monkeypatch.setattr(audio_io, "DECODE_BLOCK_FRAMES", 16000)
    with pytest.raises(AudioLimitError, match="128,000 is|MAX_DECODED_VALUES"):
        read_audio(str(path))
    monkeypatch.setattr(audio_io, "MAX_DECODED_VALUES", 16000 * 2 * 10)
    audio, rate = read_audio(str(path))  # within the limit: read to its real end
    assert audio.shape == (2, 16000 * 6) and rate == 16000


def test_multichannel_audio_is_mixed_down_block_by_block(tmp_path):
    stereo = np.stack([voice_like(2.0, 44100, seed=3), 0.5 * voice_like(2.0, 44100, seed=4)], axis=1)
    path = str(tmp_path / "stereo.wav")
    sf.write(path, stereo, 44100, subtype="FLOAT")
    mono, rate = read_audio(path, mono=True)
    whole, _ = read_audio(path)
    assert rate == 44100 and mono.shape == (1, stereo.shape[0]) and whole.shape == (2, stereo.shape[0])
    np.testing.assert_allclose(mono[0], whole.mean(axis=0), atol=1e-7)
