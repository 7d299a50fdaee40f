"""The model card: Hub metadata that parses with every metric, numbers taken from the results JSON, an up-front
warning for synthetic training data, the model's real config, and usage snippets that run as written."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import write_wav
from huggingface_hub import ModelCard
from huggingface_hub.repocard import metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results

from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector
from wavlmrawnet.evaluation import EvaluationResults
from wavlmrawnet.evaluation.plots import plot_det_curve, plot_score_histograms
from wavlmrawnet.evaluation.runner import evaluate_trial_list
from wavlmrawnet.model_card import SYNTHETIC_WARNING, render_model_card, write_model_card

TRAIN_CONFIG = {
    "model": {"preset": "tiny", "wavlm_pretrained": None, "overrides": {}},
    "data": {
        "train_dir": "runs/demo/corpus/train/wav",
        "train_manifest": None,
        "validation_speakers": 4,
        "test_trials": "runs/demo/corpus/test/veri_test2.txt",
        "test_root": "runs/demo/corpus/test/wav",
        "validation_trials": 500,
        "segment_seconds": 2.5,
        "num_workers": 2,
        "augment": {"noise_prob": 0.5, "reverb_prob": 0.3},
    },
    "training": {
        "output_dir": "runs/demo",
        "seed": 7,
        "max_steps": 437,
        "batch_size": 24,
        "gradient_accumulation_steps": 2,
        "learning_rate": 0.0015,
        "wavlm_learning_rate": 3.0e-05,
        "weight_decay": 0.0001,
        "scheduler": "cosine",
        "warmup_steps": 40,
        "max_grad_norm": 5.0,
        "freeze_wavlm_steps": 0,
        "freeze_feature_encoder": True,
        "mixed_precision": "no",
    },
}


# ----------------------------------------------------------------------------------------------- helpers
def save_model(folder: Path, **overrides) -> Path:
    torch.manual_seed(0)
    config = WavLMRawNetConfig.from_preset("tiny", num_labels=4, **overrides)
    WavLMRawNetForXVector(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def base_model_dir(tmp_path_factory) -> Path:
    return save_model(tmp_path_factory.mktemp("saved") / "model")


@pytest.fixture
def model_dir(tmp_path, base_model_dir) -> Path:
    folder = tmp_path / "runs" / "demo" / "final"
    shutil.copytree(base_model_dir, folder)
    return folder


def write_train_config(folder: Path, synthetic: bool | None = None, **model_section) -> Path:
    values = json.loads(json.dumps(TRAIN_CONFIG))
    values["model"].update(model_section)
    if synthetic is not None:
        values["data"]["synthetic"] = synthetic
    path = folder / "train_config.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def write_results(
    folder: Path,
    name: str = "test",
    eer: float = 0.1234,
    min_dcf: dict | None = None,
    num_target: int = 400,
    num_nontarget: int = 437,
    score_normalization: str = "none (cosine)",
    **extra,
) -> Path:
    """A results JSON shaped like evaluate_trial_list's, with real DET / histogram PNGs beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    scores = np.r_[rng.normal(0.6, 0.2, num_target), rng.normal(0.2, 0.2, num_nontarget)]
    labels = np.r_[np.ones(num_target), np.zeros(num_nontarget)]
    det = plot_det_curve(scores, labels, folder / f"{name}_det.png", title=name)
    histogram = plot_score_histograms(scores, labels, folder / f"{name}_scores.png", threshold=0.4)
    min_dcf = min_dcf or {"0.01": 0.7071, "0.05": 0.5017}
    results = {
        "eer": eer,
        "eer_percent": 100 * eer,
        "eer_threshold": 0.4127,
        "min_dcf": min_dcf,
        "min_dcf_thresholds": {p: 0.5 for p in min_dcf},
        "num_trials": num_target + num_nontarget,
        "num_target": num_target,
        "num_nontarget": num_nontarget,
        "trial_list": name,
        "num_files": 200,
        "files_embedded_this_run": 200,
        "score_normalization": score_normalization,
        "dtype": "float32",
        "date": "2026-11-25",
        "hardware": "x86_64 CPU, 2 cores, torch 2.13.0",
        "det_curve_png": str(det),
        "score_histogram_png": str(histogram),
        "results_json": str(folder / f"{name}_results.json"),
        **extra,
    }
    path = folder / f"{name}_results.json"
    path.write_text(json.dumps(results, indent=2))
    return path


