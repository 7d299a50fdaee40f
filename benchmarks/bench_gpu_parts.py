"""Which fast paths pay on a GPU: WavLM's feature encoder (transformers' vs time-major) and the fused model with its
fast paths on, with transformers' attention swapped back in, without an attention mask, and off.

    python -m benchmarks.bench_gpu_parts [--batch-sizes 1 16] [--seconds 10] [--repeats 10] [--device cuda]

`default` preset, random weights, eval mode, `torch.inference_mode()`, fp32 and bf16 autocast; median ms of
`--repeats` synchronised calls after one warm-up. The time-major encoder is called directly (`time_major_forward`),
since the model runs it on CPUs only.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from transformers.models.wavlm.modeling_wavlm import WavLMFeatureEncoder

from benchmarks.common import machine_caption, markdown_table, timed_seconds
from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector
from wavlmrawnet.fast_wavlm import WavLMAttentionContiguousInput, WavLMFastAttention, WavLMFastFeatureEncoder

COLUMNS = ["encoder: transformers", "encoder: time-major", "fused: fast paths", "fast paths, transformers' attention",
           "fast paths, no attention mask", "fast paths off"]  # fmt: skip


def median_ms(fn, repeats: int) -> float:
    fn()
    return statistics.median(1000 * timed_seconds(fn) for _ in range(repeats))


def measure(model: WavLMRawNetForXVector, batch_size: int, samples: int, bf16: bool, repeats: int) -> list[float]:
    device = next(model.parameters()).device
    audio = torch.randn(batch_size, samples, device=device)
    mask = torch.ones(batch_size, samples, dtype=torch.long, device=device)
    encoder, layers = model.wavlm.feature_extractor, model.wavlm.encoder.layers

    def with_attention(cls, **inputs):
        for layer in layers:
            layer.attention.__class__ = cls
        try:
            return median_ms(lambda: model(audio, **inputs), repeats)
        finally:
            for layer in layers:
                layer.attention.__class__ = WavLMFastAttention

    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        model.set_fast_paths(True)
        row = [
            median_ms(lambda: WavLMFeatureEncoder.forward(encoder, audio), repeats),
            median_ms(lambda: WavLMFastFeatureEncoder.time_major_forward(encoder, audio), repeats),
            with_attention(WavLMFastAttention, attention_mask=mask),
            with_attention(WavLMAttentionContiguousInput, attention_mask=mask),
            with_attention(WavLMFastAttention),
        ]
        model.set_fast_paths(False)
        row.append(median_ms(lambda: model(audio, attention_mask=mask), repeats))
        model.set_fast_paths(True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"torch {torch.__version__} sees no CUDA GPU (pass --device cpu to run it on the CPU)")
    torch.manual_seed(0)
    model = WavLMRawNetForXVector(WavLMRawNetConfig.from_preset("default", num_labels=2)).to(device).eval()
    rows = []
    for batch_size in args.batch_sizes:
        for precision in ("fp32", "bf16"):
            times = measure(model, batch_size, round(args.seconds * 16000), precision == "bf16", args.repeats)
            rows.append([f"{batch_size}, {precision}", *(f"{value:.1f}" for value in times)])
            print(f"measured batch {batch_size}, {precision}", flush=True)
    print(
        f"\n{machine_caption(device=device)}. {args.seconds:g} s clips, median ms of {args.repeats} calls:\n\n"
        + markdown_table(["batch, precision", *COLUMNS], rows)
    )


if __name__ == "__main__":
    main()
