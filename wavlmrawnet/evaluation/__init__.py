"""Speaker-verification evaluation: trial lists, embedding, scoring, error rates (EER, minDCF) and plots."""

from .error_rates import compute_eer, compute_metrics, compute_min_dcf, det_curve, write_results_json
from .plots import plot_det_curve, plot_score_histograms
from .scoring import MissingEmbeddingError, as_norm_scores, cosine_scores, score_trials
from .trials import MissingTrialFilesError, Trial, make_trials, read_trials, unique_paths, write_trials

__all__ = [
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
    "write_trials",
    "write_results_json",
]
