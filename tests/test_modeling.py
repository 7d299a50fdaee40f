import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import WavLMConfig, WavLMModel
from transformers.modeling_outputs import XVectorOutput

from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector
from wavlmrawnet.configuration_wavlmrawnet import PART_NAMES
from wavlmrawnet.layers import (
    LOSSES,
    RAWNET_POOLINGS,
    WAVLM_POOLINGS,
    AttentiveStatisticsPooling,
    WavLMPooling,
    masked_mean,
)


def padded_pair(short: torch.Tensor, long: torch.Tensor):
    batch = torch.zeros(2, long.shape[-1])
    batch[0, : short.shape[-1]] = short
    batch[1] = long
    mask = torch.zeros_like(batch, dtype=torch.long)
    mask[0, : short.shape[-1]] = 1
    mask[1] = 1
    return batch, mask


def assert_padding_invariant(model, seconds=1.0):
    torch.manual_seed(1)
    short = torch.randn(int(16000 * seconds))
    long = torch.randn(3 * short.numel())
    batch, mask = padded_pair(short, long)
    with torch.inference_mode():
        alone = model(short[None]).embeddings
        batched = model(batch, attention_mask=mask).embeddings
    cosine_distance = 1 - F.cosine_similarity(alone, batched[:1]).item()
    assert cosine_distance < 1e-4, cosine_distance


def test_output_shapes_and_logits(tiny_model):
    batch, mask = padded_pair(torch.randn(12000), torch.randn(16000))
    out = tiny_model(batch, attention_mask=mask, labels=torch.tensor([0, 4]))
    assert isinstance(out, XVectorOutput)
    assert out.embeddings.shape == (2, 256) and out.logits.shape == (2, 5)
    weight = tiny_model.objective.weight
    cosine = F.normalize(out.embeddings, dim=1) @ F.normalize(weight, dim=1).T
    assert torch.allclose(out.logits, 30.0 * cosine, atol=1e-5), "logits are scale x margin-free cosine"
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert tiny_model(batch, attention_mask=mask).loss is None
    as_tuple = tiny_model(batch, attention_mask=mask, labels=torch.tensor([0, 4]), return_dict=False)
    assert torch.equal(as_tuple[0], out.loss)


def test_padding_invariance_tiny(tiny_model):
    assert_padding_invariant(tiny_model)


def test_padding_invariance_tiny_last_layer_pooling_and_relu():
    torch.manual_seed(0)
    config = WavLMRawNetConfig.from_preset("tiny", wavlm_pooling="last", fusion_activation="relu")
    model = WavLMRawNetForXVector(config).eval()
    assert not [name for name, _ in model.named_parameters() if "layer_weights" in name]
    assert_padding_invariant(model)


def test_tiny_and_default_presets_use_the_ablation_choices():
    for preset in ("tiny", "default"):
        config = WavLMRawNetConfig.from_preset(preset)
        assert (config.wavlm_pooling, config.fusion_activation) == ("weighted", "none"), preset
    model = WavLMRawNetForXVector(WavLMRawNetConfig.from_preset("tiny"))
    assert model.wavlm_pooling.layer_weights.shape == (3,)


@pytest.mark.slow
def test_padding_invariance_reference():
    torch.manual_seed(0)
    model = WavLMRawNetForXVector(WavLMRawNetConfig.from_preset("reference")).eval()
    assert model.wavlm.config.hidden_size == 1024 and model.config.rawnet_downsampling == 1
    assert_padding_invariant(model, seconds=0.5)


def test_padding_changes_embeddings_without_mask(tiny_model):
    """The mask is what makes padding harmless: without it, the zeros count as audio."""
    batch, mask = padded_pair(torch.randn(8000), torch.randn(24000))
    with torch.inference_mode():
        masked = tiny_model(batch, attention_mask=mask).embeddings[0]
        unmasked = tiny_model(batch).embeddings[0]
    assert 1 - F.cosine_similarity(masked, unmasked, dim=0) > 1e-3


