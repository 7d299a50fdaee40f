"""Speaker-verification metrics: EER, normalised minDCF and actual DCF, Cllr and minCllr, DET curve.

Conventions: a higher score means "more likely the same speaker"; label 1 is a
target (same-speaker) trial, label 0 a non-target trial. A trial is accepted
when ``score >= threshold``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = [
    "bayes_threshold",
    "compute_actual_dcf",
    "compute_calibration_metrics",
    "compute_cllr",
    "compute_eer",
    "compute_min_cllr",
    "compute_min_dcf",
    "compute_metrics",
    "det_curve",
    "pav",
]


def _check_inputs(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Validate scores/labels and return them as 1-d float64 / int arrays."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.ndim != 1:
        raise ValueError(f"scores and labels must be 1-d, got shapes {scores.shape} and {labels.shape}")
    if scores.size == 0:
        raise ValueError("scores and labels are empty: need at least one trial")
    if scores.shape != labels.shape:
        raise ValueError(f"length mismatch: {scores.size} scores but {labels.size} labels")
    bad = ~np.isfinite(scores)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} scores are NaN or infinite (first at index {int(np.flatnonzero(bad)[0])})")
    if labels.dtype == bool:
        labels = labels.astype(np.int64)
    invalid = ~np.isin(labels, (0, 1))
    if invalid.any():
        raise ValueError(
            f"labels must be 0 (non-target) or 1 (target); found "
            f"{sorted(set(np.unique(labels[invalid]).tolist()))[:10]}"
        )
    labels = labels.astype(np.int64)
    num_target = int(labels.sum())
    if num_target == 0:
        raise ValueError("no target trials (label 1): EER/minDCF are undefined")
    if num_target == labels.size:
        raise ValueError("no non-target trials (label 0): EER/minDCF are undefined")
    return scores, labels


def _operating_points(scores: np.ndarray, labels: np.ndarray):
    """Exact ROC sweep over every distinct score.

    Returns (far, frr, thresholds), one entry per operating point, from
    "reject all" (far=0, frr=1) to "accept all" (far=1, frr=0). Tied scores
    form a single operating point.
    """
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    # Last index of each group of equal scores (scores sorted descending).
    group_end = np.r_[np.flatnonzero(np.diff(sorted_scores) != 0), sorted_scores.size - 1]
    accepted_targets = np.cumsum(sorted_labels)[group_end]
    accepted_nontargets = (group_end + 1) - accepted_targets
    num_target = accepted_targets[-1]
    num_nontarget = accepted_nontargets[-1]

    far = np.r_[0.0, accepted_nontargets / num_nontarget]
    frr = np.r_[1.0, 1.0 - accepted_targets / num_target]
    # First threshold sits just above the highest score, so it rejects everything.
    reject_all = np.nextafter(sorted_scores[0], np.inf)
    thresholds = np.r_[reject_all, sorted_scores[group_end]]
    return far, frr, thresholds


def det_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DET curve: (false-positive rate, false-negative rate, thresholds).

    One point per distinct threshold, from "reject all" to "accept all".
    """
    return _operating_points(*_check_inputs(scores, labels))


def compute_eer(scores, labels) -> tuple[float, float]:
    """Equal error rate (fraction, 0..1) and the threshold where it occurs.

    FAR and FRR are linearly interpolated between the two operating points
    on either side of their crossing.
    """
    far, frr, thresholds = det_curve(scores, labels)
    gap = frr - far  # starts at 1, ends at -1, never increases
    i = int(np.argmax(gap <= 0))  # first point at or past the crossing
    alpha = gap[i - 1] / (gap[i - 1] - gap[i])
    eer = far[i - 1] + alpha * (far[i] - far[i - 1])
    threshold = thresholds[i - 1] + alpha * (thresholds[i] - thresholds[i - 1])
    return float(eer), float(threshold)


def compute_min_dcf(
    scores, labels, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0
) -> tuple[float, float]:
    """Normalised minimum detection cost and its threshold.

    DCF(t) = c_miss * P_miss(t) * p_target + c_fa * P_fa(t) * (1 - p_target),
    divided by the cost of the best trivial system,
    min(c_miss * p_target, c_fa * (1 - p_target)). A value of 1.0 means the
    system is no better than always accepting or always rejecting.
    """
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"c_miss and c_fa must be positive, got {c_miss} and {c_fa}")
    far, frr, thresholds = det_curve(scores, labels)
    dcf = c_miss * frr * p_target + c_fa * far * (1.0 - p_target)
    best = int(np.argmin(dcf))
    normaliser = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float(dcf[best] / normaliser), float(thresholds[best])


def _p_key(p_target: float) -> str:
    return format(float(p_target), "g")


def compute_metrics(scores, labels, p_targets: Iterable[float] = (0.01, 0.05)) -> dict:
    """EER and normalised minDCF (one per p_target) plus trial counts.

    ``min_dcf`` and ``min_dcf_thresholds`` are keyed by p_target as a string,
    e.g. ``"0.01"``.
    """
    scores, labels = _check_inputs(scores, labels)
    eer, eer_threshold = compute_eer(scores, labels)
    min_dcf, min_dcf_thresholds = {}, {}
    for p in p_targets:
        min_dcf[_p_key(p)], min_dcf_thresholds[_p_key(p)] = compute_min_dcf(scores, labels, p_target=p)
    num_target = int(labels.sum())
    return {
        "eer": eer,
        "eer_percent": 100.0 * eer,
        "eer_threshold": eer_threshold,
        "min_dcf": min_dcf,
        "min_dcf_thresholds": min_dcf_thresholds,
        "num_trials": int(labels.size),
        "num_target": num_target,
        "num_nontarget": int(labels.size) - num_target,
    }


