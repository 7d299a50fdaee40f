"""Memory and time of embedding long recordings: chunked `get_embeddings` against one unchunked forward.

The `reference` preset (random weights) embeds 1, 5 and 10 minutes of seeded noise through
`model.get_embeddings(input_values, chunk_seconds=...)`, each case in a fresh subprocess:

    python -m benchmarks.bench_long_audio [--minutes 1 5 10] [--chunk-seconds 20] [--unchunked-minutes 1 5 10] \
        [--preset reference] [--precision auto|fp32|bf16] [--chunk-batch-size N] [--threads 2] \
        [--markdown-out table.md]

Per case: the RSS once the model and the audio are loaded, the peak RSS during embedding (Linux `clear_refs` resets
the high-water mark after loading, so the peak is that of the embedding alone plus what was already resident), and
the wall time. Unchunked cases (`chunk_seconds=0`) whose attention matrices alone would not fit in the available
memory are not run; the table says so and why. `--chunk-batch-size` calls `model.embed(..., chunk_batch_size=N)`
(same computation, N windows per forward) instead of `get_embeddings`' default of 8. `--precision auto` (the default,
as the CLI) is bf16 autocast only where the CPU runs bf16 natively, else fp32; the caption says what it became.

Checks: the peak RSS above the loaded model stays under 3 GB for every chunked case, and the chunked time is
roughly linear in length (seconds per audio minute within a factor 1.5 of each other).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

from benchmarks.common import (
    CPU_PRECISIONS,
    SAMPLING_RATE,
    available_memory_bytes,
    current_rss_bytes,
    load_note,
    machine_caption,
    markdown_table,
    peak_rss_bytes,
    precision_note,
    publish,
    release_freed_memory,
    reset_peak_rss,
    run_job,
    serve_worker,
)
from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector
from wavlmrawnet.precision import resolve_precision

PEAK_ABOVE_MODEL_LIMIT_GB = 3.0
LINEARITY_LIMIT = 1.5  # max / min seconds per audio minute over the chunked cases
# Eager WavLM attention keeps a few (heads, frames, frames) fp32 matrices alive at once: attention weights,
# position bias, gated bias, softmax. 3 is a floor, not a ceiling.
LIVE_ATTENTION_MATRICES = 3


# ----------------------------------------------------------------------------------------------- estimates
def unchunked_attention_bytes(config: WavLMRawNetConfig, minutes: float) -> int:
    """A lower bound on the unchunked forward's memory: its live (heads, frames, frames) fp32 attention matrices."""
    if not config.use_wavlm_branch:
        return 0
    frames = int(minutes * 60 * SAMPLING_RATE) // 320  # WavLM's feature encoder: one frame per 20 ms
    return LIVE_ATTENTION_MATRICES * config.wavlm_config.num_attention_heads * frames**2 * 4


# ----------------------------------------------------------------------------------------------- worker (subprocess)
def run_worker(job: dict) -> dict:
    """Builds the model, embeds `minutes` of noise once (chunked or not), reports RSS and time."""
    torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    config = WavLMRawNetConfig.from_preset(job["preset"], num_labels=2)
    model = WavLMRawNetForXVector(config).eval()
    samples = int(round(job["minutes"] * 60 * SAMPLING_RATE))
    waveform = torch.randn(1, samples, generator=torch.Generator().manual_seed(0))  # zero mean, unit variance
    precision = resolve_precision(job["precision"])
    with torch.inference_mode(), precision.autocast():  # warm-up: one window, so one-off start-up costs are not timed
        model(waveform[:, : int(job["warmup_seconds"] * SAMPLING_RATE)])
    forward_batches = []
    model.register_forward_pre_hook(lambda module, args, kwargs: forward_batches.append(len(args[0])),
                                    with_kwargs=True)  # fmt: skip

    release_freed_memory()
    rss_loaded = current_rss_bytes()
    peak_reset = reset_peak_rss()
    start = time.perf_counter()
    with precision.autocast():
        if job["chunk_batch_size"] and job["chunk_seconds"]:
            with torch.inference_mode():
                embedding = model.embed(waveform, chunk_seconds=job["chunk_seconds"],
                                        chunk_batch_size=job["chunk_batch_size"])  # fmt: skip
            embedding = F.normalize(embedding.float(), dim=1)
        else:
            embedding = model.get_embeddings(waveform, chunk_seconds=job["chunk_seconds"])
    wall = time.perf_counter() - start
    peak = peak_rss_bytes()
    if not torch.isfinite(embedding).all() or abs(float(embedding.norm()) - 1.0) > 1e-3:
        raise RuntimeError(f"the embedding is not a finite unit vector (norm {float(embedding.norm())})")
    return {
        "rss_loaded": rss_loaded,
        "peak_rss": peak,
        "peak_reset": peak_reset,
        "wall_seconds": wall,
        "windows": sum(forward_batches),
        "forward_calls": len(forward_batches),
    }


