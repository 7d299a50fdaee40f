"""Time trial scoring and metrics at VoxCeleb1-O size from cached embeddings.

4,874 test files (256-d embeddings) and 37,611 trials, like veri_test2.txt.
Embeddings are random, so the EER is meaningless; only the timings matter.

    python -m benchmarks.bench_scoring [--repeats 5]
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.common import machine_caption, timed_seconds
from wavlmrawnet.evaluation import Trial, as_norm_scores, compute_metrics, cosine_scores

NUM_FILES = 4874
NUM_TRIALS = 37611
DIM = 256
COHORT_SIZE = 2000
TOP_N = 300


def make_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    paths = [f"id{i // 10:05d}/video{i % 10}/{i:05d}.wav" for i in range(NUM_FILES)]
    embeddings = {p: rng.normal(size=DIM).astype(np.float32) for p in paths}
    pairs = rng.integers(0, NUM_FILES, size=(NUM_TRIALS, 2))
    labels = rng.integers(0, 2, size=NUM_TRIALS)
    trials = [Trial(int(label), paths[a], paths[b]) for label, (a, b) in zip(labels, pairs)]
    cohort = rng.normal(size=(COHORT_SIZE, DIM)).astype(np.float32)
    return trials, embeddings, labels, cohort


def best_time(fn, repeats: int) -> float:
    return min(timed_seconds(fn) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="report the best of this many runs")
    args = parser.parse_args()

    trials, embeddings, labels, cohort = make_data()
    cosine = cosine_scores(trials, embeddings)
    rows = [
        ("cosine_scores", lambda: cosine_scores(trials, embeddings)),
        ("compute_metrics (EER + minDCF@0.01,0.05)", lambda: compute_metrics(cosine, labels)),
        ("cosine_scores + compute_metrics", lambda: compute_metrics(cosine_scores(trials, embeddings), labels)),
        (
            f"as_norm_scores (cohort {COHORT_SIZE}, top_n {TOP_N})",
            lambda: as_norm_scores(trials, embeddings, cohort, top_n=TOP_N),
        ),
        (
            "as_norm_scores + compute_metrics",
            lambda: compute_metrics(as_norm_scores(trials, embeddings, cohort, top_n=TOP_N), labels),
        ),
    ]
    print(
        f"{machine_caption()}, numpy {np.__version__}. {NUM_TRIALS:,} trials, {NUM_FILES:,} files, {DIM}-d "
        f"embeddings; best of {args.repeats}.\n"
    )
    print("| operation | seconds |")
    print("|---|---:|")
    for name, fn in rows:
        print(f"| {name} | {best_time(fn, args.repeats):.3f} |")


if __name__ == "__main__":
    main()
