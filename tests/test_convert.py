"""m4a/AAC input through PyAV (files the test writes with PyAV), and `wavlmrawnet convert`: parallel, resumable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import voice_like

from wavlmrawnet.audio_io import AudioDecodingError, audio_duration, load_audio, write_aac
from wavlmrawnet.training.data import dataset_from_voxceleb, scan_audio

REPO = Path(__file__).resolve().parents[1]


def tone(seconds: float, rate: int, hz: float) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def dominant_hz(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.fft.rfftfreq(audio.size, 1 / rate)[np.argmax(spectrum)])


def test_soundfile_cannot_read_m4a_but_load_audio_decodes_it_with_pyav(tmp_path):
    path = write_aac(tmp_path / "a.m4a", tone(1.5, 22050, 440.0), 22050)
    with pytest.raises(sf.LibsndfileError):
        sf.info(path)  # the reason PyAV is needed at all
    audio = load_audio(path, 16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size / 16000 - 1.5) < 0.1  # AAC adds encoder priming, a few ms
    assert abs(dominant_hz(audio, 16000) - 440.0) < 2.0
    assert abs(audio_duration(path) - 1.5) < 0.1
    from_bytes = load_audio(Path(path).read_bytes(), 16000)  # a datasets Audio(decode=False) entry holds bytes
    np.testing.assert_array_equal(from_bytes, audio)


def test_stereo_m4a_is_averaged_to_mono(tmp_path):
    left, right = tone(1.0, 44100, 300.0), tone(1.0, 44100, 300.0)
    path = write_aac(tmp_path / "s.m4a", np.stack([left, -right]), 44100)  # opposite phases cancel in the mean
    mono = load_audio(path, 16000)
    assert np.sqrt(np.mean(mono**2)) < 0.02, "the channels were not averaged"


@pytest.mark.slow
def test_corrupt_m4a_and_missing_pyav_give_clear_errors(tmp_path):
    broken = tmp_path / "broken.m4a"
    broken.write_bytes(b"\x00\x00\x00\x18ftypM4A " + os.urandom(2000))
    with pytest.raises(AudioDecodingError, match="not a readable audio file .libsndfile: .*; PyAV: "):
        load_audio(broken)
    with pytest.raises(AudioDecodingError, match="no such file"):
        load_audio(tmp_path / "missing.m4a")
    # Without PyAV (a fresh interpreter where importing av fails), the error says what to install.
    good = write_aac(tmp_path / "good.m4a", tone(1.0, 16000, 200.0), 16000)
    code = f"import sys; sys.modules['av'] = None\nfrom wavlmrawnet.audio_io import load_audio\nload_audio({good!r})"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert completed.returncode != 0
    assert "PyAV is missing" in completed.stderr and "wavlmrawnet[m4a]" in completed.stderr


def test_training_reads_and_checks_m4a_files(tmp_path):
    root = tmp_path / "vox2" / "wav"
    for speaker in ("id00001", "id00002"):
        (root / speaker / "vid").mkdir(parents=True)
        for i in range(2):
            write_aac(root / speaker / "vid" / f"{i:05d}.m4a", voice_like(1.2, 16000, seed=i), 16000)
    short = write_aac(root / "id00002" / "vid" / "00009.m4a", voice_like(0.2, 16000, seed=9), 16000)
    dataset = dataset_from_voxceleb(tmp_path / "vox2", extensions=(".m4a",))
    assert len(dataset) == 5 and all(0.15 < d < 1.3 for d in dataset["duration"])
    bad = scan_audio(dataset["path"], min_seconds=0.5)
    assert [b.path for b in bad] == [short] and bad[0].reason.startswith("too short")


def run_convert(src: Path, dst: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "wavlmrawnet", "convert", str(src), str(dst), "--quiet", *extra]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"))


@pytest.mark.slow
def test_convert_writes_16k_mono_wav_in_parallel_and_resumes(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = {}
    for i, speaker in enumerate(("id1", "id2", "id3")):
        (src / speaker / "v").mkdir(parents=True)
        files[f"{speaker}/v/a.m4a"] = write_aac(src / speaker / "v" / "a.m4a", tone(1.0, 44100, 200 + 100 * i), 44100)
        stereo = np.stack([voice_like(0.8, 22050, seed=i), voice_like(0.8, 22050, seed=i)], axis=1)
        sf.write(src / speaker / "v" / "b.flac", stereo, 22050)
        files[f"{speaker}/v/b.flac"] = str(src / speaker / "v" / "b.flac")
    completed = run_convert(src, dst, "--workers", "2")
    assert completed.returncode == 0, completed.stderr
    outputs = sorted(str(p.relative_to(dst)) for p in dst.rglob("*.wav"))
    assert outputs == sorted(k.rsplit(".", 1)[0] + ".wav" for k in files)
    for relative, source in files.items():
        info = sf.info(dst / (relative.rsplit(".", 1)[0] + ".wav"))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        converted, _ = sf.read(dst / (relative.rsplit(".", 1)[0] + ".wav"), dtype="float32")
        np.testing.assert_allclose(converted, load_audio(source, 16000), atol=1 / 32768 + 1e-6)
    assert "6 to convert" in completed.stdout

    # Resume: remove one output and touch nothing else; only that one is converted again.
    kept = dst / "id1" / "v" / "a.wav"
    mtime = kept.stat().st_mtime_ns
    (dst / "id3" / "v" / "b.wav").unlink()
    (dst / "id2" / "v" / "a.wav.123.partial").write_bytes(b"half")  # what a kill mid-write leaves
    completed = run_convert(src, dst)
    assert completed.returncode == 0, completed.stderr
    assert "5 already converted, 1 to convert" in completed.stdout
    assert kept.stat().st_mtime_ns == mtime and (dst / "id3" / "v" / "b.wav").is_file()


@pytest.mark.slow
def test_convert_lists_unreadable_inputs_and_fails(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    write_aac(src / "good.m4a", tone(1.0, 16000, 250.0), 16000)
    (src / "bad.m4a").write_bytes(b"not audio at all")
    errors = tmp_path / "errors.tsv"
    completed = run_convert(src, dst, "--errors", str(errors))
    assert completed.returncode == 1
    assert "bad.m4a" in completed.stderr and (dst / "good.wav").is_file() and not (dst / "bad.wav").exists()
    rows = errors.read_text().splitlines()
    assert rows[0] == "path\treason" and len(rows) == 2 and rows[1].startswith(str(src / "bad.m4a"))
