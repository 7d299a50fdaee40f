"""Scale figures: files per second of `wavlmrawnet embed` on 1 and 2 processes, scoring Vox1-E-sized trial lists from
cached embeddings, and the peak memory of gathering 150k embeddings on rank 0.

    python -m benchmarks.bench_scale [--preset default] [--files 32] [--repeats 2] [--markdown-out FILE]

1. Embedding: `--files` synthetic 3-6 s files, a `--preset` model with random weights saved to disk, the `embed`
   command run end to end (model loading included) as one process with all cores, then under
   `torchrun --nproc_per_node 2` with the cores split between the processes; the two are interleaved `--repeats`
   times (contention hits both alike) and the ratio is reported.
2. Scoring: 145,160 files (Vox1-E/H size) with 256-d embeddings, 1,100,000 trials: `score_trials` and
   `compute_metrics`, as `wavlmrawnet score` runs them once every embedding is in the cache.
3. Streaming labels: the first pass over the speaker column of a streamed parquet source, 100,000 rows (1,000
   speakers) with `--row-kib` of audio bytes per row, as `load_stream` runs it.
4. Gather: two gloo processes with 75,000 256-d embeddings each send them to rank 0 (`gather_to_main`); the figure
   is rank 0's peak RSS during the gather minus its RSS before, and the seconds it takes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (
    RESULT_PREFIX,
    child_env,
    current_rss_bytes,
    machine_caption,
    markdown_table,
    peak_rss_bytes,
    publish,
    reset_peak_rss,
)

SCORE_FILES = 145_160
SCORE_TRIALS = 1_100_000
GATHER_PER_RANK = 75_000
DIM = 256
GATHER_FLAG = "--gather-worker"


def write_audio(folder: Path, count: int) -> None:
    import soundfile as sf

    rng = np.random.default_rng(0)
    for i in range(count):
        seconds = 3.0 + 3.0 * rng.random()
        t = np.arange(int(seconds * 16000)) / 16000
        audio = 0.2 * np.sin(2 * np.pi * (120 + 60 * rng.random()) * t) + 0.01 * rng.standard_normal(t.size)
        sf.write(folder / f"f{i:04d}.wav", audio.astype(np.float32), 16000, subtype="PCM_16")


def embed_seconds(model: Path, audio: Path, nproc: int, threads: int, out: Path) -> float:
    cli = ["-m", "wavlmrawnet", "embed", str(audio), "--out", str(out), "--model", str(model), "--quiet"]
    cli += ["--threads", str(threads), "--dtype", "auto"]
    if nproc == 1:
        command = [sys.executable, *cli]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *cli]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-3000:]}")
    return seconds


def bench_embedding(preset: str, files: int, repeats: int) -> tuple[list[list[str]], str]:
    import torch

    from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (scratch / "audio").mkdir()
        write_audio(scratch / "audio", files)
        torch.manual_seed(0)
        WavLMRawNetForXVector(WavLMRawNetConfig.from_preset(preset, num_labels=2)).save_pretrained(scratch / "model")
        times = {1: [], 2: []}
        for _ in range(repeats):  # interleaved
            for nproc in (1, 2):
                threads = max(1, cores // nproc)
                times[nproc].append(
                    embed_seconds(scratch / "model", scratch / "audio", nproc, threads, scratch / "o.npy")
                )
    rows = []
    for nproc in (1, 2):
        best = min(times[nproc])
        threads = max(1, cores // nproc)
        rows.append([str(nproc), str(threads), f"{best:.1f}", f"{files / best:.2f}", f"{min(times[1]) / best:.2f}"])
    note = f"{files} files of 3-6 s, preset `{preset}` (random weights), precision auto, best of {repeats} interleaved"
    return rows, note


def bench_scoring(repeats: int) -> list[list[str]]:
    from wavlmrawnet.evaluation import Trial, compute_metrics, score_trials

    rng = np.random.default_rng(0)
    paths = [f"id{i // 30:05d}/v{i % 7}/{i:06d}.wav" for i in range(SCORE_FILES)]
    vectors = rng.normal(size=(SCORE_FILES, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    embeddings = dict(zip(paths, vectors))
    pairs = rng.integers(0, SCORE_FILES, size=(SCORE_TRIALS, 2))
    labels = rng.integers(0, 2, size=SCORE_TRIALS)
    trials = [Trial(int(label), paths[a], paths[b]) for label, (a, b) in zip(labels, pairs)]
    score_times, metric_times = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        scores = score_trials(trials, embeddings)
        score_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        compute_metrics(scores, labels)
        metric_times.append(time.perf_counter() - started)
    best_score, best_metrics = min(score_times), min(metric_times)
    return [
        [f"score_trials ({SCORE_TRIALS:,} trials, {SCORE_FILES:,} files)", f"{best_score:.2f}"],
        ["compute_metrics (EER, minDCF)", f"{best_metrics:.2f}"],
        ["both (what `score` adds once embeddings are cached)", f"{best_score + best_metrics:.2f}"],
    ]


def bench_first_pass(rows: int, row_kib: int) -> list[list[str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from wavlmrawnet.training.config import DatasetSource
    from wavlmrawnet.training.data.sources import load_hf_source
    from wavlmrawnet.training.data.streaming import first_pass_speakers

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "train.parquet"
        rng = np.random.default_rng(0)  # distinct random bytes per row: parquet cannot compress them away
        audio_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        with pq.ParquetWriter(path, pa.schema([("audio", audio_type), ("speaker", pa.string())])) as writer:
            for start in range(0, rows, 10_000):
                count = min(10_000, rows - start)
                audio = [
                    {"bytes": rng.bytes(row_kib * 1024), "path": f"{i:07d}.wav"} for i in range(start, start + count)
                ]
                speakers = [f"id{i % 1000:05d}" for i in range(start, start + count)]
                writer.write_table(pa.table({"audio": pa.array(audio, audio_type), "speaker": speakers}))
        size = path.stat().st_size
        stream = load_hf_source(DatasetSource(path="parquet", data_files=str(path), streaming=True))
        counts, seen, seconds = first_pass_speakers(stream, "speaker")
    assert seen == rows and len(counts) == 1000
    return [[f"{rows:,}", f"{size / 2**20:.0f}", f"{seconds:.1f}", f"{seconds * 100_000 / rows:.1f}"]]


def gather_worker() -> None:
    """One rank of the gather measurement (run under torch.distributed.run)."""
    import torch

    from wavlmrawnet.evaluation.embedding import distributed_state, end_distributed, gather_to_main

    state = distributed_state(torch.device("cpu"))
    rng = np.random.default_rng(state.process_index)
    block = rng.normal(size=(GATHER_PER_RANK, DIM)).astype(np.float32)
    embeddings = {f"rank{state.process_index}/id{i // 30:05d}/{i:06d}.wav": block[i] for i in range(GATHER_PER_RANK)}
    state.wait_for_everyone()
    before = current_rss_bytes()
    reset_peak_rss()
    started = time.perf_counter()
    gathered, _ = gather_to_main(state, embeddings, {})
    seconds = time.perf_counter() - started
    if state.is_main_process:
        result = {"seconds": seconds, "peak_extra": peak_rss_bytes() - before, "count": len(gathered)}
        print(RESULT_PREFIX + json.dumps(result), flush=True)
    state.wait_for_everyone()
    end_distributed()


def bench_gather() -> list[list[str]]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", __spec__.name, GATHER_FLAG]  # torchrun's -m: each rank runs this module's gather worker
    completed = subprocess.run(
        command, capture_output=True, text=True, env=child_env(dict(os.environ, OMP_NUM_THREADS="1"))
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"gather benchmark failed:\n{completed.stderr[-3000:]}")
    result = json.loads(lines[-1][len(RESULT_PREFIX) :])
    payload = result["count"] * DIM * 4
    return [
        [
            f"{result['count']:,}",
            f"{payload / 2**20:.0f}",
            f"{result['peak_extra'] / 2**20:.0f}",
            f"{result['seconds']:.2f}",
        ]
    ]


def main() -> None:
    if len(sys.argv) == 2 and sys.argv[1] == GATHER_FLAG:
        gather_worker()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", help="model preset for the embedding figures")
    parser.add_argument("--files", type=int, default=32, help="files embedded per run")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats (embedding) / runs (scoring)")
    parser.add_argument("--skip-embedding", action="store_true", help="only the scoring and gather figures")
    parser.add_argument("--row-kib", type=int, default=16, help="audio bytes per row in the first-pass figure (KiB)")
    parser.add_argument("--markdown-out", help="also write the tables here")
    args = parser.parse_args()

    parts = [f"{machine_caption()}, numpy {np.__version__}.\n"]
    if not args.skip_embedding:
        rows, note = bench_embedding(args.preset, args.files, args.repeats)
        parts.append(f"`wavlmrawnet embed`, end to end: {note}.\n")
        parts.append(markdown_table(["processes", "threads each", "seconds", "files/s", "speed-up"], rows) + "\n")
    parts.append(f"Scoring from cached embeddings ({DIM}-d), best of {args.repeats}:\n")
    parts.append(markdown_table(["step", "seconds"], bench_scoring(args.repeats)) + "\n")
    parts.append(f"Streaming: first pass over the speaker column (parquet, {args.row_kib} KiB of audio per row):\n")
    header = ["rows", "parquet MiB", "seconds", "seconds per 100k rows"]
    parts.append(markdown_table(header, bench_first_pass(100_000, args.row_kib)) + "\n")
    parts.append("Gathering embeddings on rank 0 (2 gloo processes, 75,000 each):\n")
    header = ["embeddings gathered", "payload MiB", "rank-0 peak RSS increase MiB", "seconds"]
    parts.append(markdown_table(header, bench_gather()))
    publish("\n".join(parts), args.markdown_out)


if __name__ == "__main__":
    main()
