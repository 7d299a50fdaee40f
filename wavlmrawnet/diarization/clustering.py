"""Clustering the window embeddings into speakers, behind one table of name -> function (`CLUSTERINGS`).

- "spectral": Google's `spectralcluster` (the `[diarize]` extra) in its Turn-to-Diarize configuration: row-wise
  percentile thresholding with auto-tuning, a graph-cut Laplacian, the eigengap for the count, k-means on the spectral
  embeddings. Above `MAX_SPECTRAL_SIZE` windows its multi-stage mode first merges windows by complete-linkage
  agglomerative clustering into that many groups, so the eigen decomposition stays `MAX_SPECTRAL_SIZE` wide however
  long the recording. There the eigengap, which then sees the groups' centroids, under-counts (3 of 4 speakers, or
  2, on 30-minute conversations), so on recordings of more than `MAX_SPECTRAL_SIZE` windows the count comes from
  over-clustering and merging instead: spectral clustering into `OVER_CLUSTERS` clusters, then scikit-learn's
  average-linkage agglomerative clustering of the clusters' centroids (means of the normalised window embeddings,
  normalised), merged while their cosine is above the threshold (the model's `verification_threshold`: two
  clusters are one speaker when the model's calibrated same-speaker decision says so of their mean embeddings).
- "agglomerative": scikit-learn's average-linkage agglomerative clustering on cosine distance, cut where the average
  cosine between two clusters falls below the threshold (the model's `verification_threshold` by default: its
  calibrated same-speaker decision); a known count cuts the tree at that many clusters instead.

A known count (`num_speakers`) is used as is; bounds (`min_speakers`/`max_speakers`) clip the estimate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..extras import import_module

__all__ = [
    "CLUSTERINGS",
    "MAX_SPECTRAL_SIZE",
    "OVER_CLUSTERS",
    "SpeakerCount",
    "cluster_embeddings",
    "merge_clusters",
]

MAX_SPECTRAL_SIZE = 400  # windows; above, spectralcluster's multi-stage mode (AHC first)
OVER_CLUSTERS = 7  # above MAX_SPECTRAL_SIZE windows with the count unknown: clusters before the centroid merge
DEFAULT_MAX_SPEAKERS = 20  # the estimate's upper bound when none is given
DEFAULT_THRESHOLD = 0.5  # agglomerative cut (cosine) for a model without a verification_threshold


@dataclass(frozen=True)
class SpeakerCount:
    """How many speakers: exactly `low == high`, or between them."""

    low: int
    high: int
    known: bool

    @classmethod
    def of(cls, num_speakers: int | None, min_speakers: int | None, max_speakers: int | None) -> SpeakerCount:
        """Checks the three arguments (a known count excludes bounds; each is a positive integer; min <= max)."""
        for name, value in (("num_speakers", num_speakers), ("min_speakers", min_speakers),
                            ("max_speakers", max_speakers)):  # fmt: skip
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise ValueError(f"{name} must be a positive whole number, got {value!r}")
        if num_speakers is not None:
            if min_speakers is not None or max_speakers is not None:
                raise ValueError("give either num_speakers or min_speakers/max_speakers, not both")
            return cls(int(num_speakers), int(num_speakers), True)
        low = int(min_speakers or 1)
        high = int(max_speakers or max(DEFAULT_MAX_SPEAKERS, low))
        if low > high:
            raise ValueError(f"min_speakers ({low}) is above max_speakers ({high})")
        return cls(low, high, False)

    def check_windows(self, num_windows: int, window: float, where: str = "audio") -> None:
        """Raises `DiarizationInputError` when more speakers are asked for than there are windows to tell apart."""
        if self.low > num_windows:
            from .windows import DiarizationInputError

            asked = f"{self.low} speakers" if self.known else f"at least {self.low} speakers"
            raise DiarizationInputError(
                where,
                f"{asked} were asked for, but its speech gives only {num_windows} window(s) of {window:g} s; "
                f"at most {num_windows} speaker(s) can be told apart",
            )

    def within(self, num_windows: int) -> tuple[int, int]:
        return min(self.low, num_windows), min(self.high, num_windows)


def spectral(embeddings: np.ndarray, count: SpeakerCount, threshold: float | None = None) -> np.ndarray:
    """spectralcluster's Turn-to-Diarize configuration (module docstring). With the count unknown and more than
    `MAX_SPECTRAL_SIZE` windows, over-clusters into `OVER_CLUSTERS` and merges at cosine `threshold`."""
    low, high = count.within(len(embeddings))
    if high == 1 or len(embeddings) < 3:  # nothing to decompose: one speaker, or one window per speaker
        return np.zeros(len(embeddings), dtype=np.int64) if high == 1 else np.arange(len(embeddings))
    if count.known or len(embeddings) <= MAX_SPECTRAL_SIZE:
        return _spectral(embeddings, low, high)
    over = max(low, min(OVER_CLUSTERS, high))
    labels = _spectral(embeddings, over, over)
    return merge_clusters(embeddings, labels, DEFAULT_THRESHOLD if threshold is None else threshold, low, high)


def merge_clusters(
    embeddings: np.ndarray, labels: np.ndarray, threshold: float, low: int = 1, high: int | None = None
) -> np.ndarray:
    """Merges clusters whose centroids are the same speaker: `agglomerative` (average linkage on cosine, cut where
    the cosine falls below `threshold`, a result outside `low`..`high` cut at the nearest bound) on the normalised
    cluster means. Returns labels 0..k-1 for the windows."""
    names, labels = np.unique(labels, return_inverse=True)
    centroids = np.stack([embeddings[labels == k].mean(axis=0) for k in range(len(names))]).astype(np.float64)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    bounds = SpeakerCount(low, len(names) if high is None else high, known=False)
    return agglomerative(centroids, bounds, threshold)[labels]


def _spectral(embeddings: np.ndarray, low: int, high: int) -> np.ndarray:
    """spectralcluster's Turn-to-Diarize configuration with the count between `low` and `high`."""
    sc = import_module("spectralcluster", "diarize", "spectral clustering for diarization")
    refinement = sc.RefinementOptions(
        p_percentile=0.90,
        thresholding_soft_multiplier=0.01,
        thresholding_type=sc.ThresholdType.Percentile,
        thresholding_with_binarization=True,
        thresholding_preserve_diagonal=True,
        symmetrize_type=sc.SymmetrizeType.Average,
        refinement_sequence=[sc.RefinementName.RowWiseThreshold, sc.RefinementName.Symmetrize],
    )
    autotune = sc.AutoTune(
        p_percentile_min=0.40,
        p_percentile_max=0.95,
        init_search_step=0.05,
        search_level=1,
        proxy=sc.AutoTuneProxy.PercentileSqrtOverNME,
    )
    clusterer = sc.SpectralClusterer(
        min_clusters=low,
        max_clusters=high,
        refinement_options=refinement,
        autotune=autotune,
        laplacian_type=sc.LaplacianType.GraphCut,
        row_wise_renorm=True,
        custom_dist="cosine",
        max_iter=300,
        max_spectral_size=MAX_SPECTRAL_SIZE if len(embeddings) > MAX_SPECTRAL_SIZE else None,
    )
    return np.asarray(clusterer.predict(np.asarray(embeddings, dtype=np.float64)), dtype=np.int64)