# ----------------------------------------------------------------------------------------------- calibration
def bayes_threshold(p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """The log-likelihood ratio above which accepting costs less than rejecting: -log(p c_miss / ((1-p) c_fa))."""
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    return float(-np.log(p_target * c_miss / ((1.0 - p_target) * c_fa)))


def compute_actual_dcf(
    scores, labels, threshold: float, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0
) -> float:
    """Normalised detection cost of the decisions `score >= threshold` (normalised as in `compute_min_dcf`).

    For log-likelihood ratios, pass `threshold=bayes_threshold(p_target)`: the cost then shows how well calibrated
    the scores are (actual DCF = minDCF for perfectly calibrated ones).
    """
    scores, labels = _check_inputs(scores, labels)
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    accepted = scores >= threshold
    p_miss = float(np.mean(~accepted[labels == 1]))
    p_fa = float(np.mean(accepted[labels == 0]))
    cost = c_miss * p_miss * p_target + c_fa * p_fa * (1.0 - p_target)
    return cost / min(c_miss * p_target, c_fa * (1.0 - p_target))


def compute_cllr(llrs, labels) -> float:
    """Log-likelihood-ratio cost in bits (Brümmer): 0 is perfect, 1 is a system that always says llr = 0.

    Cllr = (mean over targets of log2(1 + e^-llr) + mean over non-targets of log2(1 + e^llr)) / 2.
    """
    llrs, labels = _check_inputs(llrs, labels)
    target_cost = np.mean(np.logaddexp(0.0, -llrs[labels == 1]))
    nontarget_cost = np.mean(np.logaddexp(0.0, llrs[labels == 0]))
    return float((target_cost + nontarget_cost) / (2.0 * np.log(2.0)))


def pav(values, weights=None) -> np.ndarray:
    """Pool-adjacent-violators: the non-decreasing sequence closest to `values` in weighted least squares."""
    values = np.asarray(values, dtype=np.float64)
    weights = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    means, totals, sizes = [], [], []
    for value, weight in zip(values, weights):
        means.append(value)
        totals.append(weight)
        sizes.append(1)
        while len(means) > 1 and means[-2] >= means[-1]:
            weight_sum = totals[-2] + totals[-1]
            means[-2] = (means[-2] * totals[-2] + means[-1] * totals[-1]) / weight_sum
            totals[-2], sizes[-2] = weight_sum, sizes[-2] + sizes[-1]
            del means[-1], totals[-1], sizes[-1]
    return np.repeat(means, sizes)


def compute_min_cllr(scores, labels) -> float:
    """Cllr after the best monotonic score-to-llr map (PAV): what calibration could reach; Cllr - minCllr is the
    calibration loss."""
    scores, labels = _check_inputs(scores, labels)
    # Ties: targets first, so PAV pools each tied group (the pessimistic choice, as BOSARIS's opt_loglr).
    order = np.lexsort((-labels, scores))
    posteriors = pav(labels[order].astype(np.float64))
    num_target = labels.sum()
    prior_log_odds = np.log(num_target / (labels.size - num_target))
    with np.errstate(divide="ignore"):
        llrs = np.log(posteriors) - np.log1p(-posteriors) - prior_log_odds
    # Infinite llrs (posterior 0 or 1) on the right side cost nothing.
    target_llrs, nontarget_llrs = llrs[labels[order] == 1], llrs[labels[order] == 0]
    target_cost = np.mean(np.logaddexp(0.0, -target_llrs))
    nontarget_cost = np.mean(np.logaddexp(0.0, nontarget_llrs))
    return float((target_cost + nontarget_cost) / (2.0 * np.log(2.0)))


def compute_calibration_metrics(
    scores,
    labels,
    p_targets: Iterable[float] = (0.01, 0.05),
    threshold: float | None = None,
    calibration: dict | None = None,
) -> dict:
    """Actual DCF per p_target, minCllr and, for calibrated scores, Cllr.

    With `calibration` (`{"scale", "offset"}`), scores become llrs `scale * score + offset`, and the actual DCF
    decides at each p_target's Bayes threshold; `cllr` is their Cllr. Without it, the actual DCF decides at
    `threshold` (the model's `verification_threshold`) for every p_target, and there is no Cllr (a cosine is not an
    llr). `act_dcf` is keyed like `min_dcf`.
    """
    scores, labels = _check_inputs(scores, labels)
    values: dict = {"min_cllr": compute_min_cllr(scores, labels)}
    if calibration is not None:
        llrs = calibration["scale"] * scores + calibration["offset"]
        values["act_dcf"] = {
            _p_key(p): compute_actual_dcf(llrs, labels, bayes_threshold(p), p_target=p) for p in p_targets
        }
        values["cllr"] = compute_cllr(llrs, labels)
    elif threshold is not None:
        values["act_dcf"] = {_p_key(p): compute_actual_dcf(scores, labels, threshold, p_target=p) for p in p_targets}
    return values
