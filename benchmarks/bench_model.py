"""Parameters, FLOPs and CPU time of the fused model against transformers' WavLMForXVector (WavLM-Large).

Weights are random; every model runs fp32 in eval mode under `torch.inference_mode()` at batch 1. Rows are presets,
optionally with config overrides after a colon:

    python benchmarks/bench_model.py [--seconds 10] [--repeats 5] [--threads 2] \
        [--presets reference default "default:sinc_stride=2"] [--markdown-out table.md] [--rawnet-breakdown]

Timing is paired: for each fused row a WavLMForXVector is built around the fused model's own (random) WavLM-Large
branch, so only one WavLM-Large is in memory, and the two models run alternately. The ratio is the median of the
per-round ratios, which keeps it meaningful on a machine shared with other jobs.

FLOPs come from `torch.utils.flop_counter.FlopCounterMode`: matmuls, convolutions (conv1d included) and attention
(bmm/baddbmm or SDPA), a multiply-add counting 2 FLOPs. Element-wise ops, normalisation, softmax, pooling and FFTs are
not counted.
"""

from __future__ import annotations

import argparse
import ast
import gc
import os
import statistics
import time

import torch
import torch.nn.functional as F
from common import (
    BASELINE,
    SAMPLING_RATE,
    baseline_wavlm_config,
    count_flops,
    load_note,
    machine_caption,
    markdown_table,
    publish,
    timed_seconds,
)
from transformers import WavLMConfig, WavLMForXVector

from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector

DEFAULT_ROWS = [
    "reference",
    "reference:sinc_stride=4",
    "default",
    "default:sinc_stride=2",
]
TARGET_RATIO = 1.25


# ----------------------------------------------------------------------------------------------- building
def parse_row(spec: str) -> tuple[str, dict]:
    """'default:sinc_stride=2,sinc_pool_size=1' -> ('default', {'sinc_stride': 2, 'sinc_pool_size': 1})."""
    preset, _, rest = spec.partition(":")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        overrides[key.strip()] = ast.literal_eval(value.strip())
    unknown = set(overrides) - set(WavLMRawNetConfig.from_preset(preset).to_dict())
    if unknown:
        raise ValueError(f"unknown config field(s) {sorted(unknown)}")
    return preset, overrides


def build_fused(spec: str) -> WavLMRawNetForXVector:
    preset, overrides = parse_row(spec)
    return WavLMRawNetForXVector(WavLMRawNetConfig.from_preset(preset, num_labels=2, **overrides)).eval()


def build_baseline(wavlm_config: WavLMConfig, shared_wavlm: torch.nn.Module | None) -> WavLMForXVector:
    """WavLMForXVector (random x-vector head) around `shared_wavlm` if its config matches, else its own WavLM."""
    if shared_wavlm is None or shared_wavlm.config.to_dict() != wavlm_config.to_dict():
        return WavLMForXVector(wavlm_config).eval()
    with torch.device("meta"):  # allocates nothing; the head is materialised below
        model = WavLMForXVector(wavlm_config)
    model.wavlm = shared_wavlm
    generator = torch.Generator().manual_seed(0)
    for name, module in model.named_children():
        if name != "wavlm":
            module.to_empty(device="cpu")
            for parameter in module.parameters():
                torch.nn.init.normal_(parameter, std=0.02, generator=generator)
    return model.eval()


