"""Evaluate a model on a VoxCeleb-style trial list: embed each file once, score, measure, plot, write JSON."""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..precision import Precision, describe_cpu
from .conditions import parse_conditions
from .embedding import embed_files
from .error_rates import compute_calibration_metrics, compute_metrics
from .plots import plot_det_curve, plot_det_curves, plot_score_histograms
from .results import PLAIN_COSINE, EvaluationResults, results_file_name, write_scores_tsv
from .robustness import check_conditions_available, evaluate_conditions
from .scoring import score_trials
from .trials import read_trials, unique_paths


def hardware_description(device: torch.device | str = "cpu") -> str:
    """The GPU's name, or the CPU's model, cores and bf16-relevant flags; with the torch version."""
    device = torch.device(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else describe_cpu()
    return f"{where}; torch {torch.__version__}"


def evaluate_trial_list(
    model,
    feature_extractor,
    trials_path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    output_dir: str | os.PathLike | None = None,
    cohort_paths: Sequence[str] | None = None,
    top_n: int = 200,
    batch_size: int = 8,
    chunk_seconds: float | None = None,
    precision: str | Precision = "auto",
    cache_dir: str | os.PathLike | None = None,
    name: str | None = None,
    progress: bool = True,
    extra: dict | None = None,
    scores_out: str | os.PathLike | None = None,
    vad: bool = False,
    distributed: bool | None = None,
    conditions: str | Sequence[str] | None = None,
    condition_seed: int = 0,
    require_speech: bool = True,
) -> dict:
    """EER and normalised minDCF (p_target 0.01 and 0.05) of `model` on a trial list.

    Every trial file must exist (`MissingTrialFilesError` lists the missing ones) and embed without error (a
    `RuntimeError` lists failures): no trial is ever skipped. With `require_speech` (the default), a trial or cohort
    file without speech (silence, DC, hum, a steady tone: `wavlmrawnet.speech_check`) is such a failure: two silent
    files score 1.0, which would count as a confident "same speaker" in the error rates. Training's test evaluation
    keeps the default; its validation, mid-run on files checked before training, passes False. With
    `cohort_paths`, scores are AS-Norm normalised (adaptive S-norm, top-`top_n` cohort scores). With `output_dir`,
    writes `<name>_results.json`, a DET curve and score histograms (PNG) there. `extra` keys (e.g. `dataset_name`) are
    added to the results; they may replace the descriptions (trial list name, date, hardware...), never the error
    rates. Returns `EvaluationResults.to_dict()` (the JSON's content). `precision` as in `embed_files`; the one used is
    recorded. `scores_out` writes the per-trial scores as TSV (`results.write_scores_tsv`: enrol, test, label, score);
    `vad` removes silence first. Besides minDCF, the results hold the actual DCF of the model's decisions, minCllr and,
    for a calibrated model (`config.calibration`), Cllr (`error_rates.compute_calibration_metrics`).

    With `conditions` (names such as "clean,dur2,noise5,opus8", `conditions.CONDITIONS`), the test side of every
    trial is also altered under each condition, from `condition_seed` (the enrolment side stays clean), and the
    results gain a row per condition (`robustness.evaluate_conditions`), the seed, the noise bank and, with
    `output_dir`, one DET plot with a curve per condition. The altered audio is not checked for speech: the clean
    file was, and a short crop or loud noise is what a condition measures.
    """
    parsed = parse_conditions(conditions) if conditions else []  # a bad name fails before anything is embedded
    check_conditions_available(parsed, feature_extractor.sampling_rate)
    trials = read_trials(trials_path, root=root, check_exists=True)
    paths = unique_paths(trials)
    cohort_paths = list(cohort_paths or [])
    # distributed=None: shared among the launched processes (embed_files)
    embed_options = dict(batch_size=batch_size, chunk_seconds=chunk_seconds, cache_dir=cache_dir, progress=progress)
    embed_options.update(vad=vad, distributed=distributed)
    embedded = embed_files(
        model,
        feature_extractor,
        paths + cohort_paths,
        precision=precision,
        require_speech=require_speech,
        **embed_options,
    )
    embedded.raise_for_failures()
    embed_options["precision"] = embedded.precision  # the conditions' embeddings in the same precision
    if not embedded.is_main_process:  # another rank of a multi-process run: rank 0 scores and writes the one output
        if parsed:  # ... but every rank embeds its share of each condition's test files
            evaluate_conditions(
                model, feature_extractor, trials, parsed, {}, None, condition_seed, root, **embed_options
            )
        return {}
    cohort = np.stack([embedded.embeddings[p] for p in cohort_paths]) if cohort_paths else None
    scores = score_trials(trials, embedded.embeddings, cohort=cohort, top_n=top_n)
    labels = np.array([t.label for t in trials])
    if scores_out is not None:
        write_scores_tsv(scores_out, [t.enroll for t in trials], [t.test for t in trials], labels, scores)
    calibration = None if cohort_paths else getattr(model.config, "calibration", None)  # fitted on plain cosines
    name = name or Path(trials_path).stem
    robustness, condition_scores = {}, {}
    if parsed:
        rows, condition_scores, bank = evaluate_conditions(
            model,
            feature_extractor,
            trials,
            parsed,
            embedded.embeddings,
            scores,
            seed=condition_seed,
            root=root,
            cohort=cohort,
            top_n=top_n,
            threshold=model.config.verification_threshold,
            calibration=calibration,
            **embed_options,
        )
        robustness = {"conditions": rows, "condition_seed": condition_seed, "noise_bank": bank}
    results = EvaluationResults.from_dict(
        {
            "trial_list": name,
            "num_files": len(paths),
            "files_embedded_this_run": embedded.computed,
            "score_normalization": f"AS-Norm (top {top_n}, cohort {len(cohort_paths)})"
            if cohort_paths
            else PLAIN_COSINE,
            "dtype": embedded.precision.name,
            "precision_reason": embedded.precision.reason,
            "date": datetime.date.today().isoformat(),
            "hardware": hardware_description(next(model.parameters()).device),
            **(extra or {}),
            **compute_metrics(scores, labels),
            **compute_calibration_metrics(
                scores, labels, threshold=model.config.verification_threshold, calibration=calibration
            ),
            **({"calibration": calibration} if calibration else {}),
            **robustness,
        }
    )
    if output_dir is not None:
        output_dir = Path(output_dir)
        results.det_curve_png = plot_det_curve(scores, labels, output_dir / f"{name}_det.png", title=name)
        results.score_histogram_png = plot_score_histograms(
            scores, labels, output_dir / f"{name}_scores.png", threshold=results.eer_threshold
        )
        if condition_scores:
            results.conditions_det_png = plot_det_curves(
                {c: (s, labels) for c, s in condition_scores.items()},
                output_dir / f"{name}_conditions_det.png",
                title=f"{name}: DET per condition",
            )
        results.results_json = output_dir / results_file_name(name)
        results.write(results.results_json)
    return results.to_dict()
