"""The time-major inference kernels of the fast paths compute the same function as the code they replace: the RawNet
branch (`FastRawNetEncoder.time_major`: the sinc layer by blocked FFT or blocked matrix products, pooled in cache;
channels-last convolutions; one-pass batch norms), WavLM's feature encoder (`WavLMFastFeatureEncoder.time_major_conv`
and its blocks) and its positional convolution (`WavLMFastPositionalConvEmbedding`), fp32 within 1e-5, with padding;
and their weight caches follow in-place changes of the weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import WavLMConfig
from transformers.models.wavlm.modeling_wavlm import WavLMFeatureEncoder, WavLMPositionalConvEmbedding

from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector
from wavlmrawnet.fast_paths import RAWNET_FAST_CLASSES, RAWNET_REFERENCE_CLASSES, swap_classes
from wavlmrawnet.fast_rawnet import FastRawNetEncoder
from wavlmrawnet.fast_wavlm import WavLMFastFeatureEncoder, WavLMFastPositionalConvEmbedding
from wavlmrawnet.layers import RawNetEncoder

TOLERANCE = 1e-5


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).abs().max() / expected.abs().max().clamp(min=1e-12))


def rawnet(**overrides) -> FastRawNetEncoder:
    """The RawNet branch of the tiny preset with its fast classes (`fast_paths.swap_classes`), in eval mode."""
    config = WavLMRawNetConfig.from_preset("tiny", use_wavlm_branch=False, **overrides)
    torch.manual_seed(0)
    encoder = RawNetEncoder(config)
    with torch.no_grad():  # running statistics and SE weights away from their identity start values
        for module in encoder.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return swap_classes(encoder, RAWNET_FAST_CLASSES).eval()


def padded_waveforms(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    values = torch.randn(len(lengths), max(lengths))
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    return values * mask, torch.tensor(lengths)


RAWNET_VARIANTS = {
    "tiny": {},
    "no SE, no pooling": dict(use_se=False, sinc_pool_size=1, rawnet_block_pool_size=1),
    "skip convolution, sinc stride 2": dict(rawnet_channels=[16, 32], sinc_stride=2, rawnet_block_pool_size=2),
}


@pytest.mark.parametrize("overrides", RAWNET_VARIANTS.values(), ids=RAWNET_VARIANTS.keys())
def test_rawnet_time_major_equals_channel_major(overrides):
    encoder = rawnet(**overrides)
    waveforms, lengths = padded_waveforms([20000, 13001, 7000])
    with torch.inference_mode():
        got = encoder(waveforms, lengths)
        assert torch.equal(got, encoder.time_major(waveforms, lengths))  # eval without gradients: time-major
        expected = swap_classes(encoder, RAWNET_REFERENCE_CLASSES)(waveforms, lengths)
        assert type(encoder) is RawNetEncoder
        # A clip alone gets what it gets in the padded batch.
        swap_classes(encoder, RAWNET_FAST_CLASSES)
        alone = encoder(waveforms[2:, :7000], lengths[2:])
    assert relative_error(got, expected) <= TOLERANCE
    assert relative_error(alone[0], got[2]) <= TOLERANCE


SINC_SHAPES = {  # kernel, pool, stride: the FFT at stride 1, the blocked matrix product otherwise
    "kernel 251, pool 3": (251, 3, 1),
    "kernel 129, pool 2": (129, 2, 1),
    "kernel 31, no pool": (31, 1, 1),
    "kernel 65, pool 3, stride 2": (65, 3, 2),
}


@pytest.mark.parametrize("shape", SINC_SHAPES.values(), ids=SINC_SHAPES.keys())
def test_pooled_sinc_magnitudes_equal_convolution_abs_max_pool(shape):
    kernel, pool, stride = shape
    sinc = rawnet(sinc_filters=24, sinc_kernel_size=kernel, sinc_pool_size=pool, sinc_stride=stride).sinc
    torch.manual_seed(1)
    # From one pooled frame to several FFT blocks, and a length that leaves a partial block and pool window.
    for samples in (kernel + pool * stride - stride, kernel + 40, 4000, 9001):
        waveform = torch.randn(2, samples)
        with torch.inference_mode():
            expected = F.max_pool1d(sinc(waveform).abs(), pool).transpose(1, 2)
            got = sinc.pooled_magnitudes_time_major(waveform, pool)
        assert got.shape == expected.shape and got.shape[1] >= 1, samples
        assert relative_error(got, expected) <= TOLERANCE, samples
    with torch.inference_mode():  # shorter than one pooled frame: no frames
        assert sinc.pooled_magnitudes_time_major(torch.randn(2, kernel - 1), pool).shape == (2, 0, 24)


def test_fft_sinc_follows_cutoff_changes_and_autocast_takes_the_matrix_product():
    sinc = rawnet(sinc_filters=16, sinc_kernel_size=101).sinc
    waveform = torch.randn(1, 6000)
    with torch.inference_mode():
        before = sinc.pooled_magnitudes_fft(waveform, 3)
        sinc.low_hz_.add_(200.0)  # an optimiser step or load_state_dict: the cached filter spectra must follow
        after = sinc.pooled_magnitudes_time_major(waveform, 3)
        expected = F.max_pool1d(sinc(waveform).abs(), 3).transpose(1, 2)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 matrix products, not the fp32 FFT
            low = sinc.pooled_magnitudes_time_major(waveform, 3)
    assert not torch.allclose(before, after)
    assert relative_error(after, expected) <= TOLERANCE
    assert 0 < relative_error(low, expected) <= 0.02


def test_rawnet_trains_through_the_channel_major_code():
    encoder = rawnet().train()
    waveforms, lengths = padded_waveforms([16000, 9000])
    encoder(waveforms, lengths).sum().backward()
    assert encoder.sinc.low_hz_.grad is not None and encoder.blocks[0].conv1.weight.grad.abs().sum() > 0
    with torch.no_grad():  # eval mode with gradients off is the only place the time-major code runs
        encoder.eval()
        assert torch.equal(encoder(waveforms, lengths), encoder.time_major(waveforms, lengths))


FEATURE_ENCODERS = {
    # WavLM's own shapes (kernel <= 2 x stride: two products over views), 32 channels
    "wavlm": dict(conv_dim=[32] * 7, conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2]),
    # kernel > 2 x stride, and inputs too narrow to split: unfolded windows
    "unfolded": dict(conv_dim=[16, 16, 24], conv_kernel=[10, 7, 3], conv_stride=[5, 3, 2]),
}


def feature_encoder_and_waveforms(shapes: dict) -> tuple[WavLMFeatureEncoder, torch.Tensor]:
    """transformers' layer-norm feature encoder with seeded random weights (eval mode) and two seeded waveforms."""
    torch.manual_seed(1)
    encoder = WavLMFeatureEncoder(WavLMConfig(feat_extract_norm="layer", conv_bias=True, **shapes)).eval()
    return encoder, torch.randn(2, 8001)


