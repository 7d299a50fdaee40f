"""Paired timing, the base of every section of `bench_model`: models run alternately round by round (A, B, C, A,
B, C, ...) so that each ratio compares calls made at the same moment of a machine shared with other jobs; and the
targets the ratios are held to."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.common import timed_seconds
from wavlmrawnet import WavLMRawNetForXVector

TARGET_RATIO = 0.85  # fused (as shipped) / WavLMForXVector-Large, fp32, batch 1
BATCH_TARGET_RATIO = 1.0  # the same for the padded mixed batch
BF16_TARGET_SPEEDUP = 3.0  # fp32 time / bf16 time (the AMX target)
BF16_MAX_SCORE_CHANGE = 0.02


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
