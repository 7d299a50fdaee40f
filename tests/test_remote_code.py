"""A saved folder loads and runs through remote code in a fresh process where `wavlmrawnet` cannot be imported."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import BLOCK_PACKAGE_IMPORT

from wavlmrawnet import WavLMRawNetFeatureExtractor, WavLMRawNetForXVector
from wavlmrawnet.hub import REMOTE_CODE_FILES

REMOTE_SCRIPT = BLOCK_PACKAGE_IMPORT + textwrap.dedent(
    """
    import json, sys

    try:
        import wavlmrawnet
        raise SystemExit("wavlmrawnet should not be importable here")
    except ImportError:
        pass

    import numpy as np, soundfile as sf, torch
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, pipeline

    folder, files = sys.argv[1], json.loads(sys.argv[2])
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
    result = {
        "classes": [type(config).__name__, type(model).__name__, type(extractor).__name__],
        "modules": [type(model).__module__],
    }
    try:  # the config checks part names against the tables in the folder's modeling file
        type(config)(loss="arcface")
    except ValueError as error:
        result["unknown_loss"] = str(error)
    with torch.inference_mode():
        result["embeddings"] = {
            name: model(**extractor(path, return_tensors="pt")).embeddings[0].tolist() for name, path in files.items()
        }

    embed = pipeline("feature-extraction", model=folder, trust_remote_code=True, precision="fp32")  # exact
    names = list(files)
    result["pipeline_paths"] = {n: e.tolist() for n, e in zip(names, embed([files[n] for n in names], batch_size=2))}
    audio, rate = sf.read(files["stereo_44k"], dtype="float32")
    result["pipeline_array"] = embed(audio.T, sampling_rate=rate).tolist()
    result["pipeline_dict"] = embed({"array": audio.T, "sampling_rate": rate}).tolist()

    auto = pipeline("feature-extraction", model=folder, trust_remote_code=True)  # precision "auto"
    result["pipeline_auto"] = auto(files["mono_16k"]).tolist()
    result["auto_precision"] = auto.resolved_precision().to_dict()

    verify = pipeline("speaker-verification", model=folder, trust_remote_code=True, precision="fp32")
    result["verify_one"] = verify((files["mono_16k"], files["mono_8k"]))
    result["verify_many"] = verify([(files["mono_16k"], files["mono_16k"]), (files["stereo_16k"], files["mono_8k"])])
    print("RESULT" + json.dumps(result))
    """
)


def run_blocked(script: str, tmp_path, *args: str):
    """Runs `script` (which starts by blocking `wavlmrawnet`) in a fresh, offline interpreter; what it printed after
    "RESULT", as JSON."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    completed = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.split("RESULT", 1)[1])


@pytest.mark.slow
def test_fresh_process_loads_everything_through_remote_code(tmp_path, tiny_model, saved_tiny_model, wav_files):
    folder = tmp_path / "model_copy"
    shutil.copytree(saved_tiny_model, folder)
    assert {"config.json", "model.safetensors", "preprocessor_config.json", *REMOTE_CODE_FILES} <= set(
        os.listdir(folder)
    )
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_wavlmrawnet.WavLMRawNetConfig",
        "AutoModel": "modeling_wavlmrawnet.WavLMRawNetForXVector",
        "AutoModelForAudioXVector": "modeling_wavlmrawnet.WavLMRawNetForXVector",
    }
    assert set(config["custom_pipelines"]) == {"feature-extraction", "speaker-verification"}

    result = run_blocked(REMOTE_SCRIPT, tmp_path, str(folder), json.dumps(wav_files))
    assert result["classes"] == ["WavLMRawNetConfig", "WavLMRawNetForXVector", "WavLMRawNetFeatureExtractor"]
    assert result["modules"][0].startswith("transformers_modules.")
    assert result["unknown_loss"] == "loss must be one of ['aamsoftmax', 'amsoftmax'], got 'arcface'"

    extractor = WavLMRawNetFeatureExtractor.from_pretrained(saved_tiny_model)
    expected = {}
    with torch.inference_mode():
        for name, path in wav_files.items():
            expected[name] = tiny_model(**extractor(path, return_tensors="pt")).embeddings[0].numpy()
    for name, embedding in result["embeddings"].items():
        assert np.abs(np.array(embedding) - expected[name]).max() <= 1e-6, name
    unit = {name: e / np.linalg.norm(e) for name, e in expected.items()}
    for name, embedding in result["pipeline_paths"].items():
        assert len(embedding) == 256
        assert np.abs(np.array(embedding) - unit[name]).max() <= 1e-5, name
    # The array and dict forms of the same 44.1 kHz stereo file give the file's embedding.
    assert np.abs(np.array(result["pipeline_array"]) - unit["stereo_44k"]).max() <= 1e-5
    assert np.abs(np.array(result["pipeline_dict"]) - unit["stereo_44k"]).max() <= 1e-5

    one = result["verify_one"]
    assert set(one) == {"score", "same_speaker", "threshold"}
    assert abs(one["score"] - float(unit["mono_16k"] @ unit["mono_8k"])) < 1e-5
    assert one["threshold"] == tiny_model.config.verification_threshold
    assert one["same_speaker"] == (one["score"] >= one["threshold"])
    same, other = result["verify_many"]
    assert abs(same["score"] - 1.0) < 1e-5 and same["same_speaker"] is True
    assert abs(other["score"] - float(unit["stereo_16k"] @ unit["mono_8k"])) < 1e-5

    # The default precision follows the hardware, says why, and stays close to fp32.
    auto = result["auto_precision"]
    assert auto["requested"] == "auto" and auto["precision"] in ("fp32", "bf16") and "cores" in auto["reason"]
    assert float(np.dot(result["pipeline_auto"], unit["mono_16k"])) > 0.999


