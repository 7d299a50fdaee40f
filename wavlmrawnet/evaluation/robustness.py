"""A trial list under each evaluation condition (`conditions.CONDITIONS`): the test side altered, the enrolment side
clean, one row of error rates per condition.

`runner.evaluate_trial_list(..., conditions=[...])` calls `evaluate_conditions` after its clean evaluation: the
clean embeddings of every file are reused for the enrolment side, and only the test files are embedded again, once
per condition, each condition with its own embedding cache (`embed_files(transform=..., transform_tag=...)`), so a
rerun recomputes nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence

import numpy as np

from .conditions import CODECS, ConditionContext, ParsedCondition, codec_round_trip
from .embedding import embed_files
from .error_rates import compute_calibration_metrics, compute_metrics
from .noise_bank import NoiseBank, speakers_of
from .scoring import score_trials
from .trials import Trial

__all__ = ["check_conditions_available", "evaluate_conditions", "trial_keys"]


def trial_keys(paths: Sequence[str], root: str | os.PathLike | None) -> dict[str, str]:
    """{path: its key}: the path relative to `root` as the trial list writes it (so the same file gets the same
    altered audio wherever the corpus lives), or the path itself without a root."""
    if root is None:
        return {p: p for p in paths}
    return {p: os.path.relpath(p, root).replace(os.sep, "/") for p in paths}


def check_conditions_available(conditions: Sequence[ParsedCondition], sampling_rate: int) -> None:
    """Runs each codec condition's encoder once on 0.1 s of a tone, so that a missing extra or encoder stops the
    evaluation before anything is embedded (`MissingExtraError` / `RuntimeError` naming it)."""
    tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(sampling_rate // 10) / sampling_rate)).astype(np.float32)
    for family in sorted({c.key.rstrip("-") for c in conditions if c.key.rstrip("-") in CODECS}):
        codec_round_trip(tone, sampling_rate, family, 32)


def evaluate_conditions(
    model,
    feature_extractor,
    trials: Sequence[Trial],
    conditions: Sequence[ParsedCondition],
    clean_embeddings: Mapping[str, np.ndarray],
    clean_scores: np.ndarray | None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    cohort: np.ndarray | None = None,
    top_n: int = 200,
    threshold: float | None = None,
    calibration: dict | None = None,
    **embed_options,
) -> tuple[dict[str, dict], dict[str, np.ndarray], dict]:
    """(a row per condition, the trial scores per condition, the noise bank's description).

    A row holds what the condition means, EER, minDCF, the actual DCF (and Cllr for a calibrated model,
    `error_rates.compute_calibration_metrics`), minCllr, the trial count and how many test files were embedded in
    this run. `clean_embeddings` must hold every trial file; `embed_options` go to `embed_files` (batch size,
    precision, cache folder...). A test file that fails to embed under a condition is a `RuntimeError` listing it.
    On the other ranks of a multi-process run (which embed their shards of each condition and pass no clean
    embeddings or scores), returns ({}, {}, {}).
    """
    labels = np.array([t.label for t in trials])
    test_paths = list(dict.fromkeys(t.test for t in trials))
    keys = trial_keys(list(dict.fromkeys([t.enroll for t in trials] + test_paths)), root)
    speakers = speakers_of(keys)
    bank = NoiseBank(seed=seed, sampling_rate=feature_extractor.sampling_rate, speakers=speakers)
    corpus = hashlib.sha256(repr(sorted(keys.values())).encode()).hexdigest()[:8]  # the keys and babble sources
    rows, all_scores = {}, {}
    for condition in conditions:
        if condition.is_clean:
            if clean_scores is None:  # another rank of a multi-process run: nothing to embed, rank 0 scores
                continue
            scores, computed = np.asarray(clean_scores), 0
        else:

            def alter(path: str, waveform: np.ndarray, condition=condition) -> np.ndarray:
                context = ConditionContext(noise_bank=bank, speaker=speakers[path])
                return condition.apply(waveform, feature_extractor.sampling_rate, seed, keys[path], context)

            embedded = embed_files(
                model,
                feature_extractor,
                test_paths,
                transform=alter,
                transform_tag=f"{condition.name}-seed{seed}-{corpus}",
                **embed_options,
            )
            embedded.raise_for_failures()
            if not embedded.is_main_process:
                continue  # another rank of a multi-process run: it embeds its shard, rank 0 scores
            tag = f"\x00{condition.name}"  # the altered test file, beside its clean self (an enrolment file too)
            merged = {**clean_embeddings, **{path + tag: e for path, e in embedded.embeddings.items()}}
            altered = [Trial(t.label, t.enroll, t.test + tag) for t in trials]
            scores, computed = score_trials(altered, merged, cohort=cohort, top_n=top_n), embedded.computed
        metrics = compute_metrics(scores, labels)
        rows[condition.name] = {
            "meaning": condition.meaning,
            "eer": metrics["eer"],
            "eer_percent": metrics["eer_percent"],
            "min_dcf": metrics["min_dcf"],
            **compute_calibration_metrics(scores, labels, threshold=threshold, calibration=calibration),
            "num_trials": len(trials),
            "files_embedded_this_run": computed,
        }
        all_scores[condition.name] = scores
    return (rows, all_scores, bank.describe()) if rows else ({}, {}, {})


def format_condition_table(rows: Mapping[str, Mapping]) -> str:
    """The condition table as aligned text (the `score --conditions` printout): EER, minDCF and actual DCF at
    p_target 0.01 and 0.05, and Cllr where the model is calibrated; `-` for a value not measured."""

    def number(row: Mapping, key: str, p: str | None = None, digits: int = 4) -> str:
        value = row.get(key)
        value = value.get(p) if isinstance(value, Mapping) and p else value
        return "-" if value is None else f"{value:.{digits}f}"

    header = ("condition", "EER %", "minDCF .01", "minDCF .05", "actDCF .01", "actDCF .05", "Cllr")
    lines = [
        (
            name,
            number(row, "eer_percent", digits=2),
            number(row, "min_dcf", "0.01"),
            number(row, "min_dcf", "0.05"),
            number(row, "act_dcf", "0.01"),
            number(row, "act_dcf", "0.05"),
            number(row, "cllr"),
        )
        for name, row in rows.items()
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths)))
        for line in [header, *lines]
    )
