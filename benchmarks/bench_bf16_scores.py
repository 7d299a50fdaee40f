"""Trial scores of a trained model in several precisions (fp32, bf16 CPU autocast, auto): score differences, EER,
speed.

Defaults are the demo (`make demo`): the trained tiny model and the held-out synthetic trial list.

    python -m benchmarks.bench_bf16_scores [--model demo_output/run/final] \
        [--trials demo_output/corpus/test/veri_test2.txt] [--root demo_output/corpus/test/wav] \
        [--precisions fp32 bf16 auto] [--batch-size 8] [--chunk-seconds S] [--repeats 3] [--threads 2] \
        [--markdown-out table.md]

Every trial file is embedded once per precision with `embed_files` (length-sorted batches; bf16 =
`torch.autocast("cpu", dtype=torch.bfloat16)`; auto = bf16 only where the CPU runs it natively, else fp32, and the
table says which), then scored by cosine. Each precision is compared with the first (default fp32 and bf16). Scores
come from the first round; the embedding time is the median over `--repeats` rounds that alternate the precisions
(after one untimed warm-up batch each), so load on a shared machine hits all alike.
Target: mean |score - score of the first precision| <= 0.02.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (
    CPU_PRECISIONS,
    load_note,
    machine_caption,
    markdown_table,
    precision_label,
    precision_note,
    publish,
    resolve_all,
)
from wavlmrawnet import WavLMRawNetFeatureExtractor, WavLMRawNetForXVector
from wavlmrawnet.audio_io import audio_duration
from wavlmrawnet.evaluation import compute_metrics, cosine_scores, read_trials, unique_paths
from wavlmrawnet.evaluation.embedding import embed_files

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO_ROOT / "demo_output" / "run" / "final"
DEFAULT_TRIALS = REPO_ROOT / "demo_output" / "corpus" / "test" / "veri_test2.txt"
DEFAULT_ROOT = REPO_ROOT / "demo_output" / "corpus" / "test" / "wav"
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


def embed_all(model, extractor, paths: list[str], precision, args) -> tuple[dict[str, np.ndarray], float]:
    """Embeddings of every path (raising on any failure) and the seconds it took."""
    start = time.perf_counter()
    result = embed_files(model, extractor, paths, batch_size=args.batch_size, chunk_seconds=args.chunk_seconds,
                         precision=precision, progress=False)  # fmt: skip
    seconds = time.perf_counter() - start
    result.raise_for_failures()
    return result.embeddings, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="trained model folder")
    parser.add_argument("--trials", type=Path, default=DEFAULT_TRIALS, help="trial list (label enroll test)")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="folder the trial paths are relative to")
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["fp32", "bf16"],
        choices=CPU_PRECISIONS,
        help="precisions to compare, each against the first; auto resolves as the CLI does",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="files per batch")
    parser.add_argument("--chunk-seconds", type=float, default=None, help="long-audio window (default: the config's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per precision (median reported)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--markdown-out", help="also write the report to this file")
    args = parser.parse_args()
    if args.batch_size < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--batch-size, --repeats and --threads must be >= 1")
    precisions = resolve_all(args.precisions)
    if len(precisions) < 2:
        parser.error("--precisions needs at least two different values")
    names = {key: precision_label(p) for key, p in precisions.items()}
    first, *others = precisions
    torch.set_num_threads(args.threads)

    model, extractor = load_model(args.model)
    trials = read_trials(args.trials, root=args.root, check_exists=True)  # raises, listing any missing file
    paths = unique_paths(trials)
    labels = np.array([trial.label for trial in trials])
    audio_seconds = sum(audio_duration(path) for path in paths)
    load_before = os.getloadavg()[0]

    for precision in precisions.values():  # warm-up: one batch per precision, untimed
        embed_all(model, extractor, paths[: args.batch_size], precision, args)
    embeddings, times = {}, {key: [] for key in precisions}
    for round_index in range(args.repeats):
        for key, precision in precisions.items():
            embedded, seconds = embed_all(model, extractor, paths, precision, args)
            times[key].append(seconds)
            embeddings.setdefault(key, embedded)
            print(f"round {round_index + 1}: {names[key]} embedded {len(paths)} files in {seconds:.1f} s", flush=True)

    scores = {key: cosine_scores(trials, embeddings[key]) for key in precisions}
    metrics = {key: compute_metrics(scores[key], labels) for key in precisions}
    header = ["precision", "embedding s (median)", "RTF", "EER %", "minDCF 0.01", "minDCF 0.05",
              f"speed / {names[first]}"]  # fmt: skip
    rows = [
        [names[key], f"{statistics.median(times[key]):.1f}", f"{statistics.median(times[key]) / audio_seconds:.4f}",
         f"{metrics[key]['eer_percent']:.2f}", f"{metrics[key]['min_dcf']['0.01']:.4f}",
         f"{metrics[key]['min_dcf']['0.05']:.4f}",
         f"{statistics.median(times[first]) / statistics.median(times[key]):.2f}x"]
        for key in precisions
    ]  # fmt: skip
    caption = (
        f"{machine_caption()}. Precisions: " + "; ".join(map(precision_note, precisions.values())) + ". "
        f"Model `{args.model}`, trials `{args.trials}`: {len(trials)} trials, {len(paths)} files, "
        f"{audio_seconds / 60:.1f} min of audio, batch size {args.batch_size}. Median of {args.repeats} alternating "
        f"round(s). {load_note(load_before)}."
    )
    differences, targets = [], ["Target:"]
    for key in others:
        difference = np.abs(scores[key] - scores[first])
        cosine = np.array([float(np.dot(embeddings[first][p], embeddings[key][p])) for p in paths])
        differences.append(
            f"|score {names[key]} - score {names[first]}| over {len(trials)} trials: mean {difference.mean():.5f}, "
            f"max {difference.max():.5f}; embedding cosine over {len(paths)} files: mean {cosine.mean():.5f}, "
            f"min {cosine.min():.5f}."
        )
        verdict = "PASS" if difference.mean() <= MEAN_ABS_DIFF_TARGET else "MISS"
        targets.append(f"- {verdict}: mean |score {names[key]} - score {names[first]}| = {difference.mean():.5f} "
                       f"(target <= {MEAN_ABS_DIFF_TARGET:g})")  # fmt: skip
    report = "\n".join([caption, "", markdown_table(header, rows), "", *differences, "", *targets]) + "\n"
    publish(report, args.markdown_out)


if __name__ == "__main__":
    main()
