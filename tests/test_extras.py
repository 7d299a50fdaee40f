"""Each command that needs an optional extra names it and exits 1 when the extra is missing (simulated by blocking
the import, as in an environment without it), and `import wavlmrawnet` pulls in no extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

from wavlmrawnet.cli import main
from wavlmrawnet.extras import EXTRAS, MissingExtraError, import_module, require


@pytest.mark.parametrize(
    ("command", "blocked", "extra"),
    [
        (["score", "--trials", "trials.txt"], "matplotlib", "eval"),
        (["export-onnx", "--out", "model.onnx"], "onnxruntime", "onnx"),
        (["card"], "jinja2", "eval"),
        (["train", "--config", "any.yaml"], "datasets", "train"),
        (["diarize", "meeting.wav"], "spectralcluster", "diarize"),
    ],
)
def test_command_names_its_missing_extra(monkeypatch, capsys, tmp_path, saved_tiny_model, command, blocked, extra):
    monkeypatch.setitem(sys.modules, blocked, None)  # `import blocked` fails, as where it is not installed
    monkeypatch.chdir(tmp_path)
    argv = command[:1] + ([] if command[0] == "train" else ["--model", saved_tiny_model]) + command[1:]
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert f'needs the "{extra}" extra: pip install "wavlmrawnet[{extra}]"' in error and blocked in error


def test_require_and_import_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "silero_vad", None)
    with pytest.raises(MissingExtraError, match=r'silence removal needs the "vad" extra.*missing: silero_vad'):
        require("vad", "silence removal")
    with pytest.raises(ValueError, match="unknown extra 'gpu'"):
        require("gpu")
    with pytest.raises(MissingExtraError, match=r"wavlmrawnet\[vad\]"):
        import_module("silero_vad", "vad")
    assert import_module("json", "eval").dumps([]) == "[]"
    assert set(EXTRAS) == {"train", "eval", "onnx", "vad", "space", "m4a", "diarize"}


@pytest.mark.slow  # a fresh interpreter importing torch and transformers
def test_import_wavlmrawnet_loads_no_extra():
    # (accelerate is left out: transformers imports it wherever it is installed)
    modules = (
        "datasets",
        "matplotlib",
        "tensorboard",
        "onnx",
        "onnxruntime",
        "gradio",
        "av",
        "silero_vad",
        "spectralcluster",
        "sklearn",
        "pyannote",
    )
    code = f"import sys, wavlmrawnet, wavlmrawnet.cli; print([m for m in {modules!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
