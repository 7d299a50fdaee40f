"""The rows of `bench_model`'s main table: each fused row built from a preset (and overrides), a
WavLMForXVector-Large baseline around its own WavLM, both counted (parameters, FLOPs) and timed in pairs with the
fused model's fast paths on and off, and the table."""

from __future__ import annotations

import ast
import gc
import statistics

import torch
from transformers import WavLMConfig, WavLMForXVector

from benchmarks.common import BASELINE, baseline_wavlm_config, count_flops, markdown_table
from benchmarks.model.paired import TARGET_RATIO, embeddings_cosine, paired_ms, ratios, timed_ms
from benchmarks.model.roofline import GemmProbe, paired_floor, stage_gflops
from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector


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


def build_fused(spec: str, device: torch.device) -> WavLMRawNetForXVector:
    preset, overrides = parse_row(spec)
    return WavLMRawNetForXVector(WavLMRawNetConfig.from_preset(preset, num_labels=2, **overrides)).to(device).eval()


def build_baseline(wavlm_config: WavLMConfig, shared_wavlm: torch.nn.Module | None, device) -> WavLMForXVector:
    """WavLMForXVector (random x-vector head) around `shared_wavlm` if its config matches, else its own WavLM."""
    if shared_wavlm is None or shared_wavlm.config.to_dict() != wavlm_config.to_dict():
        return WavLMForXVector(wavlm_config).to(device).eval()
    with torch.device("meta"):  # allocates nothing; the head is materialised below
        model = WavLMForXVector(wavlm_config)
    model.wavlm = shared_wavlm
    generator = torch.Generator().manual_seed(0)
    for name, module in model.named_children():
        if name != "wavlm":
            module.to_empty(device="cpu")
            for parameter in module.parameters():
                torch.nn.init.normal_(parameter, std=0.02, generator=generator)
            module.to(device)
    return model.eval()


def count_params(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def summarise(model: torch.nn.Module, inputs: dict) -> dict:
    params = {"wavlm": count_params(model.wavlm), "rawnet": count_params(getattr(model, "rawnet", None))}
    flops = count_flops(model, inputs, ("wavlm", "rawnet"))
    return {"params": {**params, "total": count_params(model)}, "flops": flops}


def measure_row(spec: str, inputs: dict, repeats: int, baseline_times: list[float], extra=None) -> dict:
    """Builds one fused row (plus a baseline sharing its WavLM), times the baseline and the fused model with its fast
    paths on and off alternately, runs `extra(fused, baseline, result)` (the other sections), frees them."""
    device = inputs["input_values"].device
    fused = build_fused(spec, device)
    baseline = build_baseline(baseline_wavlm_config(), fused.wavlm, device)
    waveform, lengths = inputs["input_values"], inputs["attention_mask"].sum(dim=1)
    # The baseline shares this WavLM, so its FLOP count also needs the fast paths off (count_flops switches only the
    # model it is given); transformers' own computation does the same arithmetic.
    fused.set_fast_paths(False)
    result = {"row": spec, **summarise(fused, inputs), "rawnet_ms": []}
    baseline_summary = {"row": BASELINE, **summarise(baseline, inputs)}
    if not baseline_times:  # the baseline's own row, once
        result["baseline"] = baseline_summary
    runs = {"baseline": (baseline, fused, False), "fast": (fused, fused, True), "off": (fused, fused, False)}
    probe = None
    if device.type == "cpu" and fused.wavlm is not None:  # the GEMM rate in each round, for the floor below
        probe = GemmProbe(waveform.shape[1])
        runs["GEMM probe"] = (probe, fused, None)
    times = paired_ms(runs, inputs, repeats)
    baseline_times.extend(times["baseline"])
    result.update(ms=times["fast"], off_ms=times["off"])
    result.update(ratios=ratios(times["fast"], times["baseline"]), off_ratios=ratios(times["off"], times["baseline"]))
    if probe is not None:
        result["floor"] = paired_floor(
            stage_gflops(fused, fused, True, inputs)["total"], baseline_summary["flops"]["total"] / 1e9,
            probe.rates[-repeats:], times["fast"], times["baseline"],
        )  # fmt: skip
    result["cosine"] = embeddings_cosine(fused, inputs)
    if fused.rawnet is not None:
        with torch.inference_mode():
            result["rawnet_ms"] = [timed_ms(lambda: fused.rawnet(waveform, lengths)) for _ in range(repeats)]
    if extra is not None:
        extra(fused, baseline, result)
    fused = baseline = None  # free both before the next row is built
    gc.collect()
    return result


def main_table(results: list[dict], baseline: dict, baseline_times: list[float], seconds: float) -> str:
    header = [
        "model", "params WavLM (M)", "params RawNet (M)", "params fusion+head (M)", "params total (M)",
        "GFLOPs/s WavLM", "GFLOPs/s RawNet", "GFLOPs/s rest", f"wall ms / {seconds:g} s audio (median)",
        "RawNet branch ms", f"GFLOPs / {BASELINE}", f"time / {BASELINE} (median of paired runs)",
        f"meets <= {TARGET_RATIO}x", "embedding cosine to fast paths off",
    ]  # fmt: skip
    rows = []
    expanded = []
    for r in results:
        expanded.append(r)
        off_name = f"{r['row']}, fast paths off"
        expanded.append({**r, "row": off_name, "ms": r["off_ms"], "ratios": r["off_ratios"], "rawnet_ms": []})
    for r in [{**baseline, "ms": baseline_times, "rawnet_ms": [], "ratios": None}, *expanded]:
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
            f"{r['cosine']:.7f}" if "cosine" in r else "-",
        ])  # fmt: skip
    return markdown_table(header, rows)
