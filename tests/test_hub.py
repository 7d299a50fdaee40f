"""Publishing: exactly the right files, a validated folder, no network for a dry run, and a clean failure offline."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import huggingface_hub
import pytest
import torch

from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector
from wavlmrawnet.cli import main as cli_main
from wavlmrawnet.evaluation.plots import plot_det_curve, plot_score_histograms
from wavlmrawnet.hub import HubConnectionError, push_to_hub, upload_file_list, validate_model_folder
from wavlmrawnet.model_card import write_model_card

PUBLISHED = {
    "README.md",
    "config.json",
    "configuration_wavlmrawnet.py",
    "model.safetensors",
    "modeling_wavlmrawnet.py",
    "pipeline_wavlmrawnet.py",
    "preprocessor_config.json",
    "feature_extraction_wavlmrawnet.py",
    "audio_io.py",
    "layers.py",
    "fast_paths.py",
    "fast_rawnet.py",
    "fast_wavlm.py",
    "cpu_kernels.py",
    "precision.py",
    "quantization.py",
    "speech_check.py",
    "handler.py",
    "test_det.png",
    "test_results.json",
    "test_scores.png",
    "train_config.yaml",
}


@pytest.fixture(scope="module")
def published_folder(tmp_path_factory) -> Path:
    """A complete folder as training leaves it: model, train_config.yaml, results + plots, and the card."""
    folder = tmp_path_factory.mktemp("published") / "final"
    torch.manual_seed(0)
    WavLMRawNetForXVector(WavLMRawNetConfig.from_preset("tiny", num_labels=4)).save_pretrained(folder)
    (folder / "train_config.yaml").write_text(
        "model:\n  preset: tiny\ndata:\n  synthetic: true\ntraining:\n  seed: 0\n"
    )
    scores, labels = [0.9, 0.8, 0.7, 0.1, 0.2, 0.75], [1, 1, 1, 0, 0, 0]
    det = plot_det_curve(scores, labels, folder / "test_det.png")
    histogram = plot_score_histograms(scores, labels, folder / "test_scores.png")
    (folder / "test_results.json").write_text(
        json.dumps(
            {
                "eer": 1 / 3,
                "eer_percent": 100 / 3,
                "eer_threshold": 0.75,
                "min_dcf": {"0.01": 1.0, "0.05": 1.0},
                "num_trials": 6,
                "num_target": 3,
                "num_nontarget": 3,
                "trial_list": "test",
                "score_normalization": "none (cosine)",
                "dtype": "float32",
                "date": "2026-11-25",
                "hardware": "cpu",
                "det_curve_png": str(det),
                "score_histogram_png": str(histogram),
            }
        )
    )
    write_model_card(folder)
    return folder


@pytest.fixture
def model_dir(tmp_path, published_folder) -> Path:
    folder = tmp_path / "final"
    shutil.copytree(published_folder, folder)
    return folder


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] if len(args) > 1 else args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under root, with a hash of each file's bytes."""
    state = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        state[relative] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "<dir>"
    return state


def test_upload_file_list_is_exactly_the_published_files(model_dir):
    # Things a training run or a user may leave in the folder, none of which belongs on the Hub.
    (model_dir / "checkpoints" / "checkpoint-00000200").mkdir(parents=True)
    (model_dir / "checkpoints" / "checkpoint-00000200" / "model.safetensors").write_bytes(b"old weights")
    (model_dir / "__pycache__").mkdir()
    (model_dir / "__pycache__" / "modeling_wavlmrawnet.cpython-311.pyc").write_bytes(b"\x00")
    (model_dir / ".cache" / "huggingface").mkdir(parents=True)
    (model_dir / ".cache" / "huggingface" / "upload.lock").write_text("")
    (model_dir / "embedding_cache").mkdir()
    (model_dir / "embedding_cache" / "a.npy").write_bytes(b"\x00")
    (model_dir / ".DS_Store").write_bytes(b"\x00")
    (model_dir / ".preview.png").write_bytes(b"\x00")
    (model_dir / ".README.md.swp").write_bytes(b"\x00")
    (model_dir / "embeddings.safetensors").write_bytes(b"user output")
    (model_dir / "optimizer.pt").write_bytes(b"\x00")
    (model_dir / "events.out.tfevents.1234.host").write_bytes(b"\x00")
    (model_dir / "notes.txt").write_text("scratch")

    assert upload_file_list(model_dir) == sorted(PUBLISHED)


