"""The RawNet branch for eval-mode CPU inference: the same function as `layers.py`'s classes, computed on time-major
(B, T, C) activations.

Each `Fast*` class subclasses its layer and adds `time_major`, that layer's computation for a time-major input;
`FastRawNetEncoder.forward` runs the whole branch that way when no gradient is recorded on a CPU (and not while
torch.compile or the ONNX exporter traces), else the layer's own forward. The waveform's path:
`FastSincConv.pooled_magnitudes_time_major` (the filter bank as blocked FFTs at stride 1, or matrix products, each
block pooled while in cache) -> `FastMaskedBatchNorm1d.time_major` (one pass) -> `FastResidualBlock.time_major`
(channels-last convolutions) -> the pooling -> FC. `fast_paths.use_fast_paths` installs these classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cpu_kernels import (
    conv1d_time_major,
    inference_cache,
    inference_kernels_apply,
    inference_linear,
    max_pool_time_major,
    overlap_save_segments,
)
from .layers import (
    AttentiveStatisticsPooling,
    MaskedBatchNorm1d,
    RawNetEncoder,
    ResidualBlock,
    SincConv,
    SqueezeExcitation,
    lengths_to_mask,
)


class FastSincConv(SincConv):
    """`SincConv` whose filter bank is built once while the cutoffs do not change and no gradient is needed."""

    def inference_filters(self, dtype: torch.dtype) -> torch.Tensor:
        """`filters()` in `dtype`; without gradients built once per parameter version."""
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return self.filters().to(dtype)
        return inference_cache(self, "filters", lambda: self.filters().to(dtype), dtype)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return F.conv1d(waveform.unsqueeze(1), self.inference_filters(waveform.dtype), stride=self.stride)

    def pooled_magnitudes_time_major(self, waveform: torch.Tensor, pool_size: int) -> torch.Tensor:
        """`F.max_pool1d(forward(waveform).abs(), pool_size)`, time-major: (B, T' // pool_size, out_channels).

        For inference: the filter bank is applied block by block, and each block is pooled while it is in cache. At
        stride 1 in fp32/fp64 (not under autocast) the blocks are FFT products (`pooled_magnitudes_fft`); otherwise
        each block of windows is a matrix product (faster on a CPU than the convolution, then |.|, then pooling).
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
        sample: faster than the blocked matrix product for the 251-tap, 128-filter bank (rel. error ~1e-6).
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


class FastMaskedBatchNorm1d(MaskedBatchNorm1d):
    """`MaskedBatchNorm1d` with its eval-mode normalisation of a time-major input."""

    def time_major(self, x: torch.Tensor) -> torch.Tensor:
        """Eval-mode normalisation (running statistics) of a time-major (B, T, C) input, in one pass."""
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype))


class FastSqueezeExcitation(SqueezeExcitation):
    """`SqueezeExcitation` with its gating of a time-major input."""

    def time_major(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`forward` for a time-major (B, T, C) input, scaled in place: the masked mean as one matrix product."""
        frame_weights = mask.to(x.dtype) / mask.sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)
        squeezed = torch.bmm(frame_weights[:, None, :], x)[:, 0]
        return x.mul_(self.gates(squeezed)[:, None, :])


class FastResidualBlock(ResidualBlock):
    """`ResidualBlock` with its eval-mode computation of a time-major input (its norms and gate: `Fast*` too)."""

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


class FastAttentiveStatisticsPooling(AttentiveStatisticsPooling):
    """`AttentiveStatisticsPooling` of a time-major input."""

    def time_major(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`forward` for a time-major (B, frames, channels) input: the 1x1 convolutions as linear layers."""
        first, activation, second = self.attention
        hidden = activation(F.linear(x, first.weight[:, :, 0], first.bias))
        return self.weighted_statistics(x, F.linear(hidden, second.weight[:, :, 0], second.bias), mask[:, :, None], 1)


class FastRawNetEncoder(RawNetEncoder):
    """`RawNetEncoder` computed on time-major activations in eval-mode CPU inference without gradients."""

    def forward(self, waveform: torch.Tensor, sample_lengths: torch.Tensor) -> torch.Tensor:
        if not self.training and inference_kernels_apply(waveform):
            return self.time_major(waveform, sample_lengths)
        return super().forward(waveform, sample_lengths)

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


__all__ = [
    "FastAttentiveStatisticsPooling",
    "FastMaskedBatchNorm1d",
    "FastRawNetEncoder",
    "FastResidualBlock",
    "FastSincConv",
    "FastSqueezeExcitation",
]
