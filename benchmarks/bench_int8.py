"""int8 against fp32 on the CPU (issue #31), in one run: the fused model's int8 twin (`precision="int8"`,
`wavlmrawnet.quantization`) timed in pairs with the same model in fp32 and transformers' WavLMForXVector-Large fp32,
at batch 1 on each thread count; onnxruntime's `quantize_dynamic` int8 through the onnxruntime engine beside it
(`--onnxruntime`); the real-time factors beside WeSpeaker's published ones (theirs, labelled so); where the int8
time goes (torch's profiler, by operator); the ceiling: one product alone, int8 against fp32 (`--kernel-threads`);
and the accuracy checks on a trained model (`--model`): embedding cosine to fp32, EER, and the same/different
decisions that int8 changes.

    python -m benchmarks.bench_int8 [--preset default] [--seconds 10] [--threads 1 2] [--repeats 5] [--onnxruntime] \
        [--profile-threads 1] [--kernel-threads 1] \
        [--model demo_output/run/final --trials demo_output/corpus/test/veri_test2.txt \
         --root demo_output/corpus/test/wav] [--markdown-out table.md]

Speed uses random weights at preset size (the default preset: WavLM-Large + RawNet2.5); models run alternately
round by round (`benchmarks.model.paired`), and each ratio is the median of the per-round ratios. The cosine of the
speed section is int8 against fp32 on the same random model and input (random weights, so it shows the
quantisation error's size, not what it does to a trained model's decisions: the accuracy section does that).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import (
    BASELINE,
    SAMPLING_RATE,
    baseline_wavlm_config,
    load_note,
    machine_caption,
    markdown_table,
    publish,
)
from benchmarks.model.paired import paired_ms, ratios, timed_ms
from benchmarks.model.rows import build_baseline, build_fused
from wavlmrawnet.cpu_malloc import keep_freed_memory
from wavlmrawnet.precision import int8_description, int8_engine
from wavlmrawnet.quantization import quantize_int8

TARGET_SPEEDUP = 2.0  # int8 against our fp32 and against WavLMForXVector-Large fp32, batch 1
TARGET_COSINE = 0.99
TARGET_EER_POINTS = 0.5
TARGET_DECISIONS_KEPT = 0.99
# WeSpeaker's published real-time factors, ONNX Runtime on one CPU thread (theirs, not measured here).
WESPEAKER_RTF = {"WeSpeaker ECAPA-TDNN-512 (theirs)": 0.018, "WeSpeaker ResNet34 (theirs)": 0.061}


def onnxruntime_int8(model, threads: int):
    """A copy of `model` running onnxruntime's dynamic int8 of its ONNX export on `threads` threads: the onnxruntime
    engine's int8 (`--engine onnxruntime --dtype int8`; the graph cache exports it once for all thread counts)."""
    from wavlmrawnet.engines import use_engine

    engine_model = copy.deepcopy(model)
    use_engine(engine_model, "onnxruntime", threads=threads, int8=True)
    return engine_model


# WavLM-Large's product shapes at 10 s (500 frames): q/k/v/out, the feed-forward's two, and the widest convolution of
# the feature encoder as a product over its windows (16,000 frames x 3 x 512 taps -> 512)
KERNEL_SHAPES = ((500, 1024, 1024), (500, 1024, 4096), (500, 4096, 1024), (16000, 1536, 512))


def kernel_section(threads: int, repeats: int, onnxruntime: bool, engines: list[str]) -> str:
    """The ceiling int8 can reach here: one product alone, int8 against fp32, at WavLM-Large's shapes. fp32 is the
    kernel the fp32 model runs (`cpu_kernels.inference_linear`, oneDNN); int8 is torch.ao's dynamic linear on each
    of `engines` (the first is `int8_engine()`, what `precision="int8"` runs), and with `--onnxruntime`
    onnxruntime's MatMul against its `quantize_dynamic` int8 (MLAS)."""
    from torch import nn

    from wavlmrawnet.cpu_kernels import inference_linear

    torch.set_num_threads(threads)
    rows = []
    for m, k, n in KERNEL_SHAPES:
        linear = nn.Linear(k, n)
        linear.qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        x = torch.randn(1, m, k)
        runs = {"fp32": lambda: inference_linear(x, linear.weight, linear.bias)}
        for engine in engines:  # the packed weights keep their engine's kernels
            torch.backends.quantized.engine = engine
            quantised = torch.ao.nn.quantized.dynamic.Linear.from_float(linear)
            runs[int8_label(engine)] = lambda q=quantised: q(x)
        if onnxruntime:
            runs.update(onnx_matmuls(linear, x[0].numpy(), threads))
        with torch.inference_mode():
            times = {name: [] for name in runs}
            for round_index in range(repeats + 1):  # round 0 warms up
                for name, run in runs.items():
                    elapsed = timed_ms(run)
                    if round_index:
                        times[name].append(elapsed)
        ms = {name: statistics.median(v) for name, v in times.items()}
        cells = [f"{m} × {k} → {n}", *(f"{ms[name]:.1f}" for name in runs)]
        cells += [f"{ms['fp32'] / ms[int8_label(engine)]:.2f}×" for engine in engines]
        if onnxruntime:
            cells.append(f"{ms['onnxruntime fp32'] / ms['onnxruntime int8']:.2f}×")
        rows.append(cells)
    header = ["product (rows × in → out)", *(f"{name} ms" for name in runs)]
    header += [f"torch.ao {int8_label(engine)} speed-up" for engine in engines]
    if onnxruntime:
        header.append("onnxruntime int8 speed-up")
    return markdown_table(header, rows)


