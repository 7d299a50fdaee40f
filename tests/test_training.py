"""Real training runs in subprocesses: train.py end to end, SIGKILL + resume, two-process DDP, bad audio; and the
feature extractor the trainer derives from the config before the model exists."""

from __future__ import annotations

import copy
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file
from transformers import WavLMModel

from wavlmrawnet.configuration_wavlmrawnet import WavLMRawNetConfig
from wavlmrawnet.modeling_wavlmrawnet import WavLMRawNetForXVector
from wavlmrawnet.synthetic.corpus import generate_corpus
from wavlmrawnet.training.config import TrainConfig
from wavlmrawnet.training.trainer import feature_extractor_for

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    generate_corpus(
        root,
        num_train_speakers=6,
        num_test_speakers=3,
        utterances_per_speaker=4,
        videos_per_speaker=2,
        min_seconds=1.0,
        max_seconds=1.5,
        num_trials=16,
        seed=0,
    )
    return root


def write_config(folder: Path, corpus: Path, **training) -> Path:
    config = {
        "model": {"preset": "tiny", "overrides": {"wavlm_config": {"mask_time_prob": 0.0}}},
        "data": {
            "train_dir": str(corpus / "train"),
            "validation_speakers": 2,
            "validation_trials": 20,
            "test_trials": str(corpus / "test" / "veri_test2.txt"),
            "test_root": str(corpus / "test" / "wav"),
            "segment_seconds": 1.0,
            "num_workers": 0,
        },
        "training": {
            "output_dir": str(folder / "run"),
            "max_steps": 8,
            "batch_size": 4,
            "learning_rate": 1e-3,
            "wavlm_learning_rate": 1e-3,
            "warmup_steps": 2,
            "checkpoint_every": 4,
            "eval_every": 4,
            "log_every": 2,
            "eval_batch_size": 8,
            "freeze_feature_encoder": False,
            **training,
        },
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(args: list[str], cwd: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **(env or {}))
    completed = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    return completed


def train_command(config: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), "--config", str(config), *extra]


@pytest.mark.parametrize("overrides", [{}, {"rawnet_channels": [16] * 8}])  # min_seconds 0.5 and 1.239
def test_the_feature_extractor_is_known_before_the_model(overrides):
    """The audio check needs min_seconds before the model (and its classes) exists: it must be the model's."""
    model = WavLMRawNetForXVector(WavLMRawNetConfig.from_preset("tiny", **overrides))
    config = TrainConfig.from_dict({"model": {"preset": "tiny", "overrides": overrides}})
    assert feature_extractor_for(config).to_dict() == model.default_feature_extractor().to_dict()


def test_the_feature_extractor_is_known_before_a_model_from_a_pretrained_wavlm(tmp_path):
    wavlm_config = copy.deepcopy(WavLMRawNetConfig.from_preset("tiny").wavlm_config)
    wavlm_config.conv_kernel = [12000, *wavlm_config.conv_kernel[1:]]  # the checkpoint's WavLM sets min_seconds 0.775
    WavLMModel(wavlm_config).save_pretrained(tmp_path / "wavlm")
    model = WavLMRawNetForXVector.from_wavlm_pretrained(str(tmp_path / "wavlm"), preset="tiny")
    config = TrainConfig.from_dict({"model": {"preset": "tiny", "wavlm_pretrained": str(tmp_path / "wavlm")}})
    assert feature_extractor_for(config).to_dict() == model.default_feature_extractor().to_dict()


