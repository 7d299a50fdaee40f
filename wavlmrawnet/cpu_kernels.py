"""CPU inference kernels for the fast paths (`fast_rawnet.py`, `fast_wavlm.py`): which kernels this machine and this
call may use, oneDNN's linear products, tensors derived from the weights kept between calls, and the layout helpers
of the time-major computation. Nothing here is part of the network's definition (`layers.py`); every function computes
what a plain torch expression would, faster on a CPU. Measurements behind each choice: docs/performance.md.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn


def tracing() -> bool:
    """Whether torch.compile or the ONNX exporter is tracing (they pick their own kernels, and a traced graph has no
    data-dependent branch)."""
    return torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()


def inference_kernels_apply(x: torch.Tensor) -> bool:
    """Whether an inference-only CPU kernel may replace the autograd-able computation for input `x`: no gradient is
    recorded, and neither torch.compile nor the ONNX exporter is tracing (they pick their own kernels)."""
    return x.device.type == "cpu" and not torch.is_grad_enabled() and not tracing()


def inference_cache(module: nn.Module, name: str, build, *extra_key):
    """`build()`, kept on `module` while its parameters keep their storage and version and `extra_key` is the same:
    tensors derived from the weights (filter banks, normalised kernels) are built once for inference."""
    try:
        key = (*((p.data_ptr(), p._version) for p in module.parameters()), *extra_key)
    except RuntimeError:  # parameters made under torch.inference_mode() have no version counter
        return build()
    cache = module.__dict__.setdefault("_inference_cache", {})
    if name not in cache or cache[name][0] != key:
        cache[name] = (key, build())
    return cache[name][1]


def _onednn_linear_available() -> bool:
    """Whether this torch build has oneDNN's linear kernel (x86 and most Arm builds do)."""
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


ONEDNN_LINEAR = _onednn_linear_available()


def onednn_linear_applies(x: torch.Tensor) -> bool:
    """Whether oneDNN's fp32 linear kernels may compute a linear layer of input `x` (see `inference_linear`)."""
    return (
        ONEDNN_LINEAR
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")  # autocast would run F.linear in bf16
        and inference_kernels_apply(x)
    )


def _onednn_bf16_available() -> bool:
    """Whether oneDNN computes bf16 natively here (AMX or AVX512-BF16 code, not capped by ONEDNN_MAX_CPU_ISA)."""
    try:
        return ONEDNN_LINEAR and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


ONEDNN_BF16_LINEAR = _onednn_bf16_available()


def bf16_autocast_inference(x: torch.Tensor) -> bool:
    """Whether `x` enters a linear layer under CPU bf16 autocast in inference (see `linear_weights`)."""
    return (
        torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and inference_kernels_apply(x)
    )


