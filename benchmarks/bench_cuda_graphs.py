"""CUDA graphs for fixed-length batches (issue #31, part 3): the fused model's forward captured once per input shape
and replayed, against the same model eager (with and without an attention mask) and against transformers'
WavLMForXVector-Large, eager and captured.

    python -m benchmarks.bench_cuda_graphs [--preset default] [--seconds 10 3] [--batch-sizes 1 64] \
        [--dtypes fp32 bf16] [--repeats 20] [--device cuda] [--markdown-out table.md]

A call without an attention mask reads nothing back from the device (`tests/test_modeling.py::
test_an_unpadded_batch_reads_nothing_back_from_the_device`), which is what lets torch capture it: a graph replays one
input shape, so it serves batches of clips of one length (cropped verification trials, diarization windows). The
target: the fused model at batch 1 at most 0.9x WavLMForXVector-Large's time. Each graph is captured after warm-up
calls on a side stream (`torch.cuda.graph`); replaying it copies the input into the captured buffer. Models run
alternately round by round; ratios are medians of per-round ratios; the cosine compares the replayed embeddings
with eager ones. Random weights, eval mode, `torch.inference_mode()`, bf16 as autocast.

`--device cpu` runs the eager rows only (a check of the script where no GPU is lent; CUDA graphs need CUDA).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics

import torch
import torch.nn.functional as F

from benchmarks.common import SAMPLING_RATE, baseline_wavlm_config, load_note, machine_caption, markdown_table, publish
from benchmarks.model.paired import ratios, timed_ms
from benchmarks.model.rows import build_baseline, build_fused

TARGET_BATCH1_RATIO = 0.9  # fused, captured, batch 1 / WavLMForXVector-Large


def autocast_for(device: torch.device, dtype: str):
    return torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()


def eager(model, dtype: str, mask: bool):
    """`model(values).embeddings` called as written, with an all-ones attention mask where `mask`."""
    device = next(model.parameters()).device

    def run(values: torch.Tensor) -> torch.Tensor:
        kwargs = {"attention_mask": torch.ones_like(values, dtype=torch.long)} if mask else {}
        with torch.inference_mode(), autocast_for(device, dtype):
            return model(values, **kwargs).embeddings

    return run


def captured(model, example: torch.Tensor, dtype: str, warmup: int = 3):
    """`model(values).embeddings` for inputs shaped like `example`, as a CUDA graph: warm-up calls on a side stream
    (they build the model's cached tensors), one captured call, then each call copies its input into the captured
    buffer and replays. The returned embeddings are the graph's output buffer, overwritten by the next replay."""
    static_input = example.clone()
    autocast = autocast_for(example.device, dtype)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode(), autocast:
        for _ in range(warmup):
            model(static_input)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), autocast, torch.cuda.graph(graph):
        static_output = model(static_input).embeddings

    def run(values: torch.Tensor) -> torch.Tensor:
        static_input.copy_(values)
        graph.replay()
        return static_output

    return run


