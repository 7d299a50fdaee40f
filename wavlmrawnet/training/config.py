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
    """`model`: which architecture to build, and where its WavLM weights come from."""

    preset: str = Field("default", description="`WavLMRawNetConfig` preset: `default`, `reference` or `tiny`.")
    wavlm_pretrained: str | None = Field(
        None, description='WavLM weights to start from, e.g. "microsoft/wavlm-large" (a Hub id or a folder).'
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="`WavLMRawNetConfig` arguments that differ from the preset."
    )

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

    path: str = Field(description="A Hub id, a packaged builder (`parquet`, `audiofolder`, ...) or a folder.")
    name: str | None = Field(None, description="The dataset configuration name.")
    split: str = Field("train", description="The split to train on.")
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(
        None, description="Files for a packaged builder, e.g. `vox2/*.parquet`."
    )
    data_dir: str | None = Field(None, description="Sub-folder of the source to read.")
    revision: str | None = Field(None, description="Branch, tag or commit of a Hub dataset.")
    streaming: bool = Field(False, description="Read as an IterableDataset: nothing is downloaded or listed up front.")
    audio_column: str = Field(
        "audio",
        description="An `Audio` column (read as `Audio(decode=False)`, decoded by wavlmrawnet) or a column of paths.",
    )
    speaker_column: str = Field("speaker", description="Speaker labels: strings, integers or a `ClassLabel`.")
    label2id_file: str | None = Field(
        None, description="Streaming: JSON `{speaker: id}` of every speaker, instead of a first pass over the stream."
    )
    shuffle_buffer: PositiveInt = Field(10000, description="Streaming: seeded shuffle buffer, in rows.")


class DataSection(_Section):
    """`data`: the training source (exactly one of `train_dir`, `train_manifest` and `dataset`), checks and crops."""

    train_dir: str | None = Field(
        None, description="A VoxCeleb-layout folder: `<train_dir>/wav/<speaker>/<video>/<utt>.wav`."
    )
    train_manifest: str | None = Field(None, description="Or a CSV/JSONL manifest with `path,speaker`.")
    dataset: DatasetSource | None = Field(
        None, description="Or any `datasets` source (Hub, parquet, audiofolder, `save_to_disk`, ...)."
    )
    audio_extensions: list[str] = Field(
        default_factory=lambda: [".wav"], description='File types of `train_dir` (VoxCeleb2: `[".m4a"]`).'
    )
    validation_speakers: PositiveInt | Annotated[float, Field(gt=0, lt=1)] = Field(
        0.1, description="Held-out speakers for validation: a count (>= 1) or a fraction."
    )
    test_trials: str | None = Field(
        None, description="A VoxCeleb trial list evaluated at the end (e.g. `veri_test2.txt`)."
    )
    test_root: str | None = Field(None, description="The folder the trial paths are relative to.")
    test_dataset_name: str | None = Field(
        None, description='Names the test result in the model card, e.g. "VoxCeleb1-O (cleaned)".'
    )
    validation_trials: PositiveInt = Field(2000, description="Trials drawn among the validation speakers' files.")
    segment_seconds: PositiveFloat = Field(3.0, description="Length of the random training crops, in seconds.")
    num_workers: NonNegativeInt = Field(2, description="DataLoader worker processes (decoding, augmentation).")
    skip_bad_audio: bool = Field(
        False, description="Drop unreadable/empty/too-short files (listed in `bad_audio.tsv`) instead of stopping."
    )
    full_audio_check: bool = Field(
        True, description="Decode every file before training (False: headers only, faster on big corpora)."
    )
    conditions: list[str] | None = Field(
        None,
        description="Robustness conditions of the final test evaluation, e.g. `[clean, dur2, noise5, tel8k, opus8]` "
        "(`wavlmrawnet score --conditions`); a row each in the results and the model card.",
    )
    condition_seed: NonNegativeInt = Field(0, description="Seed of the conditions' altered audio and noise bank.")
    augment: AugmentConfig | None = Field(
        None, description="Noise, reverberation and speed perturbation (see below); off when absent."
    )
    synthetic: bool = Field(
        False, description="The data is the synthetic demo corpus (the model card says so at the top)."
    )

    @field_validator("conditions")
    @classmethod
    def _known_conditions(cls, value: list[str] | None) -> list[str] | None:
        from ..evaluation.conditions import parse_conditions

        if value is not None:
            parse_conditions(value)  # a ValueError names an unknown condition
        return value


