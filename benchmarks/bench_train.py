"""Training throughput of a preset on this machine: samples/s per precision (fp32, bf16 autocast, auto), peak memory.

    python -m benchmarks.bench_train                       # tiny preset, batch 32 x 2 s, CPU, fp32 and bf16
    python -m benchmarks.bench_train --dtypes auto fp32    # what "auto" costs against forced fp32
    python -m benchmarks.bench_train --preset default --batch-size 32 --seconds 3 --device cuda --checkpointing
    python -m benchmarks.bench_train --fast-paths on off --dtypes fp32 # the model's fast paths against transformers'

Each setting runs in its own process, so peak memory (RSS on CPU, max allocated on CUDA) is its own, and the
precision is resolved there (`resolve_precision(..., training=True)`; "auto" is bf16 only where the hardware runs it
natively). Steps are full optimiser steps (forward, AM-Softmax loss, backward, AdamW) on random audio after warm-up
steps. "step time / fp32" compares with the fp32 row of the same setting (else its first row); "step time / fast
paths off" with the same setting run with `set_fast_paths(False)` (transformers' own WavLM computation, as before
issue #14), where `--fast-paths` includes "off".
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import (
    PRECISIONS,
    machine_caption,
    markdown_table,
    peak_rss_bytes,
    precision_label,
    precision_note,
    run_job,
    serve_worker,
)


def measure(job: dict) -> dict:
    import torch

    from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector
    from wavlmrawnet.cpu_malloc import keep_freed_memory
    from wavlmrawnet.precision import resolve_precision

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    if job["malloc"] == "keep" and device.type == "cpu":
        keep_freed_memory()  # as train.py does on CPU
    precision = resolve_precision(job["dtype"], device, training=True)
    torch.manual_seed(0)
    config = WavLMRawNetConfig.from_preset(job["preset"], num_labels=1000, wavlm_config={"mask_time_prob": 0.0})
    model = WavLMRawNetForXVector(config).to(device).train()
    model.set_fast_paths(job.get("fast_paths", "on") == "on")
    model.freeze_feature_encoder()
    if job["checkpointing"]:
        model.activation_checkpointing_enable()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    audio = torch.randn(job["batch_size"], int(job["seconds"] * 16000), device=device)
    labels = torch.randint(0, 1000, (job["batch_size"],), device=device)

    def step():
        with precision.autocast():
            loss = model(audio, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(job["warmup"]):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(job["steps"]):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / job["steps"]
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else peak_rss_bytes()
    return {
        **job, "precision": precision_label(precision), "note": precision_note(precision), "step_seconds": seconds,
        "samples_per_s": job["batch_size"] / seconds, "peak_gb": peak / 1e9,
        "peak_kind": "GPU max allocated" if device.type == "cuda" else "process RSS",
        "machine": machine_caption(device=device),
    }  # fmt: skip


def report(rows: list[dict], args) -> str:
    header = ["precision", "fast paths", "checkpointing", "glibc malloc", "steps/s", "samples/s", "peak memory", "",
              "step time / fp32", "step time / fast paths off"]  # fmt: skip
    cells = []
    for row in rows:
        setting = ("checkpointing", "malloc", "fast_paths")
        group = [r for r in rows if all(r[key] == row[key] for key in setting)]
        reference = next((r for r in group if r["dtype"] == "fp32"), group[0])
        ratio = f"{row['step_seconds'] / reference['step_seconds']:.2f}"
        slow = [r for r in rows if r["fast_paths"] == "off" and all(r[k] == row[k] for k in setting[:2] + ("dtype",))]
        fast_ratio = f"{row['step_seconds'] / slow[0]['step_seconds']:.2f}" if slow else "-"
        cells.append([
            row["precision"], row["fast_paths"], "yes" if row["checkpointing"] else "no",
            "keeps freed memory" if row["malloc"] == "keep" else "default", f"{1 / row['step_seconds']:.3f}",
            f"{row['samples_per_s']:.1f}", f"{row['peak_gb']:.2f} GB", row["peak_kind"],
            ratio if reference["dtype"] == "fp32" else f"{ratio} (vs {reference['precision']})", fast_ratio,
        ])  # fmt: skip
    caption = (
        f"# Training throughput, {rows[0]['machine']}, {args.device}, preset {args.preset}, "
        f"batch {args.batch_size} x {args.seconds} s, {args.steps} steps after {args.warmup} warm-up"
    )
    notes = "Precisions: " + "; ".join(dict.fromkeys(row["note"] for row in rows)) + "."
    return "\n".join([caption, "", markdown_table(header, cells), "", notes]) + "\n"


def main() -> None:
    if serve_worker(measure):
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int)
    parser.add_argument(
        "--dtypes",
        "--precisions",
        nargs="+",
        default=["fp32", "bf16"],
        choices=PRECISIONS,
        help="precisions to compare; auto resolves as train.py does",
    )
    parser.add_argument("--checkpointing", action="store_true", help="also measure with activation checkpointing")
    parser.add_argument(
        "--malloc",
        nargs="+",
        default=["keep"],
        choices=["keep", "default"],
        help="CPU: glibc malloc keeping freed memory (keep_freed_memory(), as train.py does) and/or glibc's default",
    )
    parser.add_argument(
        "--fast-paths", nargs="+", default=["on"], choices=["on", "off"],
        help="the model's fast paths (set_fast_paths) on and/or off; both gives the before/after of issue #14",
    )  # fmt: skip
    args = parser.parse_args()

    keys = ("preset", "batch_size", "seconds", "steps", "warmup", "device", "threads")
    common = {key: getattr(args, key) for key in keys}
    rows = []
    for checkpointing in [False, True] if args.checkpointing else [False]:
        for malloc in args.malloc:
            for dtype in dict.fromkeys(args.dtypes):
                for fast_paths in dict.fromkeys(args.fast_paths):
                    job = {**common, "checkpointing": checkpointing, "malloc": malloc, "dtype": dtype,
                           "fast_paths": fast_paths}  # fmt: skip
                    label = f"{dtype}, fast paths {fast_paths}, malloc {malloc}, checkpointing {checkpointing}"
                    rows.append(run_job(job, __spec__.name, label=label))
                    print(f"measured {label}: {1 / rows[-1]['step_seconds']:.3f} steps/s", flush=True)
    print("\n" + report(rows, args))


if __name__ == "__main__":
    main()