def int8_label(engine: str) -> str:
    """The row name of torch.ao int8 on `engine`: "int8" for the engine `precision="int8"` runs."""
    return "int8" if engine == int8_engine() else f"int8 ({engine} engine)"


def onnx_matmuls(linear, x: np.ndarray, threads: int) -> dict:
    """onnxruntime sessions of `x @ W^T + b` in fp32 and as `quantize_dynamic` makes it (per-channel int8 weights)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weight = numpy_helper.from_array(linear.weight.detach().numpy().T.copy(), "W")
    bias = numpy_helper.from_array(linear.bias.detach().numpy(), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["XW"]), helper.make_node("Add", ["XW", "B"], ["Y"])], "product",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [x.shape[0], weight.dims[1]])], [weight, bias],
    )  # fmt: skip
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory(prefix="bench-int8-kernel-") as name:  # the sessions hold the graphs
        folder = Path(name)
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "fp32.onnx")
        quantize_dynamic(folder / "fp32.onnx", folder / "int8.onnx", per_channel=True, weight_type=QuantType.QInt8)
        providers = ["CPUExecutionProvider"]
        sessions = {
            kind: ort.InferenceSession(str(folder / f"{kind}.onnx"), options, providers=providers)
            for kind in ("fp32", "int8")
        }
    return {f"onnxruntime {name}": (lambda s=session: s.run(None, {"X": x})) for name, session in sessions.items()}


def speed_section(args, fused, baseline, int8s: dict, inputs) -> list[dict]:
    """Per thread count: paired ms of int8 (one twin per engine: `int8s`, {row name: model}, "int8" first), fp32 and
    the baseline (and onnxruntime int8), the ratios, the RTFs."""
    int8 = int8s["int8"]
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        runs = {"baseline": (baseline, fused, False), "fp32": (fused, fused, True)}
        runs.update({name: (model, fused, None) for name, model in int8s.items()})
        if args.onnxruntime:
            runs["onnxruntime int8"] = (onnxruntime_int8(fused, threads), fused, None)
        times = paired_ms(runs, inputs, args.repeats)
        with torch.inference_mode():
            cosine = float(F.cosine_similarity(fused(**inputs).embeddings, int8(**inputs).embeddings).min())
        row = {"threads": threads, "cosine": cosine, "ms": {k: statistics.median(v) for k, v in times.items()}}
        for name in runs:
            if name != "baseline":
                row[f"{name} vs fp32"] = statistics.median(ratios(times["fp32"], times[name]))
                row[f"{name} vs baseline"] = statistics.median(ratios(times["baseline"], times[name]))
        rows.append(row)
    return rows


def speed_report(rows: list[dict], seconds: float) -> str:
    names = [name for name in rows[0]["ms"] if name != "baseline"]
    header = ["threads", f"{BASELINE} fp32 ms", *(f"{n} ms" for n in names)]
    header += [f"{n}: speed-up vs fp32 / vs {BASELINE}" for n in names if n != "fp32"]
    header += [f"meets >= {TARGET_SPEEDUP}x both", f"cosine int8 vs fp32 (min, >= {TARGET_COSINE})"]
    table = []
    for r in rows:
        cells = [str(r["threads"]), f"{r['ms']['baseline']:.0f}", *(f"{r['ms'][n]:.0f}" for n in names)]
        cells += [f"{r[f'{n} vs fp32']:.2f}× / {r[f'{n} vs baseline']:.2f}×" for n in names if n != "fp32"]
        met = min(r["int8 vs fp32"], r["int8 vs baseline"]) >= TARGET_SPEEDUP
        cells += ["yes" if met else "**no**", f"{r['cosine']:.5f}"]
        table.append(cells)
    rtf_rows = []
    for r in rows:
        for name in ["int8", "fp32", "baseline", *(n for n in names if n not in ("int8", "fp32"))]:
            label = f"{BASELINE} fp32" if name == "baseline" else f"ours {name}"
            rtf_rows.append([label, str(r["threads"]), f"{r['ms'][name] / 1000 / seconds:.3f}", "measured here"])
    rtf_rows += [[name, "1", f"{rtf:.3f}", "published by WeSpeaker, not measured here"] for name, rtf in
                 WESPEAKER_RTF.items()]  # fmt: skip
    rtf = markdown_table(["model", "threads", f"real-time factor ({seconds:g} s, batch 1)", "source"], rtf_rows)
    return f"{markdown_table(header, table)}\n\nReal-time factor (seconds of compute per second of audio):\n\n{rtf}"


def profile_report(int8, inputs, threads: int, top: int = 10) -> str:
    """Where one int8 forward spends its time: torch's profiler, self CPU time by operator."""
    torch.set_num_threads(threads)
    with torch.inference_mode():
        int8(**inputs)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
            int8(**inputs)
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    rows = [[f"`{e.key}`", f"{e.self_cpu_time_total / 1000:.0f}", f"{100 * e.self_cpu_time_total / total:.1f}"]
            for e in events[:top]]  # fmt: skip
    return markdown_table(["operator", "self ms", "share %"], rows)


