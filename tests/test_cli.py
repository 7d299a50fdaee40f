"""The `wavlmrawnet` command line on real files, bad ones among them: each command's main through `cli_in_process`,
and a real process for the top-level help, the embed command's exit status and the verify command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import cli_in_process, write_wav
from safetensors.numpy import load_file

pytestmark = pytest.mark.slow


cli = cli_in_process


def cli_process(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """`wavlmrawnet ARGS` as a real process (`python -m wavlmrawnet`)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "wavlmrawnet", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("cli_audio")
    files = {
        "good_16k": write_wav(folder / "good_16k.wav", 1.5, 16000, seed=1),
        "good_8k": write_wav(folder / "good_8k.wav", 1.2, 8000, seed=2),
        "stereo_44k": write_wav(folder / "stereo_44k.wav", 1.0, 44100, seed=3, channels=2),
        "clip_50ms": write_wav(folder / "clip_50ms.wav", 0.05, 16000, seed=4),
    }
    sf.write(folder / "empty.wav", np.zeros(0, np.float32), 16000)
    (folder / "text.wav").write_text("this is a text file, not audio")
    files["empty"] = str(folder / "empty.wav")
    files["text"] = str(folder / "text.wav")
    return files


def test_help_texts_describe_every_command():
    top = cli_process("--help")
    assert top.returncode == 0
    for command in ("embed", "verify", "score", "export-onnx", "card", "push"):
        assert command in top.stdout
        sub = cli(command, "--help")
        assert sub.returncode == 0 and "--model" in sub.stdout, command
    # diarize always removes silence (--no-vad switches it off): it offers no --vad that would do nothing
    diarize = cli("diarize", "--help")
    assert diarize.returncode == 0 and "--no-vad" in diarize.stdout and "--vad " not in diarize.stdout
    assert "--vad" in cli("embed", "--help").stdout


def test_embed_good_and_bad_files_in_one_call(tmp_path, saved_tiny_model, audio):
    out = tmp_path / "emb.safetensors"
    report = tmp_path / "errors.tsv"
    missing = str(tmp_path / "missing.wav")
    result = cli_process(
        "embed",
        "--model",
        saved_tiny_model,
        *audio.values(),
        missing,
        "--out",
        str(out),
        "--errors",
        str(report),
        "--quiet",
    )
    assert result.returncode == 1, "a failed input makes the exit code non-zero"
    embeddings = load_file(out)
    good = {audio["good_16k"], audio["good_8k"], audio["stereo_44k"]}
    assert set(embeddings) == good
    for vector in embeddings.values():
        assert vector.shape == (256,) and abs(np.linalg.norm(vector) - 1) < 1e-5
    messages = {
        audio["empty"]: "no audio samples",
        audio["text"]: "not a readable audio file",
        audio["clip_50ms"]: "too short: 0.050 s, the minimum is 0.500 s",
        missing: "no such file",
    }
    for path, message in messages.items():
        line = next((row for row in result.stderr.splitlines() if row.strip().startswith(path)), "")
        assert message in line, (path, result.stderr)
    assert len(report.read_text().splitlines()) == 1 + len(messages)