def test_upload_file_list_takes_sharded_weights(model_dir):
    (model_dir / "model.safetensors").rename(model_dir / "model-00001-of-00002.safetensors")
    (model_dir / "model-00002-of-00002.safetensors").write_bytes(b"shard")
    shards = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    index = {"metadata": {}, "weight_map": shards}
    (model_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    listed = set(upload_file_list(model_dir))
    assert {
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    } <= listed
    assert "model.safetensors" not in listed
    validate_model_folder(model_dir)  # an index stands in for model.safetensors
    (model_dir / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="missing model-00002-of-00002.safetensors"):
        validate_model_folder(model_dir)


def test_dry_run_lists_the_files_without_touching_the_network(model_dir, no_network):
    before = snapshot(model_dir.parent)
    assert push_to_hub(model_dir, "someone/wavlmrawnet-demo", dry_run=True) == sorted(PUBLISHED)
    assert snapshot(model_dir.parent) == before


def test_cli_push_dry_run(model_dir, no_network, capsys):
    assert cli_main(["push", "--model", str(model_dir), "--repo-id", "someone/wavlmrawnet-demo", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert f"would upload {len(PUBLISHED)} file(s) to someone/wavlmrawnet-demo" in printed
    assert all(f"  {name}" in printed for name in PUBLISHED)


def test_missing_files_are_named_before_any_network_call(model_dir, no_network):
    for name in ("model.safetensors", "feature_extraction_wavlmrawnet.py", "README.md"):
        (model_dir / name).unlink()
    with pytest.raises(FileNotFoundError) as raised:
        push_to_hub(model_dir, "someone/wavlmrawnet-demo")
    message = str(raised.value)
    assert "missing model.safetensors, feature_extraction_wavlmrawnet.py, README.md" in message
    assert "write_model_card" in message and "save_pretrained" in message and "Nothing was uploaded" in message
    with pytest.raises(FileNotFoundError, match="does not exist"):
        push_to_hub(model_dir / "nope", "someone/wavlmrawnet-demo", dry_run=True)


def test_folder_without_the_endpoints_handler_is_not_published(model_dir, no_network):
    (model_dir / "handler.py").unlink()
    with pytest.raises(FileNotFoundError, match="missing handler.py.*save_pretrained"):
        push_to_hub(model_dir, "someone/wavlmrawnet-demo", dry_run=True)


def test_card_without_metadata_and_bad_repo_id_are_errors(model_dir, no_network):
    with pytest.raises(ValueError, match="not a valid Hub repo id"):
        push_to_hub(model_dir, "two//slashes", dry_run=True)
    (model_dir / "README.md").write_text("# just a title\n")
    with pytest.raises(ValueError, match="no model-card metadata"):
        push_to_hub(model_dir, "someone/wavlmrawnet-demo", dry_run=True)


def test_a_folder_with_broken_json_is_not_published(model_dir, no_network):
    """config.json or a results file that does not read would publish a broken model or a card without its evidence
    (`card` refuses the same folder): refused before any network call, naming the file."""
    results = sorted(p for p in model_dir.glob("*.json") if p.name.endswith("results.json"))
    assert results, "the published folder carries its evaluation results"
    for path, text, message in (
        (model_dir / "config.json", "{bad", "is not valid JSON"),
        (results[0], "{bad", "is not valid JSON"),
        (results[0], '{"eer_percent": 1.0}', "is not a complete results file"),
    ):
        original = path.read_bytes()
        path.write_text(text)
        with pytest.raises(ValueError, match=f"{path.name} {message}.*Nothing was uploaded"):
            push_to_hub(model_dir, "someone/wavlmrawnet-demo", dry_run=True)
        path.write_bytes(original)
    assert push_to_hub(model_dir, "someone/wavlmrawnet-demo", dry_run=True)


def test_offline_mode_fails_clearly_and_changes_nothing(model_dir, tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert huggingface_hub.constants.is_offline_mode()
    before = snapshot(tmp_path)
    with pytest.raises(HubConnectionError, match="no connection to the Hugging Face Hub.*nothing was uploaded"):
        push_to_hub(model_dir, "someone/wavlmrawnet-demo", token="hf_not_a_real_token")
    assert snapshot(tmp_path) == before


PUSH_SCRIPT = textwrap.dedent(
    """
    import sys
    import huggingface_hub
    from wavlmrawnet.hub import HubConnectionError, push_to_hub

    print("offline:", huggingface_hub.constants.HF_HUB_OFFLINE, "endpoint:", huggingface_hub.constants.ENDPOINT)
    try:
        push_to_hub(sys.argv[1], "someone/wavlmrawnet-demo", token="hf_not_a_real_token")
    except HubConnectionError as error:
        print("ERROR:", error)
        sys.exit(3)
    print("no error was raised")
    """
)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("setting", ["HF_HUB_OFFLINE=1", "unreachable endpoint"])
@pytest.mark.slow
def test_push_in_a_fresh_process_without_the_hub(model_dir, tmp_path, setting):
    """HF_HUB_OFFLINE is read when huggingface_hub is imported, so this runs where it is set from the start; with
    an endpoint nobody listens on, huggingface_hub's own connection error is what gets wrapped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE_"))}
    env["HF_HOME"] = str(tmp_path / "hf_home")
    if setting == "HF_HUB_OFFLINE=1":
        env["HF_HUB_OFFLINE"] = "1"
    else:
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{closed_port()}"
    before = snapshot(tmp_path)
    completed = subprocess.run(
        [sys.executable, "-c", PUSH_SCRIPT, str(model_dir)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 3, completed.stdout + completed.stderr[-3000:]
    if setting == "HF_HUB_OFFLINE=1":
        assert "offline: True" in completed.stdout
        assert "offline mode is on (HF_HUB_OFFLINE); nothing was uploaded" in completed.stdout
    else:
        assert "offline: False" in completed.stdout
        assert "no connection to the Hugging Face Hub (ConnectError" in completed.stdout
        assert "nothing was uploaded" in completed.stdout
    assert snapshot(tmp_path) == before