def accuracy_section(args) -> list[dict]:
    """fp32 and int8 embeddings of every trial file of a trained model: cosine, EER, changed decisions; one entry per
    int8 implementation (torch.ao's, and onnxruntime's with `--onnxruntime`)."""
    from wavlmrawnet import WavLMRawNetFeatureExtractor, WavLMRawNetForXVector
    from wavlmrawnet.engines import use_engine
    from wavlmrawnet.evaluation.embedding import embed_files
    from wavlmrawnet.evaluation.error_rates import compute_eer
    from wavlmrawnet.evaluation.scoring import cosine_scores
    from wavlmrawnet.evaluation.trials import read_trials, unique_paths

    torch.set_num_threads(max(args.threads))
    model = WavLMRawNetForXVector.from_pretrained(args.model).eval()
    extractor = WavLMRawNetFeatureExtractor.from_pretrained(args.model)
    trials = read_trials(args.trials, root=args.root)
    labels = np.array([t.label for t in trials])
    paths = unique_paths(trials)
    runs = {"fp32": (model, "fp32"), "int8": (model, "int8")}
    if args.onnxruntime:
        onnx_model = WavLMRawNetForXVector.from_pretrained(args.model).eval()
        use_engine(onnx_model, "onnxruntime", int8=True)
        runs["onnxruntime int8"] = (onnx_model, "int8")
    found = {}
    for name, (runner, precision) in runs.items():
        embedded = embed_files(runner, extractor, paths, batch_size=8, precision=precision, distributed=False)
        if embedded.failures:
            raise RuntimeError(f"{name}: {len(embedded.failures)} file(s) failed: {embedded.failures}")
        scores = cosine_scores(trials, embedded.embeddings)
        eer, threshold = compute_eer(scores, labels)
        found[name] = {"embeddings": embedded.embeddings, "scores": scores, "eer": eer, "threshold": threshold}
    fp32 = found.pop("fp32")
    # the same/different decisions before and after int8: at the model's own threshold (what `verify` decides) and
    # at fp32's EER threshold
    thresholds = {"the model's verification_threshold": float(model.config.verification_threshold),
                  "fp32's EER threshold": fp32["threshold"]}  # fmt: skip
    results = []
    for name, int8 in found.items():
        cosines = [float(np.dot(fp32["embeddings"][p], int8["embeddings"][p])) for p in paths]
        kept = {key: float(np.mean((fp32["scores"] >= t) == (int8["scores"] >= t))) for key, t in thresholds.items()}
        results.append({
            "implementation": name, "model": args.model, "files": len(paths), "trials": len(trials),
            "cosine_mean": float(np.mean(cosines)), "cosine_min": float(np.min(cosines)),
            "eer_fp32": 100 * fp32["eer"], "eer_int8": 100 * int8["eer"], "decisions_kept": kept,
            "thresholds": thresholds, "score_change_max": float(np.max(np.abs(fp32["scores"] - int8["scores"]))),
        })  # fmt: skip
    return results