def measure(fused, baseline, batch_size: int, seconds: float, dtype: str, repeats: int) -> dict:
    """One shape and precision: median ms per way of running, the ratios to WavLMForXVector-Large, and each
    captured graph's embedding cosine to its eager model (or why it could not be captured)."""
    device = next(fused.parameters()).device
    values = torch.randn(batch_size, round(seconds * SAMPLING_RATE), generator=torch.Generator().manual_seed(5))
    values = values.to(device)
    runs = {
        "fused, mask": eager(fused, dtype, mask=True),
        "fused": eager(fused, dtype, mask=False),
        "Large": eager(baseline, dtype, mask=False),
    }
    notes = {}
    if device.type == "cuda":
        for name, model in (("fused, graph", fused), ("Large, graph", baseline)):
            try:
                runs[name] = captured(model, values, dtype)
            except Exception as error:  # torch raises several types for an uncapturable forward: say which
                notes[name] = f"not captured: {type(error).__name__}: {str(error).splitlines()[0][:160]}"
                torch.cuda.synchronize()
        for name, eager_name in (("fused, graph", "fused"), ("Large, graph", "Large")):
            if name in runs:
                with torch.inference_mode():
                    cosine = F.cosine_similarity(runs[name](values).float(), runs[eager_name](values).float())
                notes[name] = f"cosine to eager {float(cosine.min()):.6f}"
    times = {name: [] for name in runs}
    for round_index in range(repeats + 1):  # round 0 warms up
        for name, run in runs.items():
            elapsed = timed_ms(lambda run=run: run(values))
            if round_index:
                times[name].append(elapsed)
    row = {"batch_size": batch_size, "seconds": seconds, "dtype": dtype, "notes": notes}
    row["ms"] = {name: statistics.median(t) for name, t in times.items()}
    row["vs Large"] = {name: statistics.median(ratios(t, times["Large"])) for name, t in times.items()}
    if "Large, graph" in times:
        row["vs Large, graph"] = {
            name: statistics.median(ratios(times[name], times["Large, graph"])) for name in ("fused", "fused, graph")
            if name in times
        }  # fmt: skip
    return row


def report(rows: list[dict]) -> str:
    names = ["fused, mask", "fused", "fused, graph", "Large", "Large, graph"]
    header = ["batch × seconds", "precision", *(f"{n} ms" for n in names), "fused / Large (eager)",
              "fused graph / Large (eager)", "fused graph / Large graph",
              f"batch 1 meets <= {TARGET_BATCH1_RATIO}"]  # fmt: skip
    table = []
    for r in rows:
        ms, vs = r["ms"], r["vs Large"]
        best = vs.get("fused, graph", vs["fused"])
        met = "-" if r["batch_size"] != 1 else ("yes" if best <= TARGET_BATCH1_RATIO else "**no**")
        table.append([
            f"{r['batch_size']} × {r['seconds']:g} s", r["dtype"],
            *(f"{ms[n]:.1f}" if n in ms else "-" for n in names),
            f"{vs['fused']:.2f}", f"{vs['fused, graph']:.2f}" if "fused, graph" in vs else "-",
            f"{r['vs Large, graph']['fused, graph']:.2f}" if "fused, graph" in r.get("vs Large, graph", {}) else "-",
            met,
        ])  # fmt: skip
    notes = [f"- {r['batch_size']} × {r['seconds']:g} s, {r['dtype']}, {name}: {note}" for r in rows
             for name, note in r["notes"].items()]  # fmt: skip
    return markdown_table(header, table) + ("\n\n" + "\n".join(notes) if notes else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", help="fused model size (random weights)")
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 3.0], help="clip lengths (one graph each)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds per shape, after one warm-up round")
    parser.add_argument("--device", default="cuda", help="cuda (graphs) or cpu (the eager rows only)")
    parser.add_argument("--markdown-out")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device here (CUDA graphs need one; --device cpu runs the eager rows only)")
    load_before = os.getloadavg()[0]
    torch.manual_seed(0)
    fused = build_fused(args.preset, device)
    baseline = build_baseline(baseline_wavlm_config(), None, device)  # its own WavLM: no class switching per call
    rows = []
    for seconds in args.seconds:
        for batch_size in args.batch_sizes:
            for dtype in args.dtypes:
                rows.append(measure(fused, baseline, batch_size, seconds, dtype, args.repeats))
                print(f"measured {batch_size} x {seconds:g} s {dtype}: {rows[-1]['ms']}", flush=True)
    caption = (
        f"CUDA graphs against eager, `{args.preset}` fused model and WavLMForXVector-Large (random weights), "
        f"{args.repeats} paired rounds, median ms. Machine: {machine_caption(device=device)}."
    )
    publish(f"{caption}\n\n{report(rows)}\n\n{load_note(load_before)}\n", args.markdown_out)


if __name__ == "__main__":
    main()
