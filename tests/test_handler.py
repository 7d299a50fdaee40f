"""The Inference Endpoints handler, run as Endpoints runs it: `handler.py` imported as a top-level module from a saved
model folder, in a fresh process where `wavlmrawnet` cannot be imported, with base64 and raw-bytes requests."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
from conftest import BLOCK_PACKAGE_IMPORT, voice_like, write_flac_bomb, write_wav

from wavlmrawnet.hub import upload_file_list

HANDLER_SCRIPT = BLOCK_PACKAGE_IMPORT + textwrap.dedent(
    """
    import base64, importlib.util, json, sys

    folder, files, resaved = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]

    # As Inference Endpoints does: handler.py from the repository folder, as the top-level module "handler".
    spec = importlib.util.spec_from_file_location("handler", f"{folder}/handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler = module.EndpointHandler(folder)
    strict = module.EndpointHandler(folder, max_seconds=2.0)

    def raw(name):
        with open(files[name], "rb") as f:
            return f.read()

    def b64(name):
        return base64.b64encode(raw(name)).decode()

    out = {}
    out["embed_b64"] = handler({"inputs": b64("a1")})
    out["embed_bytes"] = handler({"inputs": raw("a1")})
    out["embed_body"] = handler(raw("a1"))  # the raw request body
    out["embed_data_url"] = handler({"inputs": "data:audio/wav;base64," + b64("a1")})
    out["embed_stereo"] = handler({"inputs": b64("stereo_44k")})
    out["embed_chunked"] = handler({"inputs": b64("long"), "parameters": {"chunk_seconds": 4.0}})
    out["embed_unchunked"] = handler({"inputs": b64("long")})  # config.chunk_seconds (20 s) > 6 s: one window
    out["verify_same"] = handler({"inputs": {"enroll": b64("a1"), "test": raw("a1")}})
    pair = {"enroll": b64("a1"), "test": b64("b1")}
    out["verify_other"] = handler({"inputs": pair, "parameters": {"threshold": 0.99}})
    out["verify_low"] = handler({"inputs": pair, "parameters": {"threshold": -1}})
    out["errors"] = {
        "not_base64": handler({"inputs": "this is not base64!"}),
        "not_audio": handler({"inputs": base64.b64encode(b"garbage bytes, no audio").decode()}),
        "zero_bytes": handler({"inputs": b""}),
        "empty_wav": handler({"inputs": b64("empty")}),
        "too_short": handler({"inputs": b64("short")}),
        "nan": handler({"inputs": raw("nan")}),
        "too_long": strict({"inputs": b64("long")}),
        "no_inputs": handler({"audio": b64("a1")}),
        "not_a_dict": handler(["a", "list"]),
        "wrong_type": handler({"inputs": 42}),
        "missing_test": handler({"inputs": {"enroll": b64("a1")}}),
        "bad_parameter": handler({"inputs": b64("a1"), "parameters": {"threshold": "high"}}),
        "unknown_parameter": handler({"inputs": b64("a1"), "parameters": {"top_k": 3}}),
        "threshold_on_embedding": handler({"inputs": b64("a1"), "parameters": {"threshold": 0.5}}),
        "bad_test_side": handler({"inputs": {"enroll": b64("a1"), "test": b64("empty")}}),
        "chunk_below_overlap": handler({"inputs": b64("long"), "parameters": {"chunk_seconds": 1.0}}),
        "chunk_zero": handler({"inputs": b64("long"), "parameters": {"chunk_seconds": 0}}),
        "chunk_tiny": handler({"inputs": b64("long"), "parameters": {"chunk_seconds": 1e-5}}),
        "chunk_huge": handler({"inputs": b64("long"), "parameters": {"chunk_seconds": 600}}),
        "chunk_400_digits": handler({"inputs": b64("long"), "parameters": {"chunk_seconds": 10**400}}),
        "data_url_no_comma": handler({"inputs": "data:audio/wav;base64"}),
        "wrapped_base64": handler({"inputs": b64("a1")[:76] + "\\n" + b64("a1")[76:]}),
        "threshold_out_of_range": handler({"inputs": pair, "parameters": {"threshold": 5}}),
        "silence_pair": handler({"inputs": {"enroll": b64("silence"), "test": b64("silence")}}),
        "dc_vs_silence": handler({"inputs": {"enroll": b64("dc"), "test": b64("silence")}}),
        "tone_pair": handler({"inputs": {"enroll": b64("tone"), "test": b64("tone")}}),
        "flac_bomb": handler({"inputs": b64("bomb")}),
        "rate_655k": handler({"inputs": raw("fast_rate")}),
    }
    out["after_errors"] = handler({"inputs": b64("b1")})  # the worker still answers
    from concurrent.futures import ThreadPoolExecutor  # a server calls the handler from several threads at once
    requests = [{"inputs": {"enroll": b64("a1"), "test": b64("b1")}}, {"inputs": b64("stereo_44k")}] * 6
    with ThreadPoolExecutor(4) as pool:
        out["concurrent"] = list(pool.map(handler, requests))

    from transformers import AutoModel
    AutoModel.from_pretrained(folder, trust_remote_code=True).save_pretrained(resaved)  # remote code saves again
    print("RESULT" + json.dumps(out))
    """
)


@pytest.mark.slow
def test_handler_from_a_saved_folder_in_a_fresh_process(tmp_path, saved_tiny_model, wav_files):
    # Exactly the files `wavlmrawnet push` uploads, as an Endpoint's repository holds them.
    folder = tmp_path / "endpoint_repo"
    folder.mkdir()
    pushed = upload_file_list(saved_tiny_model)
    assert "handler.py" in pushed, "save_pretrained must write handler.py, and push must upload it"
    for name in pushed:
        shutil.copyfile(f"{saved_tiny_model}/{name}", folder / name)
    audio = tmp_path / "audio"
    audio.mkdir()
    nan = voice_like(1.0, 16000, seed=5)
    nan[100] = np.nan
    sf.write(audio / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(audio / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    sf.write(audio / "silence.wav", np.zeros(16000, dtype=np.float32), 16000)
    sf.write(audio / "dc.wav", np.full(16000, 0.3, dtype=np.float32), 16000)
    sf.write(audio / "tone.wav", 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000), 16000)
    sf.write(audio / "fast_rate.wav", np.zeros(1000, dtype=np.float32), 655_350)  # libsndfile's highest rate
    write_flac_bomb(audio / "bomb.flac")
    files = {
        "a1": write_wav(audio / "a1.wav", 1.5, 16000, seed=1),
        "b1": write_wav(audio / "b1.wav", 1.5, 16000, seed=7),
        "stereo_44k": wav_files["stereo_44k"],
        "long": write_wav(audio / "long.wav", 6.0, 16000, seed=2),
        "short": write_wav(audio / "short.wav", 0.05, 16000, seed=3),
        "empty": str(audio / "empty.wav"),
        "nan": str(audio / "nan.wav"),
        "silence": str(audio / "silence.wav"),
        "dc": str(audio / "dc.wav"),
        "tone": str(audio / "tone.wav"),
        "fast_rate": str(audio / "fast_rate.wav"),
        "bomb": str(audio / "bomb.flac"),
    }
    resaved = tmp_path / "resaved"
    run = subprocess.run(
        [sys.executable, "-c", HANDLER_SCRIPT, str(folder), json.dumps(files), str(resaved)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # not the repository: `wavlmrawnet` must come from nowhere
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.split("RESULT", 1)[1])

    embedding = np.array(out["embed_b64"]["embedding"])
    assert out["embed_b64"]["dimension"] == embedding.size == 256
    assert out["embed_b64"]["duration_seconds"] == pytest.approx(1.5)
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-4)
    for same in ("embed_bytes", "embed_body", "embed_data_url"):
        np.testing.assert_allclose(out[same]["embedding"], embedding, atol=1e-6)
    assert len(out["embed_stereo"]["embedding"]) == 256
    assert out["embed_stereo"]["duration_seconds"] == pytest.approx(1.2)
    chunked, whole = np.array(out["embed_chunked"]["embedding"]), np.array(out["embed_unchunked"]["embedding"])
    assert not np.allclose(chunked, whole, atol=1e-4)  # chunk_seconds reached the model

    same, other, low = out["verify_same"], out["verify_other"], out["verify_low"]
    assert set(same) >= {"score", "same_speaker", "threshold"}
    assert same["score"] == pytest.approx(1.0, abs=1e-3) and same["same_speaker"] is True
    assert other["threshold"] == 0.99 and other["same_speaker"] is False and other["score"] < 0.99
    assert low["threshold"] == -1 and low["same_speaker"] is True and low["score"] == pytest.approx(other["score"])

    errors = out["errors"]
    assert all(set(answer) == {"error"} for answer in errors.values()), errors
    expected = {
        "not_base64": "not valid base64",
        "not_audio": "inputs: not a readable audio file",
        "zero_bytes": "no audio (0 bytes)",
        "empty_wav": "inputs: the file holds no audio samples",
        "too_short": "too short",
        "nan": "NaN",
        "too_long": "inputs is refused: it is 6.0 s long; the limit is 2.0 s",
        "no_inputs": '"inputs"',
        "not_a_dict": '"inputs"',
        "wrong_type": "got int",
        "missing_test": "missing ['test']",
        "bad_parameter": "parameters.threshold must be a finite number",
        "unknown_parameter": "unknown parameters ['top_k']",
        "threshold_on_embedding": "applies to verification",
        "bad_test_side": "test:",
        "chunk_below_overlap": "parameters.chunk_seconds must be from 4 to 60, got 1",
        "chunk_zero": "parameters.chunk_seconds must be from 4 to 60, got 0",
        "chunk_tiny": "parameters.chunk_seconds must be from 4 to 60, got 1e-05",
        "chunk_huge": "parameters.chunk_seconds must be from 4 to 60, got 600",
        "chunk_400_digits": "parameters.chunk_seconds must be from 4 to 60, got 1000000000",
        "data_url_no_comma": "a data: URL needs a comma before its base64",
        "wrapped_base64": "it holds line breaks (base64 -w 0 writes one line)",
        "threshold_out_of_range": "parameters.threshold must be from -1 to 1, got 5",
        "silence_pair": "enroll: no speech found (silence",
        "dc_vs_silence": "enroll: no speech found (silence",
        "tone_pair": "enroll: no speech found (a steady sound",
        "flac_bomb": "MAX_DECODED_VALUES",
        "rate_655k": "655,350 Hz; accepted rates are 1,000 to 192,000 Hz (MAX_SAMPLE_RATE)",
    }
    for name, fragment in expected.items():
        assert fragment in errors[name]["error"], (name, errors[name])
    assert "internal error" not in json.dumps(errors)
    assert "BytesIO" not in json.dumps(errors) and "object at 0x" not in json.dumps(errors)
    assert len(out["after_errors"]["embedding"]) == 256
    for answer in out["concurrent"]:  # concurrent forwards answered "internal error: AttributeError ..." before
        assert "error" not in answer, answer
    assert len({round(a["score"], 5) for a in out["concurrent"] if "score" in a}) == 1
    assert (resaved / "handler.py").read_bytes() == (folder / "handler.py").read_bytes()


def test_handler_imports_only_what_remote_code_may():
    """Endpoints imports handler.py as a top-level module: no relative import, and only the remote-code libraries."""
    import ast
    from pathlib import Path

    import wavlmrawnet.handler

    tree = ast.parse(Path(wavlmrawnet.handler.__file__).read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"handler.py has a relative import (line {node.lineno})"
            modules.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
    third_party = modules - set(sys.stdlib_module_names)
    assert third_party <= {"torch", "transformers", "numpy", "soundfile", "soxr"}, third_party
    assert "transformers" in third_party  # audio is read by the folder's audio_io, through the pipelines' module
