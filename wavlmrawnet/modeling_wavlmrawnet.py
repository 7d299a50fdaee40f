"""WavLMRawNet: WavLM Large ("micro", frame level) fused with RawNet2.5 ("macro", raw waveform) for speaker embeddings.

The model, read top to bottom: `WavLMRawNetForXVector.forward` checks the clips' lengths, pools WavLM's frames
(`wavlm_features`: transformers' `WavLMModel`, then a pooling from `WAVLM_POOLINGS`), runs the RawNet branch on the
zero-padded waveform (`layers.RawNetEncoder`), concatenates both vectors, projects them to the embedding (`fusion`) and
scores it against the speakers (`objective`, a loss from `LOSSES`). The layers and the tables of parts are in
`layers.py`; the names the config accepts, in `configuration_wavlmrawnet.py`.

The fast paths (`set_fast_paths`, on by default) compute the same function faster: `fast_paths.py` chooses them, and
they never change weights or the state dict.
"""

from __future__ import annotations

import copy
import os

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, WavLMModel
from transformers import initialization as init
from transformers.modeling_outputs import XVectorOutput

from .configuration_wavlmrawnet import WavLMRawNetConfig
from .cpu_kernels import tracing
from .fast_paths import (
    by_length_group,
    install_fast_classes,
    length_groups,
    running_sum_features,
    wavlm_attention_mask,
)
from .feature_extraction_wavlmrawnet import WavLMRawNetFeatureExtractor
from .layers import MarginSoftmax, RawNetEncoder, SincConv, WavLMPooling, WeightedLayerPooling, chosen
from .pipeline_wavlmrawnet import CUSTOM_PIPELINES
from .precision import Precision, resolve_precision


