"""The fast paths (`WavLMRawNetForXVector.set_fast_paths`) compute the same function as transformers' own WavLM:
`WavLMFastAttention` against transformers' `WavLMAttention` layer (fp32, <= 1e-5, with and without padding, and
gradients; under bf16 autocast too), `InferenceLinear` against `F.linear` (and the bf16 inference linears, with
their cached bf16 weights, against fp32), `WavLMFastFeedForward` (GELU as oneDNN's
post-op where oneDNN runs AVX-512, else a separate pass) against transformers' feed-forward, the running weighted layer
pooling (also with the last projection after the pooling) against the pooled stack of hidden states, the sinc filter
cache, and whole-model embeddings and gradients with the fast paths on and off."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from transformers import WavLMConfig
from transformers.models.wavlm.modeling_wavlm import (
    WavLMAttention,
    WavLMEncoderLayerStableLayerNorm,
    WavLMFeedForward,
)

from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector, cpu_kernels
from wavlmrawnet.cpu_kernels import inference_linear, inference_linear_add, inference_linear_gelu, linear_weights
from wavlmrawnet.fast_wavlm import (
    InferenceLinear,
    RunningLayerSum,
    WavLMAttentionContiguousInput,
    WavLMFastAttention,
    WavLMFastFeedForward,
)
from wavlmrawnet.layers import masked_mean

ONEDNN_BF16_LINEAR = cpu_kernels.ONEDNN_BF16_LINEAR

NO_DROPOUT = dict(hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0)
TOLERANCE = 1e-5


def attention_pair(seed: int = 0, has_bias: bool = True) -> tuple[WavLMAttention, WavLMFastAttention]:
    """transformers' WavLMAttention and a WavLMFastAttention with the same random weights (64 wide, 4 heads)."""
    torch.manual_seed(seed)
    stock = WavLMAttention(64, 4, num_buckets=32, max_distance=100, has_relative_position_bias=has_bias)
    with torch.no_grad():  # the relative-position constant starts at 1 in transformers: make it matter
        stock.gru_rel_pos_const.uniform_(0.5, 1.5)
    fast = WavLMAttention(64, 4, num_buckets=32, max_distance=100, has_relative_position_bias=has_bias)
    fast.load_state_dict(stock.state_dict())
    fast.__class__ = WavLMFastAttention
    return stock, fast


