"""WavLMRawNet configuration: a WavLM branch ("micro"), a RawNet2.5 branch ("macro"), their fusion and the loss."""

from __future__ import annotations

import copy
import math

from transformers import WavLMConfig
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec

# microsoft/wavlm-large's architecture. Layerdrop is off: skipped layers break DDP and change embeddings run to run.
WAVLM_LARGE = dict(
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    hidden_act="gelu",
    do_stable_layer_norm=True,
    feat_extract_norm="layer",
    feat_extract_activation="gelu",
    conv_bias=True,
    conv_dim=[512] * 7,
    conv_stride=[5, 2, 2, 2, 2, 2, 2],
    conv_kernel=[10, 3, 3, 3, 3, 2, 2],
    num_conv_pos_embeddings=128,
    num_conv_pos_embedding_groups=16,
    num_buckets=320,
    max_bucket_distance=800,
    hidden_dropout=0.1,
    attention_dropout=0.1,
    activation_dropout=0.0,
    feat_proj_dropout=0.1,
    layerdrop=0.0,
    mask_time_prob=0.05,
)

# Each preset states only how it differs from the bare `WavLMRawNetConfig()`, which is the "default" preset: WavLM
# Large with learned layer weights, RawNet max-pooling 3 after the sinc layer and after each block, and no ReLU on the
# embedding (the ablation's best settings, benchmarks/results/ablation.md). A `wavlm_config` dict is merged into
# WAVLM_LARGE.
PRESETS: dict[str, dict] = {
    "default": {},
    # The seed model: last WavLM layer, ReLU on the embedding, and a RawNet branch at the full 16 kHz (no pooling).
    "reference": dict(wavlm_pooling="last", fusion_activation="relu", sinc_pool_size=1, rawnet_block_pool_size=1),
    # The same topology at a size that trains on a laptop CPU in minutes: for tests and CPU demos.
    "tiny": dict(
        wavlm_config=dict(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            conv_dim=[32] * 7,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4,
            num_buckets=32,
            max_bucket_distance=100,
            hidden_dropout=0.0,
            attention_dropout=0.0,
            feat_proj_dropout=0.0,
        ),
        sinc_filters=32,
        sinc_kernel_size=129,
        rawnet_channels=[32, 32],
        se_reduction=4,
        attention_dim=32,
        rawnet_embedding_dim=64,
    ),
}


# The names each part argument accepts. The classes they name sit in `modeling_wavlmrawnet.py`, in tables of the
# same keys (`CONFIG_CHOICES`; a test holds the two equal): adding a part is its class, its table entry and its name
# here. Kept as plain names so the config never imports the network.
PART_NAMES: dict[str, tuple[str, ...]] = {
    "wavlm_pooling": ("last", "weighted"),
    "rawnet_pooling": ("attentive_statistics",),
    "sinc_init": ("mel", "linear"),
    "fusion_activation": ("none", "relu"),
    "loss": ("amsoftmax", "aamsoftmax"),
}


def check_part_name(config, name: str) -> str:
    """The value of part argument `name`, or a ValueError listing the accepted names (`PART_NAMES`)."""
    value = getattr(config, name)
    if value not in PART_NAMES[name]:
        raise ValueError(f"{name} must be one of {sorted(PART_NAMES[name])}, got {value!r}")
    return value


def check_calibration(calibration) -> dict:
    """`{"scale": a, "offset": b}`, finite, with a > 0 (a higher cosine must mean a higher likelihood ratio)."""
    if not isinstance(calibration, dict) or set(calibration) != {"scale", "offset"}:
        raise ValueError(f'calibration must be {{"scale": a, "offset": b}}, got {calibration!r}')
    values = {}
    for key in ("scale", "offset"):
        value = calibration[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"calibration[{key!r}] must be a finite number, got {value!r}")
        values[key] = float(value)
    if values["scale"] <= 0:
        raise ValueError(f"calibration['scale'] must be > 0, got {values['scale']}")
    return values


