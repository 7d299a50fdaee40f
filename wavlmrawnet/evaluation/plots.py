"""DET curve and score-histogram plots, written as PNG without a display.

Figures are drawn on matplotlib's Agg canvas directly, so importing this
module never changes the global pyplot backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .error_rates import _check_inputs, compute_eer, det_curve

__all__ = ["plot_det_curve", "plot_det_curves", "plot_score_histograms"]

try:
    from scipy.stats import norm as _scipy_norm

    def _probit(p: np.ndarray) -> np.ndarray:
        return _scipy_norm.ppf(p)

except ImportError:  # scipy is optional: fall back to the standard library
    from statistics import NormalDist

    _inv_cdf = np.vectorize(NormalDist().inv_cdf, otypes=[float])

    def _probit(p: np.ndarray) -> np.ndarray:
        return _inv_cdf(p)


# Tick positions (as rates), spaced so their % labels do not overlap on probit axes.
_DET_TICKS = (0.0001, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4)
_DET_TICKS_FULL = (0.0001, 0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99, 0.999)
_DET_FLOOR = 0.0001  # rates of exactly 0 (or 1) have no probit; clip them here


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=120)
    return path


def _det_frame(ax, low: float, worst_eer: float, title: str) -> tuple[float, float]:
    """Probit axes from `low` to 50 % (or nearly 100 % for poor systems), ticks, labels, the diagonal and the grid;
    returns the (low, high) rates shown."""
    high, tick_set = (0.5, _DET_TICKS) if worst_eer < 0.3 else (1.0 - _DET_FLOOR, _DET_TICKS_FULL)
    ticks = [t for t in tick_set if low <= t <= high]
    ax.plot(_probit(np.array([low, high])), _probit(np.array([low, high])), ":", color="0.6", lw=0.8)
    tick_pos = _probit(np.array(ticks))
    tick_labels = [f"{100 * t:g}" for t in ticks]
    ax.set_xticks(tick_pos, tick_labels)
    ax.set_yticks(tick_pos, tick_labels)
    limits = _probit(np.array([low, high]))
    ax.set_xlim(*limits)
    ax.set_ylim(*limits)
    ax.set_xlabel("False acceptance rate (%)")
    ax.set_ylabel("False rejection rate (%)")
    ax.set_title(title)
    ax.grid(True, ls="--", lw=0.5)
    return low, high


def _lowest_rate(fpr: np.ndarray, fnr: np.ndarray) -> float:
    """The smallest non-zero error rate, capped at 1 % (the axes start there or lower), floored at `_DET_FLOOR`."""
    nonzero = np.r_[fpr[fpr > 0], fnr[fnr > 0]]
    return max(_DET_FLOOR, min(0.01, float(nonzero.min()) if nonzero.size else 0.01))


def plot_det_curve(scores, labels, path, title: str | None = None) -> Path:
    """DET curve (miss rate vs false-alarm rate on probit axes) with the EER marked."""
    fpr, fnr, _ = det_curve(scores, labels)
    eer, _ = compute_eer(scores, labels)
    lo, hi = _DET_FLOOR, 1.0 - _DET_FLOOR
    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.add_subplot()
    ax.plot(_probit(np.clip(fpr, lo, hi)), _probit(np.clip(fnr, lo, hi)), lw=1.5, label="DET")
    eer_xy = _probit(np.clip(eer, lo, hi))
    ax.plot(eer_xy, eer_xy, "o", color="C3", label=f"EER = {100 * eer:.2f}%")
    _det_frame(ax, _lowest_rate(fpr, fnr), eer, title or "DET curve")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return _save(fig, path)


def plot_det_curves(curves: dict[str, tuple], path, title: str | None = None) -> Path:
    """One DET curve per entry of `curves` ({label: (scores, labels)}, e.g. one per evaluation condition) on shared
    probit axes, each labelled with its EER."""
    if not curves:
        raise ValueError("plot_det_curves needs at least one curve")
    lo, hi = _DET_FLOOR, 1.0 - _DET_FLOOR
    fig = Figure(figsize=(6, 6))
    ax = fig.add_subplot()
    low, worst = 0.01, 0.0
    for index, (label, (scores, labels)) in enumerate(curves.items()):
        fpr, fnr, _ = det_curve(scores, labels)
        eer, _ = compute_eer(scores, labels)
        low, worst = min(low, _lowest_rate(fpr, fnr)), max(worst, eer)
        style = ("-", "--", "-.")[index // 10 % 3]  # matplotlib's 10 colours repeat: the line style tells them apart
        ax.plot(
            _probit(np.clip(fpr, lo, hi)),
            _probit(np.clip(fnr, lo, hi)),
            lw=1.3,
            label=f"{label} ({100 * eer:.2f}%)",
            ls=style,
        )
    _det_frame(ax, low, worst, title or "DET curve per condition (EER)")
    ax.legend(loc="lower left", fontsize="small")  # DET curves run from top left to bottom right
    fig.tight_layout()
    return _save(fig, path)


def plot_score_histograms(scores, labels, path, threshold: float | None = None) -> Path:
    """Target vs non-target score distributions, with an optional threshold line."""
    scores, labels = _check_inputs(scores, labels)
    bins = np.histogram_bin_edges(scores, bins=min(100, max(10, scores.size // 20)))

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    ax.hist(scores[labels == 0], bins=bins, density=True, alpha=0.6, label="non-target")
    ax.hist(scores[labels == 1], bins=bins, density=True, alpha=0.6, label="target")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold = {threshold:.3f}")
    ax.set_xlabel("score")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)