def frame_mask(lengths: list[int], frames: int) -> torch.Tensor:
    return (torch.arange(frames)[None, :] < torch.tensor(lengths)[:, None]).long()


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
@pytest.mark.parametrize("grad", [False, True], ids=["inference", "grad"])
def test_fast_attention_equals_transformers_layer(padded, grad):
    stock, fast = attention_pair()
    hidden = torch.randn(3, 37, 64)
    mask = frame_mask([37, 20, 9], 37) if padded else None
    context = torch.enable_grad() if grad else torch.inference_mode()
    with context:
        expected, _, stock_bias = stock(hidden, attention_mask=mask)
        got, weights, fast_bias = fast(hidden, attention_mask=mask)
    assert weights is None
    assert got.shape == expected.shape
    valid = mask.bool() if padded else torch.ones(3, 37, dtype=torch.bool)
    assert (got - expected)[valid].abs().max() <= TOLERANCE
    # The position bias handed to the next layer is the same numbers, (1, heads, T, T) instead of (B * heads, T, T).
    assert torch.allclose(fast_bias.expand(3, -1, -1, -1).reshape(-1, 37, 37), stock_bias)


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_fast_attention_later_layer_takes_transformers_position_bias(padded):
    """A layer without a bias table gets the first layer's bias, in transformers' (B * heads, T, T) layout."""
    first, _ = attention_pair(seed=1)
    stock, fast = attention_pair(seed=2, has_bias=False)
    hidden = torch.randn(2, 25, 64)
    mask = frame_mask([25, 11], 25) if padded else None
    with torch.inference_mode():
        _, _, bias = first(hidden, attention_mask=mask)
        expected = stock(hidden, attention_mask=mask, position_bias=bias)[0]
        got = fast(hidden, attention_mask=mask, position_bias=bias)[0]
    valid = mask.bool() if padded else torch.ones(2, 25, dtype=torch.bool)
    assert (got - expected)[valid].abs().max() <= TOLERANCE


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_fast_attention_gradients_equal_transformers_layer(padded):
    """Gradients for the input and every parameter, through a whole encoder layer (train mode, no dropout)."""
    config = WavLMConfig(hidden_size=64, num_attention_heads=4, intermediate_size=128, num_buckets=32, **NO_DROPOUT)
    torch.manual_seed(3)
    stock = WavLMEncoderLayerStableLayerNorm(config, has_relative_position_bias=True).train()
    with torch.no_grad():
        stock.attention.gru_rel_pos_const.uniform_(0.5, 1.5)
    fast = WavLMEncoderLayerStableLayerNorm(config, has_relative_position_bias=True).train()
    fast.load_state_dict(stock.state_dict())
    fast.attention.__class__ = WavLMFastAttention
    hidden = torch.randn(2, 30, 64)
    mask = frame_mask([30, 17], 30) if padded else None
    valid = (mask.bool() if padded else torch.ones(2, 30, dtype=torch.bool))[:, :, None].float()
    target = torch.randn(2, 30, 64)

    def gradients(layer):
        layer.zero_grad()
        inputs = hidden.clone().requires_grad_(True)
        output = layer(inputs, attention_mask=mask)[0]
        (((output - target) * valid) ** 2).sum().backward()
        return {"input": inputs.grad} | {name: p.grad for name, p in layer.named_parameters()}

    expected, got = gradients(stock), gradients(fast)
    assert expected.keys() == got.keys()
    for name, grad in expected.items():
        assert got[name] is not None, name
        scale = max(grad.abs().max().item(), 1.0)
        assert (got[name] - grad).abs().max() <= TOLERANCE * scale, name


def test_fast_attention_dropout_is_applied_in_training_only():
    _, fast = attention_pair()
    fast.dropout = 0.5
    hidden = torch.randn(1, 20, 64)
    with torch.no_grad():
        fast.eval()
        assert torch.equal(fast(hidden)[0], fast(hidden)[0])
        fast.train()
        assert not torch.equal(fast(hidden)[0], fast(hidden)[0])


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_fast_attention_bias_written_in_bf16_matches_fp32(padded):
    """Under bf16 autocast, inference keeps the position bias in bf16 and gates it there (with the padding's -inf);
    where oneDNN computes bf16, the query, key and value come from one product with the stacked bf16 weights."""
    stock, fast = attention_pair()
    hidden = torch.randn(3, 37, 64)
    mask = frame_mask([37, 20, 9], 37) if padded else None
    with torch.inference_mode():
        expected = stock(hidden, attention_mask=mask)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got, _, position_bias = fast(hidden, attention_mask=mask)
    assert position_bias.dtype == torch.bfloat16
    stacked = "bf16_qkv" in fast.__dict__.get("_inference_cache", {})
    assert stacked == ONEDNN_BF16_LINEAR
    assert got.dtype == torch.bfloat16
    valid = mask.bool() if padded else torch.ones(3, 37, dtype=torch.bool)
    assert (got.float() - expected)[valid].abs().max() <= 0.02 * expected.abs().max()


def feed_forward_pair(hidden_act: str = "gelu") -> tuple[WavLMFeedForward, WavLMFastFeedForward]:
    config = WavLMConfig(hidden_size=48, intermediate_size=96, hidden_act=hidden_act, **NO_DROPOUT)
    torch.manual_seed(0)
    stock = WavLMFeedForward(config).eval()
    fast = WavLMFeedForward(config).eval()
    fast.load_state_dict(stock.state_dict())
    fast.__class__ = WavLMFastFeedForward
    return stock, fast


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new", "relu"])
def test_fast_feed_forward_equals_transformers(hidden_act):
    """GELU (erf) as the first linear's oneDNN post-op; other activations run transformers' forward."""
    stock, fast = feed_forward_pair(hidden_act)
    hidden = torch.randn(2, 30, 48) * 3  # wide enough that the tanh approximation would differ by > 1e-5
    with torch.inference_mode():
        expected = stock(hidden)
        assert (fast(hidden) - expected).abs().max() <= TOLERANCE * expected.abs().max()
    fast.train()  # training: transformers' forward, with gradients
    fast(hidden).sum().backward()
    assert fast.intermediate_dense.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("post_op", [True, False], ids=["post-op", "separate-gelu"])
