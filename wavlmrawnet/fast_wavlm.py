"""WavLM's layers computed faster for the same function: subclasses of transformers' WavLM classes, and the weighted
layer pooling computed while WavLM runs.

`fast_paths.use_fast_paths` installs them in a model's WavLM (and transformers' own classes back when switched off).
Each keeps transformers' parameters and state dict; training, tracing and other devices run transformers' forward
where a class says so. Measurements behind each choice: docs/performance.md.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import GELUActivation
from transformers.models.wavlm.modeling_wavlm import (
    WavLMAttention,
    WavLMEncoderLayerStableLayerNorm,
    WavLMFeatureEncoder,
    WavLMFeedForward,
    WavLMLayerNormConvLayer,
    WavLMPositionalConvEmbedding,
)

from .cpu_kernels import (
    ONEDNN_BF16_LINEAR,
    bf16_autocast_inference,
    inference_cache,
    inference_kernels_apply,
    inference_linear,
    inference_linear_add,
    inference_linear_gelu,
    linear_weights,
    mean_weights,
    overlap_save_segments,
    weighted_frame_sum,
)


def apply_linear(layer: nn.Module, x: torch.Tensor, gelu: bool = False) -> torch.Tensor:
    """`layer(x)`, then the exact GELU where `gelu`, as the fast layers compute it: a float `nn.Linear` through
    `inference_linear` / `inference_linear_gelu` (oneDNN in CPU inference); any other linear module, such as the int8
    dynamically quantised linears of `quantization.py`, through its own forward."""
    if not isinstance(layer, nn.Linear):
        return F.gelu(layer(x)) if gelu else layer(x)
    if gelu:
        return inference_linear_gelu(x, *linear_weights(layer, x))
    return inference_linear(x, *linear_weights(layer, x))


class InferenceLinear(nn.Linear):
    """`nn.Linear` computed by `inference_linear` (same parameters and state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return inference_linear(x, *linear_weights(self, x))


class WavLMAttentionContiguousInput(WavLMAttention):
    """WavLM attention fed a contiguous time-major copy of its input (transformers' own computation otherwise).

    WavLM hands `F.multi_head_attention_forward` a transposed view; for such a bf16 input torch's CPU matmul copies the
    weight once per frame (pytorch/pytorch#151934), which makes bf16 many times slower than needed. Results are
    unchanged. With the fast paths off (`fast_paths.use_fast_paths(model, False)`), WavLM runs transformers' own
    layers with this one exception.
    """

    def torch_multi_head_self_attention(self, hidden_states, attention_mask, gated_position_bias):
        time_major = hidden_states.transpose(0, 1).contiguous()
        return super().torch_multi_head_self_attention(time_major.transpose(0, 1), attention_mask, gated_position_bias)


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
            # multiplies in that dtype (fp32 inputs written to bf16 cost several times as long).
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
        return apply_linear(self.out_proj, attended), None, position_bias

    def projections(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Query, key and value, each (B, heads, T, head_dim). In bf16 CPU inference through oneDNN, one product with
        the three weights stacked (bf16, cached), faster than three products."""
        batch, frames, _ = hidden_states.shape
        shape = (batch, frames, self.num_heads, self.head_dim)
        projections = (self.q_proj, self.k_proj, self.v_proj)
        if ONEDNN_BF16_LINEAR and bf16_autocast_inference(hidden_states):

            def build():
                weight = torch.cat([p.weight.detach() for p in projections]).to(torch.bfloat16)
                return weight, torch.cat([p.bias.detach() for p in projections]).to(torch.bfloat16)

            stacked = inference_linear(hidden_states, *inference_cache(self, "bf16_qkv", build))
            return stacked.view(batch, frames, 3, *shape[2:]).permute(2, 0, 3, 1, 4).unbind(0)
        return tuple(apply_linear(p, hidden_states).view(shape).transpose(1, 2) for p in projections)


def is_exact_gelu(activation) -> bool:
    """Whether `activation` is transformers' `"gelu"`: torch's exact (erf) GELU."""
    return isinstance(activation, GELUActivation) and activation.act is F.gelu


class WavLMFastFeedForward(WavLMFeedForward):
    """WavLM's feed-forward through `inference_linear_gelu` in inference: in fp32 on a CPU, oneDNN's linears, with GELU
    as the first one's post-op where that pays (no separate pass over the (B, T, 4096) activations). Training and
    other activations run transformers' own forward.

    Inside `pooling_frames(weights)` it returns the weighted sum of its output frames instead (see there).
    """

    _frame_weights: torch.Tensor | None = None  # set only inside `pooling_frames`

    @property
    def runs_fast(self) -> bool:
        """Whether `forward` computes the fast way (eval mode, transformers' exact GELU) rather than transformers'."""
        return not self.training and is_exact_gelu(self.intermediate_act_fn)

    @contextlib.contextmanager
    def pooling_frames(self, frame_weights: torch.Tensor):
        """Within the block, `forward` returns (B, 1, hidden): the second product, which is linear, applied to the
        frames' weighted sum (`frame_weights`, (B, T)) instead of to every frame; one product per clip. Only where
        `runs_fast`."""
        if not self.runs_fast:
            raise RuntimeError("pooling_frames needs the fast forward: eval mode and transformers' exact GELU")
        self._frame_weights = frame_weights
        try:
            yield self
        finally:
            del self._frame_weights

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not self.runs_fast:
            return super().forward(hidden_states)
        inner = apply_linear(self.intermediate_dense, hidden_states, gelu=True)
        if self._frame_weights is not None:
            inner = weighted_frame_sum(inner, self._frame_weights)[:, None]
        return apply_linear(self.output_dense, inner)


class WavLMFastPositionalConvEmbedding(WavLMPositionalConvEmbedding):
    """WavLM's positional convolution for inference, with kernels derived from the weights built once while the
    weights do not change. Kernels of `fft_min_kernel` taps or more run as FFT overlap-save (`fft_convolution`), in
    fp32 also under autocast (faster than bf16 autocast's grouped convolution); shorter ones as a channels-last
    grouped conv2d. Training, other devices and tracing run transformers' own forward. The cached kernel spectra hold
    (n_fft / 2 + 1) x channels x channels / groups complex values."""

    fft_min_kernel = 64  # WavLM's 128-tap kernel runs faster by FFT than as oneDNN's grouped convolution

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
    transposes back, so the next convolution copies its input first; on a CPU those copies and strided passes take a
    large share of the encoder's time. On a GPU it pays only for large low-precision batches (`time_major_pays`).
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
        the unfolded windows (`windows`). A convolution given an int8 twin of its kernel (`conv.int8_windows`, in an
        int8 model) runs that on the windows.
        """
        batch, frames, channels = x.shape
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        out_frames = (frames - kernel) // stride + 1
        int8_windows = getattr(conv, "int8_windows", None)  # the kernel as an int8 linear (`quantization.py`)
        if int8_windows is not None:
            return int8_windows(WavLMFastFeatureEncoder.windows(x, kernel, stride))
        split = 0 if kernel > 2 * stride or conv.dilation[0] != 1 else stride * channels
        dtype = torch.bfloat16 if bf16_autocast_inference(x) else conv.weight.dtype  # see `linear_weights`
        if split < 64:  # unfolded windows (also for narrow inputs such as the 1-channel waveform)
            weight = WavLMFastFeatureEncoder.frame_major_weights(conv, 0, dtype)[0]
            return inference_linear(WavLMFastFeatureEncoder.windows(x, kernel, stride), weight, conv.bias)
        head, tail = WavLMFastFeatureEncoder.frame_major_weights(conv, split, dtype)
        if x.stride(2) != 1 or x.stride(1) != channels:
            x = x.contiguous()

        def rows(offset: int, width: int) -> torch.Tensor:  # (B, T', width) view: `width` values every s frames
            return x.as_strided((batch, out_frames, width), (x.stride(0), split, 1), x.storage_offset() + offset)

        out = inference_linear(rows(0, split), head, conv.bias)
        return out if tail is None else inference_linear_add(rows(split, tail.shape[1]), tail, out)

    @staticmethod
    def windows(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
        """The convolution windows of a time-major (B, T, C) input as rows (B, T', kernel * C), frame-major (the
        layout of `frame_major`): a view of the input where the windows tile it (kernel == stride), else a copy."""
        batch, frames, channels = x.shape
        out_frames = (frames - kernel) // stride + 1
        if kernel == stride:
            return x[:, : out_frames * stride].reshape(batch, out_frames, kernel * channels)
        return x.unfold(1, kernel, stride).transpose(2, 3).reshape(batch, out_frames, -1)

    @staticmethod
    def frame_major(weight: torch.Tensor) -> torch.Tensor:
        """A (out, C_in, kernel) convolution kernel as (out, kernel * C_in): the product over `windows`' rows."""
        return weight.transpose(1, 2).reshape(weight.shape[0], -1)

    @staticmethod
    def frame_major_weights(
        conv: nn.Conv1d, split: int, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The kernel as (out, kernel * C_in), frame-major, cut after column `split` (0: not cut) into contiguous
        parts, in `dtype` (default: the weight's); built once while the weights do not change, unless they are being
        trained."""

        def build():
            weight = WavLMFastFeatureEncoder.frame_major(conv.weight).to(dtype or conv.weight.dtype)
            if not split or split == weight.shape[1]:
                return weight.contiguous(), None
            return weight[:, :split].contiguous(), weight[:, split:].contiguous()

        trained = torch.is_grad_enabled() and conv.weight.requires_grad
        return build() if trained else inference_cache(conv, "frame_major", build, split, dtype)

    @classmethod
    def time_major_pays(cls, device_type: str, low_precision: bool, samples: int) -> bool:
        """Whether the time-major layout is the faster one: always on a CPU; on a GPU only under autocast for batches
        of at least `accelerator_min_samples` (`benchmarks/bench_gpu_parts.py` measures both layouts)."""
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
    (`WavLMFastFeedForward.pooling_frames`): a stable-layer-norm layer's output is its input plus that product, so
    the pooled value is the same, for one product per clip instead of one per frame. The last layer's frames, and the
    last hidden state, are then not WavLM's: for calls that read neither.

    It also serves training with layerdrop, fast paths or not: transformers records no hidden state for a skipped
    layer, so the stack of hidden states would be short.
    """

    def __init__(
        self, encoder: nn.Module, weights: torch.Tensor, frame_mask: torch.Tensor, project_after_pooling: bool = False
    ):
        self.encoder, self.weights, self.total, self.handles = encoder, weights, None, []
        self.contexts = contextlib.ExitStack()
        self.frame_weights = mean_weights(frame_mask)
        self.counted, self.latest = 0, None  # hidden states added so far, and the latest one pooled
        last = encoder.layers[-1]
        movable = (
            isinstance(last, WavLMEncoderLayerStableLayerNorm)
            and isinstance(last.feed_forward, WavLMFastFeedForward)
            and last.feed_forward.runs_fast
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
            self.contexts.enter_context(self.last_feed_forward.pooling_frames(self.frame_weights))
        return self

    def __exit__(self, exc_type, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        self.contexts.close()
        if exc_type is None and self.latest is not None:
            self.add(len(self.weights), None)  # the last layers, if skipped


__all__ = [
    "InferenceLinear",
    "apply_linear",
    "RunningLayerSum",
    "WavLMAttentionContiguousInput",
    "WavLMFastAttention",
    "WavLMFastFeatureEncoder",
    "WavLMFastFeedForward",
    "WavLMFastPositionalConvEmbedding",
    "is_exact_gelu",
]