def linear_weights(layer: nn.Linear, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`layer`'s weight and bias for input `x`. Under CPU bf16 autocast in inference: bf16 copies, built once while
    the weights do not change. Autocast would otherwise cast every fp32 weight in every forward; the copies cost half
    the linear weights' memory while bf16 inference runs (`WavLMRawNetForXVector.train()` drops them)."""
    if not bf16_autocast_inference(x):
        return layer.weight, layer.bias

    def build():
        bias = None if layer.bias is None else layer.bias.detach().to(torch.bfloat16)
        return layer.weight.detach().to(torch.bfloat16), bias

    return inference_cache(layer, "bf16_weights", build)


def onednn_bf16_linear_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether oneDNN's bf16 linear may compute the product of `x` with a bf16 `weight` (from `linear_weights`)."""
    return ONEDNN_BF16_LINEAR and weight.dtype == torch.bfloat16 and bf16_autocast_inference(x)


def inference_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`F.linear`, through oneDNN's kernels for CPU inference.

    fp32: torch's `F.linear` calls MKL's sgemm, slower than oneDNN's kernel on AMD CPUs. bf16 weights under CPU bf16
    autocast (`linear_weights`): oneDNN's bf16 kernel, faster than torch's bf16 `F.linear`. oneDNN's kernels have no
    backward, so they are used only where no gradient is recorded, and not while torch.compile or the ONNX exporter
    traces (they pick their own kernels).
    """
    if onednn_linear_applies(x):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    if onednn_bf16_linear_applies(x, weight):
        return torch.ops.mkldnn._linear_pointwise(x.to(weight.dtype), weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def inference_linear_add(x: torch.Tensor, weight: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """`F.linear(x, weight) + other`; for CPU inference (see `inference_linear`) the sum is oneDNN's post-op (no extra
    pass)."""
    if other.dtype == torch.float32 and onednn_linear_applies(x):
        return torch.ops.mkldnn._linear_pointwise.binary(x, other, weight, None, "add")
    if other.dtype == weight.dtype and onednn_bf16_linear_applies(x, weight):
        return torch.ops.mkldnn._linear_pointwise.binary(x.to(weight.dtype), other, weight, None, "add")
    return F.linear(x, weight) + other


def _onednn_runs_avx512() -> bool:
    """Whether oneDNN's CPU kernels run AVX-512 code here: ATen's kernel level (which follows the CPU and
    `ATEN_CPU_CAPABILITY`) is AVX-512, and `ONEDNN_MAX_CPU_ISA` / `DNNL_MAX_CPU_ISA` do not cap oneDNN lower."""
    isa = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").upper()
    uncapped = isa == "ALL" or isa.startswith(("AVX512", "AVX10"))
    return uncapped and torch.backends.cpu.get_cpu_capability().startswith("AVX512")


# oneDNN's GELU post-op pays only in AVX-512 code; in AVX2 code a separate in-place GELU is faster.
ONEDNN_GELU_POST_OP = _onednn_runs_avx512()


def inference_linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`F.gelu(F.linear(x, weight, bias))` (exact, erf GELU). For CPU inference the linear is oneDNN's (see
    `inference_linear`), with GELU as its post-op in bf16 and where that pays in fp32 (`ONEDNN_GELU_POST_OP`), else
    applied in place."""
    if onednn_bf16_linear_applies(x, weight):  # bf16 code runs AVX-512 or AMX: the post-op pays
        return torch.ops.mkldnn._linear_pointwise(x.to(weight.dtype), weight, bias, "gelu", [], "none")
    if not onednn_linear_applies(x):
        return F.gelu(F.linear(x, weight, bias))
    if ONEDNN_GELU_POST_OP:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
    return torch.ops.aten.gelu_(torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], ""))


def conv1d_time_major(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """`conv` on a time-major (B, T, C_in) input -> time-major (B, T', C_out), as a channels-last conv2d: oneDNN's
    CPU convolution runs faster in that layout than on (B, C, T) for RawNet's 128-channel blocks."""
    weight = conv.weight[:, :, None].contiguous(memory_format=torch.channels_last)
    out = F.conv2d(
        x.transpose(1, 2)[:, :, None],  # (B, C_in, 1, T), channels-last memory
        weight,
        conv.bias,
        stride=(1, conv.stride[0]),
        padding=(0, conv.padding[0]),
        dilation=(1, conv.dilation[0]),
        groups=conv.groups,
    )
    return out[:, :, 0].transpose(1, 2)


def max_pool_time_major(x: torch.Tensor, size: int) -> torch.Tensor:
    """`F.max_pool1d(x, size)` for a time-major (B, T, C) input: (B, T // size, C)."""
    frames = x.shape[1] // size
    return x[:, : frames * size].unflatten(1, (frames, size)).amax(2)


def overlap_save_segments(x: torch.Tensor, n_fft: int, hop: int, blocks: int, left: int = 0) -> torch.Tensor:
    """FFT overlap-save input: `blocks` windows of n_fft values every `hop` along the last axis of x, zero-padded by
    `left` in front and as needed at the back: (..., blocks, n_fft), a view of the padded copy."""
    right = max(0, (blocks - 1) * hop + n_fft - left - x.shape[-1])
    return F.pad(x, (left, right)).unfold(-1, n_fft, hop)


def mean_weights(frame_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) frame mask -> (B, T) fp32 weights of the mean over each clip's valid frames (zero on padding)."""
    frame_mask = frame_mask.float()
    return frame_mask / frame_mask.sum(dim=1, keepdim=True).clamp(min=1.0)


def weighted_frame_sum(x: torch.Tensor, frame_weights: torch.Tensor) -> torch.Tensor:
    """(B, T, C) frames and (B, T) fp32 weights -> (B, C) in x's dtype, summed in fp32."""
    return (x.float() * frame_weights[:, :, None]).sum(dim=1).to(x.dtype)
