"""Time `SpeakerDatabase.search` / `identify` with 100,000 enrolled speakers (target: < 20 ms per query).

Speakers are random 256-d unit vectors (the search cost does not depend on the values). One query at a time (the
CLI's and the Space's case) and batches of 64 queries (one matmul for all), top-5; median of repeated runs.

    python -m benchmarks.bench_speaker_search [--speakers 100000] [--repeats 50] [--markdown-out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from benchmarks.common import machine_caption, markdown_table, publish
from wavlmrawnet.recognition import SpeakerDatabase

DIM = 256


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speakers", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--markdown-out", help="also write the report here")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    database = SpeakerDatabase(identity="benchmark", dim=DIM, threshold=0.5)
    start = time.perf_counter()
    embeddings = rng.standard_normal((args.speakers, DIM)).astype(np.float32)
    for index, embedding in enumerate(embeddings):
        database.add(f"speaker{index:06d}", embedding)
    enroll_seconds = time.perf_counter() - start
    database.matrix  # noqa: B018 - builds the normalised matrix once, as the first search would
    one = rng.standard_normal(DIM).astype(np.float32)
    batch = rng.standard_normal((64, DIM)).astype(np.float32)
    assert database.search(embeddings[123])[0][0][0] == "speaker000123"  # the search finds an enrolled speaker

    rows = [
        ["search, 1 query, top 5", f"{median_ms(lambda: database.search(one), args.repeats):.2f}"],
        ["identify, 1 query, top 5", f"{median_ms(lambda: database.identify(one), args.repeats):.2f}"],
        ["search, 64 queries at once, top 5", f"{median_ms(lambda: database.search(batch), args.repeats) / 64:.2f}"],
    ]
    report = (
        f"{machine_caption()}, numpy {np.__version__}. {args.speakers:,} enrolled speakers ({DIM}-d), median of "
        f"{args.repeats} runs; enrolling them one by one took {enroll_seconds:.1f} s.\n\n"
        + markdown_table(["operation", "ms per query"], rows)
    )
    publish(report, args.markdown_out)


if __name__ == "__main__":
    main()
