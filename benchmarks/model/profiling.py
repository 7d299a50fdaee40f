"""The per-stage profile of `bench_model`: forward hooks (and the RawNet stages' time-major entry points, the
public methods of the `Fast*` classes through which eval-mode inference enters them) sum each stage's wall time, or
any other clock, such as the FLOP counter's."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch

from benchmarks.model.paired import timed_ms
from wavlmrawnet import WavLMRawNetForXVector
from wavlmrawnet.fast_rawnet import (
    FastAttentiveStatisticsPooling,
    FastMaskedBatchNorm1d,
    FastResidualBlock,
    FastSincConv,
)


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
    FastMaskedBatchNorm1d: FastMaskedBatchNorm1d.time_major.__name__,
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
    models: dict, inputs: dict, repeats: int, bf16: bool = False, probe: Callable[[], object] | None = None
) -> dict[str, dict[str, float]]:
    """{column: (model, fused, fast_paths)} -> {column: {stage: ms}} from forward hooks; under CPU bf16
    autocast if `bf16`. The columns run alternately, round by round after a warm-up round, each run preceded by a
    call of `probe` (a `roofline.GemmProbe`: the GEMM rate of that moment) if one is given; each column's row is its
    run with the median total."""
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
