"""The results of one evaluation on a trial list, as `<name>_results.json` holds them.

`runner.evaluate_trial_list` writes them and the model card reads them, both through `EvaluationResults`. The
field names are the JSON keys.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "PLAIN_COSINE",
    "SCORE_COLUMNS",
    "EvaluationResults",
    "is_results_json",
    "read_scores_tsv",
    "results_file_name",
    "write_results_json",
    "write_scores_tsv",
]

PLAIN_COSINE = "none (cosine)"  # `score_normalization` of raw cosine scores
REQUIRED_KEYS = ("eer", "min_dcf", "num_trials", "trial_list")
_SUFFIX = "_results.json"


def results_file_name(name: str) -> str:
    """The file evaluate_trial_list writes for trial list `name`."""
    return f"{name}{_SUFFIX}"


def is_results_json(name: str) -> bool:
    """File names evaluate_trial_list gives its results (`<name>_results.json`), and a plain `results.json`."""
    return name == "results.json" or name.endswith(_SUFFIX)


@dataclass(kw_only=True)
class EvaluationResults:
    """One evaluation: error rates (`error_rates.compute_metrics`), what was measured and how, and the plots.

    Only `eer`, `min_dcf`, `num_trials` and `trial_list` are required (hand-written files may hold no more);
    `eer_percent` defaults to 100 x `eer`. Fields left at None are not written. Keys the schema does not name
    (`extra`) are kept and written after the named ones, before the plot paths.
    """

    eer: float  # fraction
    eer_percent: float | None = None
    eer_threshold: float | None = None
    min_dcf: dict[str, float]  # p_target as a string ("0.01") -> normalised minDCF, sorted by p_target
    min_dcf_thresholds: dict[str, float] | None = None
    act_dcf: dict[str, float] | None = None  # actual DCF of the model's decisions (see compute_calibration_metrics)
    cllr: float | None = None  # of calibrated llrs only
    min_cllr: float | None = None
    calibration: dict[str, float] | None = None  # {"scale", "offset"} the llrs came from
    num_trials: int
    num_target: int | None = None
    num_nontarget: int | None = None
    trial_list: str  # the trial list's name
    num_files: int | None = None
    files_embedded_this_run: int | None = None  # the rest came from the embedding cache
    score_normalization: str | None = None  # PLAIN_COSINE or "AS-Norm (top N, cohort M)"
    dtype: str | None = None  # the precision the embeddings were computed in
    precision_reason: str | None = None
    date: str | None = None
    hardware: str | None = None
    # what the trials are, for the model card's model-index (the trial list's name proves nothing)
    dataset_name: str | None = None
    dataset_type: str | None = None
    dataset_config: str | None = None
    dataset_split: str | None = None
    synthetic: bool | None = None
    # robustness (`robustness.evaluate_conditions`): a row per condition, the seed of the altered audio, the noise bank
    conditions: dict[str, dict[str, Any]] | None = None
    condition_seed: int | None = None
    noise_bank: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    det_curve_png: Path | None = None
    score_histogram_png: Path | None = None
    conditions_det_png: Path | None = None  # one DET curve per condition
    results_json: Path | None = None  # where the JSON was written
    source: Path | None = field(default=None, compare=False)  # where it was read from (`read`); not written

    def __post_init__(self):
        if self.eer_percent is None:
            self.eer_percent = 100.0 * self.eer
        clash = sorted(set(self.extra) & _JSON_KEYS)
        if clash:
            raise ValueError(f"extra keys would overwrite named results: {clash}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: named fields that are set, in order, with `extra` before the plot paths."""
        values: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "extra":
                values.update(value)
            elif item.name in _JSON_KEYS and value is not None:
                values[item.name] = str(value) if isinstance(value, Path) else value
        return values

    def write(self, path: str | os.PathLike) -> Path:
        return write_results_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "results") -> EvaluationResults:
        """Checks and converts a results JSON object; a missing or bad value is a `ValueError` naming `where` and the
        key."""
        if not isinstance(values, Mapping):
            raise ValueError(f"{where} must hold a JSON object, got {type(values).__name__}")
        missing = [key for key in REQUIRED_KEYS if key not in values]
        if missing:
            raise ValueError(
                f"{where} lacks {missing}; a results JSON from evaluate_trial_list has {list(REQUIRED_KEYS)}"
            )
        eer = finite_number(values["eer"], f"{where}: 'eer'")
        if not 0.0 <= eer <= 1.0:
            raise ValueError(f"{where}: 'eer' is a fraction in [0, 1], got {eer}")
        optional = {
            key: None if values.get(key) is None else check(values[key], f"{where}: '{key}'")
            for key, check in _OPTIONAL_CHECKS.items()
        }
        if optional["eer_percent"] is not None and abs(optional["eer_percent"] - 100.0 * eer) > 1e-6:
            raise ValueError(f"{where}: 'eer_percent' ({optional['eer_percent']}) is not 100 x 'eer' ({eer})")
        num_trials = _count(values["num_trials"], f"{where}: 'num_trials'", minimum=1)
        num_target, num_nontarget = optional["num_target"], optional["num_nontarget"]
        if num_target is not None and num_nontarget is not None and num_target + num_nontarget != num_trials:
            raise ValueError(
                f"{where}: num_target ({num_target}) + num_nontarget ({num_nontarget}) != num_trials ({num_trials})"
            )
        return cls(
            eer=eer,
            min_dcf=_by_p_target(values["min_dcf"], f"{where}: 'min_dcf'"),
            num_trials=num_trials,
            trial_list=_text(values["trial_list"], f"{where}: 'trial_list'"),
            extra={key: value for key, value in values.items() if key not in _JSON_KEYS},
            **optional,
        )

    @classmethod
    def read(cls, path: str | os.PathLike) -> EvaluationResults:
        """Reads and checks a results JSON. A plot it names is looked for at its recorded path, then under the same
        name beside the JSON (a moved folder); a plot in neither place is a `FileNotFoundError`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"results JSON {path} does not exist")
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from error
        results = cls.from_dict(values, where=str(path))
        results.source = path
        results.det_curve_png = _find_plot(results.det_curve_png, "det_curve_png", path)
        results.score_histogram_png = _find_plot(results.score_histogram_png, "score_histogram_png", path)
        results.conditions_det_png = _find_plot(results.conditions_det_png, "conditions_det_png", path)
        return results


_JSON_KEYS = frozenset(item.name for item in fields(EvaluationResults)) - {"extra", "source"}


# ----------------------------------------------------------------------------------------------- checks
def finite_number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _count(value: Any, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where} must be a non-empty string, got {value!r}")
    return value.strip()


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where} must be true or false, got {value!r}")
    return value


def _path(value: Any, where: str) -> Path:
    if not isinstance(value, (str, Path)) or not str(value):
        raise ValueError(f"{where} must be a path, got {value!r}")
    return Path(value)


def _by_p_target(values: Any, where: str) -> dict[str, float]:
    """{p_target as written ("0.01"): finite value}, sorted by p_target."""
    if not isinstance(values, Mapping) or not values:
        raise ValueError(f'{where} must map p_target to a number, e.g. {{"0.01": 0.5}}, got {values!r}')
    parsed = {}
    for key, value in values.items():
        try:
            p_target = float(key)
        except ValueError:
            raise ValueError(f"{where} key {key!r} is not a p_target") from None
        if not 0.0 < p_target < 1.0:
            raise ValueError(f"{where} p_target {key!r} must lie in (0, 1)")
        parsed[key] = finite_number(value, f"{where}[{key!r}]")
    return dict(sorted(parsed.items(), key=lambda item: float(item[0])))


def _calibration(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, Mapping) or set(value) != {"scale", "offset"}:
        raise ValueError(f'{where} must be {{"scale": a, "offset": b}}, got {value!r}')
    return {key: finite_number(value[key], f"{where}[{key!r}]") for key in ("scale", "offset")}


def _condition_rows(values: Any, where: str) -> dict[str, dict[str, Any]]:
    """{condition name: its row} (`robustness.evaluate_conditions`): EER and minDCF required, the rest checked when
    present; `eer_percent` is filled in."""
    if not isinstance(values, Mapping) or not values:
        raise ValueError(f'{where} must map condition names to their results, e.g. {{"noise5": {{"eer": 0.1, ...}}}}')
    rows = {}
    for name, row in values.items():
        at = f"{where}[{name!r}]"
        if not isinstance(row, Mapping) or "eer" not in row or "min_dcf" not in row:
            raise ValueError(f"{at} must be an object with at least 'eer' and 'min_dcf', got {row!r}")
        eer = finite_number(row["eer"], f"{at}: 'eer'")
        if not 0.0 <= eer <= 1.0:
            raise ValueError(f"{at}: 'eer' is a fraction in [0, 1], got {eer}")
        checked = {**row, "eer": eer, "eer_percent": 100.0 * eer, "min_dcf": _by_p_target(row["min_dcf"], at)}
        for key, check in (("act_dcf", _by_p_target), ("cllr", finite_number), ("min_cllr", finite_number)):
            if row.get(key) is not None:
                checked[key] = check(row[key], f"{at}: '{key}'")
        for key in ("num_trials", "files_embedded_this_run"):
            if row.get(key) is not None:
                checked[key] = _count(row[key], f"{at}: '{key}'")
        if row.get("meaning") is not None:
            checked["meaning"] = _text(row["meaning"], f"{at}: 'meaning'")
        rows[_text(name, f"{where}: a condition name")] = checked
    return rows


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a JSON object, got {value!r}")
    return dict(value)


def _find_plot(recorded: Path | None, key: str, results_path: Path) -> Path | None:
    """The plot at its recorded path (relative ones from the JSON's folder), else the same name beside the JSON."""
    if recorded is None:
        return None
    beside = results_path.parent
    for candidate in (recorded if recorded.is_absolute() else beside / recorded, beside / recorded.name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{results_path}: '{key}' names {recorded}, which does not exist (nor does {recorded.name} beside the JSON)"
    )


# The optional keys and how each is checked (`from_dict`).
_OPTIONAL_CHECKS = {
    "eer_percent": finite_number,
    "eer_threshold": finite_number,
    "min_dcf_thresholds": _by_p_target,
    "act_dcf": _by_p_target,
    **dict.fromkeys(("cllr", "min_cllr"), finite_number),
    "calibration": lambda value, where: _calibration(value, where),
    **dict.fromkeys(("num_target", "num_nontarget", "num_files", "files_embedded_this_run"), _count),
    **dict.fromkeys(("score_normalization", "dtype", "precision_reason", "date", "hardware"), _text),
    **dict.fromkeys(("dataset_name", "dataset_type", "dataset_config", "dataset_split"), _text),
    "synthetic": _flag,
    "conditions": _condition_rows,
    "condition_seed": _count,
    "noise_bank": _mapping,
    **dict.fromkeys(("det_curve_png", "score_histogram_png", "conditions_det_png", "results_json"), _path),
}


# ----------------------------------------------------------------------------------------------- writing
def _json_safe(value: Any, where: str = "results") -> Any:
    """Convert numpy / pathlib values to plain JSON types; refuse NaN/Inf."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_safe(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}, which JSON cannot represent")
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{where} has type {type(value).__name__}, which is not JSON-serialisable")


def write_results_json(path, metrics: Mapping[str, Any], **extra: Any) -> Path:
    """Write ``metrics`` plus extra keys (trial list, model, date, ...) as JSON.

    An extra key that would overwrite a metric raises ValueError.
    """
    clash = sorted(set(metrics) & set(extra))
    if clash:
        raise ValueError(f"extra keys would overwrite metrics: {clash}")
    payload = _json_safe({**metrics, **extra})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------- per-trial scores
SCORE_COLUMNS = ("enrol", "test", "label", "score")  # the header and column order of a scores TSV


def write_scores_tsv(path, enrol: list[str], test: list[str], labels, scores) -> Path:
    """One line per trial, `enrol<TAB>test<TAB>label<TAB>score`, under a header line naming the columns."""
    if not len(enrol) == len(test) == len(labels) == len(scores):
        raise ValueError("enrol, test, labels and scores must have one entry per trial")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(SCORE_COLUMNS)]
    lines += [f"{e}\t{t}\t{int(lab)}\t{float(s)!r}" for e, t, lab, s in zip(enrol, test, labels, scores)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_scores_tsv(path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(enrol, test, labels, scores) of a scores TSV (`write_scores_tsv`); a malformed line is a `ValueError` that
    names it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scores file {path} does not exist")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or tuple(lines[0].split("\t")) != SCORE_COLUMNS:
        raise ValueError(f"{path}: the first line must be the header {chr(9).join(SCORE_COLUMNS)!r} (tab-separated)")
    enrol, test, labels, scores = [], [], [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields_ = line.split("\t")
        try:
            if len(fields_) != 4 or fields_[2] not in ("0", "1"):
                raise ValueError
            score = float(fields_[3])
            if not math.isfinite(score):
                raise ValueError
        except ValueError:
            raise ValueError(f"{path}:{number}: expected 'enrol<TAB>test<TAB>0|1<TAB>score', got {line!r}") from None
        enrol.append(fields_[0])
        test.append(fields_[1])
        labels.append(int(fields_[2]))
        scores.append(score)
    if not scores:
        raise ValueError(f"{path} holds no trials")
    return enrol, test, np.array(labels, dtype=np.int64), np.array(scores, dtype=np.float64)