def agglomerative(embeddings: np.ndarray, count: SpeakerCount, threshold: float | None = None) -> np.ndarray:
    """scikit-learn's average-linkage clustering on cosine distance, cut at cosine `threshold` (module docstring)."""
    cluster = import_module("sklearn.cluster", "diarize", "agglomerative clustering for diarization")
    low, high = count.within(len(embeddings))
    if len(embeddings) == 1 or high == 1:
        return np.zeros(len(embeddings), dtype=np.int64)

    def cut(clusters: int | None) -> np.ndarray:
        model = cluster.AgglomerativeClustering(
            n_clusters=clusters,
            metric="cosine",
            linkage="average",
            distance_threshold=None if clusters else 1.0 - (DEFAULT_THRESHOLD if threshold is None else threshold),
        )
        return np.asarray(model.fit_predict(embeddings), dtype=np.int64)

    if count.known:
        return cut(low)
    labels = cut(None)
    found = int(labels.max()) + 1
    return labels if low <= found <= high else cut(min(max(found, low), high))


# name -> function(embeddings (n, d) normalised, SpeakerCount, threshold) -> labels (n,)
CLUSTERINGS: dict[str, Callable[[np.ndarray, SpeakerCount, float | None], np.ndarray]] = {
    "spectral": spectral,
    "agglomerative": agglomerative,
}


def cluster_embeddings(
    embeddings: np.ndarray, method: str, count: SpeakerCount, threshold: float | None = None
) -> np.ndarray:
    """Cluster labels (n,) for the window embeddings with `CLUSTERINGS[method]`."""
    if method not in CLUSTERINGS:
        raise ValueError(f"unknown clustering {method!r}; choose one of {sorted(CLUSTERINGS)}")
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or len(embeddings) == 0:
        raise ValueError(f"expected (windows, dim) embeddings, got shape {embeddings.shape}")
    if not np.isfinite(embeddings).all():
        raise ValueError("the window embeddings hold NaN or infinite values")
    return CLUSTERINGS[method](embeddings, count, threshold)
