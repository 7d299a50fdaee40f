"""Shared fixtures: tiny models, real wav files on disk, a saved model folder."""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector

# The onnxruntime engine's graph cache (`engines.onnx_cache_root`): one folder per test run, never the user's. The
# controlling process names it; pytest-xdist's workers and the tests' subprocesses inherit the name, so a model
# exported by one test is not exported again by the next; the controlling process removes it at the end.
ONNX_CACHE = Path(
    os.environ.setdefault(
        "WAVLMRAWNET_TEST_ONNX_CACHE", str(Path(tempfile.gettempdir()) / f"wavlmrawnet-test-onnx-{os.getpid()}")
    )
)
os.environ["WAVLMRAWNET_ONNX_CACHE"] = str(ONNX_CACHE)

# The temp folder of the processes the tests start (and of pytest-xdist's workers): torchrun's log folders, the
# Space's gradio cache and whatever else they leave go to one folder per run, removed at the end like the cache.
# This process keeps the temp folder it has already chosen (pytest's own `tmp_path` folders among them).
CHILD_TMP = Path(
    os.environ.setdefault(
        "WAVLMRAWNET_TEST_CHILD_TMP", str(Path(tempfile.gettempdir()) / f"wavlmrawnet-test-tmp-{os.getpid()}")
    )
)
CHILD_TMP.mkdir(parents=True, exist_ok=True)
os.environ["TMPDIR"] = str(CHILD_TMP)


def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):  # the controlling process, once every worker is done
        shutil.rmtree(ONNX_CACHE, ignore_errors=True)
        shutil.rmtree(CHILD_TMP, ignore_errors=True)


# The start of a script run in a fresh interpreter that must see a model folder's remote code only: importing the
# package `wavlmrawnet` fails there, as on a machine where only transformers is installed.
BLOCK_PACKAGE_IMPORT = """import sys


class BlockWavlmrawnet:
    def find_spec(self, name, path=None, target=None):
        if name == "wavlmrawnet" or name.startswith("wavlmrawnet."):
            raise ImportError("wavlmrawnet is not importable in this process")


sys.meta_path.insert(0, BlockWavlmrawnet())
"""


def missing_system_tool(message: str) -> None:
    """Skips a test whose Debian package is missing (`make browser` installs chromium and espeak-ng where it can);
    under CI=true, where `make test` installed them, fails instead: a missing tool must not pass unnoticed."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message}; under CI=true this is a failure, not a skip")
    pytest.skip(message)


def cli_in_process(*args: str) -> subprocess.CompletedProcess:
    """`wavlmrawnet ARGS` run by the command line's own `main` in this process: its exit status, stdout and stderr,
    as `subprocess.run` would return them, without paying a fresh interpreter's imports. A `SystemExit` with a message
    counts as Python reports it (the message on stderr, status 1). Tests of what only a real process shows (exit on
    a signal, torchrun, environment variables read at start-up) start one instead."""
    from wavlmrawnet.cli import main

    out, err, threads = io.StringIO(), io.StringIO(), torch.get_num_threads()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as stop:
            code = stop.code
            if code is not None and not isinstance(code, int):
                print(code, file=sys.stderr)
                code = 1
    torch.set_num_threads(threads)  # `--threads` sets the process' count
    return subprocess.CompletedProcess(["wavlmrawnet", *args], code or 0, out.getvalue(), err.getvalue())


def voice_like(seconds: float, sampling_rate: int, seed: int, channels: int = 1) -> np.ndarray:
    """A harmonic tone with vibrato, four syllables a second (20 dB deep) and noise: speech-like enough to exercise
    every stage, and to pass the no-speech check (`wavlmrawnet.speech_check`), which a steady tone does not."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    f0 = 100 + 80 * rng.random()
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / sampling_rate
    syllables = 0.1 + 0.9 * np.sin(np.pi * 4 * t) ** 2
    audio = syllables * sum(np.sin(k * phase) / k for k in range(1, 12)) * 0.2 + 0.01 * rng.standard_normal(t.size)
    if channels > 1:
        audio = np.stack([audio * (1 - 0.2 * c) for c in range(channels)], axis=1)
    return audio.astype(np.float32)


def write_wav(path, seconds=1.5, sampling_rate=16000, seed=0, channels=1):
    sf.write(str(path), voice_like(seconds, sampling_rate, seed, channels), sampling_rate, subtype="PCM_16")
    return str(path)


def write_flac_bomb(path, seconds=40.0, sampling_rate=192_000, channels=8, block_seconds=10.0):
    """A FLAC of silence whose header promises `seconds` x `sampling_rate` x `channels` samples (61 million by
    default, over `audio_io.MAX_DECODED_VALUES`; the issue's 599 s bomb holds 920 million, 3.7 GB as float32): FLAC
    compresses silence to about 65 kB here, 1 MB at 599 s. Written block by block, so writing it never holds more
    than `block_seconds` in memory."""
    block = np.zeros((int(block_seconds * sampling_rate), channels), dtype=np.int16)
    total = int(seconds * sampling_rate)
    with sf.SoundFile(str(path), "w", sampling_rate, channels, subtype="PCM_16", format="FLAC") as bomb:
        for start in range(0, total, len(block)):
            bomb.write(block[: min(len(block), total - start)])
    return str(path)


@pytest.fixture(scope="session")
def tiny_model() -> WavLMRawNetForXVector:
    torch.manual_seed(0)
    return WavLMRawNetForXVector(WavLMRawNetConfig.from_preset("tiny", num_labels=5)).eval()


@pytest.fixture(scope="session")
def saved_tiny_model(tmp_path_factory, tiny_model) -> str:
    folder = tmp_path_factory.mktemp("tiny_model")
    tiny_model.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def wav_files(tmp_path_factory) -> dict[str, str]:
    """Real files at 8 kHz, 16 kHz and 44.1 kHz, mono and stereo."""
    folder = tmp_path_factory.mktemp("wavs")
    return {
        "mono_16k": write_wav(folder / "mono_16k.wav", 1.5, 16000, seed=1),
        "mono_8k": write_wav(folder / "mono_8k.wav", 2.0, 8000, seed=2),
        "stereo_44k": write_wav(folder / "stereo_44k.wav", 1.2, 44100, seed=3, channels=2),
        "stereo_16k": write_wav(folder / "stereo_16k.wav", 1.0, 16000, seed=4, channels=2),
    }


CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


@contextlib.contextmanager
def permissions_apply():
    """File permissions apply to this thread, as they do to a normal user: as root, the capabilities that override
    them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) leave the effective set for the block and come back after it
    (capabilities are per thread; the permitted set is kept, so restoring needs no privilege). Where the kernel
    refuses (no capabilities to drop), the test is skipped: it cannot show what a normal user would see."""
    if os.geteuid() != 0:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()  # _LINUX_CAPABILITY_VERSION_3
    if libc.capget(ctypes.byref(header), data) != 0:
        pytest.skip("capget failed: cannot drop root's permission override")
    saved = data[0].effective
    data[0].effective &= ~((1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH))
    if libc.capset(ctypes.byref(header), data) != 0:
        pytest.skip("capset failed: cannot drop root's permission override")
    try:
        yield
    finally:
        data[0].effective = saved
        assert libc.capset(ctypes.byref(header), data) == 0