def test_a_clip_too_short_for_one_frame_is_a_clear_error_alone_and_in_a_padded_batch(tiny_model):
    """Alone such a clip failed deep inside WavLM (an IndexError); padded in a batch it was pooled from no frame."""
    need = tiny_model.config.min_input_samples
    batch, mask = padded_pair(torch.randn(need - 1), torch.randn(16000))
    with torch.inference_mode():
        for values, attention_mask, row in ((batch, mask, 0), (batch[:1, : need - 1], None, 0)):
            with pytest.raises(
                ValueError, match=rf"clip {row}: {need - 1} samples\); it needs at least {need} samples"
            ):
                tiny_model(values, attention_mask=attention_mask)
        assert tiny_model(torch.randn(1, need)).embeddings.isfinite().all()


class HostReads(TorchDispatchMode):
    """Records the operators that read a tensor's values back to the host (on a GPU, each waits for the device)."""

    READS = {"aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero", "aten::item", "aten::equal"}

    def __init__(self):
        super().__init__()
        self.found = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name in self.READS:
            self.found.append(func._schema.name)
        return func(*args, **(kwargs or {}))


def test_an_unpadded_batch_reads_nothing_back_from_the_device(tiny_model):
    """Without a mask nothing is padded, and the forward takes that from the shapes: on the path a GPU runs (no
    CPU-only inference kernel, as with gradients recorded here) no value is read back to the host, the condition for
    capturing the forward in a CUDA graph and one wait less per call. Given a mask, the model checks it, which the
    same probe sees. The embeddings are the same."""
    values = torch.randn(2, 16000)
    with HostReads() as unpadded:
        free = tiny_model(values).embeddings
    with HostReads() as masked:
        checked = tiny_model(values, attention_mask=torch.ones_like(values, dtype=torch.long)).embeddings
    assert unpadded.found == [] and len(masked.found) >= 2, (unpadded.found, masked.found)
    torch.testing.assert_close(free, checked, rtol=0, atol=0)


@pytest.mark.parametrize("kind, margin", [("amsoftmax", 0.3), ("aamsoftmax", 0.2)])
def test_margin_losses(kind, margin):
    torch.manual_seed(0)
    head = LOSSES[kind](WavLMRawNetConfig(embedding_dim=8, num_labels=4, loss_margin=margin, loss_scale=30.0))
    torch.nn.init.normal_(head.weight)
    embeddings, labels = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    logits, loss = head(embeddings, labels)
    cosine = logits / 30.0
    target = cosine[torch.arange(6), labels]
    if kind == "amsoftmax":
        target_margin = target - margin
    else:
        target_margin = torch.cos(torch.acos(target.clamp(-1, 1)) + margin)
    expected_logits = cosine.clone()
    expected_logits[torch.arange(6), labels] = target_margin
    expected = F.cross_entropy(30.0 * expected_logits, labels)
    assert torch.allclose(loss, expected, atol=1e-4)
    plain = F.cross_entropy(logits, labels)
    assert loss > plain, "the margin makes the task harder"
    with pytest.raises(ValueError, match="labels must lie"):
        head(embeddings, torch.tensor([0, 1, 2, 3, 4, 0]))


def test_attentive_pooling_honours_mask_and_is_stable():
    torch.manual_seed(0)
    pool = AttentiveStatisticsPooling(4, WavLMRawNetConfig(attention_dim=8))
    x = torch.randn(1, 4, 10)
    full = pool(x, torch.ones(1, 10, dtype=torch.bool))
    padded = torch.cat([x, 1e3 * torch.randn(1, 4, 7)], dim=2)
    mask = torch.zeros(1, 17, dtype=torch.bool)
    mask[:, :10] = True
    assert torch.allclose(pool(padded, mask), full, atol=1e-5)
    constant = torch.full((1, 4, 10), 3.0, requires_grad=True)
    stats = pool(constant, torch.ones(1, 10, dtype=torch.bool))
    stats.sum().backward()
    assert torch.isfinite(stats).all() and torch.isfinite(constant.grad).all()
    assert torch.allclose(stats[0, :4], torch.full((4,), 3.0))