class WavLMRawNetPreTrainedModel(PreTrainedModel):
    config_class = WavLMRawNetConfig
    config: WavLMRawNetConfig
    base_model_prefix = "wavlmrawnet"
    main_input_name = "input_values"
    input_modalities = "audio"
    supports_gradient_checkpointing = True
    # transformers' `attn_implementation` switch does not apply here: WavLM's attention is chosen by `set_fast_paths`
    # (`F.scaled_dot_product_attention` when on, transformers' own computation when off).
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
    # In eval mode on a CPU, with the fast paths, a padded batch's clips more than this shorter than their group's
    # longest run in a call of their own (`length_groups`; benchmarks/bench_length_groups.py chose the value)
    length_group_seconds = 1.0

    def set_fast_paths(self, enabled: bool = True) -> "WavLMRawNetForXVector":
        """Switches the faster computation of the same function on (the default) or off. Returns the model.

        On, the layers get their fast classes (`fast_paths.install_fast_classes`; `fast_wavlm.py`, `fast_rawnet.py`):
        in inference on a CPU oneDNN's linears, GELU fused where it pays, attention through
        `F.scaled_dot_product_attention`, the convolutional encoder and the RawNet branch on time-major activations,
        the positional convolution by FFT, tensors derived from the weights built once (bf16 copies under bf16
        autocast). The model also feeds WavLM no mask where nothing is padded, sums the weighted layer pooling as
        each layer finishes, and runs a padded CPU batch in groups of similar length (`fast_paths.py`).

        Off, WavLM runs transformers' own layers (its attention fed a contiguous input: the same computation, without a
        torch bf16 slowdown) and RawNet the reference layers of `layers.py`. Weights and the state dict are the same
        either way; embeddings agree to fp32 rounding.
        """
        if not enabled and getattr(self, "int8", False):
            raise ValueError("an int8 model keeps its fast paths: transformers' own WavLM layers need float weights")
        install_fast_classes(self, enabled)
        self.fast_paths = enabled
        return self

    def clear_inference_caches(self) -> "WavLMRawNetForXVector":
        """Drops the tensors inference derived from the weights (bf16 weight copies, kernel spectra, filter banks,
        frame-major kernels); the next call that needs them builds them again. `train()` calls it: those tensors are
        stale once the weights change, and the bf16 copies hold half the linear weights' memory. Returns the model."""
        for module in self.modules():
            module.__dict__.pop("_inference_cache", None)
        return self

    def train(self, mode: bool = True) -> "WavLMRawNetForXVector":
        """`nn.Module.train`; entering training mode also drops the inference caches (`clear_inference_caches`). An
        int8 model (`quantization.py`) is for inference only."""
        if mode and getattr(self, "int8", False):
            raise ValueError("an int8 model is for inference only; train the float model")
        if mode:
            self.clear_inference_caches()
        return super().train(mode)

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
    def wavlm_features(self, input_values, attention_mask, output_hidden_states=False, unpadded=False):
        """WavLM's pooled frames (B, wavlm_pooling.output_size), and WavLM's outputs (with the running sum and no
        hidden states asked for, the last hidden state is not WavLM's: see `fast_wavlm.RunningLayerSum`). With the
        fast paths WavLM gets no mask where nothing is padded (`unpadded`, else `fast_paths.wavlm_attention_mask`)."""
        if not self.fast_paths:
            wavlm_mask = attention_mask
        else:
            wavlm_mask = None if unpadded else wavlm_attention_mask(attention_mask)
        # With layerdrop, transformers records no hidden state for a skipped layer: the running sum counts its input.
        layers_dropped = self.training and self.wavlm.config.layerdrop > 0
        running_sum = isinstance(self.wavlm_pooling, WeightedLayerPooling) and not torch.compiler.is_compiling()
        if running_sum and (self.fast_paths or layers_dropped):
            return running_sum_features(self, input_values, attention_mask, wavlm_mask, output_hidden_states)
        outputs = self.wavlm(
            input_values,
            attention_mask=wavlm_mask,
            output_hidden_states=self.wavlm_pooling.reads_hidden_states or bool(output_hidden_states),
        )
        frame_mask = self.wavlm._get_feature_vector_attention_mask(outputs.last_hidden_state.shape[1], attention_mask)
        return self.wavlm_pooling(outputs, frame_mask), outputs

    def length_groups(self, input_values: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor] | None:
        """The rows of each group of clips run apart (`fast_paths.length_groups`), or None to run the batch whole:
        only with the fast paths, in eval mode on a CPU, for a right-padded batch whose lengths differ by more than
        `length_group_seconds`. The embeddings are the same: both branches mask padded frames out."""
        if not self.fast_paths or self.training or input_values.device.type != "cpu" or input_values.shape[0] < 2:
            return None
        if tracing():
            return None
        gap = self.length_group_seconds * self.config.sampling_rate  # inf: never split (the benchmarks' one call)
        return length_groups(attention_mask.sum(dim=1), attention_mask, gap)

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
        # Without a mask nothing is padded, which the shapes alone say: no value is read back from the device on the
        # way (what a GPU's CUDA graph capture needs, and a GPU at batch 1 waits for).
        unpadded = attention_mask is None
        if unpadded:
            attention_mask = torch.ones_like(input_values, dtype=torch.long)
        sample_lengths = attention_mask.sum(dim=1)
        if not tracing() and not (unpadded and input_values.shape[1] >= self.config.min_input_samples):
            self.check_input_lengths(sample_lengths)  # a traced graph has no such check
        plain = labels is None and not output_hidden_states  # embeddings and logits only
        groups = None if unpadded or not plain else self.length_groups(input_values, attention_mask)
        if groups is None:
            embeddings, hidden_states = self.fused_embeddings(
                input_values, attention_mask, sample_lengths, output_hidden_states, unpadded
            )
        else:
            embed = lambda values, mask, lengths: self.fused_embeddings(values, mask, lengths)[0]  # noqa: E731
            hidden_states = None
            embeddings = by_length_group(embed, input_values, attention_mask, sample_lengths, groups)
        logits, loss = self.objective(embeddings, labels)

        if not return_dict:
            output = (logits, embeddings) + ((hidden_states,) if hidden_states is not None else ())
            return ((loss,) + output) if loss is not None else output
        return XVectorOutput(loss=loss, logits=logits, embeddings=embeddings, hidden_states=hidden_states)

    def fused_embeddings(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor,
        sample_lengths: torch.Tensor,
        output_hidden_states: bool | None = False,
        unpadded: bool = False,
    ) -> tuple[torch.Tensor, tuple | None]:
        """Both branches pooled, concatenated and projected: the embeddings (B, embedding_dim), and WavLM's hidden
        states where asked for. `unpadded`: the caller knows nothing is padded (the mask is all ones)."""
        pooled, hidden_states = [], None
        if self.wavlm is not None:
            wavlm_pooled, wavlm_outputs = self.wavlm_features(
                input_values, attention_mask, output_hidden_states, unpadded
            )
            pooled.append(wavlm_pooled)
            hidden_states = wavlm_outputs.hidden_states if output_hidden_states else None
        if self.rawnet is not None:
            # Padding is zeroed: the branch must see exactly what the clip alone would give.
            waveform = input_values * attention_mask.to(input_values.dtype)
            pooled.append(self.rawnet(waveform, sample_lengths).to(pooled[0].dtype if pooled else waveform.dtype))
        return self.fusion_activation(self.fusion(torch.cat(pooled, dim=1))), hidden_states

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
        chunk = int(round(chunk_seconds * self.config.sampling_rate)) if chunk_seconds else 0
        if attention_mask is None:  # nothing padded: no mask to read back from the device
            if not chunk or input_values.shape[1] <= chunk:
                return self(input_values).embeddings
            attention_mask = torch.ones_like(input_values, dtype=torch.long)
        lengths = attention_mask.sum(dim=1)
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
        """L2-normalised speaker embeddings (B, embedding_dim), computed in eval mode (see `embed` for chunking).
        A NaN or infinite result (from NaN, infinite or huge input values, which the feature extractor refuses) is a
        ValueError, never an embedding."""
        was_training = self.training
        self.eval()
        try:
            embeddings = self.embed(input_values, attention_mask, chunk_seconds, overlap_seconds, chunk_batch_size)
        finally:
            self.train(was_training)
        embeddings = F.normalize(embeddings.float(), dim=1)
        if not bool(torch.isfinite(embeddings).all()):
            rows = (~torch.isfinite(embeddings).all(dim=1)).nonzero().flatten().tolist()
            raise ValueError(
                f"non-finite embeddings for batch row(s) {rows}: the input holds NaN or infinite values, or values "
                "too large for the model; pass audio through the feature extractor, which refuses such input"
            )
        return embeddings

    def precision(self, requested: str | None = "auto") -> Precision:
        """The inference precision for this model's device: see [`resolve_precision`]."""
        return resolve_precision(requested, next(self.parameters()).device)

    def for_precision(self, precision: str | Precision, inplace: bool = False) -> "WavLMRawNetForXVector":
        """The model that computes in `precision` (a name or a resolved [`Precision`]): this one, or for int8 its int8
        twin (`quantization.py`: a quantised copy kept on this model, or this model quantised where `inplace`)."""
        from .quantization import model_for_precision, quantize_int8

        name = precision.name if isinstance(precision, Precision) else self.precision(precision).name
        if name == "int8" and inplace:
            return quantize_int8(self, inplace=True)
        return model_for_precision(self, name)

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

        if getattr(self, "int8", False):
            raise ValueError(
                "an int8 model cannot be saved: its int8 linears are made when a float model is loaded with "
                "precision int8; save the float model"
            )
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

__all__ = ["WavLMRawNetForXVector", "WavLMRawNetPreTrainedModel"]
