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

This module is the command line and the order of the run; each section's code is a module of `benchmarks.model`
(`paired`, `rows`, `profiling`, `roofline`, `sections`, `rawnet`).
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch

from benchmarks.common import BASELINE, SAMPLING_RATE, load_note, machine_caption, markdown_table, publish
from benchmarks.model.paired import TARGET_RATIO
from benchmarks.model.profiling import profile_section
from benchmarks.model.rawnet import format_stage, rawnet_breakdown
from benchmarks.model.roofline import GemmProbe, floor_report, roofline_section
from benchmarks.model.rows import main_table, measure_row, parse_row
from benchmarks.model.sections import (
    batch_section,
    bf16_section,
    engines_section,
    mixed_batch,
    sections_report,
    throughput_section,
)
from wavlmrawnet import WavLMRawNetConfig
from wavlmrawnet.cpu_malloc import keep_freed_memory
from wavlmrawnet.engines import ENGINES

DEFAULT_ROWS = ["default"]


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
