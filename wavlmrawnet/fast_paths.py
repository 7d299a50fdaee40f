"""Where the fast paths are chosen and the model-level ones live.

`install_fast_classes(model, enabled)` is the one place that swaps a model's layers for their faster twins
(`fast_rawnet.py`, `fast_wavlm.py`) or back; `WavLMRawNetForXVector.set_fast_paths` calls it. The other model-level
fast paths are plain functions the model calls while its fast paths are on: WavLM fed no mask where nothing is padded
(`wavlm_attention_mask`), the weighted layer pooling summed while WavLM runs (`running_sum_features`), and a padded
batch run in groups of similar length on a CPU (`length_groups`, `by_length_group`). Each computes the same function
as the reference (`modeling_wavlmrawnet.py`, `layers.py`), to fp32 rounding.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

import torch
from torch import nn
from transformers.models.wavlm.modeling_wavlm import (
    WavLMAttention,
    WavLMFeatureEncoder,
    WavLMFeedForward,
    WavLMPositionalConvEmbedding,
)

from .cpu_kernels import tracing
from .fast_rawnet import (
    FastAttentiveStatisticsPooling,
    FastMaskedBatchNorm1d,
    FastRawNetEncoder,
    FastResidualBlock,
    FastSincConv,
    FastSqueezeExcitation,
)
from .fast_wavlm import (
    InferenceLinear,
    RunningLayerSum,
    WavLMAttentionContiguousInput,
    WavLMFastAttention,
    WavLMFastFeatureEncoder,
    WavLMFastFeedForward,
    WavLMFastPositionalConvEmbedding,
)
from .layers import (
    AttentiveStatisticsPooling,
    MaskedBatchNorm1d,
    RawNetEncoder,
    ResidualBlock,
    SincConv,
    SqueezeExcitation,
)

# Reference class -> fast class, per branch. Only exact types are swapped: a subclass of one's own stays as it is.
RAWNET_FAST_CLASSES: dict[type, type] = {
    SincConv: FastSincConv,
    MaskedBatchNorm1d: FastMaskedBatchNorm1d,
    SqueezeExcitation: FastSqueezeExcitation,
    ResidualBlock: FastResidualBlock,
    AttentiveStatisticsPooling: FastAttentiveStatisticsPooling,
    RawNetEncoder: FastRawNetEncoder,
}
WAVLM_FAST_CLASSES: dict[type, type] = {
    WavLMAttention: WavLMFastAttention,
    WavLMAttentionContiguousInput: WavLMFastAttention,
    WavLMFeedForward: WavLMFastFeedForward,
    WavLMPositionalConvEmbedding: WavLMFastPositionalConvEmbedding,
    WavLMFeatureEncoder: WavLMFastFeatureEncoder,
    nn.Linear: InferenceLinear,
}
RAWNET_REFERENCE_CLASSES = {fast: reference for reference, fast in RAWNET_FAST_CLASSES.items()}
# With the fast paths off WavLM runs transformers' own layers, except that its attention gets a contiguous input
# (`WavLMAttentionContiguousInput`: the same computation, without a torch bf16 slowdown).
WAVLM_REFERENCE_CLASSES = {
    WavLMAttention: WavLMAttentionContiguousInput,
    WavLMFastAttention: WavLMAttentionContiguousInput,
    WavLMFastFeedForward: WavLMFeedForward,
    WavLMFastPositionalConvEmbedding: WavLMPositionalConvEmbedding,
    WavLMFastFeatureEncoder: WavLMFeatureEncoder,
    InferenceLinear: nn.Linear,
}


def swap_classes(root: nn.Module, table: dict[type, type]) -> nn.Module:
    """Gives every module under `root` (itself included) whose exact type is a key of `table` that key's value as
    its class. Parameters, buffers and the state dict are untouched: the fast classes only add methods. Returns
    `root`."""
    for module in root.modules():
        new_class = table.get(type(module))
        if new_class is not None:
            module.__class__ = new_class
    return root


def install_fast_classes(model: nn.Module, enabled: bool) -> None:
    """Gives the layers of `model.wavlm` and `model.rawnet` their fast classes (`enabled`) or their reference ones."""
    for branch, fast, reference in (
        (model.wavlm, WAVLM_FAST_CLASSES, WAVLM_REFERENCE_CLASSES),
        (model.rawnet, RAWNET_FAST_CLASSES, RAWNET_REFERENCE_CLASSES),
    ):
        if branch is not None:
            swap_classes(branch, fast if enabled else reference)


def wavlm_attention_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """The mask to give WavLM: None where nothing is padded (one check here instead of a padding bias in every
    layer); the mask itself while tracing, which cannot read it."""
    if attention_mask is not None and not tracing() and bool(attention_mask.all()):
        return None
    return attention_mask


def running_sum_features(
    model: nn.Module,
    input_values: torch.Tensor,
    attention_mask: torch.Tensor | None,
    wavlm_mask: torch.Tensor | None,
    output_hidden_states: bool,
) -> tuple[torch.Tensor, object]:
    """The weighted layer pooling of `model.wavlm_pooling` summed as each layer finishes (`RunningLayerSum`), and
    WavLM's outputs. Unless the hidden states are returned, the last layer's second feed-forward product is applied
    after the pooling (its frames then differ from WavLM's)."""
    wavlm = model.wavlm
    num_frames = model.config.wavlm_frames(input_values.shape[1])
    frame_mask = wavlm._get_feature_vector_attention_mask(num_frames, attention_mask)
    weights = model.wavlm_pooling.normalized_weights()
    # The running sum hooks WavLM's layers and puts the last feed-forward in its pooled mode for the call: state on
    # shared modules, so concurrent calls on one model (a server's threads) take turns here.
    with _RUNNING_SUM_LOCKS.setdefault(wavlm, threading.Lock()):
        with RunningLayerSum(wavlm.encoder, weights, frame_mask, not output_hidden_states) as total:
            outputs = wavlm(input_values, attention_mask=wavlm_mask, output_hidden_states=bool(output_hidden_states))
    return total.total, outputs


_RUNNING_SUM_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # WavLM module -> its lock


def length_groups(lengths: torch.Tensor, attention_mask: torch.Tensor, max_gap: float) -> list[torch.Tensor] | None:
    """The rows of each group of clips to run apart, or None to run the batch whole.

    Every padded frame costs as much as a real one, and attention grows with the square of the length; but each call
    streams all of WavLM's weights from memory, so close lengths share one call. A group holds the clips at most
    `max_gap` samples shorter than its longest (`lengths`: samples per clip). None also where the batch is not
    right-padded.
    """
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    if not bool((attention_mask.bool() == (positions < lengths[:, None])).all()):
        return None
    groups, longest = [], 0
    for row in torch.argsort(lengths, descending=True, stable=True).tolist():
        if groups and longest - int(lengths[row]) <= max_gap:
            groups[-1].append(row)
        else:
            groups.append([row])
            longest = int(lengths[row])
    return [torch.tensor(rows, device=lengths.device) for rows in groups] if len(groups) > 1 else None


def by_length_group(
    compute: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    input_values: torch.Tensor,
    attention_mask: torch.Tensor,
    lengths: torch.Tensor,
    groups: list[torch.Tensor],
) -> torch.Tensor:
    """`compute(values, mask, lengths) -> (rows, dim)` run for each group, padded only to its longest clip, and put
    back in the batch's row order."""
    out = None
    for rows in groups:
        longest = int(lengths[rows].max())
        part = compute(input_values[rows, :longest], attention_mask[rows, :longest], lengths[rows])
        if out is None:
            out = part.new_empty(input_values.shape[0], part.shape[1])
        out[rows] = part
    return out


__all__ = [
    "RAWNET_FAST_CLASSES",
    "RAWNET_REFERENCE_CLASSES",
    "WAVLM_FAST_CLASSES",
    "WAVLM_REFERENCE_CLASSES",
    "by_length_group",
    "install_fast_classes",
    "length_groups",
    "running_sum_features",
    "swap_classes",
    "wavlm_attention_mask",
]
