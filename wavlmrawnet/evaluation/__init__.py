"""Speaker-verification evaluation: trial lists, embedding, scoring, error rates (EER, minDCF), plots and the
results JSON."""

from .error_rates import compute_eer, compute_metrics, compute_min_dcf, det_curve
from .plots import plot_det_curve, plot_score_histograms
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
