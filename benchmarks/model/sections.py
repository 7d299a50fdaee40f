"""The sections of `bench_model` after the main table, measured on its first row: the padded mixed-length batch
(with and without the CPU length groups), bf16 autocast against fp32, CUDA throughput and memory, the inference
engines; and their report."""

from __future__ import annotations

import contextlib
import copy
import math
import statistics
import time

import torch
import torch.nn.functional as F

from benchmarks.common import BASELINE, SAMPLING_RATE, markdown_table
from benchmarks.model.paired import (
    BATCH_TARGET_RATIO,
    BF16_MAX_SCORE_CHANGE,
    BF16_TARGET_SPEEDUP,
    embeddings_cosine,
    paired_ms,
    ratios,
    timed_ms,
)
from benchmarks.model.roofline import GemmProbe, roofline_report
from wavlmrawnet import WavLMRawNetForXVector
from wavlmrawnet.engines import use_engine


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
