"""Training configuration: one YAML file with `model`, `data` and `training` sections, overridable from the CLI.

Every value is checked against its field's type by pydantic before any data is read: an unknown key, a wrong type
(`training.max_steps=1.5`, `training.learning_rate=abc`) or a value out of range stops the run with the key, the value
and what was expected. YAML is read with YAML 1.2 rules, so `no`, `off` and `yes` stay strings (`mixed_precision: no`
means fp32) and `1e-3` is a float.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..configuration_wavlmrawnet import PRESETS
from ..precision import PRECISION_ALIASES
from .augment import AugmentConfig


class ConfigError(ValueError):
    """A config value that does not fit its field; the message names the key, the value and the expectation."""


# ----------------------------------------------------------------------------------------------- YAML 1.2 scalars
class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 scalars: booleans are only true/false, and floats need no dot (`1e-3`)."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp) for tag, regexp in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parses YAML text with YAML 1.2 scalar rules (see `_Yaml12Loader`)."""
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 (a SafeLoader subclass)


# ----------------------------------------------------------------------------------------------- sections
class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class ModelSection(_Section):
    preset: str = "default"  # WavLMRawNetConfig preset
    wavlm_pretrained: str | None = None  # e.g. "microsoft/wavlm-large": WavLM weights to start from
    overrides: dict[str, Any] = Field(default_factory=dict)  # WavLMRawNetConfig arguments

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        if value not in PRESETS:
            raise ValueError(f"unknown preset; choose one of {sorted(PRESETS)}")
        return value


class DatasetSource(_Section):
    """`data.dataset`: any `datasets` source. `path`, `name`, `split`, `data_files`, `data_dir` and `revision` go to
    `datasets.load_dataset` (a Hub id, a packaged builder such as `audiofolder`/`parquet`/`csv`/`json`, or a local
    folder); a folder written by `save_to_disk` is read with `load_from_disk`."""

    path: str
    name: str | None = None
    split: str = "train"
    data_files: str | list[str] | dict[str, str | list[str]] | None = None
    data_dir: str | None = None
    revision: str | None = None
    streaming: bool = False  # an IterableDataset: nothing is downloaded or listed up front (see README: streaming)
    audio_column: str = "audio"  # an Audio column (read as Audio(decode=False)) or a column of file paths
    speaker_column: str = "speaker"  # strings, integers or a ClassLabel
    label2id_file: str | None = None  # streaming: JSON {speaker: id} of every speaker, instead of the first pass
    shuffle_buffer: PositiveInt = 10000  # streaming: seeded shuffle buffer, in rows


class DataSection(_Section):
    # The training source: exactly one of train_dir, train_manifest and dataset.
    train_dir: str | None = None  # VoxCeleb layout: <train_dir>/wav/<speaker>/<video>/<utt>.wav
    train_manifest: str | None = None  # or a CSV/JSONL manifest with path,speaker
    dataset: DatasetSource | None = None  # or any `datasets` source (Hub, parquet, audiofolder, save_to_disk ...)
    audio_extensions: list[str] = Field(default_factory=lambda: [".wav"])  # train_dir files (VoxCeleb2: [".m4a"])
    validation_speakers: PositiveInt | Annotated[float, Field(gt=0, lt=1)] = 0.1  # a count (>= 1) or a fraction
    test_trials: str | None = None  # VoxCeleb trial list evaluated at the end (e.g. veri_test2.txt)
    test_root: str | None = None  # folder the trial paths are relative to
    test_dataset_name: str | None = None  # e.g. "VoxCeleb1-O (cleaned)": names the result in the model card
    validation_trials: PositiveInt = 2000  # trials drawn among the validation speakers' files
    segment_seconds: PositiveFloat = 3.0  # training crop
    num_workers: NonNegativeInt = 2
    skip_bad_audio: bool = False
    full_audio_check: bool = True  # decode every file before training (False: headers only, faster on big corpora)
    augment: AugmentConfig | None = None  # noise / reverberation / speed perturbation; off when absent
    synthetic: bool = False  # the training data is the synthetic demo corpus (the model card says so at the top)