def test_inference_linear_gelu_equals_gelu_of_linear(monkeypatch, post_op):
    """Both ways `inference_linear_gelu` may run in fp32 inference compute F.gelu(F.linear)."""
    monkeypatch.setattr(cpu_kernels, "ONEDNN_GELU_POST_OP", post_op)
    torch.manual_seed(0)
    x, weight, bias = torch.randn(2, 9, 48) * 3, torch.randn(96, 48), torch.randn(96)
    with torch.inference_mode():
        expected = F.gelu(F.linear(x, weight, bias))
        got = cpu_kernels.inference_linear_gelu(x, weight, bias)
    assert (got - expected).abs().max() <= TOLERANCE * expected.abs().max()


@pytest.mark.slow  # fresh interpreters: the choice is made at import, from the environment
@pytest.mark.parametrize(
    "cap",
    [{}, {"ATEN_CPU_CAPABILITY": "avx2"}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}],
    ids=["native", "aten-avx2", "onednn-avx2"],
)
def test_gelu_post_op_only_where_onednn_runs_avx512(cap):
    """oneDNN's GELU post-op is chosen only where its kernels run AVX-512 code: never under an AVX2 cap of either
    library, and natively exactly where torch's kernel level is AVX-512 (a fresh process reads the environment)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
    }
    code = (
        "import torch; from wavlmrawnet import cpu_kernels as m; "
        "print(m.ONEDNN_GELU_POST_OP, torch.backends.cpu.get_cpu_capability())"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**env, **cap}, timeout=300
    )
    assert completed.returncode == 0, completed.stderr
    post_op, capability = completed.stdout.split()
    assert post_op == str(not cap and capability.startswith("AVX512")), (cap, capability)


def test_inference_linear_equals_linear_and_keeps_gradients():
    torch.manual_seed(0)
    x, weight, bias = torch.randn(2, 9, 48), torch.randn(32, 48), torch.randn(32)
    with torch.inference_mode():
        assert (inference_linear(x, weight, bias) - F.linear(x, weight, bias)).abs().max() <= TOLERANCE
        assert (inference_linear(x, weight, None) - F.linear(x, weight)).abs().max() <= TOLERANCE
    layer = torch.nn.Linear(48, 32)
    layer.__class__ = InferenceLinear
    layer(x).sum().backward()  # with gradients it is F.linear, which has a backward
    assert layer.weight.grad is not None and torch.allclose(layer.bias.grad, torch.full((32,), 18.0))


def tiny_model(**overrides) -> WavLMRawNetForXVector:
    config = WavLMRawNetConfig.from_preset("tiny", num_labels=4, wavlm_config={"mask_time_prob": 0.0, **NO_DROPOUT})
    for key, value in overrides.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    return WavLMRawNetForXVector(config)


def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(5)
    values = torch.randn(3, 24000)
    mask = frame_mask([24000, 16000, 9000], 24000)
    return values * mask, mask


@pytest.mark.parametrize("pooling", ["weighted", "last"])
def test_model_embeddings_are_the_same_with_fast_paths_on_and_off(pooling):
    model = tiny_model(wavlm_pooling=pooling).eval()
    layers = model.wavlm.encoder.layers
    assert model.fast_paths and all(type(layer.attention) is WavLMFastAttention for layer in layers)
    values, mask = padded_batch()
    with torch.inference_mode():
        fast = model(values, attention_mask=mask).embeddings
        model.set_fast_paths(False)
        assert all(type(layer.attention) is WavLMAttentionContiguousInput for layer in layers)
        assert not any(isinstance(module, InferenceLinear) for module in model.modules())
        slow = model(values, attention_mask=mask).embeddings
    assert F.cosine_similarity(fast, slow).min() >= 0.99999
    assert (fast - slow).abs().max() <= TOLERANCE * max(slow.abs().max().item(), 1.0)


@pytest.mark.parametrize("pooling", ["weighted", "last"])
def test_unpadded_batch_reaches_wavlm_without_a_mask_and_embeds_the_same(pooling):
    """With the fast paths, an all-ones mask is checked once and WavLM gets none (no padding bias per layer); a padded
    batch keeps its mask. Embeddings equal those of the fast paths off, which pass the mask on."""
    model = tiny_model(wavlm_pooling=pooling).eval()
    masks = []
    model.wavlm.register_forward_pre_hook(lambda m, a, kw: masks.append(kw["attention_mask"]), with_kwargs=True)
    values = torch.randn(2, 16000, generator=torch.Generator().manual_seed(5))
    ones = torch.ones(2, 16000, dtype=torch.long)
    padded, padded_mask = padded_batch()
    with torch.inference_mode():
        fast = model(values, attention_mask=ones).embeddings
        model(padded, attention_mask=padded_mask)
        model.set_fast_paths(False)
        slow = model(values, attention_mask=ones).embeddings
    assert masks[0] is None and torch.equal(masks[1], padded_mask) and torch.equal(masks[2], ones)
    assert (fast - slow).abs().max() <= TOLERANCE * max(slow.abs().max().item(), 1.0)


@pytest.mark.parametrize("pooling", ["weighted", "last"])
def test_padded_batch_runs_in_length_groups_and_embeds_the_same(pooling):
    """In eval mode on a CPU, clips more than `length_group_seconds` shorter than their group's longest run in a call
    of their own, without that padding. Embeddings and logits equal the whole padded batch's (fast paths off), and
    each clip's alone. Training, labels, hidden states asked for, close lengths and a mask that is not right-padding
    keep one call."""
    model = tiny_model(wavlm_pooling=pooling).eval()
    calls = []
    model.wavlm.register_forward_pre_hook(
        lambda m, args, kw: calls.append((tuple(args[0].shape), kw["attention_mask"])), with_kwargs=True
    )
    lengths = [24000, 17000, 24000, 9000]
    values, mask = torch.randn(4, 24000, generator=torch.Generator().manual_seed(3)), frame_mask(lengths, 24000)
    values = values * mask
    model.length_group_seconds = 0.45  # 7,200 samples: 17,000 joins the 24,000s; 9,000 runs alone
    with torch.inference_mode():
        grouped = model(values, attention_mask=mask)
        assert [shape for shape, _ in calls] == [(3, 24000), (1, 9000)]
        assert torch.equal(calls[0][1], mask[[0, 2, 1]]) and calls[1][1] is None  # the 9,000-sample clip: no padding
        as_tuple = model(values, attention_mask=mask, return_dict=False)
        alone = torch.cat([model(values[i : i + 1, :n]).embeddings for i, n in enumerate(lengths)])
        calls.clear()
        model(values, attention_mask=mask, output_hidden_states=True)
        model(values, attention_mask=mask, labels=torch.tensor([0, 1, 0, 2]))
        model.length_group_seconds = 1.0  # the default: every clip within 1 s of the longest
        model(values, attention_mask=mask)
        holes = mask.clone()
        holes[1, :100] = 0  # not right-padding
        assert model.length_groups(values, holes) is None
        model.length_group_seconds = math.inf  # never split: what the benchmarks time as "one call"
        assert model.length_groups(values, mask) is None
        model.set_fast_paths(False)
        whole = model(values, attention_mask=mask)
        model.set_fast_paths(True).train()  # last: a training forward updates RawNet's batch-norm statistics
        model.length_group_seconds = 0.45
        model(values, attention_mask=mask)
    assert [shape for shape, _ in calls] == [(4, 24000)] * 5
    assert torch.equal(as_tuple[0], grouped.logits) and torch.equal(as_tuple[1], grouped.embeddings)
    for ours, other in (
        (grouped.embeddings, whole.embeddings),
        (grouped.embeddings, alone),
        (grouped.logits, whole.logits),
    ):
        assert F.cosine_similarity(ours, other).min() >= 0.99999
        assert (ours - other).abs().max() <= TOLERANCE * max(other.abs().max().item(), 1.0)


def test_running_layer_sum_counts_a_layer_skipped_by_layerdrop_as_its_input():
    """transformers records no hidden state for a layer that layerdrop skips, and its hooks do not run; the skipped
    layer passes its input on, so the running sum counts that input in its place (here the last of two layers)."""
    model = tiny_model().train()
    model.wavlm.config.layerdrop = 1.0  # every layer but the first is skipped
    values, mask = padded_batch()
    weights = torch.tensor([0.2, 0.3, 0.5])
    seen = []
    model.wavlm.encoder.layers[0].register_forward_hook(lambda m, args, out: seen.append((args[0], out[0])))
    with torch.no_grad():
        frames = model.wavlm._get_feature_vector_attention_mask(
            model.wavlm(values, attention_mask=mask)[0].shape[1], mask
        )
        seen.clear()
        with RunningLayerSum(model.wavlm.encoder, weights, frames) as running:
            model.wavlm(values, attention_mask=mask)
    (first_input, first_output), pooled = seen[0], lambda h: masked_mean(h, frames[:, :, None], dim=1)
    expected = 0.2 * pooled(first_input) + (0.3 + 0.5) * pooled(first_output)
    assert running.counted == 3
    assert (running.total - expected).abs().max() <= TOLERANCE * expected.abs().max()


def test_training_with_layerdrop_pools_and_gives_the_same_losses_with_fast_paths_on_and_off():
    """With layerdrop in training the weighted pooling runs (transformers' stack of hidden states would be short),
    with the same losses whether the fast paths are on or off, for the same random skips."""
    model = tiny_model().train()
    model.wavlm.config.layerdrop = 0.5
    values, mask = padded_batch()
    labels = torch.tensor([0, 1, 2])

    def losses():
        found = []
        for seed in range(6):
            torch.manual_seed(seed)
            found.append(model(values, attention_mask=mask, labels=labels).loss.item())
        return found

    fast = losses()
    model.set_fast_paths(False)
    assert fast == pytest.approx(losses(), rel=1e-5)


def test_model_gradients_are_the_same_with_fast_paths_on_and_off():
    model = tiny_model().train()
    values, mask = padded_batch()
    labels = torch.tensor([0, 1, 2])

    def gradients():
        model.zero_grad()
        model(values, attention_mask=mask, labels=labels).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    fast = gradients()
    model.set_fast_paths(False)
    slow = gradients()
    assert fast.keys() == slow.keys() and len(fast) > 100
    scale = max(grad.abs().max().item() for grad in slow.values())
    for name, grad in slow.items():
        assert (fast[name] - grad).abs().max() <= TOLERANCE * scale, name


@pytest.mark.parametrize("project_after_pooling", [False, True], ids=["per-frame", "projected-after-pooling"])
def test_running_layer_sum_equals_pooled_weighted_stack_of_hidden_states(project_after_pooling):
    """The running sum pools each hidden state over the valid frames as its layer finishes; with
    `project_after_pooling` the last layer's second feed-forward product runs on the pooled frames instead (its
    frames then differ from WavLM's), and the result is the same."""
    model = tiny_model().eval()
    values, mask = padded_batch()
    weights = torch.softmax(torch.randn(model.config.wavlm_config.num_hidden_layers + 1), dim=0)
    last_layer_outputs = []
    model.wavlm.encoder.layers[-1].register_forward_hook(lambda m, a, out: last_layer_outputs.append(out[0]))
    with torch.inference_mode():
        outputs = model.wavlm(values, attention_mask=mask, output_hidden_states=True)
        frames = model.wavlm._get_feature_vector_attention_mask(outputs.last_hidden_state.shape[1], mask)
        with RunningLayerSum(model.wavlm.encoder, weights, frames, project_after_pooling) as running:
            model.wavlm(values, attention_mask=mask)
        assert len(model.wavlm.encoder.layers[0]._forward_pre_hooks) == 0  # the hooks are removed afterwards
        assert model.wavlm.encoder.layers[-1].feed_forward._frame_weights is None  # and the feed-forward reset
        again = model.wavlm(values, attention_mask=mask)
    stacked = torch.stack(outputs.hidden_states)
    expected = masked_mean((weights[:, None, None, None] * stacked).sum(0), frames[:, :, None], dim=1)
    assert (running.total - expected).abs().max() <= TOLERANCE * expected.abs().max()
    moved = not torch.allclose(last_layer_outputs[1], outputs.hidden_states[-1], atol=1e-3)
    assert moved == project_after_pooling
    assert torch.equal(again.last_hidden_state, outputs.last_hidden_state)


def test_output_hidden_states_are_still_returned_with_the_running_sum():
    model = tiny_model().eval()
    values, mask = padded_batch()
    with torch.inference_mode():
        output = model(values, attention_mask=mask, output_hidden_states=True)
    assert len(output.hidden_states) == model.config.wavlm_config.num_hidden_layers + 1


def test_sinc_filters_are_cached_in_inference_and_rebuilt_when_the_cutoffs_change():
    sinc = tiny_model().rawnet.sinc
    with torch.inference_mode():
        first = sinc.inference_filters(torch.float32)
        assert sinc.inference_filters(torch.float32) is first  # reused
    with torch.no_grad():
        sinc.low_hz_.add_(25.0)  # what an optimiser step or load_state_dict does: an in-place change
    with torch.inference_mode():
        changed = sinc.inference_filters(torch.float32)
    assert changed is not first and torch.equal(changed, sinc.filters().detach())
    # With gradients the bank is built in the graph, so the cutoffs get their gradient.
    filters = sinc.inference_filters(torch.float32)
    assert filters.requires_grad
    filters.sum().backward()
    assert sinc.low_hz_.grad is not None


def test_sinc_cache_follows_load_state_dict():
    model = tiny_model().eval()
    values = torch.randn(1, 16000)
    with torch.inference_mode():
        before = model(values).embeddings
    other = tiny_model()
    with torch.no_grad():
        other.rawnet.sinc.band_hz_.mul_(0.5)
    model.load_state_dict(other.state_dict())
    with torch.inference_mode():
        after = model(values).embeddings
        model.set_fast_paths(False)
        uncached = model(values).embeddings
    assert not torch.allclose(before, after)
    assert (after - uncached).abs().max() <= TOLERANCE


@pytest.mark.slow
def test_default_size_embeddings_match_with_fast_paths_on_and_off():
    """WavLM-Large size (random weights): cosine >= 0.99999 to transformers' own computation, padded batch."""
    torch.manual_seed(0)
    model = WavLMRawNetForXVector(WavLMRawNetConfig.from_preset("default", num_labels=2)).eval()
    values = torch.randn(2, 48000)
    mask = frame_mask([48000, 30000], 48000)
    with torch.inference_mode():
        fast = model(values * mask, attention_mask=mask).embeddings
        model.set_fast_paths(False)
        slow = model(values * mask, attention_mask=mask).embeddings
    assert F.cosine_similarity(fast, slow).min() >= 0.99999


def test_bf16_inference_weights_are_built_once_and_follow_weight_changes():
    """Under CPU bf16 autocast in inference, a layer's weights are bf16 copies built once; an in-place change (an
    optimiser step, load_state_dict) rebuilds them. In fp32, or with gradients, they are the parameters."""
    layer = torch.nn.Linear(48, 32)
    x = torch.randn(2, 9, 48)
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    with torch.inference_mode():
        assert linear_weights(layer, x)[0] is layer.weight
        with bf16:
            weight, bias = linear_weights(layer, x)
            assert weight.dtype == bias.dtype == torch.bfloat16
            assert torch.equal(weight, layer.weight.to(torch.bfloat16))
            assert linear_weights(layer, x)[0] is weight
    with torch.no_grad():
        layer.weight.mul_(-2.0)
    with torch.inference_mode(), bf16:
        changed = linear_weights(layer, x)[0]
    assert changed is not weight and torch.equal(changed, layer.weight.detach().to(torch.bfloat16))
    with bf16:  # recorded for a gradient: the parameter itself, which autocast casts differentiably
        assert linear_weights(layer, x)[0] is layer.weight


@pytest.mark.parametrize("kind", ["linear", "gelu", "add"])
def test_bf16_inference_linears_match_fp32(kind):
    """With bf16 weights under CPU bf16 autocast, the inference linears return bf16 within bf16 rounding of fp32,
    through oneDNN's bf16 kernel exactly where it computes bf16 natively (`ONEDNN_BF16_LINEAR`)."""
    torch.manual_seed(0)
    x, weight, bias, other = torch.randn(2, 9, 48), torch.randn(32, 48), torch.randn(32), torch.randn(2, 9, 32)
    low = [t.to(torch.bfloat16) for t in (weight, bias, other)]
    functions = {
        "linear": (lambda w, b, o: inference_linear(x, w, b), lambda: F.linear(x, weight, bias)),
        "gelu": (lambda w, b, o: inference_linear_gelu(x, w, b), lambda: F.gelu(F.linear(x, weight, bias))),
        "add": (lambda w, b, o: inference_linear_add(x, w, o), lambda: F.linear(x, weight) + other),
    }
    function, reference = functions[kind]
    with torch.inference_mode():
        expected = reference()
        assert not cpu_kernels.onednn_bf16_linear_applies(x, low[0])  # not under autocast
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert cpu_kernels.onednn_bf16_linear_applies(x, low[0]) == ONEDNN_BF16_LINEAR
            got = function(*low)
    assert got.dtype == torch.bfloat16
    assert 0 < (got.float() - expected).abs().max() <= 0.02 * expected.abs().max()


def test_bf16_inference_caches_can_be_dropped_and_are_rebuilt():
    model = tiny_model().eval()
    values = torch.randn(1, 16000)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        before = model(values).embeddings
        cached = [m for m in model.modules() if "bf16_weights" in m.__dict__.get("_inference_cache", {})]
        assert cached, "no bf16 weight copies were built"
        assert model.clear_inference_caches() is model
        assert not any("_inference_cache" in m.__dict__ for m in model.modules())
        assert torch.equal(model(values).embeddings, before)


def test_inference_linear_follows_autocast():
    """Under bf16 autocast the product is bf16, as F.linear's would be (oneDNN's fp32 kernel would ignore autocast)."""
    x, weight = torch.randn(4, 16), torch.randn(8, 16)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert inference_linear(x, weight, None).dtype == torch.bfloat16


def test_concurrent_calls_on_one_model_give_each_its_own_embeddings():
    """Threads of a server share one model: the running layer sum's hooks and the feed-forward's pooled mode are
    state on shared modules, so concurrent calls take turns there (without it they mixed their sums or failed)."""
    import threading

    model = tiny_model().eval()
    clips = [torch.randn(1, 16000 + 4000 * i, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    with torch.inference_mode():
        expected = [model(clip).embeddings for clip in clips]
    results, errors = {}, []

    def run(index: int) -> None:
        try:
            with torch.inference_mode():
                for _ in range(3):
                    results[index] = model(clips[index]).embeddings
        except Exception as error:  # reported below, with the thread's index
            errors.append((index, repr(error)))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clips))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for index, embedding in expected.items() if isinstance(expected, dict) else enumerate(expected):
        assert torch.allclose(results[index], embedding, atol=1e-6), index
