"""WavLMRawNet: WavLM Large ("micro", frame level) fused with RawNet2.5 ("macro", raw waveform) for speaker embeddings.

Every stage carries a frame mask, so a clip's embedding does not depend on the padding added beside it in a batch.
The parts people swap (WavLM and RawNet poolings, sinc initialisation, fusion activation, loss) are chosen by name
from tables (`CONFIG_CHOICES`, after the parts); the config accepts exactly those tables' keys.
"""

from __future__ import annotations

import copy
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, WavLMModel
from transformers import initialization as init
from transformers.activations import GELUActivation
from transformers.modeling_outputs import XVectorOutput
from transformers.models.wavlm.modeling_wavlm import (
    WavLMAttention,
    WavLMEncoderLayerStableLayerNorm,
    WavLMFeatureEncoder,
    WavLMFeedForward,
    WavLMLayerNormConvLayer,
    WavLMPositionalConvEmbedding,
)

from .configuration_wavlmrawnet import WavLMRawNetConfig
from .feature_extraction_wavlmrawnet import WavLMRawNetFeatureExtractor
from .pipeline_wavlmrawnet import (  # the precision names are re-exported: code imports them from here
    CUSTOM_PIPELINES,
    PRECISION_ALIASES,
    PRECISION_DTYPES,
    Precision,
    cpu_native_bf16,
    describe_cpu,
    resolve_precision,
)


# ----------------------------------------------------------------------------------------------- masks
def lengths_to_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """(B,) valid lengths -> (B, max_length) bool mask."""
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


