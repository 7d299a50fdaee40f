"""Training configuration: one YAML file with `model`, `data` and `training` sections, overridable from the CLI."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import yaml


@dataclass
class ModelSection:
    preset: str = "default"  # WavLMRawNetConfig preset
    wavlm_pretrained: str | None = None  # e.g. "microsoft/wavlm-large": WavLM weights to start from
    overrides: dict = field(default_factory=dict)  # WavLMRawNetConfig arguments


@dataclass
class DataSection:
    train_dir: str | None = None  # VoxCeleb layout: <train_dir>/wav/<speaker>/<video>/<utt>.wav
    train_manifest: str | None = None  # or a CSV/JSONL manifest with path,speaker
    validation_speakers: float = 0.1  # held-out speakers: a count (>= 1) or a fraction
    test_trials: str | None = None  # VoxCeleb trial list evaluated at the end (e.g. veri_test2.txt)
    test_root: str | None = None  # folder the trial paths are relative to
    test_dataset_name: str | None = None  # e.g. "VoxCeleb1-O (cleaned)": names the result in the model card
    validation_trials: int = 2000  # trials drawn among the validation speakers' files
    segment_seconds: float = 3.0  # training crop
    num_workers: int = 2
    skip_bad_audio: bool = False
    full_audio_check: bool = True  # decode every file before training (False: headers only, faster on big corpora)
    augment: dict = field(default_factory=dict)  # AugmentConfig fields
    synthetic: bool = False  # the training data is the synthetic demo corpus (the model card says so at the top)


@dataclass
class TrainingSection:
    output_dir: str = "runs/wavlmrawnet"
    seed: int = 0
    max_steps: int = 1000
    batch_size: int = 32  # per process
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3  # new layers: RawNet branch, fusion, loss weights
    wavlm_learning_rate: float = 2e-5  # the pretrained WavLM
    weight_decay: float = 1e-4
    scheduler: str = "cosine"  # any transformers.get_scheduler name
    warmup_steps: int = 100
    max_grad_norm: float = 5.0
    freeze_wavlm_steps: int = 0  # WavLM learning rate is 0 for the first N steps
    freeze_feature_encoder: bool = True
    gradient_checkpointing: bool = False
    mixed_precision: str = "no"  # "no", "bf16" or "fp16"
    cpu: bool = False  # train on the CPU even where a GPU exists
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    eval_every: int = 200
    log_every: int = 10
    eval_batch_size: int = 16
    test_before_training: bool = False  # also evaluate the untrained model on data.test_trials (for comparisons)


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    training: TrainingSection = field(default_factory=TrainingSection)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = set(values) - set(sections)
        if unknown:
            raise ValueError(f"unknown config section(s) {sorted(unknown)}; expected {sorted(sections)}")
        built = {}
        for name, section_cls in (("model", ModelSection), ("data", DataSection), ("training", TrainingSection)):
            given = dict(values.get(name) or {})
            known = {f.name for f in dataclasses.fields(section_cls)}
            bad = set(given) - known
            if bad:
                raise ValueError(f"unknown key(s) {sorted(bad)} in section '{name}'; known: {sorted(known)}")
            built[name] = section_cls(**given)
        return cls(**built)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: list[str] | None = None) -> "TrainConfig":
        with open(path, encoding="utf-8") as handle:
            values = yaml.safe_load(handle) or {}
        for item in overrides or []:
            apply_override(values, item)
        return cls.from_dict(values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def apply_override(values: dict, item: str) -> None:
    """Applies `section.key=value` (value parsed as YAML) to a nested dict."""
    if "=" not in item:
        raise ValueError(f"override {item!r} must look like section.key=value")
    dotted, raw = item.split("=", 1)
    keys = dotted.split(".")
    target = values
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = yaml.safe_load(raw)