@pytest.mark.parametrize("block_frames", [2048, 7], ids=["one block", "blocks of 7 frames"])
@pytest.mark.parametrize("shapes", FEATURE_ENCODERS.values(), ids=FEATURE_ENCODERS.keys())
def test_feature_encoder_time_major_equals_transformers(shapes, block_frames):
    encoder, waveforms = feature_encoder_and_waveforms(shapes)
    with torch.inference_mode():
        expected = encoder(waveforms)
        encoder.__class__ = WavLMFastFeatureEncoder
        encoder.block_frames = block_frames
        got = encoder(waveforms)
        # the same weights changed in place: the cached frame-major kernels are rebuilt
        for layer in encoder.conv_layers:
            layer.conv.weight.mul_(-1.5)
        changed = encoder(waveforms)
        encoder.__class__ = WavLMFeatureEncoder
        changed_expected = encoder(waveforms)
    assert got.shape == expected.shape
    assert relative_error(got, expected) <= TOLERANCE
    assert relative_error(changed, changed_expected) <= TOLERANCE


def test_feature_encoder_time_major_where_it_pays():
    """The time-major encoder is a CPU layout; on a GPU it runs only for large batches under autocast (measured on an
    H200: faster there, 1.4-2.6x slower for one clip or in fp32). Other norms and checkpointed training run
    transformers' forward."""
    pays = WavLMFastFeatureEncoder.time_major_pays
    many = WavLMFastFeatureEncoder.accelerator_min_samples
    assert pays("cpu", False, 400) and pays("cpu", True, 400)
    assert pays("cuda", True, many) and pays("cuda", True, 16 * 160_000)
    assert not pays("cuda", True, 160_000) and not pays("cuda", True, many - 1)
    assert not pays("cuda", False, 16 * 160_000)  # fp32 on a GPU: transformers' convolutions
    config = WavLMConfig(feat_extract_norm="layer", conv_bias=True, **FEATURE_ENCODERS["wavlm"])
    encoder = WavLMFeatureEncoder(config).eval()
    encoder.__class__ = WavLMFastFeatureEncoder
    assert encoder.time_major_applies(torch.zeros(1, 400))
    assert not encoder.time_major_applies(torch.zeros(1, 400, device="meta"))
    on_meta = WavLMFeatureEncoder(config).to("meta").eval()
    on_meta.__class__ = WavLMFastFeatureEncoder
    assert on_meta(torch.zeros(2, 8001, device="meta")).shape == (2, 32, 24)  # transformers' forward, there
    encoder.gradient_checkpointing = True
    assert encoder.time_major_applies(torch.zeros(1, 400))  # eval mode: checkpointing plays no part
    assert not encoder.train().time_major_applies(torch.zeros(1, 400))
    group_norm = WavLMFeatureEncoder(WavLMConfig(feat_extract_norm="group", **FEATURE_ENCODERS["wavlm"]))
    group_norm.__class__ = WavLMFastFeatureEncoder
    assert not group_norm.time_major_applies(torch.zeros(1, 400))