# ----------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 5.0, 10.0], help="chunked input lengths")
    parser.add_argument("--chunk-seconds", type=float, default=20.0, help="window length of the chunked cases")
    parser.add_argument(
        "--unchunked-minutes",
        type=float,
        nargs="*",
        default=[1.0, 5.0, 10.0],
        help="lengths also tried without chunking (skipped where they cannot fit in memory)",
    )
    parser.add_argument("--preset", default="reference", help="model preset (random weights)")
    parser.add_argument(
        "--precision",
        "--dtype",
        choices=CPU_PRECISIONS,
        default="auto",
        help="fp32, bf16 CPU autocast, or auto: bf16 where the CPU runs it natively, else fp32",
    )
    parser.add_argument(
        "--chunk-batch-size",
        type=int,
        default=None,
        help="windows per forward (model.embed); default: get_embeddings' own (8)",
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--markdown-out", help="also write the report to this file")
    args = parser.parse_args(argv)
    if min(args.minutes + args.unchunked_minutes) <= 0 or args.chunk_seconds <= 0 or args.threads < 1:
        parser.error("--minutes, --unchunked-minutes and --chunk-seconds must be > 0, --threads >= 1")
    if args.chunk_batch_size is not None and args.chunk_batch_size < 1:
        parser.error("--chunk-batch-size must be >= 1")
    try:
        config = WavLMRawNetConfig.from_preset(args.preset)
    except ValueError as error:
        parser.error(str(error))
    if args.chunk_seconds <= config.chunk_overlap_seconds:
        parser.error(f"--chunk-seconds must exceed the overlap, {config.chunk_overlap_seconds:g} s")
    return args


def gigabytes(value: int) -> str:
    return f"{value / 1e9:.2f}"


def main() -> None:
    if serve_worker(run_worker):
        return
    args = parse_args()
    config = WavLMRawNetConfig.from_preset(args.preset)
    warmup_seconds = min(args.chunk_seconds, 60 * min(args.minutes + args.unchunked_minutes))
    precision = resolve_precision(args.precision)  # as each worker resolves it (same machine and environment)
    common = {"preset": args.preset, "precision": args.precision, "threads": args.threads,
              "chunk_batch_size": args.chunk_batch_size, "warmup_seconds": warmup_seconds}  # fmt: skip
    cases = [(minutes, args.chunk_seconds) for minutes in sorted(args.minutes)]
    cases += [(minutes, 0.0) for minutes in sorted(args.unchunked_minutes)]
    load_before = os.getloadavg()[0]

    header = ["input", "chunking", "forward calls (windows)", "RSS loaded (GB)", "peak RSS (GB)",
              "peak above loaded (GB)", "wall s", "s per audio minute", "note"]  # fmt: skip
    rows, chunked, failures, peak_reset, peaks_above = [], [], [], True, {}
    for minutes, chunk_seconds in cases:
        label = f"{minutes:g} min"
        how = f"{chunk_seconds:g} s windows" if chunk_seconds else "none (one forward)"
        if not chunk_seconds:
            needed, available = unchunked_attention_bytes(config, minutes), available_memory_bytes()
            if needed > available:
                rows.append([label, how, "-", "-", "-", "-", "-", "-",
                             f"not run: its attention matrices alone need > {needed / 1e9:.0f} GB, "
                             f"{available / 1e9:.0f} GB available"])  # fmt: skip
                print(f"skipped {label} unchunked: needs > {needed / 1e9:.0f} GB", flush=True)
                continue
        try:
            result = run_job({**common, "minutes": minutes, "chunk_seconds": chunk_seconds}, __spec__.name)
        except RuntimeError as error:  # recorded and reported; the other cases still run
            reason = [line.strip() for line in str(error).splitlines() if line.strip()][-1]
            rows.append([label, how, "-", "-", "-", "-", "-", "-", f"failed: {reason}"])
            failures.append(f"{label}, {how}")
            print(f"FAILED {label}, {how}: {error}", file=sys.stderr, flush=True)
            continue
        peak_reset &= result["peak_reset"]
        above = result["peak_rss"] - result["rss_loaded"]
        per_minute = result["wall_seconds"] / minutes
        rows.append([
            label, how, f"{result['forward_calls']} ({result['windows']})", gigabytes(result["rss_loaded"]),
            gigabytes(result["peak_rss"]), gigabytes(above), f"{result['wall_seconds']:.1f}", f"{per_minute:.1f}", "",
        ])  # fmt: skip
        peaks_above[(label, bool(chunk_seconds))] = above
        if chunk_seconds:
            chunked.append((label, above, per_minute))
        print(f"measured {label}, {how}: {result['wall_seconds']:.1f} s, peak +{gigabytes(above)} GB", flush=True)

    batch = f"model.embed(chunk_batch_size={args.chunk_batch_size})" if args.chunk_batch_size else "get_embeddings"
    caption = (
        f"{machine_caption(args.threads)}. `{args.preset}` preset, random weights, {precision_note(precision)}, "
        f"batch 1, via `{batch}`; windows overlap {config.chunk_overlap_seconds:g} s. Each case in a fresh process, "
        "timed after one untimed warm-up forward on a single window; "
        + ("peak RSS counts from the loaded model on. " if peak_reset else
           "the peak RSS could not be reset after loading, so it includes model loading. ")
        + f"{load_note(load_before)}."
    )  # fmt: skip
    checks = ["Checks:"]
    for label, above, _ in chunked:
        verdict = "PASS" if above / 1e9 < PEAK_ABOVE_MODEL_LIMIT_GB else "MISS"
        checks.append(f"- {verdict}: {label} chunked peak RSS above the loaded model {gigabytes(above)} GB "
                      f"(limit < {PEAK_ABOVE_MODEL_LIMIT_GB:g} GB)")  # fmt: skip
    checks += [f"- FAILED: {case} (see the note)" for case in failures]
    if len(chunked) > 1:
        rates = [per_minute for _, _, per_minute in chunked]
        spread = max(rates) / min(rates)
        verdict = "PASS" if spread <= LINEARITY_LIMIT else "MISS"
        listing = ", ".join(f"{label}: {rate:.1f}" for label, _, rate in chunked)
        checks.append(f"- {verdict}: chunked time roughly linear in length: seconds per audio minute {listing} "
                      f"(max/min {spread:.2f}, limit {LINEARITY_LIMIT:g})")  # fmt: skip
    savings = ["What chunking saves (peak RSS above the loaded model):"]
    for (label, is_chunked), above in peaks_above.items():
        if is_chunked and (label, False) in peaks_above:
            unchunked = peaks_above[(label, False)]
            savings.append(f"- {label}: {gigabytes(above)} GB chunked vs {gigabytes(unchunked)} GB unchunked "
                           f"({gigabytes(unchunked - above)} GB saved)")  # fmt: skip
    blocks = [caption, "", markdown_table(header, rows), "", *checks]
    blocks += ["", *savings] if len(savings) > 1 else []
    report = "\n".join(blocks) + "\n"
    publish(report, args.markdown_out)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