class WavLMRawNetConfig(PreTrainedConfig):
    r"""
    Configuration of [`WavLMRawNetForXVector`]: WavLM Large (frame-level "micro" features, mean-pooled over valid
    frames) fused with RawNet2.5 on the raw waveform (SincConv -> residual stack -> attentive statistics pooling ->
    FC, the "macro" embedding). Both pooled vectors are concatenated and projected to the speaker embedding.

    The defaults are the `"default"` preset; [`~WavLMRawNetConfig.from_preset`] gives the others (`"reference"`,
    `"tiny"`). Arguments that name a part (`wavlm_pooling`, `rawnet_pooling`, `sinc_init`, `fusion_activation`,
    `loss`) take one of that part's names (`PART_NAMES`), the keys of its table in `modeling_wavlmrawnet.py`.

    Args:
        wavlm_config (`dict` or `WavLMConfig`, *optional*):
            Configuration of the WavLM branch. Defaults to the WavLM-Large architecture (hidden size 1024, 24 layers,
            16 heads, FFN 4096, stable layer norm, layer-norm feature extractor, conv bias: `WAVLM_LARGE`). A dict
            given here is a whole `WavLMConfig` (what it omits takes `WavLMConfig`'s defaults); `from_preset` merges
            one into `WAVLM_LARGE` instead.
        use_wavlm_branch (`bool`, *optional*, defaults to `True`):
            Whether the WavLM branch is built and fused.
        use_rawnet_branch (`bool`, *optional*, defaults to `True`):
            Whether the RawNet2.5 branch is built and fused. At least one branch must be on.
        wavlm_pooling (`str`, *optional*, defaults to `"weighted"`):
            How WavLM's frames become one vector (`WAVLM_POOLINGS`): `"weighted"` (learned softmax weights over all
            hidden states) or `"last"` (the last hidden state, as in the reference), then the mean over valid frames.
        sampling_rate (`int`, *optional*, defaults to 16000):
            Sample rate of `input_values`, in Hz. Sets the sinc filters' frequency scale.
        sinc_filters (`int`, *optional*, defaults to 128):
            Number of learned band-pass (sinc) filters.
        sinc_kernel_size (`int`, *optional*, defaults to 251):
            Length in samples of each sinc filter (made odd if even).
        sinc_stride (`int`, *optional*, defaults to 1):
            Stride of the sinc convolution, in samples.
        min_low_hz (`float`, *optional*, defaults to 50.0):
            Lowest allowed low cutoff of a sinc filter, in Hz.
        min_band_hz (`float`, *optional*, defaults to 50.0):
            Narrowest allowed band of a sinc filter, in Hz.
        sinc_init (`str`, *optional*, defaults to `"mel"`):
            Initial spacing of the filter bands (`SINC_INITS`): `"mel"` (mel-spaced, as in SincNet) or `"linear"`.
        sinc_pool_size (`int`, *optional*, defaults to 3):
            Max-pool size (and stride) after the sinc layer; 1 disables it.
        rawnet_channels (`list[int]`, *optional*, defaults to `[128, 128, 128, 128]`):
            Output channels of each residual block; its length is the number of blocks.
        rawnet_kernel_size (`int`, *optional*, defaults to 3):
            Kernel size of the residual blocks' convolutions.
        rawnet_block_pool_size (`int`, *optional*, defaults to 3):
            Max-pool size (and stride) after each residual block; 1 disables it.
        use_se (`bool`, *optional*, defaults to `True`):
            Whether each residual block ends with a squeeze-and-excitation block.
        se_reduction (`int`, *optional*, defaults to 8):
            Channel reduction of the squeeze-and-excitation bottleneck.
        leaky_relu_slope (`float`, *optional*, defaults to 0.3):
            Negative slope of the RawNet branch's LeakyReLUs (RawNet2 uses 0.3).
        rawnet_pooling (`str`, *optional*, defaults to `"attentive_statistics"`):
            How the RawNet frames become one vector (`RAWNET_POOLINGS`): `"attentive_statistics"` (attention-weighted
            mean and standard deviation over valid frames).
        attention_dim (`int`, *optional*, defaults to 128):
            Hidden size of the attentive statistics pooling's attention network.
        rawnet_embedding_dim (`int`, *optional*, defaults to 256):
            Size of the RawNet "macro" embedding.
        embedding_dim (`int`, *optional*, defaults to 256):
            Size of the fused speaker embedding.
        fusion_activation (`str`, *optional*, defaults to `"none"`):
            Activation after the fusion projection (`FUSION_ACTIVATIONS`): `"none"` or `"relu"` (the reference).
        loss (`str`, *optional*, defaults to `"amsoftmax"`):
            Training objective over the `num_labels` speakers (`LOSSES`): `"amsoftmax"` (additive cosine margin) or
            `"aamsoftmax"` (additive angular margin, ArcFace).
        loss_margin (`float`, *optional*, defaults to 0.3):
            Margin of the loss (cosine units for AM-Softmax, radians for AAM-Softmax).
        loss_scale (`float`, *optional*, defaults to 30.0):
            Scale applied to the cosine logits.
        verification_threshold (`float`, *optional*, defaults to 0.5):
            Cosine score at or above which two recordings are judged the same speaker. Training writes the EER
            threshold of its final evaluation here; `wavlmrawnet calibrate` writes the Bayes threshold for
            `p_target` (the cosine at which the calibrated log-likelihood ratio equals -logit(p_target)).
        calibration (`dict`, *optional*):
            Linear score calibration `{"scale": a, "offset": b}`: the log-likelihood ratio of a cosine score `s` is
            `a * s + b` (natural log; fitted by prior-weighted logistic regression, as in FoCal/BOSARIS). With it,
            the speaker-verification pipeline also returns `llr` and the posterior `probability` at prior
            `p_target`. None (the default): uncalibrated, the pipeline returns the cosine only.
        p_target (`float`, *optional*, defaults to 0.01):
            Prior probability of a target (same-speaker) trial that `probability` and the calibrated threshold
            assume.
        chunk_seconds (`float`, *optional*, defaults to 20.0):
            Inference on utterances longer than this runs on overlapping windows of this length, whose embeddings
            are averaged with duration weights (memory stays bounded). 0 turns chunking off.
        chunk_overlap_seconds (`float`, *optional*, defaults to 2.0):
            Overlap between consecutive inference windows.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialiser of the new linear layers.
        num_labels (`int`, *optional*):
            Number of training speakers (the size of the loss' weight matrix). Set it, or `id2label`, for training.
        id2label / label2id (`dict`, *optional*):
            Map between class indices and speaker ids.

    Example:

    ```python
    >>> from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector

    >>> config = WavLMRawNetConfig.from_preset("tiny", num_labels=40)
    >>> model = WavLMRawNetForXVector(config)
    ```
    """

    model_type = "wavlmrawnet"
    sub_configs_defaults = {"wavlm_config": SubConfigSpec(WavLMConfig, init_kwargs=WAVLM_LARGE)}

    wavlm_config: dict | WavLMConfig | None = None
    use_wavlm_branch: bool = True
    use_rawnet_branch: bool = True
    wavlm_pooling: str = "weighted"
    sampling_rate: int = 16000
    sinc_filters: int = 128
    sinc_kernel_size: int = 251
    sinc_stride: int = 1
    min_low_hz: float = 50.0
    min_band_hz: float = 50.0
    sinc_init: str = "mel"
    sinc_pool_size: int = 3
    rawnet_channels: list[int] | tuple[int, ...] = (128, 128, 128, 128)
    rawnet_kernel_size: int = 3
    rawnet_block_pool_size: int = 3
    use_se: bool = True
    se_reduction: int = 8
    leaky_relu_slope: float = 0.3
    rawnet_pooling: str = "attentive_statistics"
    attention_dim: int = 128
    rawnet_embedding_dim: int = 256
    embedding_dim: int = 256
    fusion_activation: str = "none"
    loss: str = "amsoftmax"
    loss_margin: float = 0.3
    loss_scale: float = 30.0
    verification_threshold: float = 0.5
    calibration: dict | None = None
    p_target: float = 0.01
    chunk_seconds: float = 20.0
    chunk_overlap_seconds: float = 2.0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.rawnet_channels = list(self.rawnet_channels)
        if self.sinc_kernel_size % 2 == 0:
            self.sinc_kernel_size += 1  # a symmetric filter needs a centre tap
        self._validate()

    def _validate(self) -> None:
        for name in PART_NAMES:
            check_part_name(self, name)
        if not (self.use_wavlm_branch or self.use_rawnet_branch):
            raise ValueError("at least one of use_wavlm_branch and use_rawnet_branch must be True")
        if self.min_low_hz + self.min_band_hz >= self.sampling_rate / 2:
            raise ValueError("min_low_hz + min_band_hz must be below the Nyquist frequency")
        for name in ("sinc_stride", "sinc_pool_size", "rawnet_block_pool_size", "sinc_filters", "embedding_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.rawnet_channels:
            raise ValueError("rawnet_channels needs at least one residual block")
        if not 0.0 < self.p_target < 1.0:
            raise ValueError(f"p_target must lie in (0, 1), got {self.p_target}")
        if self.calibration is not None:
            self.calibration = check_calibration(self.calibration)

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> "WavLMRawNetConfig":
        """A named preset (`"default"`, `"reference"` or `"tiny"`), with any argument overridden.

        A `wavlm_config` given as a dict is merged into the preset's WavLM settings (WAVLM_LARGE and the preset's
        changes); a `WavLMConfig` replaces them.
        """
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        kwargs = copy.deepcopy(PRESETS[preset])
        wavlm = overrides.pop("wavlm_config", None)
        if wavlm is None or isinstance(wavlm, dict):
            wavlm = {**copy.deepcopy(WAVLM_LARGE), **kwargs.pop("wavlm_config", {}), **(wavlm or {})}
        return cls(**{**kwargs, **overrides, "wavlm_config": wavlm})

    @property
    def rawnet_downsampling(self) -> int:
        """Input samples per RawNet output frame."""
        return self.sinc_stride * self.sinc_pool_size * self.rawnet_block_pool_size ** len(self.rawnet_channels)

    @property
    def min_input_samples(self) -> int:
        """Fewest samples that give every enabled branch at least one frame."""
        needs = [1]
        if self.use_rawnet_branch:
            needs.append(self.sinc_kernel_size + self.rawnet_downsampling - self.sinc_stride)
        if self.use_wavlm_branch:
            receptive, jump = 1, 1
            for kernel, stride in zip(self.wavlm_config.conv_kernel, self.wavlm_config.conv_stride):
                receptive += (kernel - 1) * jump
                jump *= stride
            needs.append(receptive)
        return max(needs)

    def wavlm_frames(self, samples: int) -> int:
        """WavLM's frames for `samples` input samples (its feature encoder's convolutions, no padding), in Python
        integers: a shape, not a tensor to read back from the device."""
        wavlm = self.wavlm_config
        for kernel, stride in zip(wavlm.conv_kernel, wavlm.conv_stride):
            samples = (samples - kernel) // stride + 1
        for _ in range(wavlm.num_adapter_layers if getattr(wavlm, "add_adapter", False) else 0):
            samples = (samples - 1) // wavlm.adapter_stride + 1  # as transformers' `_get_feat_extract_output_lengths`
        return samples

    @property
    def min_input_seconds(self) -> float:
        return math.ceil(1000 * self.min_input_samples / self.sampling_rate) / 1000


WavLMRawNetConfig.register_for_auto_class()

__all__ = ["PART_NAMES", "PRESETS", "WavLMRawNetConfig", "check_calibration", "check_part_name"]
