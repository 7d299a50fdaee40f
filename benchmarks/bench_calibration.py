"""Calibration on the demo model: fit on dev trials, measure on held-out trials (actual DCF vs minDCF, Cllr vs
minCllr), against the uncalibrated model's threshold.

Needs `make demo` first (demo_output/run/final and its corpus). Two dev/held-out splits:
- dev = the validation trials (held-out utterances of training speakers), held-out = the test trials;
- the test trials split by the enrolment speaker's parity (2 folds, each half calibrates the other).

    python -m benchmarks.bench_calibration [--model demo_output/run/final] [--markdown-out FILE]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.common import machine_caption, markdown_table, publish
from wavlmrawnet import WavLMRawNetForXVector
from wavlmrawnet.evaluation import read_trials, score_trials, unique_paths
from wavlmrawnet.evaluation.embedding import embed_files
from wavlmrawnet.evaluation.error_rates import compute_actual_dcf, compute_calibration_metrics, compute_metrics
from wavlmrawnet.recognition import fit_calibration

P_TARGETS = (0.01, 0.05)


def split_rows(name, dev, held_out, threshold) -> list[list[str]]:
    """One row per p_target: the fit on `dev` = (scores, labels), measured on `held_out`."""
    rows = []
    for p in P_TARGETS:
        key = format(p, "g")
        calibration = fit_calibration(*dev, p_target=p)
        minimum = compute_metrics(*held_out, p_targets=(p,))
        calibrated = compute_calibration_metrics(*held_out, p_targets=(p,), calibration=calibration)
        rows.append(
            [
                name,
                f"{len(dev[0])} / {len(held_out[0])}",
                key,
                f"{compute_actual_dcf(*held_out, threshold, p_target=p):.3f}",
                f"{calibrated['act_dcf'][key]:.3f}",
                f"{minimum['min_dcf'][key]:.3f}",
                f"{calibrated['cllr']:.3f}",
                f"{calibrated['min_cllr']:.3f}",
                f"{calibration['scale']:.2f} s {calibration['offset']:+.2f}",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo_output/run/final")
    parser.add_argument("--corpus", default="demo_output/corpus")
    parser.add_argument("--validation-trials", default="demo_output/run/validation_trials.txt")
    parser.add_argument("--markdown-out", help="also write the report here")
    args = parser.parse_args()

    model = WavLMRawNetForXVector.from_pretrained(args.model).eval()
    extractor = model.default_feature_extractor()
    test = read_trials(Path(args.corpus) / "test" / "veri_test2.txt", root=Path(args.corpus) / "test" / "wav")
    validation = read_trials(args.validation_trials)
    embedded = embed_files(
        model, extractor, unique_paths(test) + unique_paths(validation), precision="fp32", progress=False
    )
    embedded.raise_for_failures()

    def scored(trials):
        return score_trials(trials, embedded.embeddings), np.array([t.label for t in trials])

    threshold = model.config.verification_threshold
    rows = split_rows("validation -> test", scored(validation), scored(test), threshold)
    speakers = sorted({Path(t.enroll).parts[-3] for t in test})
    fold = {speaker: index % 2 for index, speaker in enumerate(speakers)}
    halves = [[t for t in test if fold[Path(t.enroll).parts[-3]] == side] for side in (0, 1)]
    rows += split_rows("test half A -> half B", scored(halves[0]), scored(halves[1]), threshold)
    rows += split_rows("test half B -> half A", scored(halves[1]), scored(halves[0]), threshold)
    report = (
        f"{machine_caption()}. Model {args.model} (fp32 embeddings); its uncalibrated threshold "
        f"(config.verification_threshold, training's EER threshold) is {threshold:.3f}.\n\n"
        + markdown_table(
            [
                "dev -> held-out",
                "trials",
                "p_target",
                "actual DCF, uncalibrated",
                "actual DCF, calibrated",
                "minDCF",
                "Cllr",
                "minCllr",
                "llr =",
            ],
            rows,
        )
    )
    publish(report, args.markdown_out)


if __name__ == "__main__":
    main()
