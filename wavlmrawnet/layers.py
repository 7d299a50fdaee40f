"""The layers of WavLMRawNet, as the network is defined: masks, the RawNet2.5 branch, the poolings, the losses, and
the tables that name them.

The waveform's path through RawNet reads top to bottom: `SincConv` -> |.| -> max-pool -> `MaskedBatchNorm1d` ->
LeakyReLU -> `ResidualBlock`s (with `SqueezeExcitation`) -> a pooling (`RAWNET_POOLINGS`) -> FC, in
`RawNetEncoder.forward`. Every stage carries a frame mask, so a clip's embedding does not depend on the padding added
beside it in a batch. Faster computations of the same functions live in `fast_rawnet.py` and `fast_wavlm.py`.

Adding a part (a pooling, a loss, ...): write its class here, add it to its table at the bottom, and add its name to
`PART_NAMES` in `configuration_wavlmrawnet.py`; the config then accepts it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from .configuration_wavlmrawnet import PART_NAMES, WavLMRawNetConfig, check_part_name


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

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, out_channels, T') with T' = floor((T - kernel) / stride) + 1 (no padding)."""
        return F.conv1d(waveform.unsqueeze(1), self.filters().to(waveform.dtype), stride=self.stride)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return conv_output_lengths(lengths, self.kernel_size, self.stride)


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


class RawNetEncoder(nn.Module):
    """RawNet2.5: SincConv -> |.| -> max-pool -> BN -> LReLU -> residual stack -> pooling -> FC."""

    def __init__(self, config: WavLMRawNetConfig):
        super().__init__()
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
        x = self.sinc(waveform).abs()
        lengths = self.sinc.output_lengths(sample_lengths)
        if self.sinc_pool_size > 1:
            x = F.max_pool1d(x, self.sinc_pool_size)
            lengths = torch.div(lengths, self.sinc_pool_size, rounding_mode="floor")
        x = self.activation(self.sinc_bn(x, lengths_to_mask(lengths, x.shape[-1])))
        for block in self.blocks:
            x, lengths = block(x, lengths)
        return self.fc(self.pooling(x, lengths_to_mask(lengths, x.shape[-1])))


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

    def forward(self, outputs, frame_mask: torch.Tensor) -> torch.Tensor:
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
# Adding a part: write its class, add it to its table, and its name to the config's `PART_NAMES`.
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
    return CONFIG_CHOICES[name][check_part_name(config, name)]


__all__ = [
    "CONFIG_CHOICES",
    "FUSION_ACTIVATIONS",
    "LOSSES",
    "PART_NAMES",
    "RAWNET_POOLINGS",
    "SINC_INITS",
    "WAVLM_POOLINGS",
    "AAMSoftmax",
    "AMSoftmax",
    "AttentiveStatisticsPooling",
    "LastLayerPooling",
    "MarginSoftmax",
    "MaskedBatchNorm1d",
    "RawNetEncoder",
    "ResidualBlock",
    "SincConv",
    "SqueezeExcitation",
    "WavLMPooling",
    "WeightedLayerPooling",
    "chosen",
    "conv_output_lengths",
    "hz_to_mel",
    "lengths_to_mask",
    "masked_mean",
]
