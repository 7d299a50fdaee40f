"""Counted FLOPs against this machine's GEMM rate, for `bench_model`: the FLOP formulas of the fast paths' own
CPU kernels, each profiled stage's GFLOPs, the GEMM probe timed beside the models, and the floor and roofline tables
they give (how close the counted arithmetic alone lets the fused model come to the baseline)."""

from __future__ import annotations

import math
import statistics

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from benchmarks.common import BASELINE, markdown_table
from benchmarks.model.paired import TARGET_RATIO, ratios, timed_ms
from benchmarks.model.profiling import own_parts, stage_meter
from wavlmrawnet.cpu_kernels import ONEDNN_LINEAR


def onednn_linear_flop(x_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of `torch.ops.mkldnn._linear_pointwise` (the fast paths' CPU linears), which FlopCounterMode does not
    know: (x, weight, bias, attr, ...) or, for the `binary` overload, (x, other, weight, bias, attr)."""
    weight_shape = args[0] if isinstance(args[2], str) else args[1]
    return 2 * math.prod(x_shape[:-1]) * weight_shape[0] * weight_shape[1]


def cpu_attention_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of SDPA's fused CPU kernel (`aten._scaled_dot_product_flash_attention_for_cpu`), which FlopCounterMode
    counts on CUDA kernels only: the two batched products."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def counted_kernels() -> dict:
    """FlopCounterMode formulas for the CPU kernels the fast paths call and the counter does not know."""
    mapping = {}
    if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = cpu_attention_flop
    if ONEDNN_LINEAR:
        mapping[torch.ops.mkldnn._linear_pointwise] = onednn_linear_flop
    return mapping


def stage_gflops(model, fused, fast_paths: bool, inputs: dict, bf16: bool = False) -> dict[str, float]:
    """Counted GFLOPs per stage (as `profile_section`'s rows) of one forward with the fast paths as given: the
    arithmetic each column really does, the fast paths' oneDNN linears and SDPA kernel included. FFTs (the
    positional convolution and the sinc bank with the fast paths), element-wise ops and normalisation are not
    counted."""
    fused.set_fast_paths(fast_paths)
    try:
        # no_grad, not inference_mode: FlopCounterMode's module tracker fails on WavLM's weight-norm under the latter.
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(**inputs)  # builds the inference caches outside the count
            with FlopCounterMode(display=False, custom_mapping=counted_kernels()) as counter:
                with stage_meter(model, counter.get_total_flops) as totals:
                    model(**inputs)
                row = {"total": float(counter.get_total_flops()), **totals}
    finally:
        fused.set_fast_paths(True)
    return {name: value / 1e9 for name, value in own_parts(row).items()}


class GemmProbe:
    """This machine's GEMM rate at the moment it is called: WavLM-Large's two feed-forward linears for `samples` of
    audio (one frame per 20 ms; frames x 1024 -> 4096 and back), each as torch's `F.linear` (MKL in fp32) and as
    oneDNN's kernel (the fast paths'); a call appends the best GFLOP/s of the four to `rates`. Called between the
    models it sits beside in a paired round, or before each profiled run, so the rate and the times it is compared
    with come from the same moment of a shared machine. Takes (and ignores) a model's keyword inputs."""

    def __init__(self, samples: int, bf16: bool = False):
        dtype = torch.bfloat16 if bf16 else torch.float32
        generator = torch.Generator().manual_seed(3)
        frames = round(samples / 320)  # WavLM's feature encoder: one frame per 20 ms at 16 kHz
        self.frames, self.rates, self.kernels = frames, [], []
        for inner, outer in ((1024, 4096), (4096, 1024)):
            x = torch.randn(frames, inner, generator=generator).to(dtype)
            weight = torch.randn(outer, inner, generator=generator).to(dtype)
            bias = torch.zeros(outer, dtype=dtype)
            gflop = 2 * frames * inner * outer / 1e9
            self.kernels.append((gflop, lambda x=x, w=weight, b=bias: F.linear(x, w, b)))
            if ONEDNN_LINEAR:
                self.kernels.append(
                    (gflop, lambda x=x, w=weight, b=bias: torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], ""))
                )
        with torch.inference_mode():
            for _, kernel in self.kernels:
                kernel()  # warm-up

    def __call__(self, **inputs) -> None:
        with torch.inference_mode():
            self.rates.append(max(gflop / (timed_ms(kernel) / 1000) for gflop, kernel in self.kernels))

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)


def paired_floor(
    fused_gflops: float, baseline_gflops: float, rates: list[float], fused_ms: list[float], baseline_ms: list[float]
) -> dict:
    """Per paired round, the fused model's counted arithmetic at that round's GEMM rate (its floor) against the
    baseline's time in the same round, and the share of the rate each model reaches; medians over the rounds."""
    floors = [1000 * fused_gflops / rate for rate in rates]
    return {
        "fused_gflops": fused_gflops,
        "rate": statistics.median(rates),
        "floor_ms": statistics.median(floors),
        "floor_ratio": statistics.median(ratios(floors, baseline_ms)),
        "fused_share": statistics.median(ratios(floors, fused_ms)),
        "baseline_share": statistics.median(ratios([1000 * baseline_gflops / rate for rate in rates], baseline_ms)),
        "share_needed": statistics.median(ratios(floors, [TARGET_RATIO * ms for ms in baseline_ms])),
    }


