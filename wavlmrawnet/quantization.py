"""int8 inference on a CPU: dynamic quantisation of WavLM's linear layers and the fusion (`precision="int8"`).

`quantize_int8(model)` gives a `WavLMRawNetForXVector` torch's dynamic int8 linears (`torch.ao`; the oneDNN engine on
x86 CPUs, qnnpack on Arm: `precision.int8_engine`): each weight is quantised once, per output channel, and each
activation is quantised on the fly from its own range, so no calibration data is needed. The same is done for the
convolutions of WavLM's feature encoder after the first, which the fast layers compute as products over windows of
their input. The products run in int8 with int32 sums; everything else (the first convolution, the positional
convolution, attention scores, layer norms, the RawNet branch, the pooling) stays fp32. The embeddings change slightly,
which is why `auto` never picks int8: it is asked for (`--dtype int8`, `precision="int8"`), and the precision line and
the results say so.

This is the one place where int8 meets the fast paths (`fast_paths.py`): the fast layers keep their classes and call
any linear that is not a float `nn.Linear` through its own forward (`fast_wavlm.apply_linear`). With the fast paths
off, transformers' attention would read the float weights the quantised layers no longer have, so an int8 model keeps
its fast paths on (`set_fast_paths(False)` is refused), and it is for inference only (no `train()`, no saving: int8
is applied when a float model is loaded). Imports only torch (a remote-code sibling). Measurements:
docs/performance.md.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from .precision import int8_engine

# The float linears that become int8 (names relative to the model): WavLM's attention projections and feed-forward
# products, its feature projection, and the fusion. WavLM's position-bias gate (a 64 -> 8 product per head) stays
# fp32: it is tiny, and it gates every attention score.
INT8_LINEAR_SUFFIXES = (
    "attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.out_proj",
    "feed_forward.intermediate_dense", "feed_forward.output_dense", "feature_projection.projection",
)  # fmt: skip


def is_int8(model: nn.Module) -> bool:
    """Whether `model` has been given int8 linears by `quantize_int8`."""
    return bool(getattr(model, "int8", False))


def int8_linear_names(model: nn.Module) -> list[str]:
    """The names of the float linears of `model` that `quantize_int8` makes int8."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return [n for n in names if n == "fusion" or (n.startswith("wavlm.") and n.endswith(INT8_LINEAR_SUFFIXES))]


def int8_encoder_convs(model: nn.Module) -> list[nn.Conv1d]:
    """The convolutions of WavLM's feature encoder that `quantize_int8` gives an int8 twin: all but the first (its
    input is the one-channel waveform: ten products per frame, nothing for int8 to gain), where the encoder is the
    layer-norm kind that the fast layers compute as matrix products (`fast_wavlm.WavLMFastFeatureEncoder`)."""
    from transformers.models.wavlm.modeling_wavlm import WavLMLayerNormConvLayer

    encoder = getattr(getattr(model, "wavlm", None), "feature_extractor", None)
    layers = list(getattr(encoder, "conv_layers", []))
    if not layers or not all(type(layer) is WavLMLayerNormConvLayer for layer in layers):
        return []
    return [layer.conv for layer in layers if layer.conv.in_channels > 1]


def int8_windows_linear(conv: nn.Conv1d, qconfig) -> nn.Module:
    """`conv`'s kernel as a dynamic int8 linear over its windows (`WavLMFastFeatureEncoder.windows`, frame-major), the
    product `WavLMFastFeatureEncoder.time_major_conv` computes in fp32."""
    from .fast_wavlm import WavLMFastFeatureEncoder

    weight = WavLMFastFeatureEncoder.frame_major(conv.weight.detach())
    linear = nn.Linear(weight.shape[1], conv.out_channels, bias=conv.bias is not None)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if conv.bias is not None:
            linear.bias.copy_(conv.bias.detach())
    linear.qconfig = qconfig
    return torch.ao.nn.quantized.dynamic.Linear.from_float(linear)


def quantize_int8(model: nn.Module, inplace: bool = False, engine: str | None = None) -> nn.Module:
    """`model` (a `WavLMRawNetForXVector` on the CPU) with int8 dynamic linears (see the module docstring), in eval
    mode; a quantised copy unless `inplace`. A model already int8 is returned as it is. `engine` is torch's quantised
    engine whose kernels the int8 layers keep (default `precision.int8_engine()`; the benchmark compares them)."""
    if is_int8(model):
        return model
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("int8 runs on the CPU: load the model with --device cpu (on a GPU use bf16 or fp32)")
    engine = engine or int8_engine()
    supported = torch.backends.quantized.supported_engines
    if engine not in supported:
        raise ValueError(f"int8 engine {engine!r} is not in this torch build ({supported})")
    if not inplace:
        # Copied without the tensors inference derived from the weights (`cpu_kernels.inference_cache`).
        caches = {m: m.__dict__.pop("_inference_cache") for m in model.modules() if "_inference_cache" in m.__dict__}
        try:
            model = copy.deepcopy(model)
        finally:
            for module, cache in caches.items():
                module.__dict__["_inference_cache"] = cache
    model.eval()
    names = int8_linear_names(model)
    if not names:
        raise ValueError("the model has no WavLM branch or fusion linear to quantise")
    torch.backends.quantized.engine = engine
    qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    # The fast classes come off while torch.ao swaps the float linears (it maps exact `nn.Linear` types only), and go
    # back on after: from then on the fast layers call the int8 linears through `fast_wavlm.apply_linear`.
    model.set_fast_paths(False)
    with warnings.catch_warnings():
        # torch.ao's eager dynamic quantisation warns that it is to move to torchao; torchao's int8 CPU path needs
        # torch.compile (inductor), which is refused on AVX2 CPUs (engines.py). The API is the one torch 2.13 ships.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*quantize_per_(tensor|channel).*deprecated", category=UserWarning)
        torch.ao.quantization.quantize_dynamic(model, dict.fromkeys(names, qconfig), inplace=True)
        for conv in int8_encoder_convs(model):
            conv.int8_windows = int8_windows_linear(conv, qconfig)
    model.int8 = True
    model.set_fast_paths(True)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def int8_model(model: nn.Module) -> nn.Module:
    """The int8 twin of a float `model`, quantised once and kept on it while its weights do not change (an int8
    model is its own twin): what a pipeline or `embed_files` asked for `precision="int8"` runs, leaving the float
    model as it is."""
    if is_int8(model):
        return model
    from .cpu_kernels import inference_cache

    return inference_cache(model, "int8_model", lambda: quantize_int8(model))


def model_for_precision(model: nn.Module, precision_name: str) -> nn.Module:
    """The model to run for a resolved precision name: `int8_model(model)` for "int8", else `model` itself. An int8
    model asked for another precision is a clear error (its results are int8's, whatever the precision line said)."""
    if precision_name == "int8":
        return int8_model(model)
    if is_int8(model):
        raise ValueError(f"this model was quantised to int8; run it with precision int8, not {precision_name}")
    return model


__all__ = [
    "INT8_LINEAR_SUFFIXES",
    "int8_encoder_convs",
    "int8_linear_names",
    "int8_windows_linear",
    "int8_model",
    "is_int8",
    "model_for_precision",
    "quantize_int8",
]
