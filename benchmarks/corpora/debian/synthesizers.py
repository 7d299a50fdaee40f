"""The synthesisers, run from the unpacked packages: espeak-ng with MBROLA voices, and RHVoice through its C library
in a child process (`rhvoice_worker.py`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from . import REPO_ROOT
from .voices import Voice


@dataclass(frozen=True)
class SynthesisRequest:
    text: str
    rate: float
    pitch: float


class SynthesisError(RuntimeError):
    """A voice could not be synthesised; the message says why."""


# A synthesiser turns one voice's requests into (samples, sampling rate) pairs, one per request, in order.
Synthesizer = Callable[[Voice, Sequence[SynthesisRequest]], list[tuple[np.ndarray, int]]]


def _one_line(text: str, limit: int = 500) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())[-limit:]


@dataclass(frozen=True)
class ToolPaths:
    """The synthesisers as unpacked under ``root`` and the environment that runs them."""

    root: Path

    @property
    def lib_dir(self) -> Path:  # usr/lib/<multiarch triplet>
        found = sorted((self.root / "usr/lib").glob("*/espeak-ng-data"))
        if not found:
            raise RuntimeError(f"no usr/lib/*/espeak-ng-data under {self.root}: espeak-ng-data is not unpacked")
        return found[0].parent

    @property
    def espeak_ng(self) -> Path:
        return self.root / "usr/bin/espeak-ng"

    @property
    def espeak_data(self) -> Path:
        return self.lib_dir / "espeak-ng-data"

    @property
    def rhvoice_library(self) -> Path:
        return self.lib_dir / "libRHVoice.so.5"

    @property
    def rhvoice_data(self) -> Path:
        return self.root / "usr/share/RHVoice"

    @property
    def rhvoice_config(self) -> Path:
        return self.root / "etc/RHVoice"

    def env(self) -> dict[str, str]:
        library_dirs = sorted({str(p.parent) for p in self.root.rglob("*.so*") if p.is_file()})
        inherited = [os.environ["LD_LIBRARY_PATH"]] if os.environ.get("LD_LIBRARY_PATH") else []
        return {
            **os.environ,
            "PATH": f"{self.root / 'usr/bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "LD_LIBRARY_PATH": os.pathsep.join(library_dirs + inherited),
            "ESPEAK_DATA_PATH": str(self.espeak_data),
        }


class EspeakMbrolaSynthesizer:
    """espeak-ng (its mb-* voices drive the mbrola binary) from the unpacked packages. Picklable."""

    def __init__(self, tools: ToolPaths, timeout_s: float = 120.0):
        self.tools = tools
        self.timeout_s = timeout_s
        self._env = tools.env()

    def __call__(self, voice: Voice, requests: Sequence[SynthesisRequest]) -> list[tuple[np.ndarray, int]]:
        results = []
        with tempfile.TemporaryDirectory(prefix="espeak-") as tmp:
            wav = Path(tmp) / "out.wav"
            for request in requests:
                speed = round(175 * request.rate)  # words per minute (espeak-ng's default is 175)
                pitch = int(np.clip(round(50 + 50 * request.pitch), 0, 99))  # 0-99, default 50
                command = [
                    str(self.tools.espeak_ng),
                    "-v",
                    voice.name,
                    "-s",
                    str(speed),
                    "-p",
                    str(pitch),
                    "-b",
                    "1",
                    "-w",
                    str(wav),
                ]
                try:
                    done = subprocess.run(
                        command,
                        input=request.text.encode("utf-8"),
                        capture_output=True,
                        env=self._env,
                        timeout=self.timeout_s,
                    )
                except subprocess.TimeoutExpired as error:
                    raise SynthesisError(f"espeak-ng took more than {self.timeout_s:.0f} s") from error
                stderr = _one_line(done.stderr.decode("utf-8", "replace"))
                if done.returncode != 0 or not wav.exists():
                    raise SynthesisError(f"espeak-ng -v {voice.name} failed (exit {done.returncode}): {stderr}")
                try:
                    samples, rate = sf.read(str(wav), dtype="float32")
                except Exception as error:
                    raise SynthesisError(f"espeak-ng wrote an unreadable wav ({error}); stderr: {stderr}") from error
                results.append((samples, rate))
                wav.unlink()
        return results


class RHVoiceSynthesizer:
    """RHVoice through libRHVoice (ctypes) in a child process per call, with the unpacked data and config
    folders (RHVoice-test cannot be pointed at them). A crash of the library fails only that voice. Picklable."""

    def __init__(self, tools: ToolPaths, timeout_s: float = 600.0):
        self.tools = tools
        self.timeout_s = timeout_s
        env = tools.env()  # the worker runs as a module of this package: the repository root on its path
        self._env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))}

    def __call__(self, voice: Voice, requests: Sequence[SynthesisRequest]) -> list[tuple[np.ndarray, int]]:
        with tempfile.TemporaryDirectory(prefix="rhvoice-") as tmp:
            job = {
                "library": str(self.tools.rhvoice_library),
                "data_path": str(self.tools.rhvoice_data),
                "config_path": str(self.tools.rhvoice_config),
                "voice": voice.name,
                "requests": [
                    {
                        "text": r.text,
                        "rate": float(np.clip(r.rate - 1.0, -1, 1)),  # RHVoice's rate and pitch are -1..1, 0 = default
                        "pitch": float(np.clip(r.pitch, -1, 1)),
                        "out": str(Path(tmp) / f"{i:05d}.wav"),
                    }
                    for i, r in enumerate(requests)
                ],
            }
            job_path = Path(tmp) / "job.json"
            job_path.write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
            command = [sys.executable, "-m", f"{__package__}.rhvoice_worker", str(job_path)]
            try:
                done = subprocess.run(command, capture_output=True, env=self._env, timeout=self.timeout_s)
            except subprocess.TimeoutExpired as error:
                limit = f"{self.timeout_s:.0f} s"
                raise SynthesisError(f"RHVoice took more than {limit} for {len(requests)} texts") from error
            stderr = _one_line(done.stderr.decode("utf-8", "replace"))
            if done.returncode != 0:
                how = f"killed by signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
                raise SynthesisError(f"RHVoice child process failed ({how}): {stderr}")
            return [sf.read(r["out"], dtype="float32") for r in job["requests"]]
