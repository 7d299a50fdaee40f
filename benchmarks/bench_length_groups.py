"""The CPU length groups of a padded batch (`WavLMRawNetForXVector.length_groups`): the fused model on one padded
batch with its groups (`length_group_seconds`, 1 s by default), in one call (no groups) and one call per distinct
length, timed alternately in paired rounds. Issue #14.

Each case is `MIN-MAX`: 8 clips (`--clips`) evenly spread over MIN to MAX seconds, zero-padded with a mask. Ratios
are medians of the per-round ratios to the one-call time (< 1: the groups pay).

    python -m benchmarks.bench_length_groups [--threads 2] [--rounds 5] [--cases 0.5-0.52 1-1.05 1-3 2-10] \
        [--preset default] [--markdown-out FILE]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics

import torch

from benchmarks.common import load_note, machine_caption, markdown_table, publish, timed_seconds
from benchmarks.model.sections import mixed_batch
from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector

RULES = {"groups": None, "one call": math.inf, "one call per length": 0.0}  # None: the model's default


def measure(model: WavLMRawNetForXVector, values: torch.Tensor, mask: torch.Tensor, rounds: int) -> dict:
    default = model.length_group_seconds
    times = {name: [] for name in RULES}
    with torch.inference_mode():
        for round_index in range(rounds + 1):  # round 0 warms up
            for name, rule in RULES.items():
                model.length_group_seconds = default if rule is None else rule
                elapsed = timed_seconds(lambda: model(values, attention_mask=mask))
                if round_index:
                    times[name].append(1000 * elapsed)
        model.length_group_seconds = default
        groups = model.length_groups(values, mask)
    one_call = times["one call"]
    return {
        "groups": [len(rows) for rows in groups] if groups is not None else [values.shape[0]],
        "ms": {name: statistics.median(values) for name, values in times.items()},
        "ratio": {name: statistics.median(a / b for a, b in zip(times[name], one_call)) for name in RULES},
        "spread": (
            min(a / b for a, b in zip(times["groups"], one_call)),
            max(a / b for a, b in zip(times["groups"], one_call)),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds per case, after one warm-up round")
    parser.add_argument("--clips", type=int, default=8, help="clips per padded batch")
    parser.add_argument("--cases", nargs="+", default=["0.5-0.52", "1-1.05", "1-3", "2-10"], metavar="MIN-MAX")
    parser.add_argument("--preset", default="default", help="the fused model's preset (random weights)")
    parser.add_argument("--markdown-out", help="also write the table, with its caption, to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = WavLMRawNetForXVector(WavLMRawNetConfig.from_preset(args.preset)).eval()
    load_before = os.getloadavg()[0]
    rows = []
    for case in args.cases:
        low, high = (float(part) for part in case.split("-"))
        batch, _ = mixed_batch(args.clips, (low, high))
        result = measure(model, batch["input_values"], batch["attention_mask"], args.rounds)
        ms, ratio = result["ms"], result["ratio"]
        rows.append(
            [f"{args.clips} clips of {low:g}-{high:g} s", "+".join(map(str, result["groups"])),
             f"{ms['groups']:.0f}", f"{ms['one call']:.0f}", f"{ms['one call per length']:.0f}",
             f"**{ratio['groups']:.2f}** ({result['spread'][0]:.2f}-{result['spread'][1]:.2f})",
             f"{ratio['one call per length']:.2f}"]
        )  # fmt: skip
        print(f"measured {case}: groups / one call {ratio['groups']:.2f}", flush=True)
    caption = (
        f"{machine_caption(args.threads)}, CPU, fp32, `{args.preset}` preset (random weights), eval mode, "
        f"{args.rounds} paired rounds per case after a warm-up, {load_note(load_before)}. Length groups span "
        f"{model.length_group_seconds:g} s (`length_group_seconds`). Median ms; ratios are medians of the per-round "
        "ratios to one call (range in brackets)."
    )
    header = ["padded batch", "clips per group", "groups ms", "one call ms", "one call per length ms",
              "groups / one call", "per length / one call"]  # fmt: skip
    publish(caption + "\n\n" + markdown_table(header, rows), args.markdown_out)


if __name__ == "__main__":
    main()
