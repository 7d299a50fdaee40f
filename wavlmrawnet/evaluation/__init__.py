"""Speaker-verification evaluation: trial lists, embedding, scoring, error rates (EER, minDCF), plots and the
results JSON.

The plots need matplotlib (the `eval` extra): they are imported on first use, so the rest works with the core install.
"""

from .error_rates import compute_eer, compute_metrics, compute_min_dcf, det_curve
from .results import EvaluationResults, write_results_json
from .scoring import MissingEmbeddingError, as_norm_scores, cosine_scores, score_trials
from .trials import MissingTrialFilesError, Trial, make_trials, read_trials, unique_paths, write_trials

__all__ = [
    "EvaluationResults",
    "MissingEmbeddingError",
    "MissingTrialFilesError",
    "Trial",
    "as_norm_scores",
    "compute_eer",
    "compute_metrics",
    "compute_min_dcf",
    "cosine_scores",
    "det_curve",
    "plot_det_curve",
    "plot_score_histograms",
    "read_trials",
    "score_trials",
    "unique_paths",
    "make_trials",
    "write_results_json",
    "write_trials",
]


def __getattr__(name: str):
    if name in ("plot_det_curve", "plot_score_histograms"):
        from . import plots

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
