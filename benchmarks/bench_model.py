"""Speed of the fused model against transformers' WavLMForXVector (WavLM-Large), in one run: parameters and FLOPs,
fp32 time at batch 1, a padded mixed-length batch, bf16, a per-stage profile and the inference engines.

Weights are random; every model runs in eval mode under `torch.inference_mode()`. Rows are presets, optionally with
config overrides after a colon:

    python -m benchmarks.bench_model [--seconds 10] [--repeats 5] [--threads 2] [--presets default] \
        [--batch-size 8] [--batch-seconds 2 10] [--batch-repeats 2] [--bf16-repeats 3] \
        [--profile-repeats 3] [--profile-precisions fp32 bf16] [--engines torch torch-compile onnxruntime] \
        [--rawnet-breakdown] [--device cuda] [--throughput-batches 1 16 64] [--markdown-out table.md]

Timing is paired: for each fused row a WavLMForXVector is built around the fused model's own (random) WavLM-Large
branch, so only one WavLM-Large is in memory, and the models run alternately (A, B, C, A, B, C, ...). Each ratio is
the median of the per-round ratios, which keeps it meaningful on a machine shared with other jobs. The fused model
runs twice per round: as shipped (`set_fast_paths(True)`: SDPA attention, oneDNN linears, time-major feature encoder,
running layer sum) and with its fast paths off (transformers' own WavLM, as before issue #14); the baseline always
runs transformers' own WavLM (with the package's bf16 fix `WavLMAttentionContiguousInput`, bit-identical in fp32).

Sections after the main table (each can be skipped): the padded batch (`--batch-size` clips evenly spread over
`--batch-seconds`, zero-padded with a mask, as `embed_files` batches them; target <= 1.0x; the fused model also in
one call, without its CPU length groups), bf16 autocast against
fp32 (with the embedding cosine and the score change between two clips), a per-stage profile (forward hooks, after
one warm run per model; fp32 and/or bf16 autocast) with its roofline (each stage's counted GFLOPs, the time they
take at this machine's GEMM rate measured in the same run, and the share of that rate reached), and the engines of
`wavlmrawnet.engines` (start-up = preparation + first call). Below the main table, its floor: the GEMM rate measured
in each paired round (`GemmProbe`), and how close the counted FLOPs at that rate let the fused model come. With
`--device cuda` the CPU-only sections (profile, engines, RawNet breakdown) give way to a throughput and memory table
(batches of clips, fp32 and bf16, CUDA max allocated).

FLOPs come from `torch.utils.flop_counter.FlopCounterMode`: matmuls, convolutions (conv1d included) and attention
(bmm/baddbmm or SDPA), a multiply-add counting 2 FLOPs. Element-wise ops, normalisation, softmax, pooling and FFTs are
not counted.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import gc
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count
from transformers import WavLMConfig, WavLMForXVector

from benchmarks.common import (
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
from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector
from wavlmrawnet.cpu_kernels import ONEDNN_LINEAR
from wavlmrawnet.cpu_malloc import keep_freed_memory
from wavlmrawnet.engines import ENGINES, use_engine
from wavlmrawnet.fast_rawnet import FastAttentiveStatisticsPooling, FastResidualBlock, FastSincConv

DEFAULT_ROWS = ["default"]
TARGET_RATIO = 0.85  # fused (as shipped) / WavLMForXVector-Large, fp32, batch 1
BATCH_TARGET_RATIO = 1.0  # the same for the padded mixed batch
BF16_TARGET_SPEEDUP = 3.0  # fp32 time / bf16 time (the AMX target)
BF16_MAX_SCORE_CHANGE = 0.02


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


# ----------------------------------------------------------------------------------------------- measuring
def count_params(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def summarise(model: torch.nn.Module, inputs: dict) -> dict:
    params = {"wavlm": count_params(model.wavlm), "rawnet": count_params(getattr(model, "rawnet", None))}
    flops = count_flops(model, inputs, ("wavlm", "rawnet"))
    return {"params": {**params, "total": count_params(model)}, "flops": flops}


def timed_ms(fn) -> float:
    return 1000 * timed_seconds(fn)


def paired_ms(runs: dict, inputs: dict, repeats: int, warmup: bool = True) -> dict[str, list[float]]:
    """{name: (model, fast_paths)} -> ms per round; the models run alternately after one warm-up each. A model with
    `fast_paths` None is left as it is; True/False is set on the fused model (it shares its WavLM with the baseline)
    before each call."""
    times = {name: [] for name in runs}
    with torch.inference_mode():
        for round_index in range(0 if warmup else 1, repeats + 1):
            for name, (model, fused, fast_paths) in runs.items():
                if fast_paths is not None:
                    fused.set_fast_paths(fast_paths)
                elapsed = timed_ms(lambda: model(**inputs))
                if round_index:  # round 0 is the warm-up
                    times[name].append(elapsed)
    return times


def ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    return [a / b for a, b in zip(numerator, denominator)]


def embeddings_cosine(fused: WavLMRawNetForXVector, inputs: dict) -> float:
    """The lowest cosine between the fused model's embeddings with its fast paths on and off."""
    with torch.inference_mode():
        fast = fused.set_fast_paths(True)(**inputs).embeddings
        slow = fused.set_fast_paths(False)(**inputs).embeddings
    fused.set_fast_paths(True)
    return float(F.cosine_similarity(fast, slow).min())


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


