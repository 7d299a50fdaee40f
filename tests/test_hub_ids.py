"""Models named by Hub id (`user/repo[@revision]`), offline, from a Hub cache laid out by the test: the CLI, the
pipelines and the Auto classes (`AutoModelForAudioXVector` included) in fresh processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import BLOCK_PACKAGE_IMPORT

pytestmark = pytest.mark.slow

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OLDER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture(scope="module")
def hub_home(tmp_path_factory, saved_tiny_model) -> str:
    """HF_HOME holding `org/tiny` as the Hub cache lays it out: two snapshots, `refs/main` naming the newer one.
    The older snapshot has another threshold, so a test can tell which one was loaded."""
    home = tmp_path_factory.mktemp("hf_home")
    repo = home / "hub" / "models--org--tiny"
    for commit, threshold in ((COMMIT, 0.5), (OLDER_COMMIT, 0.25)):
        snapshot = repo / "snapshots" / commit
        shutil.copytree(saved_tiny_model, snapshot)
        config = json.loads((snapshot / "config.json").read_text())
        config["verification_threshold"] = threshold
        (snapshot / "config.json").write_text(json.dumps(config))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return str(home)


def run(args: list[str], hub_home: str, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=hub_home, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_cli_takes_hub_ids_offline(tmp_path, hub_home, wav_files):
    pair = [wav_files["mono_16k"], wav_files["mono_8k"]]
    latest = run(["-m", "wavlmrawnet", "verify", "--model", "org/tiny", *pair, "--json"], hub_home, tmp_path)
    assert latest.returncode == 0, latest.stderr
    assert json.loads(latest.stdout)["threshold"] == 0.5
    pinned = run(
        ["-m", "wavlmrawnet", "verify", "--model", f"org/tiny@{OLDER_COMMIT}", *pair, "--json"], hub_home, tmp_path
    )
    assert pinned.returncode == 0, pinned.stderr
    assert json.loads(pinned.stdout)["threshold"] == 0.25
    assert json.loads(pinned.stdout)["score"] == pytest.approx(json.loads(latest.stdout)["score"], abs=1e-6)

    missing = run(["-m", "wavlmrawnet", "verify", "--model", "org/absent", *pair], hub_home, tmp_path)
    assert missing.returncode != 0 and "org/absent is not in the Hub cache" in missing.stderr
    assert "HF_HUB_OFFLINE=1" in missing.stderr
    bad_revision = run(["-m", "wavlmrawnet", "verify", "--model", "org/tiny@v9", *pair], hub_home, tmp_path)
    assert bad_revision.returncode != 0 and "org/tiny@v9 is not in the Hub cache" in bad_revision.stderr


REMOTE_SCRIPT = BLOCK_PACKAGE_IMPORT + textwrap.dedent(
    """
    import json, sys

    import torch
    from transformers import AutoFeatureExtractor, AutoModel, AutoModelForAudioXVector, pipeline

    files = json.loads(sys.argv[1])
    xvector = AutoModelForAudioXVector.from_pretrained("org/tiny", trust_remote_code=True).eval()
    pinned = AutoModel.from_pretrained("org/tiny", revision=sys.argv[2], trust_remote_code=True)
    extractor = AutoFeatureExtractor.from_pretrained("org/tiny", trust_remote_code=True)
    with torch.inference_mode():
        embedding = xvector(**extractor(files["mono_16k"], return_tensors="pt")).embeddings[0]
    verify = pipeline("speaker-verification", model="org/tiny", trust_remote_code=True, precision="fp32")
    embed = pipeline("feature-extraction", model="org/tiny", trust_remote_code=True, precision="fp32")
    result = {
        "class": type(xvector).__name__,
        "module": type(xvector).__module__,
        "pinned_threshold": pinned.config.verification_threshold,
        "embedding": torch.nn.functional.normalize(embedding, dim=0).tolist(),
        "pipeline_embedding": embed(files["mono_16k"]).tolist(),
        "verify": verify((files["mono_16k"], files["mono_8k"])),
    }
    print("RESULT" + json.dumps(result))
    """
)


def test_auto_classes_and_pipelines_load_hub_ids_through_remote_code(tmp_path, hub_home, saved_tiny_model, wav_files):
    saved = json.loads((Path(saved_tiny_model) / "config.json").read_text())
    assert saved["auto_map"]["AutoModelForAudioXVector"] == "modeling_wavlmrawnet.WavLMRawNetForXVector"
    assert saved["auto_map"]["AutoModel"] == "modeling_wavlmrawnet.WavLMRawNetForXVector"

    completed = run(["-c", REMOTE_SCRIPT, json.dumps(wav_files), OLDER_COMMIT], hub_home, tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.split("RESULT", 1)[1])
    assert result["class"] == "WavLMRawNetForXVector" and result["module"].startswith("transformers_modules.")
    assert result["pinned_threshold"] == 0.25
    assert np.abs(np.array(result["embedding"]) - np.array(result["pipeline_embedding"])).max() < 1e-5
    assert result["verify"]["threshold"] == 0.5 and set(result["verify"]) == {"score", "same_speaker", "threshold"}