def conv_output_lengths(lengths: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    """Frames of an unpadded ("valid") convolution or pooling whose window lies inside the real samples."""
    return torch.clamp(torch.div(lengths - kernel_size, stride, rounding_mode="floor") + 1, min=0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of `x` over `dim`, counting only positions where `mask` (broadcastable to x) is True."""
    mask = mask.to(x.dtype)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


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


# ----------------------------------------------------------------------------------------------- inference kernels
def inference_kernels_apply(x: torch.Tensor) -> bool:
    """Whether an inference-only CPU kernel may replace the autograd-able computation for input `x`: no gradient is
    recorded, and neither torch.compile nor the ONNX exporter is tracing (they pick their own kernels)."""
    return (
        x.device.type == "cpu"
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
        and not torch.onnx.is_in_onnx_export()
    )


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
    the weights do not change. Autocast would otherwise cast every fp32 weight in every forward (~1.9 GB of memory
    traffic per call at WavLM-Large size, ~10 % of a bf16 forward on an AMX Xeon); the copies cost half the linear
    weights' memory (~600 MB at Large size) while bf16 inference runs."""
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

    fp32: torch's `F.linear` calls MKL's sgemm, which reaches ~80 % of oneDNN's speed on AMD CPUs (87 vs 108 GFLOP/s
    per Zen 4 core for WavLM-Large's feed-forward). bf16 weights under CPU bf16 autocast (`linear_weights`): oneDNN's
    bf16 kernel, ~10 % faster than torch's bf16 `F.linear` on an AMX Xeon. oneDNN's kernels have no backward, so they
    are used only where no gradient is recorded, and not while torch.compile or the ONNX exporter traces (they pick
    their own kernels).
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


# oneDNN's GELU post-op pays only in AVX-512 code: WavLM-Large's first feed-forward linear and GELU (10 s, 2 threads)
# took 19.9 ms with it against 20.3 ms as a separate pass on a Zen 4, but 24.7 against 21.1 ms capped at AVX2.
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


class InferenceLinear(nn.Linear):
    """`nn.Linear` computed by `inference_linear` (same parameters and state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return inference_linear(x, *linear_weights(self, x))


def conv1d_time_major(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """`conv` on a time-major (B, T, C_in) input -> time-major (B, T', C_out), as a channels-last conv2d: oneDNN's
    CPU convolution runs ~2x faster in that layout than on (B, C, T) for RawNet's 128-channel blocks."""
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


# ----------------------------------------------------------------------------------------------- RawNet2.5 branch
def hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


def mel_band_edges(low_hz: float, high_hz: float, count: int) -> np.ndarray:
    """`count` mel-spaced frequencies from low_hz to high_hz, as in SincNet."""
    return mel_to_hz(np.linspace(hz_to_mel(low_hz), hz_to_mel(high_hz), count))


def linear_band_edges(low_hz: float, high_hz: float, count: int) -> np.ndarray:
    """`count` evenly spaced frequencies from low_hz to high_hz."""
    return np.linspace(low_hz, high_hz, count)


class SincConv(nn.Module):
    """SincNet band-pass filters (Ravanelli & Bengio, 2018) with learned cutoffs in Hz.

    Filter k is the windowed difference of two low-pass sincs, with unit pass-band gain:
        h[n] = 2 f_high/sr * sinc(2 f_high n/sr) - 2 f_low/sr * sinc(2 f_low n/sr),   h[0] = 2 (f_high - f_low)/sr
    times a Hamming window. Cutoffs are kept inside (min_low_hz, sr/2).
    """

    def __init__(self, config: WavLMRawNetConfig):
        super().__init__()
        self.out_channels = config.sinc_filters
        self.kernel_size = config.sinc_kernel_size
        self.stride = config.sinc_stride
        self.sample_rate = config.sampling_rate
        self.min_low_hz = config.min_low_hz
        self.min_band_hz = config.min_band_hz
        self.band_edges = chosen(config, "sinc_init")
        self.cache_filters = True  # reuse the filter bank while the cutoffs do not change and no gradient is needed
        # Unconstrained parameters; `cutoffs()` maps them into the allowed range.
        self.low_hz_ = nn.Parameter(torch.empty(self.out_channels))
        self.band_hz_ = nn.Parameter(torch.empty(self.out_channels))
        self.reset_parameters()

    def initial_band_edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Contiguous bands from min_low_hz to Nyquist, spaced by `config.sinc_init`: (low cutoffs, widths) in Hz."""
        edges = self.band_edges(self.min_low_hz, self.sample_rate / 2, self.out_channels + 1)
        edges = torch.tensor(edges, dtype=torch.float32)
        return edges[:-1], torch.diff(edges)

    def reset_parameters(self) -> None:
        low, band = self.initial_band_edges()
        # Stored as offsets above the minimums; bands narrower than min_band_hz start at min_band_hz.
        init.copy_(self.low_hz_, low - self.min_low_hz)
        init.copy_(self.band_hz_, (band - self.min_band_hz).clamp(min=0.0))

    def cutoffs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(low, high) cutoffs in Hz, with min_low_hz <= low < high <= sr/2 and high - low >= min_band_hz."""
        nyquist = self.sample_rate / 2
        low = torch.clamp(self.min_low_hz + self.low_hz_.abs(), self.min_low_hz, nyquist - self.min_band_hz)
        high = torch.clamp(low + self.min_band_hz + self.band_hz_.abs(), self.min_low_hz, nyquist)
        return low, high

    def filters(self) -> torch.Tensor:
        """(out_channels, 1, kernel_size) filter bank."""
        low, high = self.cutoffs()
        device = low.device
        half = (self.kernel_size - 1) // 2
        n = torch.arange(-half, half + 1, device=device, dtype=torch.float32)  # sample index, centre at 0
        window = torch.hamming_window(self.kernel_size, periodic=False, device=device)

        def lowpass(cutoff_hz: torch.Tensor) -> torch.Tensor:
            normalized = 2 * cutoff_hz[:, None] / self.sample_rate  # cutoff as a fraction of Nyquist
            return normalized * torch.sinc(normalized * n[None, :])  # torch.sinc(x) = sin(pi x)/(pi x), 1 at x=0

        return ((lowpass(high) - lowpass(low)) * window).unsqueeze(1)

    def inference_filters(self, dtype: torch.dtype) -> torch.Tensor:
        """`filters()` in `dtype`; without gradients (and with `cache_filters`) built once per parameter version."""
        if not self.cache_filters or torch.is_grad_enabled() or torch.compiler.is_compiling():
            return self.filters().to(dtype)
        return inference_cache(self, "filters", lambda: self.filters().to(dtype), dtype)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, out_channels, T') with T' = floor((T - kernel) / stride) + 1 (no padding)."""
        return F.conv1d(waveform.unsqueeze(1), self.inference_filters(waveform.dtype), stride=self.stride)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return conv_output_lengths(lengths, self.kernel_size, self.stride)

    def pooled_magnitudes_time_major(self, waveform: torch.Tensor, pool_size: int) -> torch.Tensor:
        """`F.max_pool1d(forward(waveform).abs(), pool_size)`, time-major: (B, T' // pool_size, out_channels).

        For inference: the filter bank is applied block by block, and each block is pooled while it is in cache. At
        stride 1 in fp32/fp64 (not under autocast) the blocks are FFT products (`pooled_magnitudes_fft`); otherwise
        each block of windows is a matrix product (~2.5x faster on CPU than the convolution, then |.|, then pooling).
        """
        autocast = torch.is_autocast_enabled(waveform.device.type)  # the matrix products then run in low precision
        if self.stride == 1 and waveform.dtype in (torch.float32, torch.float64) and not autocast:
            return self.pooled_magnitudes_fft(waveform, pool_size)
        samples = waveform.shape[1]
        frames = ((samples - self.kernel_size) // self.stride + 1) // pool_size if samples >= self.kernel_size else 0
        if frames == 0:
            return waveform.new_empty(waveform.shape[0], 0, self.out_channels)
        filters = self.inference_filters(waveform.dtype)[:, 0]  # (out_channels, kernel)
        windows = waveform.unfold(1, self.kernel_size, self.stride)  # (B, T', kernel), a view
        block = 1024 * pool_size
        pooled = []
        for start in range(0, frames * pool_size, block):
            stop = min(start + block, frames * pool_size)
            responses = inference_linear(windows[:, start:stop], filters, None).abs_()  # (B, stop - start, C)
            pooled.append(responses.unflatten(1, (-1, pool_size)).amax(2))
        return torch.cat(pooled, dim=1)

    def pooled_magnitudes_fft(self, waveform: torch.Tensor, pool_size: int, blocks_per_step: int = 4) -> torch.Tensor:
        """`pooled_magnitudes_time_major` at stride 1 by FFT overlap-save, `blocks_per_step` blocks at a time.

        Each block of n_fft samples (a power of two >= 4 x kernel) gives `hop` outputs, a multiple of the pool, so
        blocks pool independently. O(n_fft log n_fft) per block instead of kernel x channels multiply-adds per
        sample: ~2x faster than the blocked matrix product for the 251-tap, 128-filter bank (rel. error ~1e-6).
        """
        batch, samples = waveform.shape
        kernel, channels = self.kernel_size, self.out_channels
        frames = max(samples - kernel + 1, 0) // pool_size
        out = waveform.new_empty(batch, frames, channels)
        if frames == 0:
            return out
        n_fft = 1 << max(4 * kernel - 1, 1).bit_length()
        hop = (n_fft - kernel + 1) // pool_size * pool_size  # outputs per block
        num_blocks = -(-frames * pool_size // hop)
        segments = overlap_save_segments(waveform, n_fft, hop, num_blocks)  # (B, num_blocks, n_fft)
        spectra = inference_cache(  # correlation = convolution with the flipped filters
            self, "spectra", lambda: torch.fft.rfft(self.inference_filters(waveform.dtype)[:, 0].flip(-1), n_fft),
            n_fft, waveform.dtype,
        )  # fmt: skip
        pooled_hop = hop // pool_size
        for first in range(0, num_blocks, blocks_per_step):
            step = segments[:, first : first + blocks_per_step]
            responses = torch.fft.irfft(torch.fft.rfft(step, n_fft)[:, :, None, :] * spectra, n_fft)
            responses = responses[..., kernel - 1 : kernel - 1 + hop].abs_()  # (B, blocks, C, hop)
            pooled = responses.unflatten(-1, (pooled_hop, pool_size)).amax(-1).transpose(2, 3)  # (B, blocks, hop/p, C)
            start = first * pooled_hop
            stop = min(start + pooled.shape[1] * pooled_hop, frames)
            out[:, start:stop] = pooled.reshape(batch, -1, channels)[:, : stop - start]
        return out


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics use only the valid frames of a (B, C, T) batch."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if not self.training or mask is None or bool(mask.all()):
            return super().forward(x)
        frames = mask[:, None, :].to(x.dtype)
        count = frames.sum().clamp(min=2.0)
        mean = (x * frames).sum(dim=(0, 2)) / count
        var = (((x - mean[None, :, None]) * frames) ** 2).sum(dim=(0, 2)) / count
        with torch.no_grad():
            self.num_batches_tracked += 1
            self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
            unbiased = var.detach() * count / (count - 1)
            self.running_var.lerp_(unbiased.to(self.running_var.dtype), self.momentum)
        x = (x - mean[None, :, None]) / torch.sqrt(var[None, :, None] + self.eps)
        return x * self.weight[None, :, None] + self.bias[None, :, None]

    def time_major(self, x: torch.Tensor) -> torch.Tensor:
        """Eval-mode normalisation (running statistics) of a time-major (B, T, C) input, in one pass."""
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype))


class SqueezeExcitation(nn.Module):
    """Channel gates from the masked time average (Hu et al., 2018)."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def gates(self, squeezed: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(F.relu(self.fc1(squeezed))))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x * self.gates(masked_mean(x, mask[:, None, :], dim=2))[:, :, None]

    def time_major(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`forward` for a time-major (B, T, C) input, scaled in place: the masked mean as one matrix product."""
        frame_weights = mask.to(x.dtype) / mask.sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)
        squeezed = torch.bmm(frame_weights[:, None, :], x)[:, 0]
        return x.mul_(self.gates(squeezed)[:, None, :])


class ResidualBlock(nn.Module):
    """Pre-activation residual block (RawNet2): BN-LReLU-Conv-BN-LReLU-Conv + skip, optional SE and max-pool."""

    def __init__(self, in_channels: int, out_channels: int, config: WavLMRawNetConfig):
        super().__init__()
        kernel = config.rawnet_kernel_size
        self.bn1 = MaskedBatchNorm1d(in_channels)
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel, padding=kernel // 2)
        self.bn2 = MaskedBatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel, padding=kernel // 2)
        self.skip = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        self.se = SqueezeExcitation(out_channels, config.se_reduction) if config.use_se else None
        self.activation = nn.LeakyReLU(config.leaky_relu_slope)
        self.pool_size = config.rawnet_block_pool_size

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = lengths_to_mask(lengths, x.shape[-1])
        keep = mask[:, None, :].to(x.dtype)
        # Padded frames are zeroed before every convolution, as if the clip were alone.
        out = self.conv1(self.activation(self.bn1(x, mask)) * keep)
        out = self.conv2(self.activation(self.bn2(out, mask)) * keep)
        out = out + self.skip(x)
        if self.se is not None:
            out = self.se(out, mask)
        if self.pool_size > 1:
            out = F.max_pool1d(out, self.pool_size)
            lengths = torch.div(lengths, self.pool_size, rounding_mode="floor")
        return out, lengths

    def time_major(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward` for a time-major (B, T, C) input, in eval mode without gradients."""
        mask = lengths_to_mask(lengths, x.shape[1])
        keep = None if bool(mask.all()) else mask[:, :, None].to(x.dtype)

        def activation(h: torch.Tensor) -> torch.Tensor:  # in place: h is a fresh tensor; padding zeroed
            h = F.leaky_relu_(h, self.activation.negative_slope)
            return h if keep is None else h.mul_(keep)

        out = conv1d_time_major(activation(self.bn1.time_major(x)), self.conv1)
        out = conv1d_time_major(activation(self.bn2.time_major(out)), self.conv2)
        out += x if isinstance(self.skip, nn.Identity) else conv1d_time_major(x, self.skip)
        if self.se is not None:
            out = self.se.time_major(out, mask)
        if self.pool_size > 1:
            out = max_pool_time_major(out, self.pool_size)
            lengths = torch.div(lengths, self.pool_size, rounding_mode="floor")
        return out, lengths


class RawNetEncoder(nn.Module):
    """RawNet2.5: SincConv -> |.| -> max-pool -> BN -> LReLU -> residual stack -> pooling -> FC.

    With `time_major_inference` (on by default; `set_fast_paths` switches it), eval-mode CPU inference without
    gradients runs the same function on time-major (B, T, C) activations: the sinc layer as blocked FFTs (stride 1)
    or matrix products, pooled in cache; channels-last convolutions and one-pass batch norms (`time_major` methods).
    """

    def __init__(self, config: WavLMRawNetConfig):
        super().__init__()
        self.time_major_inference = True
        self.sinc = SincConv(config)
        self.sinc_pool_size = config.sinc_pool_size
        self.sinc_bn = MaskedBatchNorm1d(config.sinc_filters)
        self.activation = nn.LeakyReLU(config.leaky_relu_slope)
        channels = [config.sinc_filters, *config.rawnet_channels]
        self.blocks = nn.ModuleList(
            ResidualBlock(c_in, c_out, config) for c_in, c_out in zip(channels[:-1], channels[1:])
        )
        self.pooling = chosen(config, "rawnet_pooling")(channels[-1], config)
        self.fc = nn.Linear(self.pooling.output_size, config.rawnet_embedding_dim)

    def forward(self, waveform: torch.Tensor, sample_lengths: torch.Tensor) -> torch.Tensor:
        if self.time_major_inference and not self.training and inference_kernels_apply(waveform):
            return self.time_major(waveform, sample_lengths)
        x = self.sinc(waveform).abs()
        lengths = self.sinc.output_lengths(sample_lengths)
        if self.sinc_pool_size > 1:
            x = F.max_pool1d(x, self.sinc_pool_size)
            lengths = torch.div(lengths, self.sinc_pool_size, rounding_mode="floor")
        x = self.activation(self.sinc_bn(x, lengths_to_mask(lengths, x.shape[-1])))
        for block in self.blocks:
            x, lengths = block(x, lengths)
        return self.fc(self.pooling(x, lengths_to_mask(lengths, x.shape[-1])))

    def time_major(self, waveform: torch.Tensor, sample_lengths: torch.Tensor) -> torch.Tensor:
        """`forward` on time-major activations (eval mode, no gradients)."""
        x = self.sinc.pooled_magnitudes_time_major(waveform, self.sinc_pool_size)
        lengths = torch.div(self.sinc.output_lengths(sample_lengths), self.sinc_pool_size, rounding_mode="floor")
        x = F.leaky_relu_(self.sinc_bn.time_major(x), self.activation.negative_slope)
        for block in self.blocks:
            x, lengths = block.time_major(x, lengths)
        mask = lengths_to_mask(lengths, x.shape[1])
        if hasattr(self.pooling, "time_major"):  # a pooling without one gets the (B, C, T) view its forward expects
            return self.fc(self.pooling.time_major(x, mask))
        return self.fc(self.pooling(x.transpose(1, 2), mask))


class WavLMAttentionContiguousInput(WavLMAttention):
    """WavLM attention fed a contiguous time-major copy of its input (transformers' own computation otherwise).

    WavLM hands `F.multi_head_attention_forward` a transposed view; for such a bf16 input torch's CPU matmul copies the
    weight once per frame (pytorch/pytorch#151934), which made bf16 ~50x slower than needed. fp32 results are
    unchanged. This is the attention used with `set_fast_paths(False)`.
    """

    def torch_multi_head_self_attention(self, hidden_states, attention_mask, gated_position_bias):
        time_major = hidden_states.transpose(0, 1).contiguous()
        return super().torch_multi_head_self_attention(time_major.transpose(0, 1), attention_mask, gated_position_bias)


# ----------------------------------------------------------------------------------------------- fast paths
class WavLMFastAttention(WavLMAttention):
    """WavLM's gated relative-position attention through `F.scaled_dot_product_attention`.

    The same function as transformers' `WavLMAttention` (fp32 outputs and gradients agree to ~1e-6), without the
    head-averaged attention weights that `F.multi_head_attention_forward(need_weights=True)` computes and WavLM
    discards. The position bias passed from layer to layer is (1, heads, T, T) rather than (B * heads, T, T);
    transformers' layout is accepted too. Attention weights are not returned (None).
    """

    def forward(self, hidden_states, attention_mask=None, position_bias=None, index=0, **kwargs):
        batch, frames, _ = hidden_states.shape
        heads = self.num_heads
        query, key, value = self.projections(hidden_states)
        if position_bias is None:
            # (1, heads, T, T), shared by the batch and the layers; contiguous, as every layer's gating reads it.
            # Without gradients it is kept in the attention's dtype (bf16 under autocast): each layer's gating then
            # multiplies in that dtype (fp32 inputs written to bf16 took ~5x as long on an AMX Xeon).
            position_bias = self.compute_bias(frames, frames)[None]
            if not torch.is_grad_enabled():
                position_bias = position_bias.to(query.dtype)
            position_bias = position_bias.contiguous()
        elif position_bias.dim() == 3:  # transformers' (B * heads, T, T)
            position_bias = position_bias.view(-1, heads, frames, frames)

        # The gate of the position bias, from each head's slice of the input (as WavLMAttention.forward).
        per_head = hidden_states.view(batch, frames, heads, self.head_dim).transpose(1, 2)
        projected = self.gru_rel_pos_linear(per_head).view(batch, heads, frames, 2, 4).sum(-1)
        gate_a, gate_b = torch.sigmoid(projected).chunk(2, dim=-1)
        gate = (gate_a * (gate_b * self.gru_rel_pos_const - 1.0) + 2.0).to(position_bias.dtype)  # (B, heads, T, 1)
        # Without padding one multiply suffices (the model passes no mask where nothing is padded: `wavlm_features`).
        if attention_mask is None:
            bias = gate * position_bias  # (B, heads, T, T)
        else:
            # -inf on padded keys, added in the same pass as the gate (a separate masked_fill costs two more passes)
            padding = torch.zeros(attention_mask.shape, dtype=gate.dtype, device=gate.device)
            padding = padding.masked_fill_(attention_mask.ne(1), float("-inf"))[:, None, None, :]
            bias = torch.addcmul(padding, gate, position_bias)

        attended = F.scaled_dot_product_attention(
            query, key, value, attn_mask=bias.to(query.dtype), dropout_p=self.dropout if self.training else 0.0
        )
        attended = attended.transpose(1, 2).reshape(batch, frames, self.embed_dim)
        return inference_linear(attended, *linear_weights(self.out_proj, attended)), None, position_bias

    def projections(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Query, key and value, each (B, heads, T, head_dim). In bf16 CPU inference through oneDNN, one product with
        the three weights stacked (bf16, cached): 7.4 against 8.3 ms for three at Large size on an AMX Xeon."""
        batch, frames, _ = hidden_states.shape
        shape = (batch, frames, self.num_heads, self.head_dim)
        projections = (self.q_proj, self.k_proj, self.v_proj)
        if ONEDNN_BF16_LINEAR and bf16_autocast_inference(hidden_states):

            def build():
                weight = torch.cat([p.weight.detach() for p in projections]).to(torch.bfloat16)
                return weight, torch.cat([p.bias.detach() for p in projections]).to(torch.bfloat16)

            stacked = inference_linear(hidden_states, *inference_cache(self, "bf16_qkv", build))
            return stacked.view(batch, frames, 3, *shape[2:]).permute(2, 0, 3, 1, 4).unbind(0)
        return tuple(
            inference_linear(hidden_states, *linear_weights(p, hidden_states)).view(shape).transpose(1, 2)
            for p in projections
        )


def is_exact_gelu(activation) -> bool:
    """Whether `activation` is transformers' `"gelu"`: torch's exact (erf) GELU."""
    return isinstance(activation, GELUActivation) and activation.act is F.gelu


class WavLMFastFeedForward(WavLMFeedForward):
    """WavLM's feed-forward through `inference_linear_gelu` in inference: in fp32 on a CPU, oneDNN's linears, with GELU
    as the first one's post-op where that pays (no separate pass over the (B, T, 4096) activations). Training and
    other activations run transformers' own forward.

    With `pooling_weights` (B, T) set (by `RunningLayerSum`, on the last layer), it returns (B, 1, hidden): the second
    product, which is linear, applied to the frames' weighted sum instead of to every frame.
    """

    pooling_weights: torch.Tensor | None = None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.training or not is_exact_gelu(self.intermediate_act_fn):
            return super().forward(hidden_states)
        inner = inference_linear_gelu(hidden_states, *linear_weights(self.intermediate_dense, hidden_states))
        if self.pooling_weights is not None:
            inner = weighted_frame_sum(inner, self.pooling_weights)[:, None]
        return inference_linear(inner, *linear_weights(self.output_dense, inner))


class WavLMFastPositionalConvEmbedding(WavLMPositionalConvEmbedding):
    """WavLM's positional convolution for inference, with kernels derived from the weights built once while the
    weights do not change. Kernels of `fft_min_kernel` taps or more run as FFT overlap-save (`fft_convolution`), in
    fp32 also under autocast (bf16 autocast ran oneDNN's grouped convolution at ~3x the time of the fp32 FFT on an AMX
    Xeon); shorter ones as a channels-last grouped conv2d. Training, other devices and tracing run transformers' own
    forward."""

    # WavLM's 128-tap grouped convolution (1024 channels, 16 groups, 10 s, 2 threads) took ~12 ms by FFT against ~50
    # ms as oneDNN's convolution on a Zen 4; the cached spectra cost 68 MB at Large size.
    fft_min_kernel = 64

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not inference_kernels_apply(hidden_states):
            return super().forward(hidden_states)
        conv = self.conv
        if conv.kernel_size[0] >= self.fft_min_kernel:
            # fp32 (fp64 for fp64 input), also under autocast; the result in the dtype the convolution would return
            low_precision = torch.is_autocast_enabled("cpu")
            out_dtype = torch.get_autocast_dtype("cpu") if low_precision else hidden_states.dtype
            with torch.autocast("cpu", enabled=False):
                exact = hidden_states.to(torch.float64 if hidden_states.dtype == torch.float64 else torch.float32)
                return self.activation(self.fft_convolution(exact)).to(out_dtype)
        weight = inference_cache(
            self, "weight", lambda: conv.weight[:, :, None].contiguous(memory_format=torch.channels_last)
        )
        out = F.conv2d(
            hidden_states.transpose(1, 2)[:, :, None],  # (B, C, 1, T), channels-last memory
            weight.to(hidden_states.dtype),
            conv.bias.to(hidden_states.dtype),
            padding=(0, conv.padding[0]),
            groups=conv.groups,
        )
        return self.activation(self.padding(out[:, :, 0])).transpose(1, 2)

    def fft_convolution(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The convolution and same-padding of (B, T, C) -> (B, T, C), before the activation, by FFT overlap-save.

        Output frame t is sum_k W_k x[t + k - kernel // 2] (zeros outside the clip). Blocks of n_fft >= 2 x kernel
        padded frames give n_fft - kernel + 1 outputs each; per frequency, each group's channels mix as a small complex
        matrix product with the kernel's spectrum (cached: n_fft / 2 + 1 matrices of (C / groups)^2 per group).
        """
        conv = self.conv
        batch, frames, channels = hidden_states.shape
        kernel, groups = conv.kernel_size[0], conv.groups
        per_group = channels // groups
        n_fft = 1 << (2 * kernel - 1).bit_length()
        hop = n_fft - kernel + 1
        blocks = -(-frames // hop)
        bins = n_fft // 2 + 1

        def build():  # (bins * groups, C_in / groups, C_out / groups): correlation = convolution with flipped taps
            spectra = torch.fft.rfft(conv.weight.flip(-1).to(hidden_states.dtype), n_fft)  # (C_out, C_in/g, bins)
            spectra = spectra.view(groups, per_group, per_group, bins).permute(3, 0, 2, 1)
            return spectra.reshape(-1, per_group, per_group)

        spectra = inference_cache(self, "spectra", build, n_fft, hidden_states.dtype)
        segments = overlap_save_segments(hidden_states.transpose(1, 2), n_fft, hop, blocks, left=kernel // 2)
        segments = torch.fft.rfft(segments, n_fft)  # (B, C, blocks, bins)
        segments = segments.view(batch, groups, per_group, blocks, bins).permute(4, 1, 0, 3, 2)
        mixed = torch.bmm(segments.reshape(bins * groups, batch * blocks, per_group), spectra)
        mixed = mixed.view(bins, groups, batch, blocks, per_group).permute(2, 3, 1, 4, 0)  # (B, blocks, g, C/g, bins)
        blocks_out = torch.fft.irfft(mixed.reshape(batch, blocks, channels, bins), n_fft)[..., kernel - 1 :]
        out = blocks_out.new_empty(batch, blocks * hop, channels)  # written time-major with the bias
        torch.add(blocks_out.transpose(2, 3), conv.bias.to(out.dtype), out=out.view(batch, blocks, hop, channels))
        return out[:, :frames]


class WavLMFastFeatureEncoder(WavLMFeatureEncoder):
    """WavLM's convolutional feature encoder computed time-major: each convolution as matrix products over views of
    its (B, T, C) input (`time_major_conv`), its LayerNorm over the last (contiguous) axis.

    transformers' layer-norm encoder normalises a transposed (B, T, C) view of every (B, C, T) convolution output and
    transposes back, so the next convolution copies its input first; at 16 kHz those copies and strided passes took
    ~30 % of the encoder's time on a CPU. On a GPU it pays only for large low-precision batches (`time_major_pays`).
    Other encoder kinds (group norm, no norm) and gradient checkpointing in training run transformers' own forward.
    Output: (B, C, T) as transformers', a transposed view of (B, T, C) memory.
    """

    block_frames = 2048  # output frames per block: each block's conv, norm and activation run while it is in cache
    accelerator_min_samples = 2**20  # a GPU batch (under autocast) of at least this many samples: ~65 s of audio

    def time_major_layer(self, layer: WavLMLayerNormConvLayer, x: torch.Tensor) -> torch.Tensor:
        """conv -> LayerNorm -> activation on a time-major (B, T, C_in) input, in blocks of output frames."""
        kernel, stride = layer.conv.kernel_size[0], layer.conv.stride[0]
        out_frames = (x.shape[1] - kernel) // stride + 1
        trained = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in layer.parameters()))
        if out_frames <= self.block_frames or trained:
            return layer.activation(layer.layer_norm(self.time_major_conv(layer.conv, x)))
        out = None
        for start in range(0, out_frames, self.block_frames):
            stop = min(start + self.block_frames, out_frames)
            inputs = x[:, start * stride : (stop - 1) * stride + kernel]
            normed = layer.layer_norm(self.time_major_conv(layer.conv, inputs))
            if out is None:
                out = normed.new_empty(normed.shape[0], out_frames, normed.shape[2])
            if is_exact_gelu(layer.activation):  # written straight into the output, clip by clip (contiguous rows:
                for clip, rows in zip(normed, out[:, start:stop]):  # torch 2.13's gelu.out miswrites strided outputs)
                    torch.ops.aten.gelu.out(clip, out=rows)
            else:
                out[:, start:stop] = layer.activation(normed)
        return out

    @staticmethod
    def time_major_conv(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
        """`conv` (no padding) on a time-major (B, T, C_in) input -> (B, T', C_out).

        With kernel k <= 2 x stride s, window t is row t of x seen as (T / s, s C_in) followed by the first k - s
        frames of row t + 1: two matrix products over strided views (the second adds into the first), instead of
        copying every window out (k / s times the input). Other shapes, and narrow inputs such as the waveform, use
        the unfolded windows.
        """
        batch, frames, channels = x.shape
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        out_frames = (frames - kernel) // stride + 1
        split = 0 if kernel > 2 * stride or conv.dilation[0] != 1 else stride * channels
        dtype = torch.bfloat16 if bf16_autocast_inference(x) else conv.weight.dtype  # see `linear_weights`
        if split < 64:  # unfolded windows (also for narrow inputs such as the 1-channel waveform)
            windows = x.unfold(1, kernel, stride).transpose(2, 3).reshape(batch, out_frames, -1)
            weight = WavLMFastFeatureEncoder.frame_major_weights(conv, 0, dtype)[0]
            return inference_linear(windows, weight, conv.bias)
        head, tail = WavLMFastFeatureEncoder.frame_major_weights(conv, split, dtype)
        if x.stride(2) != 1 or x.stride(1) != channels:
            x = x.contiguous()

        def rows(offset: int, width: int) -> torch.Tensor:  # (B, T', width) view: `width` values every s frames
            return x.as_strided((batch, out_frames, width), (x.stride(0), split, 1), x.storage_offset() + offset)

        out = inference_linear(rows(0, split), head, conv.bias)
        return out if tail is None else inference_linear_add(rows(split, tail.shape[1]), tail, out)

    @staticmethod
    def frame_major_weights(
        conv: nn.Conv1d, split: int, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The kernel as (out, kernel * C_in), frame-major, cut after column `split` (0: not cut) into contiguous
        parts, in `dtype` (default: the weight's); built once while the weights do not change, unless they are being
        trained."""

        def build():
            weight = conv.weight.transpose(1, 2).reshape(conv.out_channels, -1).to(dtype or conv.weight.dtype)
            if not split or split == weight.shape[1]:
                return weight.contiguous(), None
            return weight[:, :split].contiguous(), weight[:, split:].contiguous()

        trained = torch.is_grad_enabled() and conv.weight.requires_grad
        return build() if trained else inference_cache(conv, "frame_major", build, split, dtype)

    @classmethod
    def time_major_pays(cls, device_type: str, low_precision: bool, samples: int) -> bool:
        """Whether the time-major layout is the faster one: always on a CPU; on a GPU only under autocast for batches
        of at least `accelerator_min_samples`. On an H200 it took 10.9 ms against transformers' 17.8 for 16 clips of
        10 s in bf16, with half the peak memory, but 3.9 against 1.5 ms for one clip and 24.4 against 16.9 ms for 16
        clips in fp32 (`benchmarks/bench_gpu_parts.py`)."""
        if device_type == "cpu":
            return True
        return low_precision and samples >= cls.accelerator_min_samples

    def time_major_applies(self, input_values: torch.Tensor) -> bool:
        """Whether `forward` computes time-major: layer-norm layers, no gradient checkpointing in training, and an
        input for which the layout pays (`time_major_pays`)."""
        if not all(type(layer) is WavLMLayerNormConvLayer for layer in self.conv_layers) or (
            self.gradient_checkpointing and self.training
        ):
            return False
        device_type = input_values.device.type
        try:
            low_precision = device_type != "cpu" and torch.is_autocast_enabled(device_type)
        except RuntimeError:  # a device type autocast does not know (meta)
            low_precision = False
        return self.time_major_pays(device_type, low_precision, input_values.numel())

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        if not self.time_major_applies(input_values):
            return super().forward(input_values)
        return self.time_major_forward(input_values)

    def time_major_forward(self, input_values: torch.Tensor) -> torch.Tensor:
        """The encoder on (B, samples) computed time-major, whatever the device; (B, C, T) out."""
        layers = self.conv_layers
        hidden_states = input_values[:, :, None]  # (B, samples, 1)
        for layer in layers:
            hidden_states = self.time_major_layer(layer, hidden_states)
        return hidden_states.transpose(1, 2)


class RunningLayerSum:
    """The weighted layer pooling computed while WavLM runs: each hidden state, averaged over the valid frames of
    `frame_mask` (B, T) and times its weight, is added to a running (B, hidden) sum as its layer finishes (forward
    hooks), so the (layers + 1, B, T, hidden) stack of all hidden states is never built. Use as a context manager
    around the call; the result is `total`. A layer that layerdrop skips runs no hook: its output, which is its input,
    is counted when the next layer finishes, or on exit.

    With `project_after_pooling`, the last layer's second feed-forward product is applied to the pooled frames
    (`WavLMFastFeedForward.pooling_weights`): a stable-layer-norm layer's output is its input plus that product, so
    the pooled value is the same, for one product per clip instead of one per frame (~4 GFLOP for 10 s of WavLM-Large).
    The last layer's frames, and the last hidden state, are then not WavLM's: for calls that read neither.
    """

    def __init__(
        self, encoder: nn.Module, weights: torch.Tensor, frame_mask: torch.Tensor, project_after_pooling: bool = False
    ):
        self.encoder, self.weights, self.total, self.handles = encoder, weights, None, []
        self.frame_weights = mean_weights(frame_mask)
        self.counted, self.latest = 0, None  # hidden states added so far, and the latest one pooled
        last = encoder.layers[-1]
        movable = isinstance(last, WavLMEncoderLayerStableLayerNorm) and isinstance(
            last.feed_forward, WavLMFastFeedForward
        )
        self.last_feed_forward = last.feed_forward if project_after_pooling and movable else None

    def add(self, index: int, hidden_state: torch.Tensor | None) -> None:
        """Adds hidden state `index`; states before it that were skipped count as the latest one (None: only those)."""
        while self.counted < index:  # layers skipped since the latest state passed it on unchanged
            self.add_pooled(self.latest)
        if hidden_state is not None:
            self.latest = weighted_frame_sum(hidden_state, self.frame_weights)
            self.add_pooled(self.latest)

    def add_pooled(self, pooled: torch.Tensor) -> None:
        term = self.weights[self.counted].to(pooled.dtype) * pooled
        self.total = term if self.total is None else self.total + term
        self.counted += 1

    def __enter__(self) -> "RunningLayerSum":
        layers = self.encoder.layers
        # The first hidden state is the input of layer 0, then each layer's output (as transformers records them).
        self.handles.append(layers[0].register_forward_pre_hook(lambda module, args: self.add(0, args[0])))
        for i, layer in enumerate(layers):
            self.handles.append(layer.register_forward_hook(lambda m, args, out, i=i: self.add(i + 1, out[0])))
        if self.last_feed_forward is not None:
            self.last_feed_forward.pooling_weights = self.frame_weights
        return self

    def __exit__(self, exc_type, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        if self.last_feed_forward is not None:
            del self.last_feed_forward.pooling_weights
        if exc_type is None and self.latest is not None:
            self.add(len(self.weights), None)  # the last layers, if skipped


# ----------------------------------------------------------------------------------------------- poolings
class WavLMPooling(nn.Module):
    """Base of the WavLM poolings: WavLM's outputs and frame mask (B, frames) -> one vector (B, output_size).

    A pooling with `reads_hidden_states = True` reads every layer's `outputs.hidden_states` instead of
    `last_hidden_state`: the model asks WavLM for them, and freezes the final norm they skip.
    """

    reads_hidden_states = False

    def __init__(self, config: WavLMRawNetConfig):
        super().__init__()
        self.output_size = config.wavlm_config.hidden_size

    def reset_parameters(self) -> None:
        """Initialises the pooling's own parameters (with `transformers.initialization`, which skips loaded ones)."""


class LastLayerPooling(WavLMPooling):
    """The mean of the last hidden state over valid frames (the reference)."""

    def forward(self, outputs, frame_mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(outputs.last_hidden_state, frame_mask[:, :, None], dim=1)


class WeightedLayerPooling(WavLMPooling):
    """Learned softmax weights over all hidden states (embeddings and each layer), then the mean over valid frames."""

    reads_hidden_states = True

    def __init__(self, config: WavLMRawNetConfig):
        super().__init__(config)
        num_states = config.wavlm_config.num_hidden_layers + 1
        self.layer_weights = nn.Parameter(torch.full((num_states,), 1.0 / num_states))

    def reset_parameters(self) -> None:
        init.constant_(self.layer_weights, 1.0 / self.layer_weights.numel())

    def normalized_weights(self) -> torch.Tensor:
        """The softmax of the layer weights: one weight per hidden state, summing to 1."""
        return torch.softmax(self.layer_weights, dim=0)

    def forward(self, outputs, frame_mask: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        """`pooled`, the result computed while WavLM ran (`RunningLayerSum.total`), replaces the computation from the
        stack of `outputs.hidden_states` where given."""
        if pooled is not None:
            return pooled
        stacked = torch.stack(outputs.hidden_states, dim=0)
        weights = self.normalized_weights().to(stacked.dtype)
        weighted_frames = (weights[:, None, None, None] * stacked).sum(dim=0)
        return masked_mean(weighted_frames, frame_mask[:, :, None], dim=1)


class AttentiveStatisticsPooling(nn.Module):
    """RawNet pooling: attention-weighted mean and standard deviation over valid frames (Okabe et al., 2018).

    (B, channels, frames) and a frame mask (B, frames) -> (B, output_size = 2 * channels).
    """

    def __init__(self, channels: int, config: WavLMRawNetConfig):
        super().__init__()
        attention_dim = config.attention_dim
        self.attention = nn.Sequential(
            nn.Conv1d(channels, attention_dim, 1), nn.Tanh(), nn.Conv1d(attention_dim, channels, 1)
        )
        self.output_size = 2 * channels

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.weighted_statistics(x, self.attention(x), mask[:, None, :], time_dim=2)

    def time_major(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`forward` for a time-major (B, frames, channels) input: the 1x1 convolutions as linear layers."""
        first, activation, second = self.attention
        hidden = activation(F.linear(x, first.weight[:, :, 0], first.bias))
        return self.weighted_statistics(x, F.linear(hidden, second.weight[:, :, 0], second.bias), mask[:, :, None], 1)

    @staticmethod
    def weighted_statistics(x, scores, mask, time_dim: int) -> torch.Tensor:
        """Softmax(scores) over valid frames -> (B, 2 * channels): the weighted mean and standard deviation of x."""
        scores = scores.float().masked_fill(~mask, torch.finfo(torch.float32).min)
        weights = torch.softmax(scores, dim=time_dim)
        x = x.float()
        mean = (weights * x).sum(dim=time_dim)
        variance = (weights * (x - mean.unsqueeze(time_dim)) ** 2).sum(dim=time_dim)  # two-pass: no cancellation
        std = torch.sqrt(variance.clamp(min=1e-6))
        return torch.cat([mean, std], dim=1)


# ----------------------------------------------------------------------------------------------- losses
class MarginSoftmax(nn.Module):
    """Base of the margin losses over the speaker classes; subclasses say how the margin changes the target cosine.

    `forward` returns the margin-free scaled cosine logits, and the margin loss when labels are given.
    """

    def __init__(self, config: WavLMRawNetConfig):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(config.num_labels, config.embedding_dim))
        self.margin, self.scale = config.loss_margin, config.loss_scale

    def reset_parameters(self) -> None:
        init.xavier_normal_(self.weight)

    def add_margin(self, target: torch.Tensor) -> torch.Tensor:
        """The target class' cosine, made harder by the margin."""
        raise NotImplementedError

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None):
        cosine = F.linear(F.normalize(embeddings.float(), dim=1), F.normalize(self.weight.float(), dim=1))
        logits = self.scale * cosine
        if labels is None:
            return logits, None
        labels = labels.flatten()
        if labels.numel() and (labels.min() < 0 or labels.max() >= cosine.shape[1]):
            raise ValueError(f"labels must lie in [0, {cosine.shape[1]}), got {labels.min()}..{labels.max()}")
        target = cosine.gather(1, labels[:, None])
        margin_logits = self.scale * cosine.scatter(1, labels[:, None], self.add_margin(target))
        return logits, F.cross_entropy(margin_logits, labels)


class AMSoftmax(MarginSoftmax):
    """AM-Softmax (Wang et al., 2018): cos θ - m."""

    def add_margin(self, target: torch.Tensor) -> torch.Tensor:
        return target - self.margin


class AAMSoftmax(MarginSoftmax):
    """AAM-Softmax, ArcFace (Deng et al., 2019): cos(θ + m), with the usual fallback where θ + m would pass π."""

    def add_margin(self, target: torch.Tensor) -> torch.Tensor:
        sine = torch.sqrt((1.0 - target**2).clamp(min=1e-7))
        shifted = target * math.cos(self.margin) - sine * math.sin(self.margin)
        threshold = math.cos(math.pi - self.margin)
        return torch.where(target > threshold, shifted, target - math.sin(math.pi - self.margin) * self.margin)


# ----------------------------------------------------------------------------------------------- the parts by name
# Adding a part: write its class, add it to its table; the config then accepts the new name.
WAVLM_POOLINGS = {"last": LastLayerPooling, "weighted": WeightedLayerPooling}
RAWNET_POOLINGS = {"attentive_statistics": AttentiveStatisticsPooling}
SINC_INITS = {"mel": mel_band_edges, "linear": linear_band_edges}
FUSION_ACTIVATIONS = {"none": nn.Identity, "relu": nn.ReLU}
LOSSES = {"amsoftmax": AMSoftmax, "aamsoftmax": AAMSoftmax}

# Config argument -> the table its value names.
CONFIG_CHOICES = {
    "wavlm_pooling": WAVLM_POOLINGS,
    "rawnet_pooling": RAWNET_POOLINGS,
    "sinc_init": SINC_INITS,
    "fusion_activation": FUSION_ACTIVATIONS,
    "loss": LOSSES,
}


def chosen(config: WavLMRawNetConfig, name: str):
    """The table entry that config argument `name` names: `chosen(config, "loss")` is `LOSSES[config.loss]`."""
    table, key = CONFIG_CHOICES[name], getattr(config, name)
    if key not in table:
        raise ValueError(f"{name} must be one of {sorted(table)}, got {key!r}")
    return table[key]


# ----------------------------------------------------------------------------------------------- the model
class WavLMRawNetPreTrainedModel(PreTrainedModel):
    config_class = WavLMRawNetConfig
    config: WavLMRawNetConfig
    base_model_prefix = "wavlmrawnet"
    main_input_name = "input_values"
    input_modalities = "audio"
    supports_gradient_checkpointing = True
    _supports_sdpa = False
    _supports_flash_attn = False

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, (SincConv, WavLMPooling, MarginSoftmax)):
            module.reset_parameters()
        elif isinstance(module, nn.Conv1d):
            init.kaiming_normal_(module.weight, nonlinearity="leaky_relu", a=self.config.leaky_relu_slope)
            if module.bias is not None:
                init.zeros_(module.bias)
        else:
            super()._init_weights(module)


class WavLMRawNetForXVector(WavLMRawNetPreTrainedModel):
    """WavLM Large + RawNet2.5 fused into a 256-d speaker embedding, with an AM-/AAM-Softmax head for training."""

    def __init__(self, config: WavLMRawNetConfig):
        super().__init__(config)
        self.wavlm = self.wavlm_pooling = None
        if config.use_wavlm_branch:
            self.wavlm = WavLMModel(config.wavlm_config)
            self.wavlm_pooling = chosen(config, "wavlm_pooling")(config)
            self._freeze_unused_final_norm()
        self.rawnet = RawNetEncoder(config) if config.use_rawnet_branch else None

        fused_dim = (self.wavlm_pooling.output_size if self.wavlm is not None else 0) + (
            config.rawnet_embedding_dim if self.rawnet is not None else 0
        )
        self.fusion = nn.Linear(fused_dim, config.embedding_dim)
        self.fusion_activation = chosen(config, "fusion_activation")()
        self.objective = chosen(config, "loss")(config)
        self.post_init()
        self.set_fast_paths(True)

    # ------------------------------------------------------------------ speed
    # On a CPU in eval mode, a padded batch's clips more than this shorter than their group's longest run in a call of
    # their own (`length_groups`; calibrated with benchmarks/bench_length_groups.py on a 2-core Xeon in fp32)
    length_group_seconds = 1.0

    def set_fast_paths(self, enabled: bool = True) -> "WavLMRawNetForXVector":
        """Switches the faster computation of the same function on (the default) or off (transformers' own WavLM).

        On: WavLM attention through `F.scaled_dot_product_attention` (`WavLMFastAttention`), fp32 CPU inference
        linears through oneDNN (`InferenceLinear`), the feed-forward's GELU as the first linear's post-op in inference
        where oneDNN runs AVX-512 (`WavLMFastFeedForward`), the convolutional feature encoder computed time-major
        (`WavLMFastFeatureEncoder`; on a GPU only for large autocast batches), the positional convolution as an FFT
        overlap-save with cached kernel spectra in fp32 (`WavLMFastPositionalConvEmbedding`), the weighted layer
        pooling computed as each layer finishes, with the last layer's second feed-forward product applied after it
        (`RunningLayerSum`), an unpadded input passed to WavLM without a mask, a padded batch on a CPU in eval mode
        run in groups of similar length (`length_groups`), the sinc filter bank cached while it does not change, and
        eval-mode RawNet inference on time-major activations (`RawNetEncoder.time_major`).
        Under CPU bf16 autocast in inference the linears use cached bf16 weight copies (`linear_weights`; ~600 MB at
        Large size, dropped by `clear_inference_caches`) through oneDNN's bf16 kernel where it runs natively, with
        the query, key and value as one product. Weights and the state dict are the same either way; embeddings agree
        to fp32 rounding. Returns the model.
        """
        self.fast_paths = enabled
        if self.wavlm is not None:
            for layer in self.wavlm.encoder.layers:
                layer.attention.__class__ = WavLMFastAttention if enabled else WavLMAttentionContiguousInput
                if type(layer.feed_forward) in (WavLMFeedForward, WavLMFastFeedForward):
                    layer.feed_forward.__class__ = WavLMFastFeedForward if enabled else WavLMFeedForward
            self.wavlm.feature_extractor.__class__ = WavLMFastFeatureEncoder if enabled else WavLMFeatureEncoder
            positional = self.wavlm.encoder.pos_conv_embed
            if type(positional) in (WavLMPositionalConvEmbedding, WavLMFastPositionalConvEmbedding):
                positional.__class__ = WavLMFastPositionalConvEmbedding if enabled else WavLMPositionalConvEmbedding
            for module in self.wavlm.modules():
                if type(module) in (nn.Linear, InferenceLinear):
                    module.__class__ = InferenceLinear if enabled else nn.Linear
        if self.rawnet is not None:
            self.rawnet.sinc.cache_filters = self.rawnet.time_major_inference = enabled
        return self

    def clear_inference_caches(self) -> "WavLMRawNetForXVector":
        """Drops the tensors inference derived from the weights (bf16 weight copies, kernel spectra, filter banks,
        frame-major kernels; `inference_cache`), e.g. to free the bf16 copies after bf16 inference. The next call
        that needs them builds them again. Returns the model."""
        for module in self.modules():
            module.__dict__.pop("_inference_cache", None)
        return self

    # ------------------------------------------------------------------ freezing
    def freeze_feature_encoder(self):
        """Stops gradients into WavLM's convolutional feature encoder."""
        if self.wavlm is not None:
            self.wavlm.feature_extractor._freeze_parameters()

    def _freeze_unused_final_norm(self):
        """A pooling that reads WavLM's hidden states skips the stable-layer-norm encoder's final norm: that norm gets
        no gradient, and DDP (without find_unused_parameters) requires every trainable parameter to get one."""
        if self.wavlm_pooling.reads_hidden_states and getattr(self.config.wavlm_config, "do_stable_layer_norm", False):
            self.wavlm.encoder.layer_norm.requires_grad_(False)

    # ------------------------------------------------------------------ branches
    def wavlm_features(self, input_values, attention_mask, output_hidden_states=False):
        """WavLM's pooled frames (B, wavlm_pooling.output_size), and WavLM's outputs (with the running sum and no
        hidden states asked for, the last hidden state is not WavLM's: see `RunningLayerSum`)."""
        tracing = torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()
        # With the fast paths WavLM gets no mask where nothing is padded: one check here instead of a padding bias in
        # every layer (on an H200, batch 1 x 10 s in bf16: 21.2 -> 18.1 ms). Not while tracing: it reads the mask.
        unpadded = self.fast_paths and attention_mask is not None and not tracing and bool(attention_mask.all())
        wavlm_mask = None if unpadded else attention_mask
        # With layerdrop, transformers records no hidden state for a skipped layer: the running sum counts its input.
        layers_dropped = self.training and self.wavlm.config.layerdrop > 0
        running_sum = isinstance(self.wavlm_pooling, WeightedLayerPooling) and not torch.compiler.is_compiling()
        if running_sum and (self.fast_paths or layers_dropped):
            # The pooling is computed as each layer finishes (hooks: not while compiling). Unless the hidden states
            # are returned, the last layer's second feed-forward product is applied after it (its frames differ).
            num_frames = int(self.wavlm._get_feat_extract_output_lengths(input_values.shape[1]))
            frame_mask = self.wavlm._get_feature_vector_attention_mask(num_frames, attention_mask)
            weights, project_after_pooling = self.wavlm_pooling.normalized_weights(), not output_hidden_states
            with RunningLayerSum(self.wavlm.encoder, weights, frame_mask, project_after_pooling) as running:
                outputs = self.wavlm(
                    input_values, attention_mask=wavlm_mask, output_hidden_states=bool(output_hidden_states)
                )
            return self.wavlm_pooling(outputs, frame_mask, pooled=running.total), outputs
        outputs = self.wavlm(
            input_values,
            attention_mask=wavlm_mask,
            output_hidden_states=self.wavlm_pooling.reads_hidden_states or bool(output_hidden_states),
        )
        frame_mask = self.wavlm._get_feature_vector_attention_mask(outputs.last_hidden_state.shape[1], attention_mask)
        return self.wavlm_pooling(outputs, frame_mask), outputs

    def length_groups(self, input_values: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor] | None:
        """The rows of each group of clips the model runs apart, or None to run the batch whole.

        With the fast paths, in eval mode on a CPU, a right-padded batch whose lengths differ by more than
        `length_group_seconds` runs in groups: every padded frame costs as much as a real one (8 clips of 2-10 s hold
        48 s of audio in 80 s of frames, and attention grows with the square of the length). A group holds the clips
        at most `length_group_seconds` shorter than its longest: each call streams all of WavLM's weights from memory
        (~0.14 s at Large size in fp32 on a 2-core Xeon, the time of ~0.4 s of audio), so close lengths share one
        call. The embeddings are the same: both branches mask padded frames out.
        """
        if not self.fast_paths or self.training or input_values.device.type != "cpu" or input_values.shape[0] < 2:
            return None
        if torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export():
            return None
        lengths = attention_mask.sum(dim=1)
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        if not bool((attention_mask.bool() == (positions < lengths[:, None])).all()):
            return None  # not right-padding
        gap = self.length_group_seconds * self.config.sampling_rate
        groups, longest = [], 0
        for row in torch.argsort(lengths, descending=True, stable=True).tolist():
            if groups and longest - int(lengths[row]) <= gap:
                groups[-1].append(row)
            else:
                groups.append([row])
                longest = int(lengths[row])
        return [torch.tensor(rows, device=lengths.device) for rows in groups] if len(groups) > 1 else None

    def check_input_lengths(self, lengths: torch.Tensor) -> None:
        """Raises a ValueError naming the clips (samples per clip: `lengths`, the mask's row sums) shorter than
        `config.min_input_samples`, the fewest that give every branch one frame: alone such a clip failed deep inside
        WavLM, and padded in a batch it was pooled from no frame at all. (`WavLMRawNetFeatureExtractor` refuses such
        audio before it reaches the model.)"""
        short = (lengths < self.config.min_input_samples).nonzero().flatten().tolist()
        if short:
            found = ", ".join(f"clip {row}: {int(lengths[row])}" for row in short[:10])
            raise ValueError(
                f"{len(short)} clip(s) too short for this model ({found} samples); it needs at least "
                f"{self.config.min_input_samples} samples ({self.config.min_input_seconds:g} s at "
                f"{self.config.sampling_rate} Hz) for one frame in every branch"
            )

    def forward_by_group(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor,
        lengths: torch.Tensor,
        groups: list[torch.Tensor],
    ) -> XVectorOutput:
        """`forward` (no labels, no hidden states) run for each group of `length_groups`, padded to its longest
        (`lengths`: the mask's row sums)."""
        logits = embeddings = None
        for rows in groups:
            longest = int(lengths[rows].max())
            group = self(input_values[rows, :longest], attention_mask=attention_mask[rows, :longest], return_dict=True)
            if embeddings is None:
                embeddings = group.embeddings.new_empty(input_values.shape[0], group.embeddings.shape[1])
                logits = group.logits.new_empty(input_values.shape[0], group.logits.shape[1])
            embeddings[rows], logits[rows] = group.embeddings, group.logits
        return XVectorOutput(logits=logits, embeddings=embeddings)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> XVectorOutput | tuple:
        r"""
        Args:
            input_values (`torch.FloatTensor` of shape `(batch_size, samples)`):
                Mono 16 kHz waveforms, as prepared by [`WavLMRawNetFeatureExtractor`].
            attention_mask (`torch.LongTensor` of shape `(batch_size, samples)`, *optional*):
                1 for real samples, 0 for padding. Needed whenever a batch holds clips of different lengths.
            labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
                Speaker indices in `[0, config.num_labels)`; the AM-/AAM-Softmax loss is returned when given.
            output_hidden_states (`bool`, *optional*):
                Also return WavLM's hidden states.
            return_dict (`bool`, *optional*):
                Return an `XVectorOutput` (default) or a tuple.

        Returns:
            `XVectorOutput` with `embeddings` (B, embedding_dim), `logits` (B, num_labels) = scale x cosine to
            each speaker's weight (no margin), `loss` when labels are given, and `hidden_states` if asked.
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if input_values.dim() != 2:
            raise ValueError(f"input_values must be (batch, samples), got shape {tuple(input_values.shape)}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_values, dtype=torch.long)
        sample_lengths = attention_mask.sum(dim=1)
        if not (torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()):  # a traced graph has no such check
            self.check_input_lengths(sample_lengths)
        plain = labels is None and not output_hidden_states  # embeddings and logits only
        groups = self.length_groups(input_values, attention_mask) if plain else None
        if groups is not None:
            output = self.forward_by_group(input_values, attention_mask, sample_lengths, groups)
            return output if return_dict else (output.logits, output.embeddings)

        pooled, hidden_states = [], None
        if self.wavlm is not None:
            wavlm_pooled, wavlm_outputs = self.wavlm_features(input_values, attention_mask, output_hidden_states)
            pooled.append(wavlm_pooled)
            hidden_states = wavlm_outputs.hidden_states if output_hidden_states else None
        if self.rawnet is not None:
            # Padding is zeroed: the branch must see exactly what the clip alone would give.
            waveform = input_values * attention_mask.to(input_values.dtype)
            pooled.append(self.rawnet(waveform, sample_lengths).to(pooled[0].dtype if pooled else waveform.dtype))

        embeddings = self.fusion_activation(self.fusion(torch.cat(pooled, dim=1)))
        logits, loss = self.objective(embeddings, labels)

        if not return_dict:
            output = (logits, embeddings) + ((hidden_states,) if hidden_states is not None else ())
            return ((loss,) + output) if loss is not None else output
        return XVectorOutput(loss=loss, logits=logits, embeddings=embeddings, hidden_states=hidden_states)

    def embed(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        chunk_seconds: float | None = None,
        overlap_seconds: float | None = None,
        chunk_batch_size: int = 1,
    ) -> torch.Tensor:
        """Un-normalised embeddings (B, embedding_dim); utterances longer than `chunk_seconds` are embedded in
        overlapping windows whose embeddings are averaged with duration weights, so memory does not grow with length.

        `chunk_seconds`/`overlap_seconds` default to `config.chunk_seconds`/`config.chunk_overlap_seconds`;
        `chunk_seconds=0` turns chunking off. `chunk_batch_size` windows run per forward (1 keeps peak memory
        lowest). An utterance no longer than one chunk gets exactly the un-chunked embedding.
        """
        chunk_seconds = self.config.chunk_seconds if chunk_seconds is None else chunk_seconds
        overlap_seconds = self.config.chunk_overlap_seconds if overlap_seconds is None else overlap_seconds
        if attention_mask is None:
            attention_mask = torch.ones_like(input_values, dtype=torch.long)
        lengths = attention_mask.sum(dim=1)
        chunk = int(round(chunk_seconds * self.config.sampling_rate)) if chunk_seconds else 0
        if not chunk or int(lengths.max()) <= chunk:
            return self(input_values, attention_mask=attention_mask).embeddings
        hop = chunk - int(round(overlap_seconds * self.config.sampling_rate))
        if hop <= 0:
            raise ValueError(
                f"overlap_seconds ({overlap_seconds}) must be shorter than chunk_seconds ({chunk_seconds})"
            )
        embeddings = []
        for waveform, length in zip(input_values, lengths.tolist()):
            waveform = waveform[:length]
            if length <= chunk:
                embeddings.append(self(waveform[None]).embeddings[0])
                continue
            # Windows start every `hop` samples and the last one ends at the end of the utterance, so every window
            # lasts `chunk` samples: the duration-weighted average is their plain mean.
            starts = list(range(0, length - chunk, hop)) + [length - chunk]
            total = 0.0
            for first in range(0, len(starts), chunk_batch_size):
                batch = torch.stack([waveform[s : s + chunk] for s in starts[first : first + chunk_batch_size]])
                total = total + self(batch).embeddings.float().sum(dim=0)
            embeddings.append(total / len(starts))
        return torch.stack(embeddings)

    @torch.inference_mode()
    def get_embeddings(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        chunk_seconds: float | None = None,
        overlap_seconds: float | None = None,
        chunk_batch_size: int = 1,
    ) -> torch.Tensor:
        """L2-normalised speaker embeddings (B, embedding_dim), computed in eval mode (see `embed` for chunking)."""
        was_training = self.training
        self.eval()
        try:
            embeddings = self.embed(input_values, attention_mask, chunk_seconds, overlap_seconds, chunk_batch_size)
        finally:
            self.train(was_training)
        return F.normalize(embeddings.float(), dim=1)

    def precision(self, requested: str | None = "auto") -> Precision:
        """The inference precision for this model's device: see [`resolve_precision`]."""
        return resolve_precision(requested, next(self.parameters()).device)

    # ------------------------------------------------------------------ saving and construction
    def default_feature_extractor(self) -> WavLMRawNetFeatureExtractor:
        """The feature extractor matching this config (rate, and a minimum length every branch can handle)."""
        return WavLMRawNetFeatureExtractor(
            sampling_rate=self.config.sampling_rate, min_seconds=max(0.5, self.config.min_input_seconds)
        )

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Writes a complete folder: config (with `auto_map` and `custom_pipelines`), safetensors weights,
        `preprocessor_config.json` (unless one is there already) and the remote-code files, `handler.py` included."""
        # handler.py (the Inference Endpoints handler) is a relative import, so transformers copies it into the folder
        # with the other remote-code files, and into the remote-code cache when the folder is loaded.
        from .handler import EndpointHandler  # noqa: F401

        self.config.custom_pipelines = copy.deepcopy(CUSTOM_PIPELINES)
        # Remote-code users may load through AutoModelForAudioXVector too (transformers adds AutoModel itself).
        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        self.config.auto_map = {
            **auto_map,
            "AutoModelForAudioXVector": f"{type(self).__module__.split('.')[-1]}.{type(self).__name__}",
        }
        super().save_pretrained(save_directory, *args, **kwargs)
        preprocessor_file = os.path.join(save_directory, "preprocessor_config.json")
        if kwargs.get("is_main_process", True) and not os.path.exists(preprocessor_file):
            self.default_feature_extractor().save_pretrained(save_directory)

    @classmethod
    def from_wavlm_pretrained(cls, name_or_path: str, preset: str = "default", **config_overrides):
        """The fused model with WavLM weights from `WavLMModel.from_pretrained(name_or_path)`.

        The WavLM architecture comes from that checkpoint; the RawNet branch, the fusion and the loss are new.
        Layerdrop is turned off (it breaks DDP and makes embeddings random); pass `wavlm_config={"layerdrop": p}`
        to keep it.
        """
        wavlm_overrides = {"layerdrop": 0.0, **config_overrides.pop("wavlm_config", {})}
        wavlm = WavLMModel.from_pretrained(name_or_path, **wavlm_overrides)
        wavlm_config = wavlm.config.to_dict()
        config = WavLMRawNetConfig.from_preset(preset, wavlm_config=wavlm_config, **config_overrides)
        model = cls(config)
        model.wavlm.load_state_dict(wavlm.state_dict())
        return model


WavLMRawNetForXVector.register_for_auto_class("AutoModel")

__all__ = [
    "CONFIG_CHOICES",
    "FUSION_ACTIVATIONS",
    "LOSSES",
    "PRECISION_ALIASES",
    "PRECISION_DTYPES",
    "RAWNET_POOLINGS",
    "SINC_INITS",
    "WAVLM_POOLINGS",
    "AAMSoftmax",
    "AMSoftmax",
    "AttentiveStatisticsPooling",
    "LastLayerPooling",
    "MarginSoftmax",
    "Precision",
    "SincConv",
    "WavLMAttentionContiguousInput",
    "WavLMFastAttention",
    "WavLMFastFeatureEncoder",
    "WavLMFastFeedForward",
    "WavLMFastPositionalConvEmbedding",
    "InferenceLinear",
    "RunningLayerSum",
    "WavLMPooling",
    "WavLMRawNetForXVector",
    "WavLMRawNetPreTrainedModel",
    "WeightedLayerPooling",
    "chosen",
    "cpu_native_bf16",
    "describe_cpu",
    "resolve_precision",
]