def test_get_embeddings_are_unit_length_and_keep_mode(tiny_model):
    tiny_model.train()
    embeddings = tiny_model.get_embeddings(torch.randn(3, 16000))
    assert tiny_model.training
    tiny_model.eval()
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(3), atol=1e-5)


def test_freezing():
    model = WavLMRawNetForXVector(WavLMRawNetConfig.from_preset("tiny"))
    model.freeze_feature_encoder()
    assert not any(p.requires_grad for p in model.wavlm.feature_extractor.parameters())
    final_norm = set(model.wavlm.encoder.layer_norm.parameters())  # unused by weighted pooling, so kept frozen
    trainable = [p.requires_grad for p in model.wavlm.encoder.parameters() if p not in final_norm]
    assert all(trainable) and not any(p.requires_grad for p in final_norm)
    assert all(p.requires_grad for p in model.rawnet.parameters()) and model.fusion.weight.requires_grad


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    config = WavLMRawNetConfig.from_preset("tiny", num_labels=3, wavlm_config={"mask_time_prob": 0.0})
    model = WavLMRawNetForXVector(config).train()
    inputs, labels = torch.randn(2, 16000), torch.tensor([0, 2])

    def gradients():
        model.zero_grad()
        model(inputs, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    model.activation_checkpointing_enable()
    assert model.is_activation_checkpointing
    checkpointed = gradients()
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        assert torch.allclose(plain[name], checkpointed[name], atol=1e-5), name


@pytest.mark.parametrize("branch", ["use_wavlm_branch", "use_rawnet_branch"])
def test_single_branch_models(branch):
    config = WavLMRawNetConfig.from_preset("tiny", **{branch: False})
    model = WavLMRawNetForXVector(config).eval()
    expected_input = 64 if branch == "use_rawnet_branch" else config.rawnet_embedding_dim
    assert model.fusion.in_features == expected_input
    assert (model.wavlm is None) == (branch == "use_wavlm_branch")
    assert (model.rawnet is None) == (branch == "use_rawnet_branch")
    assert_padding_invariant(model)


def test_fusion_activation_none():
    model = WavLMRawNetForXVector(WavLMRawNetConfig.from_preset("tiny", fusion_activation="none")).eval()
    embeddings = model(torch.randn(4, 16000)).embeddings
    assert (embeddings < 0).any(), "without ReLU some embedding values are negative"


def test_from_wavlm_pretrained_copies_weights_exactly(tmp_path):
    torch.manual_seed(0)
    wavlm_config = WavLMConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=[16] * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        num_buckets=16,
        max_bucket_distance=50,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        conv_bias=True,
        layerdrop=0.1,
    )
    WavLMModel(wavlm_config).save_pretrained(tmp_path)
    source = WavLMModel.from_pretrained(tmp_path)
    model = WavLMRawNetForXVector.from_wavlm_pretrained(str(tmp_path), preset="tiny", num_labels=4)
    assert model.config.wavlm_config.hidden_size == 32 and model.config.num_labels == 4
    assert model.config.wavlm_config.layerdrop == 0.0
    source_state, fused_state = source.state_dict(), model.wavlm.state_dict()
    assert source_state.keys() == fused_state.keys()
    for name, tensor in source_state.items():
        assert torch.equal(tensor, fused_state[name]), name
    assert model.fusion.in_features == 32 + model.config.rawnet_embedding_dim


def test_contiguous_attention_input_leaves_fp32_results_unchanged(tiny_model):
    from transformers.models.wavlm.modeling_wavlm import WavLMAttention

    from wavlmrawnet.fast_wavlm import WavLMAttentionContiguousInput

    layers = tiny_model.wavlm.encoder.layers
    tiny_model.set_fast_paths(False)  # the contiguous-input attention is the attention of the slow path
    try:
        assert all(type(layer.attention) is WavLMAttentionContiguousInput for layer in layers)
        batch, mask = padded_pair(torch.randn(8000), torch.randn(16000))
        with torch.inference_mode():
            patched = tiny_model(batch, attention_mask=mask).embeddings
            for layer in layers:
                layer.attention.__class__ = WavLMAttention
            plain = tiny_model(batch, attention_mask=mask).embeddings
    finally:
        tiny_model.set_fast_paths(True)
    assert torch.equal(patched, plain)


