"""Writes `<model_dir>/README.md`, the model card the Hugging Face Hub shows, from what the folder itself records.

Sources, all read from disk (nothing is invented):

- `config.json`: the architecture, the decision threshold and the number of training speakers;
- `model*.safetensors`: the parameter count (from the tensor headers; weights are not loaded);
- `train_config.yaml` (optional): training data and hyper-parameters ("not recorded" when absent);
- results JSON files written by `wavlmrawnet.evaluation.runner.evaluate_trial_list` (`<name>_results.json`, read as
  `wavlmrawnet.evaluation.EvaluationResults`): EER, minDCF, trial counts, score normalisation, dtype, date, hardware
  and the DET / score plots.

The training data counts as synthetic when `train_config.yaml` has `data: {synthetic: true}` or a results JSON has
`"synthetic": true`; the card then opens with `SYNTHETIC_WARNING`. A result is only called a VoxCeleb (or any named
benchmark) result when its JSON says so in `"dataset_name"`; trial-list file names prove nothing (the synthetic
corpus writes a `veri_test2.txt` too). Optional keys a results JSON may carry for the `model-index`:
`dataset_name`, `dataset_type`, `dataset_config`, `dataset_split`, `synthetic`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from safetensors import safe_open

from ..configuration_wavlmrawnet import WavLMRawNetConfig
from ..evaluation.results import PLAIN_COSINE, EvaluationResults, finite_number, is_results_json
from ..extras import import_module

__all__ = ["SYNTHETIC_WARNING", "render_model_card", "write_model_card"]

TEMPLATE_PATH = Path(__file__).with_name("template.md")
CARD_NAME = "README.md"
SYNTHETIC_WARNING = "Trained only on the synthetic demo corpus; these numbers say nothing about real speech."
TASK_TYPE = "speaker-verification"
TAGS = ["speaker-verification", "wavlm", "rawnet", "audio", "voxceleb"]
SYNTHETIC_TAG = "synthetic-data"
NOT_RECORDED = "not recorded"
# minDCF as computed by `wavlmrawnet.evaluation.error_rates.compute_metrics` (normalised, unit costs).
DCF_COSTS = {"c_miss": 1.0, "c_fa": 1.0}
WEIGHT_FILE = re.compile(r"model(-\d{5}-of-\d{5})?\.safetensors")


# ----------------------------------------------------------------------------------------------- folder contents
def _read_train_config(model_dir: Path) -> tuple[dict | None, str | None]:
    """(parsed sections, raw text) of `train_config.yaml`, or (None, None) when the folder has none."""
    path = model_dir / "train_config.yaml"
    if not path.is_file():
        return None, None
    text = path.read_text(encoding="utf-8")
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping with model/data/training sections")
    for section in ("model", "data", "training"):
        if not isinstance(values.get(section) or {}, dict):
            raise ValueError(f"{path}: section '{section}' must be a mapping, got {values[section]!r}")
    return values, text


def _read_run_info(model_dir: Path) -> dict | None:
    """`run_info.json` (the resolved training precision and the hardware), or None when the folder has none."""
    path = model_dir / "run_info.json"
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        precision = info["training_precision"]
        return {"precision": str(precision["precision"]), "reason": str(precision["reason"]),
                "hardware": str(info["hardware"]), "num_processes": int(info["num_processes"])}  # fmt: skip
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a valid run_info.json: {error!r}") from error


def _setting(train: dict | None, section: str, key: str) -> Any:
    return ((train or {}).get(section) or {}).get(key)


def _count_parameters(model_dir: Path) -> tuple[int, int]:
    """(all parameters, those of the training-only speaker-classification head) from the safetensors headers."""
    files = sorted(p for p in model_dir.iterdir() if WEIGHT_FILE.fullmatch(p.name))
    if not files:
        raise FileNotFoundError(f"{model_dir} holds no model.safetensors (save the model with save_pretrained)")
    total = head = 0
    for file in files:
        with safe_open(str(file), framework="np") as weights:
            for name in weights.keys():
                count = math.prod(weights.get_slice(name).get_shape())
                total += count
                head += count if name.startswith("objective.") else 0
    return total, head


def _load_config(model_dir: Path) -> WavLMRawNetConfig:
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{model_dir} is not a model folder: it has no config.json")
    try:
        values = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{config_file} is not valid JSON: {error}") from None
    model_type = values.get("model_type") if isinstance(values, dict) else None
    if model_type != WavLMRawNetConfig.model_type:
        raise ValueError(f"{config_file} has model_type {model_type!r}, not {WavLMRawNetConfig.model_type!r}")
    return WavLMRawNetConfig.from_pretrained(model_dir)


def _min_seconds(model_dir: Path, config: WavLMRawNetConfig) -> float:
    """Shortest input the folder's feature extractor accepts (its `min_seconds`), never below the model's own."""
    preprocessor = model_dir / "preprocessor_config.json"
    recorded = None
    if preprocessor.is_file():
        recorded = json.loads(preprocessor.read_text(encoding="utf-8")).get("min_seconds")
    if recorded is None:
        return config.min_input_seconds
    return max(finite_number(recorded, f"{preprocessor}: 'min_seconds'"), config.min_input_seconds)


def _hub_model_id(value: str) -> str | None:
    """`value` when it reads as a Hub model id (not a local path), else None."""
    if value.startswith(("/", ".", "~")) or os.path.exists(value):
        return None
    try:
        validate_repo_id(value)
    except HFValidationError:
        return None
    return value


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "trials"


def _human_count(count: int) -> str:
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            return f"{count / scale:.1f} {suffix}"
    return str(count)


# ----------------------------------------------------------------------------------------------- model-index
@dataclass
class _CardResult:
    """A results JSON as the card shows it: the numbers, the dataset it claims, and the plots' names in the folder."""

    result: EvaluationResults
    dataset_name: str
    dataset_type: str
    dataset_config: str
    dataset_split: str
    synthetic_data: bool
    det_png: str | None
    histogram_png: str | None
    results_json: str
    conditions_det_png: str | None = None