def test_local_pipelines_and_threshold_override(saved_tiny_model, wav_files):
    from transformers import pipeline

    verify = pipeline("speaker-verification", model=saved_tiny_model, trust_remote_code=True)
    strict = verify((wav_files["mono_16k"], wav_files["mono_8k"]), threshold=1.01)
    assert strict["threshold"] == 1.01 and strict["same_speaker"] is False
    try:
        verify([wav_files["mono_16k"]] * 3)
    except ValueError as error:
        assert "pairs" in str(error)
    else:
        raise AssertionError("three recordings are not a pair")


# A tiny model saved by the code before the model wing was split into layers, fast paths and kernels (commit
# 7c79eda), with the embeddings that code gave for clip.wav, fast paths on and off.
FOLDER_BEFORE_LAYOUT = Path(__file__).parent / "data" / "tiny_model_7c79eda"

OLD_FOLDER_SCRIPT = BLOCK_PACKAGE_IMPORT + textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import AutoFeatureExtractor, AutoModel

    folder = sys.argv[1]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
    with torch.inference_mode():
        embedding = model(**extractor(folder + "/clip.wav", return_tensors="pt")).embeddings[0]
    print("RESULT" + json.dumps(embedding.tolist()))
    """
)


def assert_same_embedding(got, expected) -> None:
    got, expected = torch.as_tensor(got, dtype=torch.float32), torch.tensor(expected, dtype=torch.float32)
    assert torch.nn.functional.cosine_similarity(got, expected, dim=0) >= 0.99999
    assert (got - expected).abs().max() <= 1e-5


def test_a_folder_saved_before_the_layout_loads_with_the_same_embeddings(tmp_path):
    expected = json.loads((FOLDER_BEFORE_LAYOUT / "expected_embedding.json").read_text())
    model = WavLMRawNetForXVector.from_pretrained(FOLDER_BEFORE_LAYOUT).eval()
    extractor = WavLMRawNetFeatureExtractor.from_pretrained(FOLDER_BEFORE_LAYOUT)
    inputs = extractor(str(FOLDER_BEFORE_LAYOUT / "clip.wav"), return_tensors="pt")
    with torch.inference_mode():
        fast = model(**inputs).embeddings[0]
        reference = model.set_fast_paths(False)(**inputs).embeddings[0]
    assert_same_embedding(fast, expected["fast_paths"])
    assert_same_embedding(reference, expected["reference"])
    # Saved again, the folder carries the new layout's remote code (the fresh-process test above loads such a folder).
    model.set_fast_paths(True).save_pretrained(tmp_path / "saved_again")
    assert set(REMOTE_CODE_FILES) <= set(os.listdir(tmp_path / "saved_again"))


@pytest.mark.slow
def test_a_folder_saved_before_the_layout_still_runs_its_own_remote_code(tmp_path):
    folder = tmp_path / "before_layout"
    shutil.copytree(FOLDER_BEFORE_LAYOUT, folder)
    expected = json.loads((FOLDER_BEFORE_LAYOUT / "expected_embedding.json").read_text())
    assert_same_embedding(run_blocked(OLD_FOLDER_SCRIPT, tmp_path, str(folder)), expected["fast_paths"])
