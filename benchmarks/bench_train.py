"""Training throughput of a preset on this machine: samples/s, fp32 vs bf16 autocast, and peak memory.

    python benchmarks/bench_train.py                       # tiny preset, batch 32 x 2 s, CPU
    python benchmarks/bench_train.py --preset default --batch-size 32 --seconds 3 --device cuda --checkpointing

Each setting runs in its own process, so peak memory (RSS on CPU, max allocated on CUDA) is its own.
Steps are full optimiser steps (forward, AM-Softmax loss, backward, AdamW) on random audio after warm-up steps.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import resource
import subprocess
import sys
import time


def device_type(device: str) -> str:
    return device.split(":")[0]


def measure(args) -> dict:
    import torch

    from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector
    from wavlmrawnet.cpu_malloc import keep_freed_memory

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.malloc == "keep" and device_type(args.device) == "cpu":
        keep_freed_memory()  # as train.py does on CPU
    torch.manual_seed(0)
    device = torch.device(args.device)
    config = WavLMRawNetConfig.from_preset(args.preset, num_labels=1000, wavlm_config={"mask_time_prob": 0.0})
    model = WavLMRawNetForXVector(config).to(device).train()
    model.freeze_feature_encoder()
    if args.checkpointing:
        model.activation_checkpointing_enable()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    audio = torch.randn(args.batch_size, int(args.seconds * 16000), device=device)
    labels = torch.randint(0, 1000, (args.batch_size,), device=device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else None

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype is not None):
            loss = model(audio, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {
        "preset": args.preset, "dtype": args.dtype, "checkpointing": args.checkpointing,
        "batch": args.batch_size, "seconds": args.seconds, "steps_per_s": 1 / seconds,
        "samples_per_s": args.batch_size / seconds, "peak_gb": peak / 1e9,
        "peak_kind": "GPU max allocated" if device.type == "cuda" else "process RSS",
        "threads": torch.get_num_threads(), "malloc": args.malloc,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--checkpointing", action="store_true", help="also measure with activation checkpointing")
    parser.add_argument("--malloc", nargs="+", default=["keep"], choices=["keep", "default"],
                        help="CPU: glibc malloc keeping freed memory (keep_freed_memory(), as train.py does) and/or "
                             "glibc's default")
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.malloc = args.malloc[0]
        print(json.dumps(measure(args)))
        return

    rows = []
    settings = [(checkpointing, malloc, dtype) for checkpointing in ([False, True] if args.checkpointing else [False])
                for malloc in args.malloc for dtype in args.dtypes]
    for checkpointing, malloc, dtype in settings:
        command = [sys.executable, __file__, "--child", "--dtype", dtype, "--preset", args.preset, "--malloc", malloc,
                   "--batch-size", str(args.batch_size), "--seconds", str(args.seconds),
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device]
        if args.threads:
            command += ["--threads", str(args.threads)]
        if checkpointing:
            command.append("--checkpointing")
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))

    print(f"# Training throughput, {datetime.date.today()}, {platform.machine()} {args.device}, "
          f"{rows[0]['threads']} threads, preset {args.preset}, batch {args.batch_size} x {args.seconds} s\n")
    print("| dtype | checkpointing | glibc malloc | steps/s | samples/s | peak memory | |")
    print("| --- | --- | --- | ---: | ---: | ---: | --- |")
    for row in rows:
        malloc = "keeps freed memory" if row["malloc"] == "keep" else "default"
        print(f"| {row['dtype']} | {'yes' if row['checkpointing'] else 'no'} | {malloc} | {row['steps_per_s']:.3f} | "
              f"{row['samples_per_s']:.1f} | {row['peak_gb']:.2f} GB | {row['peak_kind']} |")
    by_setting = {(r["checkpointing"], r["malloc"], r["dtype"]): r["samples_per_s"] for r in rows}
    for (checkpointing, malloc, dtype), speed in by_setting.items():
        if dtype == "bf16" and (checkpointing, malloc, "fp32") in by_setting:
            print(f"\nbf16 / fp32 speed-up (malloc {malloc}, checkpointing {checkpointing}): "
                  f"{speed / by_setting[(checkpointing, malloc, 'fp32')]:.2f}x")


if __name__ == "__main__":
    main()