class TrainingSection(_Section):
    """`training`: the optimisation, precision, checkpoints, validation and logging."""

    output_dir: str = Field("runs/wavlmrawnet", description="Checkpoints, logs and the final model (`final/`).")
    seed: NonNegativeInt = Field(0, description="Seeds the model, the data order and the speaker split.")
    max_steps: PositiveInt = Field(1000, description="Optimizer steps in the whole run.")
    batch_size: PositiveInt = Field(32, description="Crops per batch, per process.")
    gradient_accumulation_steps: PositiveInt = Field(1, description="Batches per optimizer step.")
    learning_rate: PositiveFloat = Field(1e-3, description="The new layers: RawNet branch, fusion, loss weights.")
    wavlm_learning_rate: Annotated[float, Field(ge=0)] = Field(
        2e-5, description="The pretrained WavLM (0 keeps it fixed for the whole run)."
    )
    weight_decay: Annotated[float, Field(ge=0)] = Field(1e-4, description="AdamW weight decay.")
    scheduler: str = Field("cosine", description="Any `transformers.get_scheduler` name.")
    warmup_steps: NonNegativeInt = Field(100, description="Linear warm-up steps of the schedule.")
    max_grad_norm: Annotated[float, Field(ge=0)] = Field(5.0, description="Gradient clipping norm (0: no clipping).")
    freeze_wavlm_steps: NonNegativeInt = Field(0, description="WavLM's learning rate is 0 for the first N steps.")
    freeze_feature_encoder: bool = Field(True, description="Keep WavLM's convolutional feature encoder fixed.")
    gradient_checkpointing: bool = Field(False, description="Activation checkpointing: less memory, slower steps.")
    mixed_precision: Literal[tuple(PRECISION_ALIASES)] = Field(  # type: ignore[valid-type]
        "auto",
        description="`auto`: bf16 where the hardware runs it natively (CUDA with bf16, AMX or AVX512-BF16 CPUs), "
        "else fp16 on CUDA and fp32 on CPUs; `no` and `fp32` mean fp32.",
    )
    cpu: bool = Field(False, description="Train on the CPU even where a GPU exists.")
    checkpoint_every: PositiveInt = Field(200, description="Steps between checkpoints (`--resume` continues).")
    keep_checkpoints: PositiveInt = Field(2, description="Checkpoints kept on disk (the oldest are deleted).")
    eval_every: PositiveInt = Field(200, description="Steps between validation EERs; the best model is kept.")
    log_every: PositiveInt = Field(10, description="Steps between logged losses.")
    eval_batch_size: PositiveInt = Field(16, description="Files per batch when embedding for validation and test.")
    test_before_training: bool = Field(
        False, description="Also evaluate the untrained model on `data.test_trials` (for comparisons)."
    )
    log_with: list[str] = Field(
        default_factory=lambda: ["tensorboard"],
        description="Accelerate trackers for the training curves (`tensorboard`, `wandb`, `mlflow`, `all`, ...; "
        "`accelerate.utils.LoggerType`), a list of them, or none (null, `none` or `[]`); "
        "`metrics.jsonl` is written either way.",
    )

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        from transformers import SchedulerType

        names = [member.value for member in SchedulerType]
        if value not in names:
            raise ValueError(f"unknown scheduler; choose one of {names}")
        return value

    @field_validator("log_with", mode="before")
    @classmethod
    def _known_trackers(cls, value) -> list[str]:
        from accelerate.utils import LoggerType

        names = [value] if isinstance(value, str) else list(value or [])
        names = [name for name in names if not (isinstance(name, str) and name.lower() == "none")]
        known = [member.value for member in LoggerType]
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(f"unknown tracker(s) {unknown}; choose among {known}, or none")
        return names


class TrainConfig(_Section):
    """A training run: the `model`, `data` and `training` sections of the YAML file."""

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
            text = handle.read()
        if not text.strip():
            raise ConfigError(f"{path}: the file is empty; expected model/data/training sections (configs/demo.yaml)")
        try:
            values = load_yaml(text) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from None
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