def section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    following = text.find("\n## ", start + 1)
    return text[start : following if following > 0 else None]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


# ----------------------------------------------------------------------------------------------- metadata
def test_metadata_parses_and_carries_every_metric_of_the_results_json(model_dir, tmp_path, caplog):
    write_train_config(model_dir, synthetic=False, wavlm_pretrained="microsoft/wavlm-large")
    results_path = write_results(tmp_path / "elsewhere", eer=0.1234, min_dcf={"0.01": 0.7071, "0.05": 0.5017})
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        card_path = write_model_card(model_dir, [results_path], license="mit", datasets="some-org/some-voices")
        metadata = metadata_load(card_path)
        card = ModelCard.load(card_path, ignore_metadata_errors=False)
        name, evals = model_index_to_eval_results(metadata["model-index"])
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []

    assert card_path == model_dir / "README.md"
    assert metadata["library_name"] == "transformers"
    assert metadata["pipeline_tag"] == "feature-extraction"
    assert metadata["tags"] == ["speaker-verification", "wavlm", "rawnet", "audio", "voxceleb"]
    assert metadata["license"] == "mit"
    assert metadata["datasets"] == ["some-org/some-voices"]
    assert metadata["base_model"] == "microsoft/wavlm-large"
    assert metadata["metrics"] == ["eer", "min_dcf"]
    assert name == "demo"  # the run's folder name (the model folder itself is "final")
    assert len(card.data.eval_results) == 3

    by_name = {r.metric_name: r for r in evals}
    assert len(evals) == len(by_name) == 3
    written = json.loads(results_path.read_text())
    eer = next(r for r in evals if r.metric_type == "eer")
    assert eer.metric_value == written["eer_percent"] == pytest.approx(12.34)
    assert eer.metric_args["num_trials"] == written["num_trials"] == 837
    assert (eer.metric_args["num_target"], eer.metric_args["num_nontarget"]) == (400, 437)
    assert "837 trials" in eer.metric_name
    dcf = {r.metric_args["p_target"]: r for r in evals if r.metric_type == "min_dcf"}
    assert dcf[0.01].metric_value == 0.7071 and "0.01" in dcf[0.01].metric_name
    assert dcf[0.05].metric_value == 0.5017 and "0.05" in dcf[0.05].metric_name
    for result in evals:
        assert result.task_type == "speaker-verification"
        assert (result.dataset_name, result.dataset_split) == ("test trial list", "test")
        assert result.dataset_type

    # The plots and the JSON are copied into the folder and referenced by relative path.
    text = card_path.read_text()
    for name in ("test_det.png", "test_scores.png", "test_results.json"):
        assert (model_dir / name).read_bytes() == (tmp_path / "elsewhere" / name).read_bytes()
    assert "](test_det.png)" in text and "](test_scores.png)" in text
    assert str(tmp_path) not in section(text, "Evaluation")