def _describe_dataset(result: EvaluationResults, synthetic_training: bool) -> tuple[str, str, str, str, bool]:
    synthetic_data = bool(result.synthetic) or (
        result.synthetic is None and synthetic_training and result.dataset_name is None
    )
    if result.dataset_name:
        name = result.dataset_name
    elif synthetic_data:
        name = f"wavlmrawnet synthetic demo corpus ({result.trial_list} trials)"
    else:
        name = f"{result.trial_list} trial list"
    default_type = "wavlmrawnet-synthetic-demo" if synthetic_data else _slug(result.trial_list)
    dataset_type = result.dataset_type or default_type
    normalization = result.score_normalization or PLAIN_COSINE
    config = result.dataset_config or (
        result.trial_list if normalization == PLAIN_COSINE else f"{result.trial_list}, {normalization}"
    )
    return name, dataset_type, config, result.dataset_split or "test", synthetic_data


def _eval_results(card_results: list[_CardResult]) -> list[EvalResult]:
    evals, seen = [], {}
    for item in card_results:
        result = item.result
        common = dict(
            task_type=TASK_TYPE,
            task_name="Speaker Verification",
            dataset_type=item.dataset_type,
            dataset_name=item.dataset_name,
            dataset_config=item.dataset_config,
            dataset_split=item.dataset_split,
        )
        rows = [
            (
                item.dataset_config,
                result.eer_percent,
                result.min_dcf,
                result.num_trials,
                {
                    "num_target": result.num_target,
                    "num_nontarget": result.num_nontarget,
                    "eer_threshold": result.eer_threshold,
                },
            )
        ]
        # a model-index entry per robustness condition: the same trials with the test side altered
        for name, row in (result.conditions or {}).items():
            details = {"condition": name, "condition_seed": result.condition_seed}
            config = f"{item.dataset_config}, condition {name}"
            rows.append(
                (config, row["eer_percent"], row["min_dcf"], row.get("num_trials") or result.num_trials, details)
            )
        for config, eer_percent, min_dcf, num_trials, details in rows:
            common["dataset_config"] = config
            eer = EvalResult(
                **common,
                metric_type="eer",
                metric_value=eer_percent,
                metric_name=f"EER (%) over {num_trials} trials",
                metric_args={
                    "num_trials": num_trials,
                    **details,
                    "score_normalization": result.score_normalization,
                },
            )
            if eer.unique_identifier in seen:
                raise ValueError(
                    f"{result.source} and {seen[eer.unique_identifier]} describe the same dataset, config and split "
                    f"({item.dataset_name}, {config}, {item.dataset_split}); give one of them a distinct "
                    "'dataset_config' (or 'dataset_split') so the model-index keeps both"
                )
            seen[eer.unique_identifier] = result.source
            evals.append(eer)
            for p_target, value in min_dcf.items():
                evals.append(
                    EvalResult(
                        **common,
                        metric_type="min_dcf",
                        metric_value=value,
                        metric_name=f"minDCF (p_target={p_target})",
                        metric_args={"p_target": float(p_target), **DCF_COSTS, "num_trials": num_trials},
                    )
                )
    return evals


