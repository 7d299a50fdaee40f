"""CPU inference speed, peak memory and achieved FLOP rate per precision (fp32, bf16, auto), in one table.

Rows: transformers' `WavLMForXVector` with the WavLM-Large config (the baseline), the fused presets, and optionally
a fused preset with dynamic int8 quantisation of its Linear layers. Weights are random; every model runs in eval mode
under `torch.inference_mode()` in each of `--precisions` (default fp32 and bf16; `auto` is resolved by
`resolve_precision`, bf16 only where the CPU runs it natively, and its columns say what it became, e.g. "auto → fp32");
bf16 runs under `torch.autocast("cpu", dtype=torch.bfloat16)`:

    python -m benchmarks.bench_inference [--seconds 3 10 60] [--batch-size 8] [--batch-seconds 2 10] [--repeats 3] \
        [--precisions fp32 bf16 auto] [--presets reference default] [--attention-fix-presets default] \
        [--int8-presets default] [--threads 2] [--max-run-seconds 300] [--baseline-as-shipped] \
        [--markdown-out table.md]

Every (row, precision) runs in its own subprocess, one model in memory at a time, so its peak RSS is its own: the peak
counts from the loaded model on (Linux `clear_refs` resets the high-water mark after loading). Inputs are the same
seeded noise for every row, prepared by `WavLMRawNetFeatureExtractor`: one clip per `--seconds` length at batch 1,
and a batch of `--batch-size` clips with lengths evenly spread over `--batch-seconds`, longest first and zero-padded
with an attention mask, as `embed_files` batches them. Each input runs once untimed, then `--repeats` timed runs; the
median is reported. RTF = processing seconds / audio seconds (for the batch: / the summed unpadded seconds). The
fused models run their plain forward (no long-audio chunking), like the baseline; see bench_long_audio.py for that.

FLOPs are counted once per (row, input) at fp32 with `torch.utils.flop_counter.FlopCounterMode` (matmuls,
convolutions, attention; a multiply-add is 2 FLOPs; element-wise ops are not counted) and divided by the measured
time. The matmul peaks are measured in the same run (best of several 4096 x 4096 matmuls in each precision used), and
each cell gives the achieved rate as a fraction of the peak of its precision. The int8 row runs in the fp32 columns
and reuses the fp32 model's FLOP count (nominal FLOPs) against the fp32 peak.

bf16 and WavLM: WavLM's attention projects a transposed (strided) view, and torch's CPU matmul sends a strided 3-D
bf16 input through an expanded-weight `bmm` that copies the weight once per frame (pytorch/pytorch#151934), making
bf16 far slower than fp32. The fused rows run as the package ships them, with its fix (`WavLMAttentionContiguousInput`,
fp32 results bit-identical); the baseline gets the same class unless `--baseline-as-shipped` is given.
`--attention-fix-presets` rows (from before the package had the fix) now equal the plain fused rows. The fused rows
run with the model's fast paths on (`set_fast_paths`, issue #14); `benchmarks/bench_model.py` times them on and off
against the baseline in paired runs. As a guard, an
input whose single run, extrapolated linearly from the previous (shorter) input, would exceed `--max-run-seconds` is
skipped and marked.

The rows run one after another, not interleaved: run this on an otherwise quiet machine (the load average before
and after is printed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

import numpy as np
import torch
from transformers import WavLMForXVector
from transformers.models.wavlm.modeling_wavlm import WavLMAttention

from benchmarks.common import (
    BASELINE,
    CPU_PRECISIONS,
    SAMPLING_RATE,
    baseline_wavlm_config,
    count_flops,
    current_rss_bytes,
    load_note,
    machine_caption,
    markdown_table,
    peak_rss_bytes,
    precision_label,
    precision_note,
    publish,
    release_freed_memory,
    reset_peak_rss,
    resolve_all,
    run_job,
    serve_worker,
    timed_seconds,
)
from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetFeatureExtractor, WavLMRawNetForXVector
from wavlmrawnet.cpu_malloc import keep_freed_memory
from wavlmrawnet.fast_wavlm import InferenceLinear, WavLMAttentionContiguousInput, WavLMFastAttention
from wavlmrawnet.precision import PRECISION_DTYPES, resolve_precision

BF16_SPEEDUP_TARGET = 3.0
RATIO_TARGET = 1.25


# ----------------------------------------------------------------------------------------------- machine
def matmul_peak_gflops(dtype: torch.dtype, size: int = 4096, repeats: int = 5) -> float:
    """Best GFLOP/s of a size x size matmul in `dtype` (2 size^3 FLOPs each)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(dtype)
    b = torch.randn(size, size, generator=generator).to(dtype)
    with torch.inference_mode():
        a @ b  # warm-up
        best = min(timed_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


# ----------------------------------------------------------------------------------------------- inputs and models
def make_inputs(seconds: list[float], batch_size: int, batch_seconds: tuple[float, float]) -> list[dict]:
    """The benchmark inputs: one clip per length at batch 1, then a mixed-length batch (longest first)."""
    extractor = WavLMRawNetFeatureExtractor(sampling_rate=SAMPLING_RATE, min_seconds=0.5)
    rng = np.random.default_rng(0)

    def prepare(lengths: list[float], label: str) -> dict:
        clips = [rng.standard_normal(round(s * SAMPLING_RATE)).astype(np.float32) for s in lengths]
        features = extractor(clips, sampling_rate=SAMPLING_RATE, return_tensors="pt")
        model_inputs = {"input_values": features["input_values"], "attention_mask": features["attention_mask"]}
        return {"label": label, "inputs": model_inputs, "audio_seconds": float(sum(lengths))}

    inputs = [prepare([s], f"{s:g} s") for s in sorted(seconds)]
    if batch_size:
        lengths = sorted(np.linspace(*batch_seconds, batch_size).tolist(), reverse=True)
        inputs.append(prepare(lengths, batch_label(batch_size, batch_seconds)))
    return inputs


def batch_label(batch_size: int, batch_seconds: tuple[float, float]) -> str:
    return f"batch {batch_size} x {batch_seconds[0]:g}-{batch_seconds[1]:g} s"


def build_model(row: str) -> torch.nn.Module:
    """'baseline' -> WavLMForXVector (WavLM-Large); 'preset:NAME' / 'fixed:NAME' / 'int8:NAME' -> the fused preset."""
    torch.manual_seed(0)
    if row == "baseline":
        return WavLMForXVector(baseline_wavlm_config()).eval()
    kind, _, preset = row.partition(":")
    if kind not in ("preset", "fixed", "int8"):
        raise ValueError(f"unknown row {row!r}")
    return WavLMRawNetForXVector(WavLMRawNetConfig.from_preset(preset, num_labels=2)).eval()


def int8_quantisable_linears(model: torch.nn.Module) -> set[str]:
    """Names of the Linear layers dynamic quantisation can replace.

    WavLM's attention passes its q/k/v/out projections' raw `.weight`/`.bias` to `F.multi_head_attention_forward`,
    which a quantised module does not have, so those stay fp32; the feed-forward, projection and head layers go int8.
    """
    attention_children = {
        f"{name}.{child}" if name else child
        for name, module in model.named_modules()
        if hasattr(module, "torch_multi_head_self_attention")
        for child, _ in module.named_children()
    }
    return {
        name for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name not in attention_children
    }  # fmt: skip


def quantise_int8(model: torch.nn.Module) -> tuple[torch.nn.Module, int, int]:
    """Dynamic int8 quantisation (weights int8, activations quantised on the fly) of the quantisable Linears."""
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    names = int8_quantisable_linears(model)
    total = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    for name, module in model.named_modules():  # quantize_dynamic swaps exact nn.Linear only, not the fast paths'
        if name in names and isinstance(module, InferenceLinear):  # InferenceLinear (the same layer)
            module.__class__ = torch.nn.Linear
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao.quantization is slated to move to torchao
        quantised = quantize_dynamic(model, {name: default_dynamic_qconfig for name in names}, inplace=True)
    return quantised, len(names), total


def contiguous_attention_input(model: torch.nn.Module) -> None:
    """Gives every plain WavLM attention layer the package's bf16 fix, `WavLMAttentionContiguousInput` (a contiguous
    time-major input), as `WavLMRawNetForXVector` does for its own."""
    for module in model.modules():
        if type(module) is WavLMAttention:
            module.__class__ = WavLMAttentionContiguousInput


# ----------------------------------------------------------------------------------------------- worker (subprocess)
def run_worker(job: dict) -> dict:
    """Builds one model, times every input in one precision, and reports times, peak RSS and (optionally) FLOPs."""
    torch.set_num_threads(job["threads"])
    if job["keep_freed_memory"]:
        keep_freed_memory()
    inputs = make_inputs(job["seconds"], job["batch_size"], tuple(job["batch_seconds"]))
    model = build_model(job["row"])
    result = {"params": sum(p.numel() for p in model.parameters())}
    if job["row"] == "baseline" and job["baseline_attention_fix"]:
        contiguous_attention_input(model)
    fixed = (WavLMAttentionContiguousInput, WavLMFastAttention)  # both project a contiguous input
    result["attention_fix_layers"] = sum(isinstance(m, fixed) for m in model.modules())
    if job["row"].startswith("int8:"):
        if job["count_flops"]:  # the fp32 model's (nominal) FLOPs: quantised ops are not counted
            result["flops"] = {item["label"]: count_flops(model, item["inputs"])["total"] for item in inputs}
        probe = inputs[0]["inputs"]
        with torch.inference_mode():
            fp32_embedding = model(**probe).embeddings
        model, quantised, total = quantise_int8(model)
        with torch.inference_mode():
            int8_embedding = model(**probe).embeddings
        result["int8"] = {
            "quantised_linears": quantised,
            "linears": total,
            "probe": inputs[0]["label"],
            "cosine_to_fp32": float(torch.cosine_similarity(fp32_embedding, int8_embedding).min()),
        }
    release_freed_memory()
    result["rss_loaded"] = current_rss_bytes()
    result["peak_reset"] = reset_peak_rss()

    precision = resolve_precision(job["precision"])
    result["precision"] = precision_label(precision)
    result["seconds"], result["skipped"] = {}, {}
    last = None  # (padded samples, seconds per run) of the previous input, for the time guard
    with torch.inference_mode(), precision.autocast():
        for item in inputs:
            samples = item["inputs"]["input_values"].numel()
            estimate = None if last is None else last[1] * samples / last[0]  # linear in padded samples
            if estimate is not None and estimate > job["max_run_seconds"]:
                result["skipped"][item["label"]] = estimate
                continue
            for _ in range(job["warmup"]):
                model(**item["inputs"])
            times = [timed_seconds(lambda: model(**item["inputs"])) for _ in range(job["repeats"])]
            result["seconds"][item["label"]] = times
            last = (samples, statistics.median(times))
    result["peak_rss"] = peak_rss_bytes()
    result["audio_seconds"] = {item["label"]: item["audio_seconds"] for item in inputs}
    if job["count_flops"] and "flops" not in result:  # after the peak is read; fp32, the same for every precision
        measured = [item for item in inputs if item["label"] in result["seconds"]]
        result["flops"] = {item["label"]: count_flops(model, item["inputs"])["total"] for item in measured}
    return result


# ----------------------------------------------------------------------------------------------- reporting
def row_name(row: str, int8_info: dict | None = None) -> str:
    if row == "baseline":
        return f"`{BASELINE}` (transformers)"
    kind, _, preset = row.partition(":")
    if kind == "int8":
        linears = f"{int8_info['quantised_linears']}/{int8_info['linears']} Linear" if int8_info else "Linear"
        return f"`{preset}`, dynamic int8 ({linears})"
    if kind == "fixed":
        return f"`{preset}` (fused) + contiguous attention input"
    return f"`{preset}` (fused)"


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else text


def median_seconds(result: dict | None, label: str) -> float | None:
    """Median seconds per run, or None where the input did not run (no such precision, failed, or skipped)."""
    if result is None or label not in result.get("seconds", {}):
        return None
    return statistics.median(result["seconds"][label])


def time_ratio(numerator: dict | None, denominator: dict | None, label: str) -> float | None:
    top, bottom = median_seconds(numerator, label), median_seconds(denominator, label)
    return None if top is None or bottom is None else top / bottom


def rtf_cell(result: dict | None, label: str, flops: dict, peak_gflops: float) -> str:
    if result is None:
        return "-"
    if "error" in result:
        return "failed"
    if label in result["skipped"]:
        return f"skipped (~{result['skipped'][label]:.0f} s/run)"
    seconds = median_seconds(result, label)
    cell = f"{seconds / result['audio_seconds'][label]:.3f}"
    if label in flops:
        rate = flops[label] / seconds / 1e9
        cell += f" ({rate:.0f} GF/s, {100 * rate / peak_gflops:.0f}%)"
    return cell


def format_ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def build_report(args, precisions: dict, rows: list[str], results: dict, peaks: dict, load_before: float) -> str:
    labels = [f"{s:g} s" for s in sorted(args.seconds)]
    labels += [batch_label(args.batch_size, args.batch_seconds)] if args.batch_size else []
    target_label = target_input(args)
    names = {key: precision_label(p) for key, p in precisions.items()}  # column names: "fp32", "auto → bf16"
    first_key, *other_keys = precisions
    header = ["model", "params (M)", f"GFLOP per audio s ({target_label})"]
    for key in precisions:
        header += [f"{names[key]} RTF {label}" for label in labels] + [f"{names[key]} peak RSS (GB)"]
    header += [f"{names[key]} speed-up over {names[first_key]} ({target_label})" for key in other_keys]
    header += [f"time / {BASELINE}, {names[key]} ({target_label})" for key in precisions]

    table_rows = []
    for row in rows:
        by_dtype, flops = results[row], results[row].get("flops", {})
        first = next((by_dtype[d] for d in precisions if "params" in by_dtype.get(d, {})), {})
        per_second = "-"
        if target_label in flops:
            per_second = f"{flops[target_label] / 1e9 / first['audio_seconds'][target_label]:.1f}"
        params = f"{first['params'] / 1e6:.1f}" if first else "-"
        cells = [row_name(row, first.get("int8")), params, per_second]
        for key in precisions:
            peak = peaks["fp32" if row.startswith("int8:") else precisions[key].name]
            result = by_dtype.get(key)
            cells += [rtf_cell(result, label, flops, peak) for label in labels]
            if result is None:
                cells.append("-")
            else:
                cells.append("failed" if "error" in result else f"{result['peak_rss'] / 1e9:.2f}")
        cells += [format_ratio(time_ratio(by_dtype.get(first_key), by_dtype.get(k), target_label)) for k in other_keys]
        baseline = results["baseline"]
        cells += [format_ratio(time_ratio(by_dtype.get(k), baseline.get(k), target_label)) for k in precisions]
        table_rows.append(cells)

    patched = [row for row in rows if results[row].get(first_key, {}).get("attention_fix_layers")]
    caption = (
        f"{machine_caption(args.threads)}. Random weights, eval mode, `torch.inference_mode()`; precisions "
        + "; ".join(map(precision_note, precisions.values()))
        + f"; bf16 = `torch.autocast(\"cpu\", dtype=torch.bfloat16)`. Median of {args.repeats} timed run(s) after "
        f"{args.warmup} warm-up run(s) per input, each row and precision in its own process"
        + (", glibc malloc left as it is" if args.glibc_default_malloc
           else ", glibc malloc keeping freed memory (`keep_freed_memory()`, as the CLI runs)")
        + ". Cells: RTF (processing s / "
        "audio s; lower is faster), then achieved GFLOP/s and its fraction of the same-precision matmul peak "
        "measured in this run: " + ", ".join(f"{name} {peak:.0f} GFLOP/s" for name, peak in peaks.items())
        + f" (best {args.peak_size}x{args.peak_size} matmul). "
        + (f"The batch input holds {args.batch_size} clips of {args.batch_seconds[0]:g}-{args.batch_seconds[1]:g} s, "
           "longest first, zero-padded with an attention mask; its RTF divides by the unpadded audio. "
           if args.batch_size else "")
        + "Peak RSS: the whole process from the loaded model on, over all its inputs. `(fused)` rows run as the "
        "package ships them; "
        + "`WavLMAttentionContiguousInput` or the fast paths' `WavLMFastAttention` (a contiguous input for WavLM's "
        "attention projections; it avoids the bf16 matmul slow path of pytorch/pytorch#151934) is in: "
        + (", ".join(row_name(row) for row in patched) if patched else "no row") + ". "
        + f"An input whose time, extrapolated from the previous one, exceeds {args.max_run_seconds:g} s per run is "
        f"skipped and marked. {load_note(load_before)}."
    )  # fmt: skip
    notes = []
    for row in rows:
        info = results[row].get("fp32", {}).get("int8")
        if info:
            notes.append(
                f"{row_name(row, info)}: weights int8, activations quantised per call, fp32 otherwise (fp32 "
                "columns only); WavLM's attention projections stay fp32 (its attention reads their raw weights). "
                f"Embedding cosine to the same fp32 model on the {info['probe']} input: "
                f"{info['cosine_to_fp32']:.4f}. GFLOP/s are the fp32 model's nominal FLOPs against the fp32 peak."
            )
    parts = [caption, "", markdown_table(header, table_rows), ""]
    if notes:
        parts += [*notes, ""]
    parts += target_lines(rows, results, labels, target_label, precisions)
    return "\n".join(parts) + "\n"


def target_input(args) -> str:
    """The batch-1 input the bf16 speed-up target is judged on: --target-seconds, else the longest measured."""
    seconds = args.target_seconds if args.target_seconds in args.seconds else max(args.seconds)
    return f"{seconds:g} s"


def target_lines(rows: list[str], results: dict, labels: list[str], target_label: str, precisions: dict) -> list[str]:
    """The bf16 speed-up target (each precision that resolved to bf16 against the first that is fp32, where both
    ran) and the time against the baseline in every precision."""
    fused = [row for row in rows if row.startswith(("preset:", "fixed:"))]
    names = {key: precision_label(p) for key, p in precisions.items()}
    fp32_key = next((key for key, p in precisions.items() if p.name == "fp32"), None)
    bf16_keys = [key for key, p in precisions.items() if p.name == "bf16"] if fp32_key else []
    lines = ["Targets:"]
    for row in fused:
        for key in bf16_keys:
            speedup = time_ratio(results[row][fp32_key], results[row][key], target_label)
            if speedup is None:
                what = f"{row_name(row)} {names[key]} speed-up at {target_label}"
                lines.append(f"- NOT MEASURED: {what} (skipped or failed)")
                continue
            verdict = "PASS" if speedup >= BF16_SPEEDUP_TARGET else "MISS"
            lines.append(
                f"- {verdict}: {row_name(row)} {names[key]} is {speedup:.2f}x faster than {names[fp32_key]} at "
                f"{target_label} (target >= {BF16_SPEEDUP_TARGET:g}x)"
            )
    for row in fused:
        for key, name in names.items():
            ratios = {label: time_ratio(results[row][key], results["baseline"][key], label) for label in labels}
            measured = {label: ratio for label, ratio in ratios.items() if ratio is not None}
            listing = ", ".join(f"{label}: {format_ratio(ratio)}" for label, ratio in ratios.items())
            if not measured:
                lines.append(f"- NOT MEASURED: {row_name(row)} {name} time against {BASELINE} ({listing})")
                continue
            worst = max(measured, key=measured.get)
            verdict = "PASS" if measured[worst] <= RATIO_TARGET else "MISS"
            partial = "" if len(measured) == len(ratios) else " measured"
            lines.append(
                f"- {verdict}: {row_name(row)} {name} time <= {RATIO_TARGET:g}x {BASELINE} on every{partial} input "
                f"(worst {measured[worst]:.2f}x at {worst}; {listing})"
            )
    return lines


# ----------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[3.0, 10.0, 60.0], help="batch-1 input lengths")
    parser.add_argument("--batch-size", type=int, default=8, help="clips in the mixed-length batch (0: no batch)")
    parser.add_argument("--batch-seconds", type=float, nargs=2, default=[2.0, 10.0], metavar=("MIN", "MAX"),
                        help="shortest and longest clip of the batch")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per input (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per input before timing")
    parser.add_argument("--presets", nargs="+", default=["reference", "default"], help="fused presets to measure")
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["fp32", "bf16"],
        choices=CPU_PRECISIONS,
        help="precisions to measure, each in its own columns; auto resolves as the CLI does",
    )
    parser.add_argument("--int8-presets", nargs="*", default=["default"],
                        help="presets also measured with dynamic int8 Linear layers (none: leave empty)")  # fmt: skip
    parser.add_argument(
        "--attention-fix-presets",
        nargs="*",
        default=[],
        help="presets also measured as `fixed:` rows (the fused model has the attention fix built in)",
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--target-seconds", type=float, default=10.0,
                        help="input length of the bf16 speed-up target (else the longest batch-1 length)")  # fmt: skip
    parser.add_argument("--peak-size", type=int, default=4096, help="matrix size of the matmul peak measurement")
    parser.add_argument(
        "--max-run-seconds",
        type=float,
        default=300.0,
        help="skip an input whose single run, extrapolated from the previous input, would take longer",
    )
    parser.add_argument(
        "--baseline-as-shipped",
        action="store_true",
        help="no contiguous-input fix for the baseline's WavLM attention (bf16 gets very slow)",
    )
    parser.add_argument(
        "--glibc-default-malloc",
        action="store_true",
        help="leave glibc's malloc as it is (by default every row runs with keep_freed_memory(), "
        "as the wavlmrawnet CLI does on CPU)",
    )
    parser.add_argument("--markdown-out", help="also write the report to this file")
    args = parser.parse_args(argv)
    if min(args.seconds) <= 0 or args.repeats < 1 or args.warmup < 0 or args.threads < 1 or args.batch_size < 0:
        parser.error("--seconds must be > 0, --repeats and --threads >= 1, --warmup and --batch-size >= 0")
    args.precisions = list(dict.fromkeys(args.precisions))
    if args.int8_presets and "fp32" not in args.precisions:
        parser.error("--int8-presets runs in the fp32 columns: add fp32 to --precisions or leave --int8-presets empty")
    if args.max_run_seconds <= 0:
        parser.error("--max-run-seconds must be > 0")
    if args.batch_size and not 0 < args.batch_seconds[0] <= args.batch_seconds[1]:
        parser.error("--batch-seconds needs 0 < MIN <= MAX")
    if min(args.seconds + (args.batch_seconds if args.batch_size else [])) < 0.5:
        parser.error("every clip must be at least 0.5 s (the feature extractor's minimum)")
    for preset in {*args.presets, *args.int8_presets, *args.attention_fix_presets}:
        try:
            WavLMRawNetConfig.from_preset(preset)
        except ValueError as error:
            parser.error(str(error))
    return args


def main() -> None:
    if serve_worker(run_worker):
        return
    args = parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    precisions = resolve_all(args.precisions)
    names = dict.fromkeys(p.name for p in precisions.values())
    peaks = {name: matmul_peak_gflops(PRECISION_DTYPES[name], args.peak_size) for name in names}
    print("matmul peaks: " + ", ".join(f"{name} {peak:.0f} GFLOP/s" for name, peak in peaks.items()), flush=True)

    keys = ("seconds", "batch_size", "batch_seconds", "repeats", "warmup", "threads", "max_run_seconds")
    common = {key: getattr(args, key) for key in keys}
    common["baseline_attention_fix"] = not args.baseline_as_shipped
    common["keep_freed_memory"] = not args.glibc_default_malloc
    rows = ["baseline", *[f"preset:{p}" for p in args.presets], *[f"fixed:{p}" for p in args.attention_fix_presets]]
    rows += [f"int8:{p}" for p in args.int8_presets]
    results, failures = {}, []
    for row in rows:
        results[row] = {}
        dtypes = ["fp32"] if row.startswith("int8:") else args.precisions
        for dtype in dtypes:
            # FLOPs (at fp32) are counted once per row, in its first process (the int8 row reuses its preset's count).
            reuse = row.startswith("int8:") and "flops" in results.get(f"preset:{row[5:]}", {})
            job = {**common, "row": row, "precision": dtype, "count_flops": dtype == dtypes[0] and not reuse}
            start = time.perf_counter()
            try:
                results[row][dtype] = run_job(job, __spec__.name, label=f"{row} {dtype}")
            except RuntimeError as error:  # recorded and reported; the other rows still run
                results[row][dtype] = {"error": str(error)}
                failures.append((row, dtype, str(error)))
                print(f"FAILED {row} {dtype}: {error}", file=sys.stderr, flush=True)
                continue
            if "flops" in results[row][dtype]:
                results[row]["flops"] = results[row][dtype]["flops"]
            elif reuse:
                results[row]["flops"] = results[f"preset:{row[5:]}"]["flops"]
            if not results[row][dtype]["peak_reset"]:
                print("warning: could not reset the peak RSS; peaks include model loading", flush=True)
            print(f"measured {row} {dtype} in {time.perf_counter() - start:.0f} s", flush=True)

    report = build_report(args, precisions, rows, results, peaks, load_before)
    if failures:
        report += "\nFailed runs (their cells read `failed`):\n" + "\n".join(
            f"- {row_name(row)} {dtype}: {last_line(error)}" for row, dtype, error in failures
        ) + "\n"  # fmt: skip
    publish(report, args.markdown_out)
    if any(not row.startswith("int8:") for row, _, _ in failures):  # the int8 row is optional
        sys.exit(1)


if __name__ == "__main__":
    main()