# ----------------------------------------------------------------------------------------------- other sections
def mixed_batch(batch_size: int, batch_seconds: tuple[float, float]) -> tuple[dict, float]:
    """`batch_size` noise clips evenly spread over `batch_seconds`, longest first, zero-padded with an attention mask
    (as `embed_files` batches them); and their summed seconds."""
    generator = torch.Generator().manual_seed(1)
    seconds = torch.linspace(*batch_seconds, batch_size).tolist()
    lengths = sorted((round(s * SAMPLING_RATE) for s in seconds), reverse=True)
    mask = torch.zeros(batch_size, lengths[0], dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    values = torch.randn(batch_size, lengths[0], generator=generator) * mask
    return {"input_values": values, "attention_mask": mask}, sum(lengths) / SAMPLING_RATE


class WithoutLengthGroups:
    """The fused model with its fast paths, but a padded batch run in one call (`length_groups` off)."""

    def __init__(self, fused: WavLMRawNetForXVector):
        self.fused = fused

    def __call__(self, **inputs):
        rule, self.fused.length_group_seconds = self.fused.length_group_seconds, math.inf
        try:
            return self.fused(**inputs)
        finally:
            self.fused.length_group_seconds = rule


def batch_section(fused, baseline, inputs: dict, repeats: int) -> dict:
    runs = {"baseline": (baseline, fused, False), "fast": (fused, fused, True), "off": (fused, fused, False)}
    runs["one call"] = (WithoutLengthGroups(fused), fused, True)
    times = paired_ms(runs, inputs, repeats, warmup=False)  # the models are warm from the batch-1 runs
    # The cosine on the shortest and longest clips only (two forwards fewer of the whole batch).
    pair = {key: value[[0, -1]] for key, value in inputs.items()}
    return {
        "ms": {name: statistics.median(values) for name, values in times.items()},
        "ratio": statistics.median(ratios(times["fast"], times["baseline"])),
        "off_ratio": statistics.median(ratios(times["off"], times["baseline"])),
        "one_call_ratio": statistics.median(ratios(times["one call"], times["baseline"])),
        "cosine": embeddings_cosine(fused, pair),
    }


def bf16_section(fused, baseline, inputs: dict, repeats: int) -> dict:
    """fp32 and bf16-autocast times of the fused model (fast paths on) and the baseline, alternately; the bf16
    embedding's cosine to fp32 and the change of the score between two different clips."""
    device = inputs["input_values"].device
    bf16 = torch.autocast(device.type, dtype=torch.bfloat16)
    times = {name: [] for name in ("fused fp32", "fused bf16", "baseline fp32", "baseline bf16")}
    probes = {}
    if device.type == "cpu":  # the GEMM rates in each round: the most bf16 can gain on these products
        samples = inputs["input_values"].shape[1]
        probes = {"fp32": GemmProbe(samples), "bf16": GemmProbe(samples, bf16=True)}
    with torch.inference_mode():
        for round_index in range(repeats + 1):
            for probe in probes.values():
                probe()
            for name in times:
                model = fused if name.startswith("fused") else baseline
                fused.set_fast_paths(name.startswith("fused"))
                with bf16 if name.endswith("bf16") else contextlib.nullcontext():
                    elapsed = timed_ms(lambda: model(**inputs))
                if round_index:
                    times[name].append(elapsed)
        fused.set_fast_paths(True)
        noise = torch.randn(inputs["input_values"].shape, generator=torch.Generator().manual_seed(2)).to(device)
        other = {**inputs, "input_values": noise}
        fp32 = [F.normalize(fused(**x).embeddings, dim=1) for x in (inputs, other)]
        with bf16:
            low = [F.normalize(fused(**x).embeddings.float(), dim=1) for x in (inputs, other)]
    score_fp32, score_bf16 = float((fp32[0] * fp32[1]).sum()), float((low[0] * low[1]).sum())
    return {
        "ms": {name: statistics.median(values) for name, values in times.items()},
        "fused_speedup": statistics.median(ratios(times["fused fp32"], times["fused bf16"])),
        "baseline_speedup": statistics.median(ratios(times["baseline fp32"], times["baseline bf16"])),
        "fused_bf16_vs_baseline_bf16": statistics.median(ratios(times["fused bf16"], times["baseline bf16"])),
        "cosine": float(F.cosine_similarity(fp32[0], low[0]).min()),
        "score_change": abs(score_fp32 - score_bf16),
        "gemm_speedup": (
            statistics.median(ratios(probes["bf16"].rates[1:], probes["fp32"].rates[1:])) if probes else None
        ),
    }


def throughput_section(fused, baseline, batch_sizes: list[int], seconds: float, repeats: int) -> list[dict]:
    """Per batch size and precision (fp32, bf16 autocast): the fused model (fast paths on) and the baseline timed
    alternately on `batch_size` unpadded clips, and each one's peak memory above what was allocated before its call
    (CUDA's max allocated, in the untimed first round)."""
    device = next(fused.parameters()).device
    samples = round(seconds * SAMPLING_RATE)
    rows = []
    for batch_size in batch_sizes:
        generator = torch.Generator().manual_seed(3)
        inputs = {
            "input_values": torch.randn(batch_size, samples, generator=generator).to(device),
            "attention_mask": torch.ones(batch_size, samples, dtype=torch.long, device=device),
        }
        runs = {"baseline": (baseline, fused, False), "fused": (fused, fused, True)}
        for precision in ("fp32", "bf16"):
            bf16 = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
            peaks = {}
            with torch.inference_mode(), bf16:
                for name, (model, _, fast_paths) in runs.items():  # the untimed first call of each
                    fused.set_fast_paths(fast_paths)
                    torch.cuda.reset_peak_memory_stats(device)
                    before = torch.cuda.memory_allocated(device)
                    model(**inputs)
                    peaks[name] = (torch.cuda.max_memory_allocated(device) - before) / 1e9
                times = paired_ms(runs, inputs, repeats, warmup=False)
            fused.set_fast_paths(True)
            ms = {name: statistics.median(values) for name, values in times.items()}
            rows.append({
                "batch_size": batch_size, "precision": precision, "ms": ms, "peak_gb": peaks,
                "ratio": statistics.median(ratios(times["fused"], times["baseline"])),
                "audio_per_s": {name: batch_size * seconds / (value / 1000) for name, value in ms.items()},
            })  # fmt: skip
            print(f"measured batch {batch_size}, {precision}: ratio {rows[-1]['ratio']:.2f}", flush=True)
    return rows


def stage_modules(model) -> dict[str, list[torch.nn.Module]]:
    """Stage name -> the modules whose forward time it sums (disjoint; what lies between them is "rest")."""
    wavlm = model.wavlm
    layers = wavlm.encoder.layers
    stages = {
        "WavLM feature encoder (CNN)": [wavlm.feature_extractor],
        "WavLM feature projection": [wavlm.feature_projection],
        "WavLM positional conv": [wavlm.encoder.pos_conv_embed],
        "WavLM attention (24 layers)": [layer.attention for layer in layers],
        "WavLM feed-forward": [layer.feed_forward for layer in layers],
        "WavLM layer norms and residuals": list(layers),  # minus attention and feed-forward, below
    }
    if isinstance(model, WavLMRawNetForXVector):
        rawnet = model.rawnet
        stages["WavLM layer pooling"] = [model.wavlm_pooling]
        stages["RawNet sinc conv"] = [rawnet.sinc]
        stages["RawNet residual blocks"] = list(rawnet.blocks)
        stages["RawNet stats pooling + FC"] = [rawnet.pooling, rawnet.fc]
        stages["RawNet abs, max-pool, BN"] = [rawnet]  # minus the RawNet stages above
    else:
        stages["x-vector head (projector, TDNN, stats)"] = [model.projector, *model.tdnn, model.feature_extractor]
    return stages


# The RawNet stages' eval-mode inference (`FastRawNetEncoder.time_major`) enters them through these methods of their
# fast classes instead of `forward`.
TIME_MAJOR_STAGES = ("RawNet sinc conv", "RawNet residual blocks", "RawNet stats pooling + FC")
TIME_MAJOR_ENTRIES = {
    FastSincConv: FastSincConv.pooled_magnitudes_time_major.__name__,
    FastResidualBlock: FastResidualBlock.time_major.__name__,
    FastAttentiveStatisticsPooling: FastAttentiveStatisticsPooling.time_major.__name__,
}


def time_major_entry(module) -> str | None:
    """The name of the method through which time-major inference enters `module`, if it has one."""
    return TIME_MAJOR_ENTRIES.get(type(module))


def timed_method(method, key, start, stop):
    def timed(*args, **kwargs):
        start(key)
        try:
            return method(*args, **kwargs)
        finally:
            stop(key)

    return timed


@contextlib.contextmanager
def stage_meter(model, clock):
    """Sums `clock()` differences over each stage of `stage_modules(model)` while it is entered: forward hooks, and
    the time-major entry points of the RawNet stages wrapped like a forward. Yields {stage: sum}, which the caller
    zeroes between runs; an enclosing stage holds its children's share (`own_parts` removes it)."""
    stages = stage_modules(model)
    totals, starts, handles, wrapped = {name: 0.0 for name in stages}, {}, [], []

    def start(key):
        starts[key] = clock()

    def stop(key):
        totals[key[0]] += clock() - starts[key]

    try:
        for name, modules in stages.items():
            for module in modules:
                key = (name, id(module))
                handles.append(module.register_forward_pre_hook(lambda m, a, key=key: start(key)))
                handles.append(module.register_forward_hook(lambda m, a, o, key=key: stop(key)))
                method = time_major_entry(module) if name in TIME_MAJOR_STAGES else None
                if method is not None:
                    setattr(module, method, timed_method(getattr(module, method), key, start, stop))
                    wrapped.append((module, method))
        yield totals
    finally:
        for handle in handles:
            handle.remove()
        for module, method in wrapped:
            del module.__dict__[method]


def own_parts(row: dict[str, float]) -> dict[str, float]:
    """A stage row with "total": enclosing stages keep only their own part, and "rest" is what no stage holds."""
    row = dict(row)
    row["WavLM layer norms and residuals"] -= row["WavLM attention (24 layers)"] + row["WavLM feed-forward"]
    if "RawNet abs, max-pool, BN" in row:
        row["RawNet abs, max-pool, BN"] -= sum(
            row[name] for name in ("RawNet sinc conv", "RawNet residual blocks", "RawNet stats pooling + FC")
        )
    row["rest (masks, fusion, head, between stages)"] = row["total"] - sum(
        value for name, value in row.items() if name != "total"
    )
    return row


def profile_section(
    models: dict, inputs: dict, repeats: int, bf16: bool = False, probe: GemmProbe | None = None
) -> dict[str, dict[str, float]]:
    """{column: (model, fused, fast_paths)} -> {column: {stage: ms}} from forward hooks; under CPU bf16
    autocast if `bf16`. The columns run alternately, round by round after a warm-up round, each run preceded by a
    call of `probe` (the GEMM rate of that moment) if one is given; each column's row is its run with the median
    total."""
    runs = {column: [] for column in models}
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for round_index in range(repeats + 1):
            for column, (model, fused, fast_paths) in models.items():
                fused.set_fast_paths(fast_paths)
                if round_index == 0:
                    model(**inputs)  # warm-up
                    continue
                if probe is not None:
                    probe()
                with stage_meter(model, time.perf_counter) as totals:
                    total = timed_ms(lambda: model(**inputs))
                runs[column].append({"total": total, **{name: 1000 * value for name, value in totals.items()}})
    fused.set_fast_paths(True)
    # Each column's stages come from its run with the median total: medians taken stage by stage need not add up to
    # the median total on a machine whose speed moves within a run.
    return {
        column: own_parts(sorted(rows, key=lambda run: run["total"])[(len(rows) - 1) // 2])
        for column, rows in runs.items()
    }


# ----------------------------------------------------------------------------------------------- roofline
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


def engines_section(fused, baseline, inputs: dict, repeats: int, engines: list[str]) -> dict:
    """Start-up (preparation + first call) and steady time of each engine on copies of the fused model, with the
    baseline (eager, transformers' WavLM) timed alternately; and each engine's embedding cosine to eager torch."""
    fused.set_fast_paths(True)
    with torch.inference_mode():
        reference = fused(**inputs).embeddings
    models, startup, cosine, unavailable = {}, {}, {}, {}
    for engine in engines:
        model = fused if engine == "torch" else copy.deepcopy(fused)
        start = time.perf_counter()
        try:
            use_engine(model, engine)
        except ValueError as error:  # an engine this machine cannot run (e.g. torch-compile in AVX2 code)
            unavailable[engine] = str(error)
            continue
        with torch.inference_mode():
            output = model(**inputs).embeddings
        startup[engine] = time.perf_counter() - start
        cosine[engine] = float(F.cosine_similarity(output.float(), reference).min())
        models[engine] = model
    runs = {"baseline": (baseline, fused, False)}
    runs.update({engine: (model, fused, True if engine == "torch" else None) for engine, model in models.items()})
    times = paired_ms(runs, inputs, repeats)
    fused.set_fast_paths(True)
    return (
        {
            engine: {
                "startup_s": startup[engine],
                "ms": statistics.median(times[engine]),
                "ratio": statistics.median(ratios(times[engine], times["baseline"])),
                "cosine": cosine[engine],
            }
            for engine in models
        }
        | {engine: {"unavailable": reason} for engine, reason in unavailable.items()}
        | {"baseline_ms": statistics.median(times["baseline"])}
    )


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
    times, starts, depth = {name: [] for name in stages}, {}, dict.fromkeys(stages, 0)

    def start(name):  # a stage may enter itself (a time-major method calling forward): time the outermost call
        depth[name] += 1
        if depth[name] == 1:
            starts[name] = time.perf_counter()

    def stop(name):
        depth[name] -= 1
        if depth[name] == 0:
            times[name].append(time.perf_counter() - starts[name])

    for name, module in stages.items():
        module.register_forward_pre_hook(lambda m, a, name=name: start(name))
        module.register_forward_hook(lambda m, a, o, name=name: stop(name))
        method = time_major_entry(module)  # eval-mode inference enters the stages through these (fast paths on)
        if method is not None:
            setattr(module, method, timed_method(getattr(module, method), name, start, stop))
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
    row["rest (masks; abs and max-pool where not in the sinc stage)"] = statistics.median(rests)
    row["total"] = statistics.median(totals)
    row["stride-1 sinc: F.conv1d"] = statistics.median(conv_times)
    row["stride-1 sinc: FFT overlap-save"] = statistics.median(fft_times)
    row["FFT max rel. error"] = float(error)
    return row


# ----------------------------------------------------------------------------------------------- reporting
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


def sections_report(sections: dict, args) -> str:
    """The batch, bf16, profile and engine tables of the first row."""
    parts = []
    if "batch" in sections:
        b = sections["batch"]
        parts.append(
            f"Padded mixed batch: {args.batch_size} clips of {args.batch_seconds[0]:g}-{args.batch_seconds[1]:g} s "
            f"({b['audio_seconds']:.0f} s of audio), fp32, {args.batch_repeats} paired runs, median ms; the fused "
            f"model's length groups span {b['length_group_seconds']:g} s:\n\n"
            + markdown_table(
                [BASELINE, "fused", "fused, fast paths off", "fused in one call (no length groups)",
                 f"fused / {BASELINE}", f"meets <= {BATCH_TARGET_RATIO}x", f"fast paths off / {BASELINE}",
                 f"one call / {BASELINE}", "embedding cosine to fast paths off"],
                [[f"{b['ms']['baseline']:.0f}", f"{b['ms']['fast']:.0f}", f"{b['ms']['off']:.0f}",
                  f"{b['ms']['one call']:.0f}", f"{b['ratio']:.2f}",
                  "yes" if b["ratio"] <= BATCH_TARGET_RATIO else "**no**", f"{b['off_ratio']:.2f}",
                  f"{b['one_call_ratio']:.2f}", f"{b['cosine']:.7f}"]],
            )
        )  # fmt: skip
    if "bf16" in sections:
        b = sections["bf16"]
        parts.append(
            f"bf16 autocast against fp32, batch 1, {args.seconds:g} s, {args.bf16_repeats} paired runs, median ms "
            f"(the AMX target, bf16 >= {BF16_TARGET_SPEEDUP:g}x fp32, needs an AMX CPU; |Δscore| is the change of "
            "the cosine score between two different clips; the GEMM rate ratio, from `GemmProbe` calls in each round, "
            "is the most bf16 can speed up work bound by WavLM's matrix products at that moment):\n\n"
            + markdown_table(
                ["fused fp32", "fused bf16", "fused fp32 / bf16", f"{BASELINE} fp32", f"{BASELINE} bf16",
                 f"{BASELINE} fp32 / bf16", f"fused bf16 / {BASELINE} bf16", "bf16 / fp32 GEMM rate",
                 "bf16 embedding cosine to fp32", f"\\|Δscore\\| (<= {BF16_MAX_SCORE_CHANGE})"],
                [[f"{b['ms']['fused fp32']:.0f}", f"{b['ms']['fused bf16']:.0f}", f"{b['fused_speedup']:.2f}",
                  f"{b['ms']['baseline fp32']:.0f}", f"{b['ms']['baseline bf16']:.0f}", f"{b['baseline_speedup']:.2f}",
                  f"{b['fused_bf16_vs_baseline_bf16']:.2f}",
                  "-" if b["gemm_speedup"] is None else f"{b['gemm_speedup']:.2f}",
                  f"{b['cosine']:.5f}", f"{b['score_change']:.4f}"]],
            )
        )  # fmt: skip
    if "throughput" in sections:
        parts.append(
            f"Throughput and memory, batches of {args.seconds:g} s clips (no padding), {args.repeats} paired runs "
            "after an untimed first call, which gives the peak memory above the weights (CUDA max allocated):\n\n"
            + markdown_table(
                ["batch", "precision", "fused ms", f"{BASELINE} ms", f"fused / {BASELINE}",
                 "fused audio s per s", f"{BASELINE} audio s per s", "fused peak GB", f"{BASELINE} peak GB"],
                [[str(r["batch_size"]), r["precision"], f"{r['ms']['fused']:.1f}", f"{r['ms']['baseline']:.1f}",
                  f"{r['ratio']:.2f}", f"{r['audio_per_s']['fused']:.0f}", f"{r['audio_per_s']['baseline']:.0f}",
                  f"{r['peak_gb']['fused']:.2f}", f"{r['peak_gb']['baseline']:.2f}"]
                 for r in sections["throughput"]],
            )
        )  # fmt: skip
    if "profile" in sections:
        columns = sections["profile"]
        names = list(dict.fromkeys(name for row in columns.values() for name in row))
        names.remove("total")
        cells = [[name] + [f"{row[name]:.0f}" if name in row else "-" for row in columns.values()] for name in names]
        cells.append(["**total**"] + [f"**{row['total']:.0f}**" for row in columns.values()])
        parts.append(
            f"Per-stage profile, {' and '.join(args.profile_precisions)}, batch 1, {args.seconds:g} s, ms of the run "
            f"with the median total of {args.profile_repeats}, the models alternating "
            "(forward hooks, wall time; an enclosing stage counts only its own part; with the fast paths the sinc "
            "stage includes |.| and the max-pool, which it applies block by block):\n\n"
            + markdown_table(["stage", *columns], cells)
        )
    for roofline in sections.get("roofline", []):
        parts.append(roofline_report(roofline, sections["profile"]))
    if "engines" in sections:
        e = sections["engines"]
        rows = [[f"`{engine}`", f"{v['startup_s']:.1f}", f"{v['ms']:.0f}", f"{v['ratio']:.2f}", f"{v['cosine']:.6f}"]
                if "unavailable" not in v else [f"`{engine}`", f"not run: {v['unavailable']}", "-", "-", "-"]
                for engine, v in e.items() if engine != "baseline_ms"]  # fmt: skip
        parts.append(
            f"Engines (`--engine` in the CLI, `wavlmrawnet.engines.use_engine`), fused model, fp32, batch 1, "
            f"{args.seconds:g} s, {args.repeats} paired runs with {BASELINE} eager ({e['baseline_ms']:.0f} ms); "
            "start-up = preparation (export, session) + first call (compilation):\n\n"
            + markdown_table(["engine", "start-up s", "ms (median)", f"time / {BASELINE}",
                              "embedding cosine to eager"], rows)
        )  # fmt: skip
    return "\n\n".join(parts)


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
    parser.add_argument("--batch-size", type=int, default=8, help="clips in the padded mixed batch (0: skip it)")
    parser.add_argument("--batch-seconds", type=float, nargs=2, default=[2.0, 10.0], metavar=("MIN", "MAX"))
    parser.add_argument("--batch-repeats", type=int, default=2, help="timed runs of the batch per model")
    parser.add_argument(
        "--length-group-seconds", type=float, metavar="S",
        help="the fused model's CPU length groups for the padded batch (default: the model's, 1 s; 0: one call per "
        "distinct length)",
    )  # fmt: skip
    parser.add_argument("--bf16-repeats", type=int, default=3, help="timed bf16/fp32 runs per model (0: skip)")
    parser.add_argument("--profile-repeats", type=int, default=3, help="profiled runs per model (0: no profile)")
    parser.add_argument(
        "--profile-precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
        help="precisions of the per-stage profile (bf16: CPU autocast, as --dtype bf16 runs)",
    )  # fmt: skip
    parser.add_argument(
        "--engines", nargs="*", default=list(ENGINES), choices=ENGINES,
        help="engines to time (none: skip); torch-compile and onnxruntime take minutes to start at default size",
    )  # fmt: skip
    parser.add_argument(
        "--device", default="cpu",
        help="cpu or a CUDA device; on CUDA the per-stage profile, the engines and the RawNet breakdown (CPU-only "
        "sections) are skipped and the throughput section is added",
    )  # fmt: skip
    parser.add_argument(
        "--throughput-batches", type=int, nargs="*", default=[1, 16, 64], metavar="N",
        help="CUDA: batch sizes of the throughput and memory section (none: skip)",
    )  # fmt: skip
    parser.add_argument("--markdown-out", help="also write the table(s), with their caption, to this file")
    parser.add_argument("--rawnet-breakdown", action="store_true", help="also time each RawNet stage per row")
    parser.add_argument(
        "--glibc-default-malloc", action="store_true",
        help="leave glibc's malloc as it is (by default keep_freed_memory(), as the CLI runs: with glibc's default, "
        "the heap the fused model leaves behind slows the next baseline call in the same process)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.seconds <= 0 or args.repeats < 1 or args.threads < 1:
        parser.error("--seconds must be > 0, --repeats and --threads >= 1")
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            parser.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA GPU")
        if args.rawnet_breakdown:
            parser.error("--rawnet-breakdown times CPU kernels; leave it out with --device cuda")
        args.profile_repeats, args.engines = 0, []  # forward-hook wall times and the CPU engines: CPU only
    elif device.type != "cpu":
        parser.error(f"--device {args.device}: cpu or cuda[:N]")
    for spec in args.presets:  # fail before the slow part on a bad row
        try:
            preset, overrides = parse_row(spec)
            WavLMRawNetConfig.from_preset(preset, **overrides)
        except (ValueError, SyntaxError) as error:
            parser.error(f"bad --presets row {spec!r}: {error}")

    torch.set_num_threads(args.threads)
    malloc_note = "glibc malloc left as it is"
    if not args.glibc_default_malloc and keep_freed_memory():
        malloc_note = "glibc malloc keeping freed memory (`keep_freed_memory()`, as the CLI runs)"
    samples = round(args.seconds * SAMPLING_RATE)
    inputs = {
        "input_values": torch.randn(1, samples, generator=torch.Generator().manual_seed(0)).to(device),
        "attention_mask": torch.ones(1, samples, dtype=torch.long, device=device),
    }
    load_before = os.getloadavg()[0]
    results, baseline_times, sections = [], [], {}

    def other_sections(fused, baseline, result):
        """The batch, bf16, profile and engine sections, for the first row only."""
        if sections or fused.wavlm is None:
            return
        if args.batch_size:
            if args.length_group_seconds is not None:
                fused.length_group_seconds = args.length_group_seconds
            batch, audio_seconds = mixed_batch(args.batch_size, tuple(args.batch_seconds))
            batch = {key: value.to(device) for key, value in batch.items()}
            sections["batch"] = batch_section(fused, baseline, batch, args.batch_repeats)
            sections["batch"]["audio_seconds"] = audio_seconds
            sections["batch"]["length_group_seconds"] = fused.length_group_seconds
            print(f"measured the padded batch: ratio {sections['batch']['ratio']:.2f}", flush=True)
        if args.bf16_repeats:
            sections["bf16"] = bf16_section(fused, baseline, inputs, args.bf16_repeats)
            print(f"measured bf16: fused speed-up {sections['bf16']['fused_speedup']:.2f}", flush=True)
        if device.type == "cuda" and args.throughput_batches:
            sections["throughput"] = throughput_section(
                fused, baseline, args.throughput_batches, args.seconds, args.repeats
            )
        if args.profile_repeats:
            models = {"fused": (fused, fused, True), "fused, fast paths off": (fused, fused, False),
                      BASELINE: (baseline, fused, False)}  # fmt: skip
            sections["profile"], sections["roofline"] = {}, []
            for precision in args.profile_precisions:
                bf16 = precision == "bf16"
                probe = GemmProbe(samples, bf16)
                columns = profile_section(models, inputs, args.profile_repeats, bf16, probe)
                suffix = "" if precision == "fp32" else f" ({precision})"
                sections["profile"].update({column + suffix: row for column, row in columns.items()})
                sections["roofline"].append(roofline_section(models, inputs, sections["profile"], probe, bf16))
            print("measured the per-stage profile and its roofline", flush=True)
        if args.engines:
            sections["engines"] = engines_section(fused, baseline, inputs, args.repeats, args.engines)
            print("measured the engines", flush=True)

    for spec in args.presets:
        results.append(measure_row(spec, inputs, args.repeats, baseline_times, other_sections))
        print(f"measured {spec}: ratio {statistics.median(results[-1]['ratios']):.2f}", flush=True)
    baseline = results[0].pop("baseline")
    caption = (
        f"{machine_caption(device=device)}, {device.type.upper()}, fp32, batch 1, {args.seconds:g} s input, "
        f"{args.repeats} timed runs "
        f"per row after a warm-up, {malloc_note}, {load_note(load_before)}. "
        "GFLOPs per second of audio from FlopCounterMode (matmul, conv, attention only). "
        f"Target: fused time <= {TARGET_RATIO}x {BASELINE}. The fused rows' FLOPs are those of transformers' own "
        "computation (the fast paths do the same arithmetic, less the last WavLM layer's second feed-forward "
        "product on every frame, which they apply after the pooling: 0.42 GFLOPs per second of audio at Large size; "
        "and they compute the positional convolution, 0.84 GFLOPs per second of audio, by FFT)."
    )
    report = f"{caption}\n\n{main_table(results, baseline, baseline_times, args.seconds)}\n"
    if floor_report(results):
        report += f"\n{floor_report(results)}\n"
    if sections:
        report += f"\n{sections_report(sections, args)}\n"

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
