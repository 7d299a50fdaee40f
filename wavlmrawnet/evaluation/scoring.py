"""Trial scoring from cached embeddings: cosine similarity and AS-Norm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .trials import Trial

__all__ = ["MissingEmbeddingError", "cosine_scores", "as_norm_scores", "score_trials"]

_MAX_LISTED = 20
_CHUNK_ROWS = 4096  # rows per block of the embedding x cohort score matrix
_CHUNK_TRIALS = 16384  # trials per block of pair scores: gathers stay in cache, no (trials x dim) copies


class MissingEmbeddingError(KeyError):
    """Trial paths without an embedding. ``.missing`` lists all of them."""

    def __init__(self, missing: list[str]):
        self.missing = list(missing)
        shown = ", ".join(self.missing[:_MAX_LISTED])
        more = len(self.missing) - _MAX_LISTED
        self.message = f"{len(self.missing)} trial files have no embedding: {shown}" + (
            f", ... and {more} more" if more > 0 else ""
        )
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would otherwise print the repr
        return self.message


def _unit_rows(matrix: np.ndarray, what: str, names: Sequence[str] | None = None) -> np.ndarray:
    """L2-normalise rows; NaN/Inf or zero-norm rows raise ValueError naming them."""
    norms = np.linalg.norm(matrix, axis=1)
    bad = ~np.isfinite(norms) | (norms == 0)
    if bad.any():
        rows = np.flatnonzero(bad)[:_MAX_LISTED]
        listed = [names[i] for i in rows] if names is not None else [f"row {i}" for i in rows]
        raise ValueError(f"{int(bad.sum())} {what} have zero norm or contain NaN/Inf: {listed}")
    return matrix / norms[:, None]


def _prepare(trials: Sequence[Trial], embeddings: Mapping[str, np.ndarray]):
    """Unit-norm matrix of every trial file, plus enroll/test row indices per trial."""
    if len(trials) == 0:
        raise ValueError("no trials to score")
    row: dict[str, int] = {}  # path -> matrix row, in first-seen order; one pass over the trials
    enroll_rows, test_rows = [], []
    for trial in trials:
        enroll_rows.append(row.setdefault(trial.enroll, len(row)))
        test_rows.append(row.setdefault(trial.test, len(row)))
    enroll, test = np.array(enroll_rows, dtype=np.intp), np.array(test_rows, dtype=np.intp)
    paths = list(row)
    missing = [p for p in paths if p not in embeddings]
    if missing:
        raise MissingEmbeddingError(missing)
    vectors = [np.asarray(embeddings[p]) for p in paths]
    shapes = {v.shape for v in vectors}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"embeddings must all be 1-d with the same size, got shapes {sorted(shapes)}")
    matrix = _unit_rows(np.stack(vectors).astype(np.float64, copy=False), "embeddings", paths)
    return matrix, enroll, test


def _pair_cosine(matrix: np.ndarray, enroll: np.ndarray, test: np.ndarray) -> np.ndarray:
    scores = np.empty(len(enroll))
    for start in range(0, len(enroll), _CHUNK_TRIALS):
        rows = slice(start, start + _CHUNK_TRIALS)
        scores[rows] = np.einsum("ij,ij->i", matrix[enroll[rows]], matrix[test[rows]])
    return scores


def cosine_scores(trials: Sequence[Trial], embeddings: Mapping[str, np.ndarray]) -> np.ndarray:
    """Cosine similarity of enroll and test embedding for every trial."""
    return _pair_cosine(*_prepare(trials, embeddings))


def _cohort_stats(matrix: np.ndarray, cohort: np.ndarray, top_n: int):
    """Mean and std of each row's top_n cosine scores against the cohort."""
    means = np.empty(len(matrix))
    stds = np.empty(len(matrix))
    first_kept = len(cohort) - top_n
    for start in range(0, len(matrix), _CHUNK_ROWS):
        block = matrix[start : start + _CHUNK_ROWS] @ cohort.T
        top = np.partition(block, first_kept, axis=1)[:, first_kept:]
        means[start : start + len(block)] = top.mean(axis=1)
        stds[start : start + len(block)] = top.std(axis=1)
    return means, stds


def as_norm_scores(
    trials: Sequence[Trial],
    embeddings: Mapping[str, np.ndarray],
    cohort: np.ndarray,
    top_n: int = 200,
) -> np.ndarray:
    """Adaptive symmetric score normalisation (AS-Norm) of cosine scores.

    For each side, the mean/std of its top_n cosine scores against the cohort
    normalise the raw score s:
    0.5 * ((s - mu_enroll) / sd_enroll + (s - mu_test) / sd_test).
    Cohort statistics are computed once per unique file.
    """
    matrix, enroll, test = _prepare(trials, embeddings)
    cohort = np.asarray(cohort, dtype=np.float64)
    if cohort.ndim != 2 or cohort.shape[1] != matrix.shape[1]:
        raise ValueError(f"cohort must have shape (num_cohort, {matrix.shape[1]}), got {cohort.shape}")
    if not isinstance(top_n, (int, np.integer)) or not 1 <= top_n <= len(cohort):
        raise ValueError(f"top_n must be an integer in [1, cohort size={len(cohort)}], got {top_n}")
    cohort = _unit_rows(cohort, "cohort embeddings")

    means, stds = _cohort_stats(matrix, cohort, int(top_n))
    flat = stds == 0
    if flat.any():
        raise ValueError(
            f"{int(flat.sum())} files have identical top-{top_n} cohort scores (std 0), "
            "so AS-Norm is undefined; use a larger top_n or a more varied cohort"
        )
    raw = _pair_cosine(matrix, enroll, test)
    return 0.5 * ((raw - means[enroll]) / stds[enroll] + (raw - means[test]) / stds[test])


def score_trials(
    trials: Sequence[Trial],
    embeddings: Mapping[str, np.ndarray],
    cohort: np.ndarray | None = None,
    top_n: int = 200,
) -> np.ndarray:
    """Cosine scores, AS-Norm normalised when a cohort is given."""
    if cohort is None:
        return cosine_scores(trials, embeddings)
    return as_norm_scores(trials, embeddings, cohort, top_n=top_n)