def accuracy_report(a: dict) -> str:
    points = a["eer_int8"] - a["eer_fp32"]
    rows = [
        ["mean embedding cosine int8 vs fp32", f"{a['cosine_mean']:.5f} (min {a['cosine_min']:.5f})",
         f">= {TARGET_COSINE}", "yes" if a["cosine_mean"] >= TARGET_COSINE else "**no**"],
        ["EER fp32 → int8 (%)", f"{a['eer_fp32']:.2f} → {a['eer_int8']:.2f} ({points:+.2f} points)",
         f"within {TARGET_EER_POINTS} points", "yes" if abs(points) <= TARGET_EER_POINTS else "**no**"],
        *([f"same/different decisions unchanged, at {name} {a['thresholds'][name]:.4f}", f"{100 * kept:.2f} %",
           f">= {100 * TARGET_DECISIONS_KEPT:.0f} %", "yes" if kept >= TARGET_DECISIONS_KEPT else "**no**"]
          for name, kept in a["decisions_kept"].items()),
        ["largest score change", f"{a['score_change_max']:.4f}", "-", "-"],
    ]  # fmt: skip
    caption = f"{a['implementation']}, `{a['model']}`: {a['files']} files, {a['trials']} trials"
    return f"{caption}\n\n{markdown_table(['check', 'measured', 'target', 'met'], rows)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", help="fused model size for the speed rows (random weights)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5, help="paired timed rounds per thread count")
    parser.add_argument(
        "--onnxruntime", action="store_true", help="also onnxruntime's quantize_dynamic int8 (speed and accuracy)"
    )
    parser.add_argument("--profile-threads", type=int, default=0, help="profile int8 on this many threads (0: no)")
    parser.add_argument(
        "--kernel-threads",
        type=int,
        default=0,
        help="time one int8 and fp32 product alone on this many threads (0: no)",
    )
    parser.add_argument(
        "--int8-engines", nargs="*", default=[], choices=torch.backends.quantized.supported_engines, metavar="ENGINE",
        help=f"also time torch.ao int8 on these quantised engines (speed and one-product rows; default: only "
        f"{int8_engine()}, what precision int8 runs; the engines' int8 arithmetic is the same)",
    )  # fmt: skip
    parser.add_argument("--model", help="a trained model folder for the accuracy checks (e.g. the make demo model)")
    parser.add_argument("--trials", help="its trial list")
    parser.add_argument("--root", help="the folder the trial list's paths are relative to")
    parser.add_argument("--markdown-out")
    args = parser.parse_args()
    if args.model and not args.trials:
        parser.error("--model needs --trials")
    keep_freed_memory()
    load_before = os.getloadavg()[0]
    engines = [int8_engine(), *(e for e in dict.fromkeys(args.int8_engines) if e != int8_engine())]
    sections = [f"int8: {int8_description()}. Machine: {machine_caption(max(args.threads))}."]
    if args.repeats > 0:
        torch.manual_seed(0)
        fused = build_fused(args.preset, torch.device("cpu"))
        baseline = build_baseline(baseline_wavlm_config(), fused.wavlm, torch.device("cpu"))
        int8s = {int8_label(e): quantize_int8(copy.deepcopy(fused), inplace=True, engine=e) for e in engines}
        waveform = torch.randn(1, int(args.seconds * SAMPLING_RATE))
        inputs = {"input_values": waveform, "attention_mask": torch.ones_like(waveform, dtype=torch.long)}
        rows = speed_section(args, fused, baseline, int8s, inputs)
        sections.append(
            f"## `{args.preset}` at {args.seconds:g} s, batch 1 (random weights; {args.repeats} paired rounds)\n\n"
            + speed_report(rows, args.seconds)
        )
        if args.profile_threads:
            sections.append(
                f"## Where int8 time goes ({args.profile_threads} threads, one forward)\n\n"
                + profile_report(int8s["int8"], inputs, args.profile_threads)
            )
        fused = baseline = int8s = None
    if args.kernel_threads:
        sections.append(
            f"## One product alone: int8 against fp32 ({args.kernel_threads} threads, median of "
            f"{max(args.repeats, 5)} rounds)\n\n"
            + kernel_section(args.kernel_threads, max(args.repeats, 5), args.onnxruntime, engines)
        )
    if args.model:
        reports = [accuracy_report(result) for result in accuracy_section(args)]
        sections.append("## Accuracy of int8 on a trained model\n\n" + "\n\n".join(reports))
    sections.append(load_note(load_before))
    publish("\n\n".join(sections) + "\n", args.markdown_out)


if __name__ == "__main__":
    main()