def test_train_end_to_end_writes_a_loadable_final_model(tmp_path, corpus):
    config = write_config(tmp_path, corpus, test_before_training=True, mixed_precision="bf16")
    completed = run(train_command(config, "--mixed-precision", "no"), tmp_path)
    run_dir = tmp_path / "run"
    summary = json.loads(completed.stdout[completed.stdout.index("{") :])
    assert summary["steps"] == 8 and summary["test"]["num_trials"] == 16
    assert "untrained_test" in summary
    assert summary["training_precision"]["precision"] == "fp32", "--mixed-precision no overrides the YAML's bf16"
    assert "training precision: fp32 (asked for" in completed.stderr

    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"train/loss", "train/lr_new"} <= set(metrics[0])
    assert any("validation/eer" in m for m in metrics)
    assert list((run_dir / "logs").rglob("events.out.tfevents*")), "TensorBoard events were written"
    assert [p.name for p in sorted((run_dir / "checkpoints").iterdir())] == ["step-00000004", "step-00000008"]

    final = run_dir / "final"
    for name in (
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "modeling_wavlmrawnet.py",
        "train_config.yaml",
        "run_info.json",
        "test_results.json",
        "test_det.png",
        "test_scores.png",
    ):
        assert (final / name).exists(), name
    run_info = json.loads((final / "run_info.json").read_text())
    assert run_info["training_precision"]["precision"] == "fp32" and "cores" in run_info["hardware"]
    card = (final / "README.md").read_text()
    assert "| mixed precision | no → fp32 (asked for;" in card and "| training hardware | " in card
    config_json = json.loads((final / "config.json").read_text())
    assert len(config_json["id2label"]) == 4, "4 of the 6 speakers train; 2 are held out for validation"
    results = json.loads((final / "test_results.json").read_text())
    assert results["num_trials"] == 16 and 0 <= results["eer_percent"] <= 100
    assert results["dtype"] == "fp32" and results["precision_reason"].startswith("asked for")
    # The threshold comes from the validation EER of the best checkpoint.
    assert config_json["verification_threshold"] != 0.5

    script = (
        "from transformers import AutoModel; import torch;"
        f"m = AutoModel.from_pretrained({str(final)!r}, trust_remote_code=True);"
        "print(m.get_embeddings(torch.randn(1, 16000)).shape)"
    )
    assert "torch.Size([1, 256])" in run([sys.executable, "-c", script], tmp_path).stdout


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, corpus):
    straight = tmp_path / "straight"
    straight.mkdir()
    run(train_command(write_config(straight, corpus)), straight)

    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    config = write_config(interrupted, corpus, log_every=1)
    process = subprocess.Popen(
        train_command(config),
        cwd=interrupted,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    first_checkpoint = interrupted / "run" / "checkpoints" / "step-00000004"
    deadline = time.time() + 300
    while not first_checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run was killed mid-way"
    assert not (interrupted / "run" / "final").exists()

    completed = run(train_command(config, "--resume"), interrupted)
    assert "resumed from" in completed.stdout + completed.stderr
    reference = load_file(straight / "run" / "checkpoints" / "step-00000008" / "model.safetensors")
    resumed = load_file(interrupted / "run" / "checkpoints" / "step-00000008" / "model.safetensors")
    assert reference.keys() == resumed.keys()
    worst = max(float(np.abs(reference[k] - resumed[k]).max()) for k in reference)
    assert worst <= 1e-5, worst
    assert (interrupted / "run" / "final" / "model.safetensors").exists()


def test_two_process_ddp_keeps_replicas_identical_on_different_batches(tmp_path, corpus):
    config = write_config(tmp_path, corpus, max_steps=4, eval_every=4, checkpoint_every=4)  # precision: auto
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        str(REPO / "tests" / "record_training.py"),
        str(config),  # train.py plus a callback recording each rank
    ]
    # On x86, kernels capped at AVX2 as on a CPU without native bf16: auto must train in fp32 on both ranks.
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    avx2_only = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"} if x86 else {}
    completed = run(command, tmp_path, env=avx2_only)
    run_dir = tmp_path / "run"
    run_info = json.loads((run_dir / "run_info.json").read_text())
    assert run_info["num_processes"] == 2
    if x86:
        assert "training precision: fp32 (CPU has" in completed.stderr
        assert run_info["training_precision"]["precision"] == "fp32"
    digests = [(run_dir / f"param_digest.rank{r}.txt").read_text() for r in (0, 1)]
    assert digests[0] == digests[1], "both replicas end with identical parameters"
    # rank 0 validated at the last step; what that built from the weights is dropped before training goes on
    assert (run_dir / "inference_caches.rank0.txt").read_text() == "0"
    seen = []
    for rank in (0, 1):
        lines = [json.loads(line) for line in (run_dir / f"seen_batches.rank{rank}.jsonl").read_text().splitlines()]
        assert len(lines) == 4
        seen.append({tuple(line["paths"]) for line in lines})
    assert not seen[0] & seen[1], "each process saw different batches"
    assert (run_dir / "final" / "model.safetensors").exists()


def test_bad_audio_refuses_to_start_or_is_skipped_and_listed(tmp_path, corpus):
    broken = tmp_path / "corpus"
    shutil.copytree(corpus, broken)
    speaker_dir = next((broken / "train" / "wav").iterdir())
    video_dir = next(speaker_dir.iterdir())
    (video_dir / "99998.wav").write_text("not audio")
    (video_dir / "99999.wav").write_bytes(b"")
    config = write_config(tmp_path, broken, max_steps=2, eval_every=2, checkpoint_every=2)

    env = dict(os.environ, OMP_NUM_THREADS="1")
    refused = subprocess.run(train_command(config), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0
    assert "99998.wav" in refused.stderr and "99999.wav" in refused.stderr
    assert not (tmp_path / "run" / "checkpoints").exists(), "training never started"

    run(train_command(config, "--skip-bad-audio"), tmp_path)
    report = (tmp_path / "run" / "bad_audio.tsv").read_text().splitlines()
    assert len(report) == 3 and {line.split("\t")[0].rsplit("/", 1)[-1] for line in report[1:]} == {
        "99998.wav",
        "99999.wav",
    }
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()


def test_accelerate_launch_module_trains_without_trackers(tmp_path, corpus):
    """`accelerate launch -m wavlmrawnet.train` is the same command as train.py; `training.log_with: none` trains
    with no tracker at all (no TensorBoard events), and metrics.jsonl is still written."""
    config = write_config(tmp_path, corpus, eval_every=2, checkpoint_every=2)
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    options = ["--max-steps", "2", "--set", "training.log_with=none", "--set", "data.test_trials=null"]
    launch = [*accelerate, "-m", "wavlmrawnet.train", "--config", str(config), *options]
    completed = run(launch, tmp_path)
    summary = json.loads(completed.stdout[completed.stdout.index("{") :])
    run_dir = tmp_path / "run"
    assert summary["steps"] == 2 and (run_dir / "final" / "model.safetensors").is_file()
    assert (run_dir / "metrics.jsonl").read_text().strip()
    assert not list(run_dir.rglob("events.out.tfevents*")), "no tracker was asked for"
    assert yaml.safe_load((run_dir / "train_config.yaml").read_text())["training"]["log_with"] == []