def floor_report(results: list[dict]) -> str:
    """What the paired GEMM probe says of each row: how close the arithmetic alone lets the fused model come."""
    lines = []
    for r in results:
        if "floor" not in r:
            continue
        f = r["floor"]
        lines.append(
            f"- `{r['row']}`: its counted arithmetic ({f['fused_gflops']:.0f} GFLOP with the fast paths) at the GEMM "
            f"rate ({f['rate']:.0f} GFLOP/s, median) takes {f['floor_ms']:.0f} ms: **{f['floor_ratio']:.2f}x** "
            f"{BASELINE}, whose own forward runs at {100 * f['baseline_share']:.0f} % of the rate. The fused model "
            f"runs at {100 * f['fused_share']:.0f} %; <= {TARGET_RATIO}x would take **{100 * f['share_needed']:.0f} "
            "%**."
        )
    if not lines:
        return ""
    return (
        "Floor: the GEMM rate measured in each paired round above, between the models (`GemmProbe`: WavLM-Large's two "
        "feed-forward linears, MKL's and oneDNN's, best of the four), and the time the counted FLOPs would take at "
        "it; medians of the per-round figures:\n\n" + "\n".join(lines)
    )


def roofline_section(models: dict, inputs: dict, profile: dict, probe: GemmProbe, bf16: bool = False) -> dict:
    """Per stage of each profiled column: counted GFLOPs, the time they would take at the GEMM rate `probe` measured
    before each profiled run (the floor), and the share of that rate the stage reaches."""
    suffix = " (bf16)" if bf16 else ""
    columns = {}
    for column, (model, fused, fast_paths) in models.items():
        gflops = stage_gflops(model, fused, fast_paths, inputs, bf16)
        ms = profile[column + suffix]
        columns[column] = {
            name: {
                "gflops": value,
                "floor_ms": 1000 * value / probe.rate,
                "share": (1000 * value / probe.rate) / ms[name] if ms.get(name, 0) > 0 else None,
            }
            for name, value in gflops.items()
        }
    return {"rate": probe.rate, "frames": probe.frames, "columns": columns, "precision": "bf16" if bf16 else "fp32"}


def roofline_report(roofline: dict, profile: dict) -> str:
    """The roofline table of one precision: where each stage stands against the GEMM rate."""
    rate, precision = roofline["rate"], roofline["precision"]
    suffix = "" if precision == "fp32" else f" ({precision})"
    shown = ["fused", BASELINE]
    columns = {name: roofline["columns"][name] for name in shown}
    names = list(dict.fromkeys(name for column in columns.values() for name in column))
    names.remove("total")

    def cells(name: str) -> list[str]:
        row = [name]
        for column, stages in columns.items():
            stage, ms = stages.get(name), profile[column + suffix].get(name)
            if stage is None:
                row += ["-"] * 4
                continue
            share = "-" if stage["share"] is None or stage["gflops"] < 0.05 else f"{100 * stage['share']:.0f} %"
            row += [f"{stage['gflops']:.1f}", f"{stage['floor_ms']:.0f}", f"{ms:.0f}", share]
        return row

    header = ["stage"]
    for column in columns:
        header += [f"{column} GFLOP", f"{column} ms at the GEMM rate", f"{column} ms", f"{column} share of the rate"]
    table = markdown_table(header, [cells(name) for name in names] + [cells("total")])
    fused, baseline = columns["fused"]["total"], columns[BASELINE]["total"]
    fused_ms, baseline_ms = profile["fused" + suffix]["total"], profile[BASELINE + suffix]["total"]
    text = (
        f"Roofline of the {precision} profile above: counted GFLOPs per stage for one {roofline['frames'] / 50:g} s "
        "forward (FlopCounterMode, each column's own path: the fast paths' oneDNN linears and SDPA counted, their "
        f"FFTs not), the time they would take at this machine's {precision} GEMM rate ({rate:.0f} GFLOP/s: the median "
        "of `GemmProbe` calls made before each profiled run), and the share of that rate each stage reaches (floor / "
        "profiled ms; above 100 % where the stage ran in a faster moment of the machine than the probe):\n\n"
        f"{table}\n\n"
        f"At that rate the fused model's counted arithmetic ({fused['gflops']:.0f} GFLOP) takes at least "
        f"{fused['floor_ms']:.0f} ms: {fused['floor_ms'] / baseline_ms:.2f}x {BASELINE}'s profiled {baseline_ms:.0f} "
        f"ms; the fused model runs at {100 * fused['share']:.0f} % of the rate, {BASELINE} at "
        f"{100 * baseline['share']:.0f} % ({fused_ms / baseline_ms:.2f}x in this profile)."
    )
    return text
