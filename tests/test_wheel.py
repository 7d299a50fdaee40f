"""The wheel, installed with no extras into a fresh virtual environment: `import wavlmrawnet`, `wavlmrawnet embed` and
the Python API work; `wavlmrawnet train` names the `train` extra and exits 1.

Slow (about 1.5 min, most of it unpacking torch): the venv has no pip of its own; this environment's pip installs into
it (`pip --python`), with pip's cache and the local torch wheel, and nothing else of this environment is visible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"  # the Makefile's pin (TORCH_SPEC); found on the local disk where pip is configured so
# The extras' import names: none may be importable in the fresh environment.
EXTRA_ONLY = ("accelerate", "datasets", "tensorboard", "matplotlib", "evaluate", "onnx", "onnxruntime", "silero_vad")


def run(*command, **options) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env, timeout=900, **options)
    return done


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    built = run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", root / "dist", REPO, cwd=root)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (root / "dist").glob("wavlmrawnet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(name.endswith("licenses/LICENSE") for name in names), "the wheel carries the Apache-2.0 LICENSE"
    assert not any(name.startswith(("tests/", "benchmarks/", "space/")) for name in names)

    venv = root / "venv"
    assert run(sys.executable, "-m", "venv", "--without-pip", venv).returncode == 0
    python = venv / "bin" / "python"
    # One resolution: torch (the CPU build, from the local disk as `make install` finds it) and the wheel's core
    # dependencies (byte-compiled at install: measured faster here than compiling on first import).
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "--quiet"]
    installed = run(*pip, TORCH, wheel)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv


def test_core_install_embeds_and_names_missing_extras(fresh_venv, saved_tiny_model, wav_files, tmp_path):
    python, cli = fresh_venv / "bin" / "python", fresh_venv / "bin" / "wavlmrawnet"

    missing = run(python, "-c", f"import importlib.util as u; print([m for m in {EXTRA_ONLY!r} if u.find_spec(m)])")
    assert missing.returncode == 0 and missing.stdout.strip() == "[]", f"extras leaked in: {missing.stdout}"

    out = tmp_path / "embeddings.npy"
    embedded = run(cli, "embed", "--model", saved_tiny_model, wav_files["mono_16k"], wav_files["stereo_44k"],
                   "--out", out, "--quiet", "--dtype", "fp32")  # fmt: skip
    assert embedded.returncode == 0, embedded.stderr[-3000:]
    assert out.is_file() and "embedded 2 file(s)" in embedded.stdout

    script = (
        "import json, sys, numpy as np, wavlmrawnet\n"
        "from transformers import pipeline\n"
        f"embed = pipeline('feature-extraction', model={saved_tiny_model!r}, trust_remote_code=True)\n"
        f"path = {wav_files['mono_16k']!r}\n"
        "vectors = [embed(path), embed(open(path, 'rb').read())]\n"
        "print(json.dumps([float(np.linalg.norm(v)) for v in vectors] + [float(vectors[0] @ vectors[1])]))\n"
    )
    api = run(python, "-c", script)
    assert api.returncode == 0, api.stderr[-3000:]
    first_norm, second_norm, cosine = json.loads(api.stdout.strip().splitlines()[-1])
    assert abs(first_norm - 1) < 1e-4 and abs(second_norm - 1) < 1e-4 and cosine > 0.9999  # a path and its bytes

    refused = run(cli, "train", "--config", tmp_path / "any.yaml")  # the other extras' commands: test_extras.py
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert 'needs the "train" extra: pip install "wavlmrawnet[train]"' in refused.stderr, refused.stderr[-2000:]
    assert "Traceback" not in refused.stderr