def test_embed_folder_to_npy(tmp_path, saved_tiny_model):
    folder = tmp_path / "clips"
    (folder / "a").mkdir(parents=True)
    write_wav(folder / "a" / "one.wav", 1.0, 16000, seed=5)
    write_wav(folder / "two.flac", 1.0, 22050, seed=6)
    out = tmp_path / "emb.npy"
    result = cli("embed", "--model", saved_tiny_model, str(folder), "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    matrix = np.load(out)
    paths = (tmp_path / "emb.npy.paths.txt").read_text().split()
    assert matrix.shape == (2, 256) and sorted(os.path.basename(p) for p in paths) == ["one.wav", "two.flac"]


def test_verify_prints_score_threshold_and_decision(saved_tiny_model, audio):
    plain = cli_process("verify", "--model", saved_tiny_model, audio["good_16k"], audio["stereo_44k"])
    assert plain.returncode == 0, plain.stderr
    assert "score" in plain.stdout and "threshold 0.5000" in plain.stdout and "speaker" in plain.stdout
    as_json = cli("verify", "--model", saved_tiny_model, audio["good_16k"], audio["good_16k"], "--json")
    decision = json.loads(as_json.stdout)
    assert abs(decision["score"] - 1) < 1e-5 and decision["same_speaker"] is True and decision["threshold"] == 0.5
    strict = cli(
        "verify", "--model", saved_tiny_model, audio["good_16k"], audio["good_16k"], "--json", "--threshold", "1.5"
    )
    assert json.loads(strict.stdout)["same_speaker"] is False


def test_verify_bfloat16_matches_float32_closely(saved_tiny_model, audio):
    scores = []
    for dtype, shown in (("float32", "precision: fp32"), ("bf16", "precision: bf16"), ("auto", "precision: ")):
        result = cli(
            "verify",
            "--model",
            saved_tiny_model,
            audio["good_16k"],
            audio["good_8k"],
            "--json",
            "--dtype",
            dtype,
            "--device",
            "cpu",
        )
        assert result.returncode == 0, result.stderr
        assert shown in result.stderr, "the resolved precision and its reason are printed"
        scores.append(json.loads(result.stdout)["score"])
    assert abs(scores[0] - scores[1]) < 0.05 and abs(scores[0] - scores[2]) < 0.05
    fp16 = cli(
        "verify",
        "--model",
        saved_tiny_model,
        audio["good_16k"],
        audio["good_8k"],
        "--dtype",
        "fp16",
        "--device",
        "cpu",
    )
    assert fp16.returncode == 1 and "fp16 is for CUDA" in fp16.stderr


def test_verify_bad_input_fails_clearly(saved_tiny_model, audio):
    result = cli("verify", "--model", saved_tiny_model, audio["good_16k"], audio["text"])
    assert result.returncode == 1
    assert audio["text"] in result.stderr and "not a readable audio file" in result.stderr
    not_a_model = cli("verify", "--model", audio["good_16k"], audio["good_16k"], audio["good_16k"])
    assert not_a_model.returncode != 0 and "not a model folder" in not_a_model.stderr


def test_score_reports_metrics_and_refuses_missing_files(tmp_path, saved_tiny_model):
    root = tmp_path / "wav"
    for speaker in ("s1", "s2"):
        for index in range(2):
            (root / speaker).mkdir(parents=True, exist_ok=True)
            write_wav(root / speaker / f"{index}.wav", 1.0, 16000, seed=hash((speaker, index)) % 1000)
    trials = tmp_path / "trials.txt"
    trials.write_text("1 s1/0.wav s1/1.wav\n1 s2/0.wav s2/1.wav\n0 s1/0.wav s2/0.wav\n0 s1/1.wav s2/1.wav\n")
    out = tmp_path / "out"
    result = cli(
        "score", "--model", saved_tiny_model, "--trials", str(trials), "--root", str(root), "--output-dir", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert "EER" in result.stdout and "trials 4" in result.stdout
    saved = json.loads((out / "trials_results.json").read_text())
    assert saved["num_trials"] == 4 and saved["num_files"] == 4
    assert (out / "trials_det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    trials.write_text(trials.read_text() + "1 s1/0.wav s3/9.wav\n")
    missing = cli("score", "--model", saved_tiny_model, "--trials", str(trials), "--root", str(root))
    assert missing.returncode == 1 and "s3/9.wav" in missing.stderr and "do not exist" in missing.stderr


def test_export_onnx_command(tmp_path, saved_tiny_model):
    out = tmp_path / "model.onnx"
    result = cli("export-onnx", "--model", saved_tiny_model, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    import onnx

    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["input_values", "attention_mask"]
    assert graph.input[0].type.tensor_type.shape.dim[1].dim_param, "the length axis is dynamic"
