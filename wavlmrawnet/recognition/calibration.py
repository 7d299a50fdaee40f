"""Score calibration: cosine score -> log-likelihood ratio by prior-weighted linear logistic regression.

As in Brümmer's FoCal / BOSARIS: `llr = scale * score + offset` minimises the cross-entropy
    p/N_tar * sum_tar log(1 + e^-(llr + logit p)) + (1-p)/N_non * sum_non log(1 + e^(llr + logit p)),
so that the llrs are well calibrated at the prior `p` (`p_target`), whatever the dev set's target proportion.
"""

from __future__ import annotations

import math

import numpy as np

from ..configuration_wavlmrawnet import check_calibration
from ..evaluation.error_rates import _check_inputs, bayes_threshold

__all__ = ["calibrated_threshold", "fit_calibration", "llr_to_probability"]


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def fit_calibration(scores, labels, p_target: float = 0.01, max_iterations: int = 100) -> dict[str, float]:
    """`{"scale", "offset"}` mapping `scores` to natural-log likelihood ratios, fitted on labelled dev trials
    (label 1 = same speaker) by Newton's method on the prior-weighted logistic loss (a convex problem).

    Scores that separate targets from non-targets perfectly have no finite fit: that is a `ValueError`, as are fewer
    than 2 trials of either class and a fit whose scale is not positive.
    """
    scores, labels = _check_inputs(scores, labels)
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    targets, nontargets = scores[labels == 1], scores[labels == 0]
    if min(targets.size, nontargets.size) < 2:
        raise ValueError(
            f"calibration needs at least 2 target and 2 non-target trials, got {targets.size} and {nontargets.size}"
        )
    if targets.min() > nontargets.max():
        raise ValueError(
            "the dev scores separate targets from non-targets perfectly, so no finite calibration fits them; "
            "use a larger or harder dev trial list"
        )
    weights = np.where(labels == 1, p_target / targets.size, (1.0 - p_target) / nontargets.size)
    design = np.stack([scores, np.ones_like(scores)], axis=1)
    prior_log_odds = _logit(p_target)
    params = np.array([1.0, -prior_log_odds - float(np.mean(scores))])  # scale, offset + logit(p)

    def loss(theta):
        z = design @ theta
        return float(np.sum(weights * np.where(labels == 1, np.logaddexp(0, -z), np.logaddexp(0, z))))

    current = loss(params)
    for _ in range(max_iterations):
        z = design @ params
        posterior = 1.0 / (1.0 + np.exp(-z))
        gradient = design.T @ (weights * (posterior - labels))
        hessian = (design * (weights * posterior * (1.0 - posterior))[:, None]).T @ design
        step = np.linalg.solve(hessian + 1e-12 * np.eye(2), gradient)
        size = 1.0
        while size > 1e-10 and loss(params - size * step) > current:
            size /= 2  # damped Newton: never increase the loss
        params = params - size * step
        previous, current = current, loss(params)
        if previous - current < 1e-14 * max(1.0, abs(current)) and np.abs(gradient).max() < 1e-10:
            break
    scale, offset = float(params[0]), float(params[1] - prior_log_odds)
    if not (math.isfinite(scale) and math.isfinite(offset)) or scale <= 0:
        raise ValueError(
            f"calibration fit gave scale {scale}, offset {offset}: higher scores do not mean the same speaker "
            "in these dev trials"
        )
    return check_calibration({"scale": scale, "offset": offset})


def calibrated_threshold(calibration: dict, p_target: float) -> float:
    """The score at which the calibrated llr meets the Bayes threshold for `p_target` (the decision threshold)."""
    return (bayes_threshold(p_target) - calibration["offset"]) / calibration["scale"]


def llr_to_probability(llr, p_target: float):
    """Posterior probability of the same speaker given the llr, at prior `p_target`."""
    return 1.0 / (1.0 + np.exp(-(np.asarray(llr, dtype=np.float64) + _logit(p_target))))