def test_feature_encoder_gradients_are_the_same():
    config = WavLMConfig(feat_extract_norm="layer", conv_bias=True, **FEATURE_ENCODERS["wavlm"])
    torch.manual_seed(2)
    encoder = WavLMFeatureEncoder(config).train()
    waveforms = torch.randn(2, 4000)

    def gradients():
        encoder.zero_grad()
        (encoder(waveforms) ** 2).sum().backward()
        return [layer.conv.weight.grad.clone() for layer in encoder.conv_layers]

    expected = gradients()
    encoder.__class__ = WavLMFastFeatureEncoder
    for got, want in zip(gradients(), expected):
        assert relative_error(got, want) <= TOLERANCE


@pytest.mark.parametrize("kernel, frames", [(16, 37), (16, 17), (16, 5), (17, 100), (32, 7)])
@pytest.mark.parametrize("path", ["fft", "conv"])
def test_positional_convolution_equals_transformers_and_follows_weight_changes(monkeypatch, path, kernel, frames):
    """Both paths; for the FFT: clips shorter than, equal to and spanning several blocks, even and odd kernels."""
    monkeypatch.setattr(WavLMFastPositionalConvEmbedding, "fft_min_kernel", 1 if path == "fft" else 10**6)
    fft_calls = []
    fft_convolution = WavLMFastPositionalConvEmbedding.fft_convolution

    def counted_fft_convolution(self, hidden_states):
        fft_calls.append(1)
        return fft_convolution(self, hidden_states)

    monkeypatch.setattr(WavLMFastPositionalConvEmbedding, "fft_convolution", counted_fft_convolution)
    config = WavLMConfig(hidden_size=64, num_conv_pos_embeddings=kernel, num_conv_pos_embedding_groups=4)
    torch.manual_seed(4)
    positional = WavLMPositionalConvEmbedding(config).eval()
    hidden = torch.randn(2, frames, 64)
    with torch.inference_mode():
        expected = positional(hidden)
        positional.__class__ = WavLMFastPositionalConvEmbedding
        got = positional(hidden)
        assert relative_error(got, expected) <= TOLERANCE
        weight_v = positional.conv.parametrizations.weight.original1
        weight_v.mul_(torch.rand_like(weight_v))  # an optimiser step or load_state_dict: an in-place change
        changed = positional(hidden)
        positional.__class__ = WavLMPositionalConvEmbedding
        changed_expected = positional(hidden)
    assert not torch.allclose(changed, got)
    assert relative_error(changed, changed_expected) <= TOLERANCE
    assert bool(fft_calls) == (path == "fft")


def test_positional_convolution_under_autocast_runs_the_fp32_fft():
    """Under CPU bf16 autocast the FFT runs in fp32 and returns bf16, as the autocast convolution would."""
    config = WavLMConfig(hidden_size=64, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    torch.manual_seed(4)
    positional = WavLMPositionalConvEmbedding(config).eval()
    hidden = torch.randn(2, 50, 64).to(torch.bfloat16)  # as the bf16 feature projection hands it over
    with torch.inference_mode():
        expected = positional(hidden.float())
        positional.__class__ = WavLMFastPositionalConvEmbedding
        positional.fft_min_kernel = 16
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = positional(hidden)
        exact = positional(hidden.float())
    assert got.dtype == torch.bfloat16
    assert relative_error(exact, expected) <= TOLERANCE
    assert torch.equal(got, exact.to(torch.bfloat16))  # the fp32 FFT, rounded once


def test_feature_encoder_under_autocast_uses_bf16_kernels():
    """Under CPU bf16 autocast the time-major encoder's products use cached bf16 kernels, within bf16 rounding of
    transformers' fp32 encoder."""
    encoder, waveforms = feature_encoder_and_waveforms(FEATURE_ENCODERS["wavlm"])
    with torch.inference_mode():
        expected = encoder(waveforms)
        encoder.__class__ = WavLMFastFeatureEncoder
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = encoder(waveforms)
    cached = [layer.conv.__dict__["_inference_cache"]["frame_major"][1] for layer in encoder.conv_layers]
    assert all(part.dtype == torch.bfloat16 for parts in cached for part in parts if part is not None)
    assert 0 < relative_error(got.float(), expected) <= 0.05


def test_set_fast_paths_switches_the_time_major_kernels():
    model = WavLMRawNetForXVector(WavLMRawNetConfig.from_preset("tiny", num_labels=2))
    positional = model.wavlm.encoder.pos_conv_embed
    assert type(model.rawnet) is FastRawNetEncoder and type(positional) is WavLMFastPositionalConvEmbedding
    model.set_fast_paths(False)
    assert type(model.rawnet) is RawNetEncoder and type(positional) is WavLMPositionalConvEmbedding
    assert type(model.wavlm.feature_extractor) is WavLMFeatureEncoder