class TrainingSection(_Section):
    output_dir: str = "runs/wavlmrawnet"
    seed: NonNegativeInt = 0
    max_steps: PositiveInt = 1000
    batch_size: PositiveInt = 32  # per process
    gradient_accumulation_steps: PositiveInt = 1
    learning_rate: PositiveFloat = 1e-3  # new layers: RawNet branch, fusion, loss weights
    wavlm_learning_rate: Annotated[float, Field(ge=0)] = 2e-5  # the pretrained WavLM
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    scheduler: str = "cosine"  # any transformers.get_scheduler name
    warmup_steps: NonNegativeInt = 100
    max_grad_norm: Annotated[float, Field(ge=0)] = 5.0  # 0: no clipping
    freeze_wavlm_steps: NonNegativeInt = 0  # WavLM learning rate is 0 for the first N steps
    freeze_feature_encoder: bool = True
    gradient_checkpointing: bool = False
    # "auto": bf16 where the hardware runs it natively (CUDA with bf16, AMX or AVX512-BF16 CPUs), else fp16 on CUDA
    # and fp32 on CPUs. "no" and "fp32" mean fp32.
    mixed_precision: Literal[tuple(PRECISION_ALIASES)] = "auto"  # type: ignore[valid-type]
    cpu: bool = False  # train on the CPU even where a GPU exists
    checkpoint_every: PositiveInt = 200
    keep_checkpoints: PositiveInt = 2
    eval_every: PositiveInt = 200
    log_every: PositiveInt = 10
    eval_batch_size: PositiveInt = 16
    test_before_training: bool = False  # also evaluate the untrained model on data.test_trials (for comparisons)

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        from transformers import SchedulerType

        names = [member.value for member in SchedulerType]
        if value not in names:
            raise ValueError(f"unknown scheduler; choose one of {names}")
        return value


class TrainConfig(_Section):
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    training: TrainingSection = Field(default_factory=TrainingSection)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        try:
            return cls.model_validate(values or {})
        except ValidationError as error:
            raise ConfigError(_explain(error)) from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: list[str] | None = None) -> "TrainConfig":
        with open(path, encoding="utf-8") as handle:
            values = load_yaml(handle.read()) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping with model/data/training sections")
        for item in overrides or []:
            apply_override(values, item)
        try:
            return cls.from_dict(values)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


def _explain(error: ValidationError) -> str:
    """One line per bad value: `training.max_steps = 1.5: Input should be a valid integer ...`."""
    lines = []
    for problem in error.errors():
        location = [str(part) for part in problem["loc"] if not str(part).startswith(("function-", "constrained-"))]
        # Union fields report each alternative; `int` and `float` alternatives name their types in the location.
        location = [part for part in location if part not in ("int", "float", "str", "none")]
        key = ".".join(location) or "(config)"
        if problem["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key")
            continue
        value = problem.get("input")
        lines.append(f"{key} = {value!r}: {problem['msg']}")
    unique = list(dict.fromkeys(lines))
    return "invalid training config:\n  " + "\n  ".join(unique)


def apply_override(values: dict, item: str) -> None:
    """Applies `section.key=value` to a nested dict; the value is parsed as YAML 1.2 (`no` stays a string)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    dotted, raw = item.split("=", 1)
    keys = dotted.strip().split(".")
    if len(keys) < 2 or not all(keys):
        raise ConfigError(f"override {item!r}: the key must look like section.key (e.g. training.max_steps)")
    target = values
    for key in keys[:-1]:
        target = target.setdefault(key, {})
        if not isinstance(target, dict):
            raise ConfigError(f"override {item!r}: {key} is not a section")
    target[keys[-1]] = load_yaml(raw)