# ----------------------------------------------------------------------------------------------- rendering
def _table_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _python_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid Python string literal


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().parent == folder.resolve()


def _plan_copy(source: Path, model_dir: Path, copies: dict[Path, Path]) -> str:
    """Name of `source` in the model folder's top level (where the upload takes files from); records the copy."""
    if _inside(source, model_dir):
        return source.name
    target = model_dir / source.name
    planned = copies.get(target)
    if planned is not None and planned.resolve() != source.resolve() and planned.read_bytes() != source.read_bytes():
        raise ValueError(f"{planned} and {source} would both be copied to {target}; rename one of them")
    if target.exists() and target.read_bytes() != source.read_bytes():
        raise ValueError(f"{target} exists and differs from {source}; refusing to overwrite it with a copy")
    if not target.exists():
        copies[target] = source
    return source.name


def _discover_results(model_dir: Path) -> list[Path]:
    return sorted(p for p in model_dir.iterdir() if is_results_json(p.name) and p.is_file())


def _build(
    model_dir: str | os.PathLike,
    results_paths: Sequence[str | os.PathLike] | None,
    license: str,
    base_model: str | None,
    datasets: str | Sequence[str] | None,
    repo_id: str | None,
) -> tuple[str, dict[Path, Path]]:
    """(card text, {file to create in the folder: source}); nothing is written here."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        state = "is a file, not a model folder" if model_dir.exists() else "does not exist"
        raise FileNotFoundError(f"model folder {model_dir} {state}")
    config = _load_config(model_dir)
    num_parameters, head_parameters = _count_parameters(model_dir)
    train, train_text = _read_train_config(model_dir)

    paths = [Path(p) for p in results_paths] if results_paths else _discover_results(model_dir)
    if len(set(p.resolve() for p in paths)) != len(paths):
        raise ValueError(f"a results JSON is listed twice: {[str(p) for p in paths]}")
    results = [EvaluationResults.read(p) for p in paths]

    synthetic_flag = _setting(train, "data", "synthetic")
    if synthetic_flag is not None and not isinstance(synthetic_flag, bool):
        raise ValueError(
            f"{model_dir / 'train_config.yaml'}: data.synthetic must be true or false, got {synthetic_flag!r}"
        )
    synthetic_reasons = []
    if synthetic_flag:
        synthetic_reasons.append("`train_config.yaml` marks the training data as synthetic (`data.synthetic: true`)")
    synthetic_reasons += [f"`{r.source.name}` marks its data as synthetic" for r in results if r.synthetic]
    synthetic = bool(synthetic_reasons)

    copies: dict[Path, Path] = {}
    card_results = []
    for result in results:
        name, dataset_type, dataset_config, split, synthetic_data = _describe_dataset(result, synthetic)
        card_results.append(
            _CardResult(
                result=result,
                dataset_name=name,
                dataset_type=dataset_type,
                dataset_config=dataset_config,
                dataset_split=split,
                synthetic_data=synthetic_data,
                det_png=_plan_copy(result.det_curve_png, model_dir, copies) if result.det_curve_png else None,
                histogram_png=(
                    _plan_copy(result.score_histogram_png, model_dir, copies) if result.score_histogram_png else None
                ),
                results_json=_plan_copy(result.source, model_dir, copies),
                conditions_det_png=(
                    _plan_copy(result.conditions_det_png, model_dir, copies) if result.conditions_det_png else None
                ),
            )
        )
    eval_results = _eval_results(card_results)

    wavlm_source = _setting(train, "model", "wavlm_pretrained")
    if base_model is None:
        base_model = _hub_model_id(wavlm_source) if isinstance(wavlm_source, str) else None
    elif _hub_model_id(base_model) is None:
        raise ValueError(f"base_model must be a Hub model id such as 'microsoft/wavlm-large', got {base_model!r}")
    if repo_id is not None:
        try:
            validate_repo_id(repo_id)
        except HFValidationError as error:
            raise ValueError(f"repo_id {repo_id!r} is not a valid Hub repo id: {error}") from error
    if isinstance(datasets, str):
        datasets = [datasets]

    folder = model_dir.resolve()
    if repo_id:
        model_name = repo_id.split("/")[-1]
    else:  # training writes <run>/final: the run's name says more than "final"
        model_name = folder.parent.name if folder.name in ("final", "best") else folder.name
    tags = [t for t in TAGS if not (synthetic and t == "voxceleb")] + ([SYNTHETIC_TAG] if synthetic else [])
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="feature-extraction",
        tags=tags,
        license=license,
        datasets=list(datasets) if datasets else None,
        base_model=base_model,
        metrics=["eer", "min_dcf"] if eval_results else None,
        model_name=model_name if eval_results else None,
        eval_results=eval_results or None,
    )

    wavlm = config.wavlm_config
    p_targets = sorted({p for r in results for p in r.min_dcf}, key=float)
    names_voxceleb = any("voxceleb" in (item.dataset_name or "").lower() for item in card_results)
    model_ref = repo_id or str(folder)
    shell_model = f"$(hf download {shlex.quote(repo_id)})" if repo_id else shlex.quote(str(folder))
    jinja2 = import_module("jinja2", "eval", "the model card (wavlmrawnet card)")
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_PATH.parent)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    environment.filters["cell"] = _table_cell
    text = environment.get_template(TEMPLATE_PATH.name).render(
        card_data=card_data.to_yaml(),
        synthetic=synthetic,
        synthetic_warning=SYNTHETIC_WARNING,
        synthetic_reasons=synthetic_reasons,
        model_name=model_name,
        config=config,
        wavlm=wavlm,
        wavlm_frame_ms=format(1000 * math.prod(wavlm.conv_stride) / config.sampling_rate, "g"),
        fused_dim=(wavlm.hidden_size if config.use_wavlm_branch else 0)
        + (config.rawnet_embedding_dim if config.use_rawnet_branch else 0),
        rawnet_pooled_dim=2 * config.rawnet_channels[-1],
        num_speakers=config.num_labels,
        min_seconds=format(_min_seconds(model_dir, config), "g"),
        num_parameters=_human_count(num_parameters),
        num_parameters_exact=num_parameters,
        head_parameters=_human_count(head_parameters),
        embedding_parameters=_human_count(num_parameters - head_parameters),
        base_model=base_model,
        wavlm_source=wavlm_source,
        license=license,
        repo_literal=_python_string(model_ref),
        shell_model=shell_model,
        repo_id=repo_id,
        results=card_results,
        p_targets=p_targets,
        names_voxceleb=names_voxceleb,
        plain_cosine=PLAIN_COSINE,
        not_recorded=NOT_RECORDED,
        train=train,
        train_text=train_text,
        run_info=_read_run_info(model_dir),
        setting=lambda section, key: _setting(train, section, key),
    )

    # The card must round-trip through huggingface_hub with every metric intact.
    parsed = ModelCard(text, ignore_metadata_errors=False)
    if len(parsed.data.eval_results or []) != len(eval_results):
        raise RuntimeError(
            f"the model-index lost entries on parsing: {len(eval_results)} written, "
            f"{len(parsed.data.eval_results or [])} read back"
        )
    return text, copies


def render_model_card(
    model_dir: str | os.PathLike,
    results_paths: Sequence[str | os.PathLike] | None = None,
    license: str = "apache-2.0",
    base_model: str | None = None,
    datasets: str | Sequence[str] | None = None,
    repo_id: str | None = None,
) -> str:
    """The card's text (metadata + Markdown) without writing anything; arguments as in `write_model_card`."""
    return _build(model_dir, results_paths, license, base_model, datasets, repo_id)[0]