def test_evaluation_table_shows_the_json_values(model_dir):
    write_results(model_dir, eer=0.08765, min_dcf={"0.01": 0.6543, "0.05": 0.3210})
    table = section(write_model_card(model_dir).read_text(), "Evaluation")
    row = next(line for line in table.splitlines() if line.startswith("| test |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:10] == [
        "8.77",
        "0.6543",
        "0.3210",
        "837 (400 / 437)",
        "none (cosine)",
        "float32",
        "2026-11-25",
        "x86_64 CPU, 2 cores, torch 2.13.0",
    ]
    assert "minDCF@0.01" in table and "minDCF@0.05" in table


def test_two_results_files_give_two_model_index_entries(model_dir, tmp_path):
    cosine = write_results(tmp_path / "cosine", eer=0.10)
    as_norm = write_results(
        tmp_path / "asnorm",
        name="test_asnorm",
        eer=0.08,
        score_normalization="AS-Norm (top 200, cohort 1000)",
        dataset_name="VoxCeleb1-O (cleaned)",
        dataset_type="voxceleb1",
        dataset_split="test",
    )
    metadata = metadata_load(write_model_card(model_dir, [cosine, as_norm]))
    assert len(metadata["model-index"][0]["results"]) == 2
    _, evals = model_index_to_eval_results(metadata["model-index"])
    eers = {r.dataset_name: r.metric_value for r in evals if r.metric_type == "eer"}
    assert eers == {"test trial list": pytest.approx(10.0), "VoxCeleb1-O (cleaned)": pytest.approx(8.0)}
    text = (model_dir / "README.md").read_text()
    assert "No VoxCeleb result" not in text  # one JSON says it is VoxCeleb


def test_same_dataset_twice_is_an_error(model_dir, tmp_path):
    first = write_results(tmp_path / "a", eer=0.1)
    second = write_results(tmp_path / "b", eer=0.2).rename(tmp_path / "b" / "rerun_results.json")
    with pytest.raises(ValueError, match="same dataset"):
        write_model_card(model_dir, [first, second])
    assert not (model_dir / "README.md").exists()


def test_without_results_the_card_says_so_and_has_no_model_index(model_dir):
    path = write_model_card(model_dir)
    metadata = metadata_load(path)
    assert "model-index" not in metadata and "metrics" not in metadata
    assert "**This model has not been evaluated.**" in path.read_text()
    ModelCard.load(path, ignore_metadata_errors=False)


# ----------------------------------------------------------------------------------------------- honesty
@pytest.mark.parametrize("where", ["train_config", "results_json", "nowhere"])
def test_synthetic_warning_opens_the_card_only_for_synthetic_data(model_dir, where):
    write_train_config(model_dir, synthetic=where == "train_config")
    write_results(model_dir, **({"synthetic": True} if where == "results_json" else {}))
    card = ModelCard.load(write_model_card(model_dir))
    body = card.text.lstrip()
    if where == "nowhere":
        assert SYNTHETIC_WARNING not in card.text
        assert "synthetic" not in body[: body.index("## Usage")].lower()
        assert "(synthetic)" not in card.text and "Synthetic training data" not in card.text
        assert "voxceleb" in card.data.tags and "synthetic-data" not in card.data.tags
        assert body.startswith("# demo")
    else:
        assert body.startswith("> [!WARNING]\n> **" + SYNTHETIC_WARNING + "**")
        assert "synthetic-data" in card.data.tags and "voxceleb" not in card.data.tags
        assert card.data.eval_results[0].dataset_name.startswith("wavlmrawnet synthetic demo corpus")
        assert "No VoxCeleb result" in card.text


def test_trial_list_file_name_is_not_taken_for_voxceleb(model_dir):
    # The synthetic corpus writes veri_test2.txt too: only an explicit dataset_name may claim VoxCeleb.
    write_results(model_dir, name="veri_test2")
    card = ModelCard.load(write_model_card(model_dir))
    assert card.data.eval_results[0].dataset_name == "veri_test2 trial list"
    assert "No VoxCeleb result" in card.text


@pytest.mark.parametrize(
    "change, error, message",
    [
        (lambda r: r.pop("eer"), ValueError, "lacks \\['eer'\\]"),
        (lambda r: r.update(eer_percent=50.0), ValueError, "'eer_percent'"),
        (lambda r: r.update(eer=float("nan")), ValueError, "finite"),
        (lambda r: r.update(min_dcf={}), ValueError, "'min_dcf'"),
        (lambda r: r.update(num_target=1), ValueError, "num_target"),
        (lambda r: r.update(synthetic="yes"), ValueError, "'synthetic'"),
        (lambda r: r.update(det_curve_png="/nowhere/test_det.png"), FileNotFoundError, "det_curve_png"),
    ],
)
def test_bad_results_json_is_a_clear_error_and_nothing_is_written(model_dir, tmp_path, change, error, message):
    path = write_results(tmp_path / "elsewhere")
    values = json.loads(path.read_text())
    change(values)
    path.write_text(json.dumps(values))
    if "det_curve_png" in message:
        (tmp_path / "elsewhere" / "test_det.png").unlink()
    before = sorted(os.listdir(model_dir))
    with pytest.raises(error, match=message):
        write_model_card(model_dir, [path])
    assert sorted(os.listdir(model_dir)) == before


def test_plots_are_found_beside_a_moved_results_json(tmp_path):
    path = write_results(tmp_path / "old")
    moved = tmp_path / "new"
    shutil.move(tmp_path / "old", moved)
    result = EvaluationResults.read(moved / path.name)
    assert result.det_curve_png == moved / "test_det.png"


def test_synthetic_flag_in_train_config_must_be_boolean(model_dir):
    write_train_config(model_dir, synthetic="maybe")
    with pytest.raises(ValueError, match="data.synthetic"):
        write_model_card(model_dir)


# ----------------------------------------------------------------------------------------------- content
def test_architecture_shows_this_models_config(tmp_path):
    folder = save_model(
        tmp_path / "custom",
        sinc_filters=24,
        sinc_kernel_size=101,
        sinc_stride=2,
        sinc_pool_size=1,
        rawnet_channels=[16, 24, 24],
        se_reduction=2,
        attention_dim=12,
        rawnet_embedding_dim=40,
        embedding_dim=96,
        fusion_activation="none",
        loss="aamsoftmax",
        loss_margin=0.2,
        loss_scale=32.0,
        verification_threshold=0.3712,
        wavlm_pooling="weighted",
        wavlm_config={"hidden_size": 48},
    )
    text = write_model_card(folder).read_text()
    architecture = section(text, "Architecture")
    for expected in (
        "2 transformer layers, hidden size 48",
        "all 3\n  hidden states",
        '`wavlm_pooling = "weighted"`',
        "SincConv with 24 learned band-pass filters",
        "101 samples, stride 2",
        "no pooling -> batch norm",
        "3 residual blocks",
        "16, 24, 24 channels",
        "squeeze-and-excitation with reduction 2",
        "max-pool 3 after each",
        "attention size 12",
        "48-d) -> linear: 40-d",
        "concatenation (88-d)",
        "no activation",
        "96-d",
        "AAM-Softmax / ArcFace (additive angular margin 0.2 rad",
        "scale 32.0",
    ):
        assert expected in architecture, expected
    assert "**0.3712**" in text and "(96,)" in text and "(2, 96)" in text
    assert "**Training speakers:** 4" in text


def test_a_switched_off_branch_is_said_to_be_off(tmp_path):
    folder = save_model(tmp_path / "wavlm_only", use_rawnet_branch=False)
    text = write_model_card(folder).read_text()
    assert "switched off (`use_rawnet_branch = false`)" in text
    assert "concatenation (64-d)" in text


def test_training_section_reads_train_config(model_dir):
    write_train_config(model_dir, synthetic=False)
    training = section(write_model_card(model_dir).read_text(), "Training")
    for expected in (
        "| training data | runs/demo/corpus/train/wav |",
        "| steps | 437 |",
        "| seed | 7 |",
        "| batch size (per process) x gradient accumulation | 24 x 2 |",
        "| learning rate: new layers / WavLM | 0.0015 / 3e-05 |",
        '"reverb_prob": 0.3',
        "```yaml\nmodel:",
        "| training crop | 2.5 s |",
    ):
        assert expected in training, expected


def test_missing_train_config_is_not_recorded(model_dir):
    text = write_model_card(model_dir).read_text()
    assert "Training data and hyper-parameters: **not recorded**" in section(text, "Training")
    assert "How `verification_threshold` was chosen is not recorded" in text


def test_base_model_from_train_config_only_when_it_is_a_hub_id(model_dir, tmp_path):
    local = tmp_path / "wavlm-large-local"
    local.mkdir()
    write_train_config(model_dir, wavlm_pretrained=str(local))
    card = ModelCard.load(write_model_card(model_dir))
    assert card.data.base_model is None
    assert f"WavLM weights from the local path `{local}`" in card.text

    write_train_config(model_dir, wavlm_pretrained="microsoft/wavlm-large")
    assert ModelCard.load(write_model_card(model_dir)).data.base_model == "microsoft/wavlm-large"
    with pytest.raises(ValueError, match="base_model"):
        write_model_card(model_dir, base_model="not a hub id!")


def test_render_writes_nothing(model_dir, tmp_path):
    results = write_results(tmp_path / "elsewhere")
    before = sorted(os.listdir(model_dir))
    text = render_model_card(model_dir, [results], repo_id="someone/wavlmrawnet-demo")
    assert sorted(os.listdir(model_dir)) == before
    assert 'repo_id = "someone/wavlmrawnet-demo"' in text
    assert "MODEL=$(hf download someone/wavlmrawnet-demo)" in text
    assert ModelCard(text).data.eval_results[0].metric_value == pytest.approx(12.34)


# ----------------------------------------------------------------------------------------------- snippets
def snippet_environment(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), TOKENIZERS_PARALLELISM="false")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