# ----------------------------------------------------------------------------------------------- measuring
def count_params(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def summarise(model: torch.nn.Module, inputs: dict) -> dict:
    params = {"wavlm": count_params(model.wavlm), "rawnet": count_params(getattr(model, "rawnet", None))}
    flops = count_flops(model, inputs, ("wavlm", "rawnet"))
    return {"params": {**params, "total": count_params(model)}, "flops": flops}


def timed_ms(fn) -> float:
    return 1000 * timed_seconds(fn)


def measure_row(spec: str, inputs: dict, repeats: int, baseline_times: list[float]) -> dict:
    """Builds one fused row (plus a baseline sharing its WavLM), times both alternately, frees them."""
    fused = build_fused(spec)
    baseline = build_baseline(baseline_wavlm_config(), fused.wavlm)
    waveform, lengths = inputs["input_values"], inputs["attention_mask"].sum(dim=1)
    result = {"row": spec, **summarise(fused, inputs), "ms": [], "rawnet_ms": [], "ratios": []}
    if not baseline_times:  # the baseline's own row, once
        result["baseline"] = {"row": BASELINE, **summarise(baseline, inputs)}
    with torch.inference_mode():
        fused(**inputs), baseline(**inputs)  # warm-up
        for _ in range(repeats):
            baseline_ms, fused_ms = timed_ms(lambda: baseline(**inputs)), timed_ms(lambda: fused(**inputs))
            baseline_times.append(baseline_ms)
            result["ms"].append(fused_ms)
            result["ratios"].append(fused_ms / baseline_ms)
            if fused.rawnet is not None:
                result["rawnet_ms"].append(timed_ms(lambda: fused.rawnet(waveform, lengths)))
    fused = baseline = None  # free both before the next row is built
    gc.collect()
    return result


# ----------------------------------------------------------------------------------------------- RawNet breakdown
def sinc_fft_overlap_save(waveform: torch.Tensor, filters: torch.Tensor, block: int = 4096) -> torch.Tensor:
    """The same valid, stride-1 cross-correlation as `F.conv1d(waveform[:, None], filters)`, by FFT overlap-save."""
    channels, _, kernel = filters.shape
    hop, out_len = block - kernel + 1, waveform.shape[-1] - kernel + 1
    num_blocks = -(-out_len // hop)
    padded = F.pad(waveform, (0, num_blocks * hop + kernel - 1 - waveform.shape[-1]))
    spectra = torch.fft.rfft(padded.unfold(-1, block, hop), block)[:, :, None]  # (B, blocks, 1, F)
    blocks = torch.fft.irfft(spectra * torch.fft.rfft(filters[:, 0].flip(-1), block), block)[..., kernel - 1 :]
    return blocks.permute(0, 2, 1, 3).reshape(waveform.shape[0], channels, -1)[..., :out_len]


def rawnet_breakdown(spec: str, inputs: dict, repeats: int) -> dict[str, float]:
    """Median ms of each RawNet stage (forward hooks), and of the sinc layer as F.conv1d vs FFT overlap-save."""
    preset, overrides = parse_row(spec)
    config = WavLMRawNetConfig.from_preset(preset, num_labels=2, **{**overrides, "use_wavlm_branch": False})
    rawnet = WavLMRawNetForXVector(config).eval().rawnet
    stages = {"sinc conv": rawnet.sinc, "sinc BN": rawnet.sinc_bn}
    stages.update({f"block {i + 1}": block for i, block in enumerate(rawnet.blocks)})
    stages.update({"stats pooling": rawnet.pooling, "FC": rawnet.fc})
    times, starts = {name: [] for name in stages}, {}
    for name, module in stages.items():
        module.register_forward_pre_hook(lambda m, a, name=name: starts.__setitem__(name, time.perf_counter()))
        module.register_forward_hook(lambda m, a, o, name=name: times[name].append(time.perf_counter() - starts[name]))
    waveform, lengths = inputs["input_values"], inputs["attention_mask"].sum(dim=1)
    totals, conv_times, fft_times = [], [], []
    with torch.inference_mode():
        filters = rawnet.sinc.filters()
        reference = F.conv1d(waveform[:, None], filters)
        error = (sinc_fft_overlap_save(waveform, filters) - reference).abs().max() / reference.abs().max()
        rawnet(waveform, lengths)  # warm-up
        for values in times.values():
            values.clear()
        for _ in range(repeats):
            totals.append(timed_ms(lambda: rawnet(waveform, lengths)))
            conv_times.append(timed_ms(lambda: F.conv1d(waveform[:, None], filters)))
            fft_times.append(timed_ms(lambda: sinc_fft_overlap_save(waveform, filters)))
    row = {name: 1000 * statistics.median(values) for name, values in times.items()}
    # Per run, the hooked stages are disjoint parts of the total; the rest is what lies between them.
    rests = [total - 1000 * sum(values[i] for values in times.values()) for i, total in enumerate(totals)]
    row["rest (abs, max-pool, masks)"] = statistics.median(rests)
    row["total"] = statistics.median(totals)
    row["stride-1 sinc: F.conv1d"] = statistics.median(conv_times)
    row["stride-1 sinc: FFT overlap-save"] = statistics.median(fft_times)
    row["FFT max rel. error"] = float(error)
    return row


# ----------------------------------------------------------------------------------------------- reporting
def main_table(results: list[dict], baseline: dict, baseline_times: list[float], seconds: float) -> str:
    header = [
        "model", "params WavLM (M)", "params RawNet (M)", "params fusion+head (M)", "params total (M)",
        "GFLOPs/s WavLM", "GFLOPs/s RawNet", "GFLOPs/s rest", f"CPU wall ms / {seconds:g} s audio (median)",
        "RawNet branch ms", f"GFLOPs / {BASELINE}", f"time / {BASELINE} (median of paired runs)",
        f"meets <= {TARGET_RATIO}x",
    ]  # fmt: skip
    rows = []
    for r in [{**baseline, "ms": baseline_times, "rawnet_ms": [], "ratios": None}, *results]:
        p, f = r["params"], {k: v / 1e9 / seconds for k, v in r["flops"].items()}
        ratio = None if r["ratios"] is None else statistics.median(r["ratios"])
        rows.append([
            f"`{r['row']}`", f"{p['wavlm'] / 1e6:.1f}", f"{p['rawnet'] / 1e6:.2f}",
            f"{(p['total'] - p['wavlm'] - p['rawnet']) / 1e6:.2f}", f"{p['total'] / 1e6:.1f}",
            f"{f['wavlm']:.1f}", f"{f['rawnet']:.2f}", f"{f['total'] - f['wavlm'] - f['rawnet']:.3f}",
            f"{statistics.median(r['ms']):.0f}",
            f"{statistics.median(r['rawnet_ms']):.0f}" if r["rawnet_ms"] else "-",
            f"{r['flops']['total'] / baseline['flops']['total']:.2f}",
            "1.00" if ratio is None else f"{ratio:.2f}",
            "baseline" if ratio is None else ("yes" if ratio <= TARGET_RATIO else "**no**"),
        ])  # fmt: skip
    return markdown_table(header, rows)


def format_stage(value: float | None, column: str) -> str:
    if value is None:
        return "-"
    return f"{value:.1e}" if "error" in column else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length of the input")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per model, after one warm-up")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument(
        "--presets", nargs="+", default=DEFAULT_ROWS, metavar="ROW",
        help="fused rows: a preset name, optionally with overrides, e.g. 'default:sinc_stride=2,sinc_pool_size=1'",
    )  # fmt: skip
    parser.add_argument("--markdown-out", help="also write the table(s), with their caption, to this file")
    parser.add_argument("--rawnet-breakdown", action="store_true", help="also time each RawNet stage per row")
    args = parser.parse_args()
    if args.seconds <= 0 or args.repeats < 1 or args.threads < 1:
        parser.error("--seconds must be > 0, --repeats and --threads >= 1")
    for spec in args.presets:  # fail before the slow part on a bad row
        try:
            preset, overrides = parse_row(spec)
            WavLMRawNetConfig.from_preset(preset, **overrides)
        except (ValueError, SyntaxError) as error:
            parser.error(f"bad --presets row {spec!r}: {error}")

    torch.set_num_threads(args.threads)
    samples = round(args.seconds * SAMPLING_RATE)
    inputs = {
        "input_values": torch.randn(1, samples, generator=torch.Generator().manual_seed(0)),
        "attention_mask": torch.ones(1, samples, dtype=torch.long),
    }
    load_before = os.getloadavg()[0]
    results, baseline_times = [], []
    for spec in args.presets:
        results.append(measure_row(spec, inputs, args.repeats, baseline_times))
        print(f"measured {spec}: ratio {statistics.median(results[-1]['ratios']):.2f}", flush=True)
    baseline = results[0].pop("baseline")
    caption = (
        f"{machine_caption()}, fp32, batch 1, {args.seconds:g} s input, {args.repeats} timed runs "
        f"per row after a warm-up, {load_note(load_before)}. "
        "GFLOPs per second of audio from FlopCounterMode (matmul, conv, attention only). "
        f"Target: fused time <= {TARGET_RATIO}x {BASELINE}."
    )
    report = f"{caption}\n\n{main_table(results, baseline, baseline_times, args.seconds)}\n"

    if args.rawnet_breakdown:
        rows = {spec: rawnet_breakdown(spec, inputs, args.repeats) for spec in args.presets}
        columns = list(max(rows.values(), key=len))  # the row with the most residual blocks
        cells = [[f"`{spec}`"] + [format_stage(row.get(column), column) for column in columns]
                 for spec, row in rows.items()]  # fmt: skip
        report += (
            f"\nRawNet branch alone, median ms per stage for {args.seconds:g} s of audio (forward hooks; the last "
            "columns time the sinc filter bank at stride 1 as F.conv1d and as an FFT overlap-save):\n\n"
            + markdown_table(["row", *columns], cells) + "\n"
        )  # fmt: skip
    publish(report, args.markdown_out)


if __name__ == "__main__":
    main()
