"""The typed training config: YAML 1.2 values, overrides checked against each field's type, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wavlmrawnet.precision import resolve_precision
from wavlmrawnet.training.config import ConfigError, TrainConfig, load_yaml

REPO = Path(__file__).resolve().parents[1]
BASE = """
model: {preset: tiny}
data: {train_dir: corpus/train, skip_bad_audio: yes}
training:
  learning_rate: 1e-3
  mixed_precision: no
"""


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(BASE)
    return path


def test_yaml_no_stays_a_string_and_means_fp32(config_file):
    config = TrainConfig.from_yaml(config_file)
    assert config.training.mixed_precision == "no"
    assert resolve_precision(config.training.mixed_precision, "cpu").name == "fp32"
    assert config.training.learning_rate == pytest.approx(1e-3) and isinstance(config.training.learning_rate, float)
    assert config.data.skip_bad_audio is True  # "yes" for a bool field is a bool


@pytest.mark.parametrize("override", ["training.mixed_precision=no", "training.mixed_precision=fp32"])
def test_override_to_fp32(config_file, override):
    config = TrainConfig.from_yaml(config_file, ["training.mixed_precision=bf16", override])
    assert resolve_precision(config.training.mixed_precision, "cpu").name == "fp32"


def test_default_precision_is_auto():
    assert TrainConfig().training.mixed_precision == "auto"


def test_overrides_are_typed(config_file):
    config = TrainConfig.from_yaml(
        config_file,
        [
            "training.learning_rate=5e-4",
            "training.max_steps=7",
            "data.validation_speakers=3",
            "data.validation_speakers=0.25",
            "training.output_dir=off",
            "data.augment={speed_factors: [0.9, 1.1]}",
        ],
    )
    assert config.training.learning_rate == 5e-4 and config.training.max_steps == 7
    assert config.data.validation_speakers == 0.25
    assert config.training.output_dir == "off", "a string field keeps `off` as text"
    assert config.data.augment.speed_factors == (0.9, 1.1)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("training.learning_rate=abc", "training.learning_rate = 'abc': Input should be a valid number"),
        ("training.max_steps=1.5", "training.max_steps = 1.5: Input should be a valid integer"),
        ("training.batch_size=-4", "training.batch_size = -4: Input should be greater than 0"),
        ("training.mixed_precision=fp8", "training.mixed_precision = 'fp8': Input should be 'auto'"),
        ("training.mixed_precision=false", "training.mixed_precision = False"),
        ("training.bogus=1", "training.bogus: unknown key"),
        ("trainig.max_steps=3", "trainig: unknown key"),
        ("data.validation_speakers=1.5", "data.validation_speakers = 1.5"),
        ("data.augment={noise_prob: 2}", "data.augment.noise_prob = 2: Input should be less than or equal to 1"),
        ("training.scheduler=sometimes", "training.scheduler = 'sometimes': Value error, unknown scheduler"),
        ("model.preset=huge", "model.preset = 'huge': Value error, unknown preset"),
        ("training.max_steps", "must look like section.key=value"),
        ("max_steps=3", "the key must look like section.key"),
    ],
)
def test_bad_values_name_the_key_the_value_and_the_expectation(config_file, override, expected):
    with pytest.raises(ConfigError) as raised:
        TrainConfig.from_yaml(config_file, [override])
    assert expected in str(raised.value)


def test_saved_config_reloads_to_the_same_values(tmp_path, config_file):
    config = TrainConfig.from_yaml(config_file, ["data.augment={noise_prob: 0.2}"])
    saved = tmp_path / "train_config.yaml"
    saved.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))  # as the trainer writes it
    assert TrainConfig.from_yaml(saved) == config
    assert yaml.safe_load(saved.read_text())["training"]["mixed_precision"] == "no", "readable by plain PyYAML"


def test_yaml12_scalars():
    assert load_yaml("a: no\nb: off\nc: yes\nd: true\ne: 1e-3\nf: 2\ng: .5") == {
        "a": "no",
        "b": "off",
        "c": "yes",
        "d": True,
        "e": 1e-3,
        "f": 2,
        "g": 0.5,
    }


@pytest.mark.parametrize("flag", [["--mixed-precision", "fp8"], ["--set", "training.batch_size=-1"]])
@pytest.mark.slow
def test_train_py_stops_at_once_on_a_bad_value(tmp_path, config_file, flag):
    """The bad value is refused before anything is read or built: the config's data folder does not exist, and the
    error is about the value, not the folder (a behaviour, not a timing)."""
    completed = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--config", str(config_file), *flag],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert completed.returncode != 0
    key = "mixed-precision" if flag[0] == "--mixed-precision" else "training.batch_size"
    assert key in completed.stderr, completed.stderr[-2000:]
    assert "Traceback" not in completed.stderr
    assert "corpus/train" not in completed.stderr, "it went on to read the data"
    assert not (tmp_path / "runs").exists(), "nothing was written"


@pytest.mark.parametrize(
    ("value", "trackers"),
    [(None, []), ("none", []), ([], []), ("wandb", ["wandb"]), (["tensorboard", "mlflow"], ["tensorboard", "mlflow"])],
)
def test_log_with_takes_any_accelerate_tracker_or_none(tmp_path, value, trackers):
    from wavlmrawnet.training.trainer import make_accelerator

    config = TrainConfig.from_dict({"training": {"log_with": value, "output_dir": str(tmp_path), "cpu": True}})
    assert config.training.log_with == trackers
    assert TrainConfig.from_dict(config.to_dict()) == config  # as train_config.yaml reloads
    if trackers == []:  # no tracker at all: the Accelerator is built without one (a missing package would raise)
        accelerator, _, _ = make_accelerator(config.training)
        assert accelerator.log_with == []


def test_log_with_refuses_an_unknown_tracker():
    with pytest.raises(ConfigError, match=r"training.log_with.*unknown tracker\(s\) \['tensorbored'\].*wandb"):
        TrainConfig.from_dict({"training": {"log_with": "tensorbored"}})
    assert TrainConfig().training.log_with == ["tensorboard"]  # the default, as before


def test_train_names_a_missing_data_folder_without_a_traceback(tmp_path, config_file, monkeypatch, capsys):
    from wavlmrawnet.train import main

    monkeypatch.chdir(tmp_path)
    assert main(["--config", str(config_file), "--max-steps", "1"]) == 1
    error = capsys.readouterr().err
    assert "error: VoxCeleb folder" in error and "corpus/train' does not exist" in error, error[-2000:]
    assert "Traceback" not in error and not (tmp_path / "runs" / "wavlmrawnet" / "final").exists()