def _atomic_write(target: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_model_card(
    model_dir: str | os.PathLike,
    results_paths: Sequence[str | os.PathLike] | None = None,
    license: str = "apache-2.0",
    base_model: str | None = None,
    datasets: str | Sequence[str] | None = None,
    repo_id: str | None = None,
) -> Path:
    """Writes `<model_dir>/README.md` (replacing any earlier card) and returns its path.

    Args:
        model_dir: a folder written by `save_pretrained` (or training's `<output_dir>/final`).
        results_paths: results JSON files from `evaluate_trial_list`; default (None or empty): every
            `<name>_results.json` in the folder. Results and plots that live elsewhere are copied into the folder,
            so the card's images and numbers travel with it. With none, the card says plainly that nothing was
            evaluated.
        license: the Hub license id.
        base_model: Hub id of the pretrained WavLM; default: `model.wavlm_pretrained` from `train_config.yaml` when
            that is a Hub id (a local path is named in the text, not in the metadata).
        datasets: Hub dataset id(s) used for training, for the metadata.
        repo_id: the Hub repo the folder will be pushed to; the usage snippets load from it (default: this
            folder's absolute path).

    Everything is read and checked before anything is written; the card is checked to parse with
    `huggingface_hub.ModelCard` with its whole `model-index`.
    """
    text, copies = _build(model_dir, results_paths, license, base_model, datasets, repo_id)
    for target, source in copies.items():
        _atomic_write(target, source.read_bytes())
    card_path = Path(model_dir) / CARD_NAME
    _atomic_write(card_path, text.encode("utf-8"))
    return card_path