@pytest.mark.parametrize("pooling", ["last", "weighted"])
def test_every_trainable_parameter_gets_a_gradient(pooling):
    """DDP without find_unused_parameters fails otherwise (weighted pooling skips WavLM's final norm)."""
    torch.manual_seed(0)
    config = WavLMRawNetConfig.from_preset(
        "tiny", num_labels=4, wavlm_pooling=pooling, wavlm_config={"mask_time_prob": 0.0}
    )
    model = WavLMRawNetForXVector(config).train()  # nothing frozen: the feature encoder trains too
    model(torch.randn(2, 16000), labels=torch.tensor([0, 1])).loss.backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


@pytest.mark.parametrize("name", ["loss", "wavlm_pooling", "rawnet_pooling", "fusion_activation", "sinc_init"])
def test_model_refuses_an_unknown_part_name(name):
    """A config changed after it was checked: the model names the choices instead of picking one (a loss other than
    "amsoftmax" once became ArcFace)."""
    config = WavLMRawNetConfig.from_preset("tiny")
    setattr(config, name, "arcface")
    with pytest.raises(ValueError, match=rf"{name} must be one of \[.+\], got 'arcface'"):
        WavLMRawNetForXVector(config)


class MeanStdPooling(WavLMPooling):
    """A pooling written the way README's "How to extend" says: mean and standard deviation of the last layer."""

    def __init__(self, config):
        super().__init__(config)
        self.output_size = 2 * config.wavlm_config.hidden_size

    def forward(self, outputs, frame_mask):
        frames, mask = outputs.last_hidden_state, frame_mask[:, :, None]
        mean = masked_mean(frames, mask, dim=1)
        std = masked_mean((frames - mean[:, None, :]) ** 2, mask, dim=1).clamp(min=1e-6).sqrt()
        return torch.cat([mean, std], dim=1)


class MaskedMeanPooling(torch.nn.Module):
    """A RawNet pooling: the mean over valid frames."""

    def __init__(self, channels, config):
        super().__init__()
        self.output_size = channels

    def forward(self, x, mask):
        return masked_mean(x, mask[:, None, :], dim=2)


def test_a_pooling_added_to_its_table_is_accepted_and_used(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="wavlm_pooling must be one of"):
        WavLMRawNetConfig.from_preset("tiny", wavlm_pooling="mean_std")
    monkeypatch.setitem(WAVLM_POOLINGS, "mean_std", MeanStdPooling)
    monkeypatch.setitem(PART_NAMES, "wavlm_pooling", (*PART_NAMES["wavlm_pooling"], "mean_std"))
    monkeypatch.setitem(RAWNET_POOLINGS, "mean", MaskedMeanPooling)
    monkeypatch.setitem(PART_NAMES, "rawnet_pooling", (*PART_NAMES["rawnet_pooling"], "mean"))
    torch.manual_seed(0)
    config = WavLMRawNetConfig.from_preset("tiny", wavlm_pooling="mean_std", rawnet_pooling="mean")
    model = WavLMRawNetForXVector(config).eval()
    assert isinstance(model.wavlm_pooling, MeanStdPooling) and isinstance(model.rawnet.pooling, MaskedMeanPooling)
    assert model.fusion.in_features == 2 * 64 + config.rawnet_embedding_dim
    assert model.rawnet.fc.in_features == config.rawnet_channels[-1]
    assert_padding_invariant(model)
    model.save_pretrained(tmp_path)
    loaded = WavLMRawNetForXVector.from_pretrained(tmp_path).eval()
    assert loaded.config.wavlm_pooling == "mean_std"
    batch = torch.randn(1, 16000)
    with torch.inference_mode():
        assert torch.equal(model(batch).embeddings, loaded(batch).embeddings)
