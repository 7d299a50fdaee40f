"""Trial scores of a trained model in fp32 and under bf16 CPU autocast: score differences, EER both ways, speed-up.

Defaults are the demo (`make demo`): the trained tiny model and the held-out synthetic trial list.

    python benchmarks/bench_bf16_scores.py [--model demo_output/run/final] \
        [--trials demo_output/corpus/test/veri_test2.txt] [--root demo_output/corpus/test/wav] \
        [--batch-size 8] [--chunk-seconds S] [--repeats 3] [--threads 2] [--markdown-out table.md]

Every trial file is embedded once per dtype with `embed_files` (length-sorted batches; bf16 = `dtype=torch.bfloat16`,
i.e. `torch.autocast("cpu", dtype=torch.bfloat16)`), then scored by cosine. Scores come from the first round; the
embedding time is the median over `--repeats` rounds that alternate fp32 and bf16 (after one untimed warm-up batch
per dtype), so load on a shared machine hits both alike. Target: mean |score_bf16 - score_fp32| <= 0.02.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from wavlmrawnet import WavLMRawNetFeatureExtractor, WavLMRawNetForXVector
from wavlmrawnet.evaluation import compute_metrics, cosine_scores, read_trials, unique_paths
from wavlmrawnet.evaluation.embedding import embed_files
from wavlmrawnet.processing_wavlmrawnet import audio_duration

from bench_inference import cpu_name, markdown_table


REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO_ROOT / "demo_output" / "run" / "final"
DEFAULT_TRIALS = REPO_ROOT / "demo_output" / "corpus" / "test" / "veri_test2.txt"
DEFAULT_ROOT = REPO_ROOT / "demo_output" / "corpus" / "test" / "wav"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
MEAN_ABS_DIFF_TARGET = 0.02


def load_model(folder: Path) -> tuple[WavLMRawNetForXVector, WavLMRawNetFeatureExtractor]:
    """The model in eval mode and its feature extractor (the config's default if the folder has none)."""
    if not (folder / "config.json").is_file():
        raise SystemExit(
            f"error: {folder} is not a model folder (no config.json). Train the demo model first (`make demo`, "
            "which writes demo_output/run/final) or pass --model."
        )
    model = WavLMRawNetForXVector.from_pretrained(folder).eval()
    if (folder / "preprocessor_config.json").is_file():
        return model, WavLMRawNetFeatureExtractor.from_pretrained(folder)
    return model, model.default_feature_extractor()


def embed_all(model, extractor, paths: list[str], dtype: torch.dtype, args) -> tuple[dict[str, np.ndarray], float]:
    """Embeddings of every path (raising on any failure) and the seconds it took."""
    start = time.perf_counter()
    result = embed_files(model, extractor, paths, batch_size=args.batch_size, chunk_seconds=args.chunk_seconds,
                         dtype=dtype, progress=False)  # fmt: skip
    seconds = time.perf_counter() - start
    result.raise_for_failures()
    return result.embeddings, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="trained model folder")
    parser.add_argument("--trials", type=Path, default=DEFAULT_TRIALS, help="trial list (label enroll test)")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="folder the trial paths are relative to")
    parser.add_argument("--batch-size", type=int, default=8, help="files per batch")
    parser.add_argument("--chunk-seconds", type=float, default=None, help="long-audio window (default: the config's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per dtype (median reported)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--markdown-out", help="also write the report to this file")
    args = parser.parse_args()
    if args.batch_size < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--batch-size, --repeats and --threads must be >= 1")
    torch.set_num_threads(args.threads)

    model, extractor = load_model(args.model)
    trials = read_trials(args.trials, root=args.root, check_exists=True)  # raises, listing any missing file
    paths = unique_paths(trials)
    labels = np.array([trial.label for trial in trials])
    audio_seconds = sum(audio_duration(path) for path in paths)
    load_before = os.getloadavg()[0]

    for dtype in DTYPES.values():  # warm-up: one batch per dtype, untimed
        embed_all(model, extractor, paths[: args.batch_size], dtype, args)
    embeddings, times = {}, {name: [] for name in DTYPES}
    for round_index in range(args.repeats):
        for name, dtype in DTYPES.items():
            embedded, seconds = embed_all(model, extractor, paths, dtype, args)
            times[name].append(seconds)
            embeddings.setdefault(name, embedded)
            print(f"round {round_index + 1}: {name} embedded {len(paths)} files in {seconds:.1f} s", flush=True)

    scores = {name: cosine_scores(trials, embeddings[name]) for name in DTYPES}
    metrics = {name: compute_metrics(scores[name], labels) for name in DTYPES}
    difference = np.abs(scores["bf16"] - scores["fp32"])
    embedding_cosine = np.array([float(np.dot(embeddings["fp32"][p], embeddings["bf16"][p])) for p in paths])
    speedup = statistics.median(times["fp32"]) / statistics.median(times["bf16"])

    header = ["dtype", "embedding s (median)", "RTF", "EER %", "minDCF 0.01", "minDCF 0.05"]
    rows = [
        [name, f"{statistics.median(times[name]):.1f}", f"{statistics.median(times[name]) / audio_seconds:.4f}",
         f"{metrics[name]['eer_percent']:.2f}", f"{metrics[name]['min_dcf']['0.01']:.4f}",
         f"{metrics[name]['min_dcf']['0.05']:.4f}"]
        for name in DTYPES
    ]  # fmt: skip
    caption = (
        f"{date.today()}, {cpu_name()} ({os.cpu_count()} CPUs), torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads. Model `{args.model}`, trials `{args.trials}`: {len(trials)} trials, {len(paths)} files, "
        f"{audio_seconds / 60:.1f} min of audio, batch size {args.batch_size}. Median of {args.repeats} alternating "
        f"round(s). 1-min load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after."
    )
    verdict = "PASS" if difference.mean() <= MEAN_ABS_DIFF_TARGET else "MISS"
    lines = [
        caption, "", markdown_table(header, rows), "",
        f"|score_bf16 - score_fp32| over {len(trials)} trials: mean {difference.mean():.5f}, "
        f"max {difference.max():.5f}; embedding cosine bf16 vs fp32 over {len(paths)} files: "
        f"mean {embedding_cosine.mean():.5f}, min {embedding_cosine.min():.5f}.",
        f"EER {metrics['fp32']['eer_percent']:.2f}% (fp32) vs {metrics['bf16']['eer_percent']:.2f}% (bf16); "
        f"bf16 embeds {speedup:.2f}x as fast as fp32.",
        "",
        "Target:",
        f"- {verdict}: mean |score_bf16 - score_fp32| = {difference.mean():.5f} (target <= {MEAN_ABS_DIFF_TARGET:g})",
    ]  # fmt: skip
    report = "\n".join(lines) + "\n"
    print("\n" + report)
    if args.markdown_out:
        with open(args.markdown_out, "w", encoding="utf-8") as f:
            f.write(report)


if __name__ == "__main__":
    main()