@pytest.mark.slow  # fresh interpreters: ~20-30 s
def test_every_python_snippet_runs_as_written(model_dir, tmp_path):
    write_results(model_dir)
    text = write_model_card(model_dir).read_text()
    snippets = code_blocks(text, "python")
    assert len(snippets) == 3
    workdir = tmp_path / "user"
    workdir.mkdir()
    write_wav(workdir / "enroll.wav", seconds=1.5, sampling_rate=16000, seed=1)
    write_wav(workdir / "test.wav", seconds=2.0, sampling_rate=22050, seed=2, channels=2)
    env = snippet_environment(tmp_path)
    processes = []
    for index, snippet in enumerate(snippets):
        assert f'repo_id = "{model_dir.resolve()}"' in snippet
        assert 'enroll_wav, test_wav = "enroll.wav", "test.wav"' in snippet
        script = workdir / f"snippet_{index}.py"
        script.write_text(snippet)
        processes.append(
            subprocess.Popen(
                [sys.executable, script.name],
                cwd=workdir,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = []
    for process, snippet in zip(processes, snippets):
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, f"snippet failed:\n{snippet}\n--- stderr ---\n{stderr[-3000:]}"
        outputs.append(stdout)
    assert re.search(r"cosine -?\d\.\d{4}, same speaker: (True|False)", outputs[0])
    assert outputs[1].startswith("(256,) ")
    first, second = (eval(line) for line in outputs[2].strip().splitlines())  # noqa: S307 (dicts we printed)
    assert set(first) == {"score", "same_speaker", "threshold"} and first["threshold"] == 0.5
    assert second["threshold"] == 0.6 and second["score"] == pytest.approx(first["score"], abs=1e-5)


@pytest.mark.slow  # fresh interpreters: ~20-30 s
def test_cli_snippets_run_as_written(model_dir, tmp_path):
    if not (Path(sys.executable).parent / "wavlmrawnet").exists():
        pytest.fail("the `wavlmrawnet` command is not installed beside this Python; run `pip install -e .`")
    text = write_model_card(model_dir).read_text()
    (bash,) = code_blocks(text, "bash")
    assert bash.splitlines()[0] == f"MODEL={model_dir.resolve()}"
    workdir = tmp_path / "user"
    workdir.mkdir()
    write_wav(workdir / "enroll.wav", seed=1)
    write_wav(workdir / "test.wav", seed=2)
    completed = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", bash],
        cwd=workdir,
        env=snippet_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert re.search(r"score -?\d\.\d{4}\s+threshold 0\.5000", completed.stdout)
    assert (workdir / "embeddings.safetensors").stat().st_size > 0


# ----------------------------------------------------------------------------------------------- end to end
def test_a_real_evaluation_run_feeds_the_card(model_dir, tmp_path):
    """evaluate_trial_list's own outputs (JSON + plots in the model folder) become the card's numbers."""
    audio = tmp_path / "audio"
    audio.mkdir()
    names = [write_wav(audio / f"spk{s}_{u}.wav", seconds=1.0, seed=10 * s + u) for s in range(2) for u in range(2)]
    trials = tmp_path / "trials.txt"
    trials.write_text(
        "".join(
            f"{int(a[:4] == b[:4])} {a} {b}\n"
            for a, b in [
                ("spk0_0.wav", "spk0_1.wav"),
                ("spk1_0.wav", "spk1_1.wav"),
                ("spk0_0.wav", "spk1_0.wav"),
                ("spk0_1.wav", "spk1_1.wav"),
            ]
        )
    )
    assert len(names) == 4
    model = WavLMRawNetForXVector.from_pretrained(model_dir).eval()
    results = evaluate_trial_list(
        model,
        model.default_feature_extractor(),
        trials,
        root=audio,
        output_dir=model_dir,
        name="test",
        progress=False,
    )
    card = ModelCard.load(write_model_card(model_dir))
    eer = next(r for r in card.data.eval_results if r.metric_type == "eer")
    assert eer.metric_value == results["eer_percent"]
    assert eer.metric_args["num_trials"] == 4
    assert "](test_det.png)" in card.text


def test_a_loss_from_an_added_table_entry_is_named_as_such(tmp_path, monkeypatch):
    from wavlmrawnet.configuration_wavlmrawnet import PART_NAMES
    from wavlmrawnet.layers import LOSSES, AMSoftmax

    monkeypatch.setitem(LOSSES, "my_margin", AMSoftmax)  # a new loss: one class, one table entry and its name
    monkeypatch.setitem(PART_NAMES, "loss", (*PART_NAMES["loss"], "my_margin"))
    folder = save_model(tmp_path / "model", loss="my_margin", loss_margin=0.25)
    card = " ".join(render_model_card(folder).split())  # the template wraps its lines
    assert "- **Training loss:** `my_margin` (margin 0.25, scale 30.0)" in card
    assert "AAM-Softmax" not in card
