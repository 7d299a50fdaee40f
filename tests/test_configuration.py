import dataclasses
import json
import re

import pytest
from transformers import AutoConfig, WavLMConfig

from wavlmrawnet import PRESETS, WavLMRawNetConfig
from wavlmrawnet.configuration_wavlmrawnet import PART_NAMES, WAVLM_LARGE
from wavlmrawnet.layers import CONFIG_CHOICES


def test_defaults_are_wavlm_large_and_rawnet25():
    config = WavLMRawNetConfig()
    wavlm = config.wavlm_config
    assert isinstance(wavlm, WavLMConfig)
    assert (wavlm.hidden_size, wavlm.num_hidden_layers, wavlm.num_attention_heads, wavlm.intermediate_size) == (
        1024,
        24,
        16,
        4096,
    )
    assert wavlm.do_stable_layer_norm and wavlm.feat_extract_norm == "layer" and wavlm.conv_bias
    assert (config.sinc_filters, config.sinc_kernel_size, config.min_low_hz, config.min_band_hz) == (128, 251, 50, 50)
    assert config.rawnet_channels == [128] * 4 and config.rawnet_kernel_size == 3
    assert (config.se_reduction, config.attention_dim, config.rawnet_embedding_dim, config.embedding_dim) == (
        8,
        128,
        256,
        256,
    )
    assert (config.loss, config.loss_margin, config.loss_scale) == ("amsoftmax", 0.3, 30.0)
    # The ablation's choices, as in the "default" preset (the reference's were "relu" and "last").
    assert config.fusion_activation == "none" and config.wavlm_pooling == "weighted"
    assert (config.sinc_pool_size, config.rawnet_block_pool_size) == (3, 3)
    assert config.rawnet_pooling == "attentive_statistics"


def test_bare_config_is_the_default_preset():
    assert WavLMRawNetConfig().to_dict() == WavLMRawNetConfig.from_preset("default").to_dict()
    assert PRESETS["default"] == {}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_state_only_their_differences(preset):
    bare = WavLMRawNetConfig()
    for name, value in PRESETS[preset].items():
        if name == "wavlm_config":
            for key, wavlm_value in value.items():
                assert wavlm_value != WAVLM_LARGE.get(key, getattr(bare.wavlm_config, key)), (preset, key)
        else:
            assert value != getattr(bare, name), (preset, name)


def test_presets():
    reference = WavLMRawNetConfig.from_preset("reference")
    assert reference.sinc_pool_size == 1 and reference.rawnet_block_pool_size == 1
    assert reference.wavlm_config.hidden_size == 1024 and reference.rawnet_downsampling == 1
    assert (reference.wavlm_pooling, reference.fusion_activation) == ("last", "relu")  # the seed's own choices
    tiny = WavLMRawNetConfig.from_preset("tiny", num_labels=7, wavlm_config={"num_hidden_layers": 1})
    assert tiny.wavlm_config.num_hidden_layers == 1 and tiny.wavlm_config.hidden_size <= 128
    assert tiny.num_labels == 7
    assert WavLMRawNetConfig.from_preset("tiny").wavlm_config.num_hidden_layers == 2
    assert set(PRESETS) >= {"reference", "default", "tiny"}
    with pytest.raises(ValueError, match="unknown preset"):
        WavLMRawNetConfig.from_preset("huge")


def test_wavlm_config_accepts_dict_or_config():
    from_dict = WavLMRawNetConfig(wavlm_config={"hidden_size": 64, "num_attention_heads": 2})
    from_object = WavLMRawNetConfig(wavlm_config=WavLMConfig(hidden_size=64, num_attention_heads=2))
    assert from_dict.wavlm_config.hidden_size == from_object.wavlm_config.hidden_size == 64


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"wavlm_pooling": "max"}, "wavlm_pooling"),
        ({"loss": "softmax"}, "loss"),
        ({"fusion_activation": "gelu"}, "fusion_activation"),
        ({"rawnet_pooling": "max"}, "rawnet_pooling"),
        ({"sinc_init": "bark"}, "sinc_init"),
        ({"use_wavlm_branch": False, "use_rawnet_branch": False}, "at least one"),
        ({"sinc_pool_size": 0}, "sinc_pool_size"),
        ({"min_low_hz": 7990.0}, "Nyquist"),
    ],
)
def test_invalid_values_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WavLMRawNetConfig(**kwargs)


def test_the_configs_part_names_are_the_tables_keys():
    """The config checks names against plain tuples (it never imports the network); they must match the tables."""
    assert set(PART_NAMES) == set(CONFIG_CHOICES)
    for name, table in CONFIG_CHOICES.items():
        assert sorted(PART_NAMES[name]) == sorted(table), name


@pytest.mark.parametrize("name", sorted(CONFIG_CHOICES))
def test_unknown_part_names_list_the_table_keys(name):
    keys = sorted(CONFIG_CHOICES[name])
    with pytest.raises(ValueError, match=re.escape(f"{name} must be one of {keys}, got 'unknown'")):
        WavLMRawNetConfig(**{name: "unknown"})
    for key in keys:
        assert getattr(WavLMRawNetConfig(**{name: key}), name) == key


def test_every_argument_is_documented():
    own_fields = {f.name for f in dataclasses.fields(WavLMRawNetConfig)} - {
        f.name for f in dataclasses.fields(WavLMRawNetConfig.__mro__[1])
    }
    doc = WavLMRawNetConfig.__doc__
    missing = [name for name in sorted(own_fields) if f"{name} (" not in doc]
    assert not missing, f"undocumented config arguments: {missing}"


def test_round_trip_and_auto_config(tmp_path):
    config = WavLMRawNetConfig.from_preset("tiny", num_labels=3, verification_threshold=0.42)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "wavlmrawnet"
    assert saved["auto_map"]["AutoConfig"] == "configuration_wavlmrawnet.WavLMRawNetConfig"
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, WavLMRawNetConfig)
    assert loaded.to_diff_dict() | {"_name_or_path": ""} == config.to_diff_dict() | {"_name_or_path": ""}


def test_older_config_json_loads(tmp_path):
    """A config.json written before `rawnet_pooling` existed, with the reference's explicit choices."""
    config = WavLMRawNetConfig.from_preset("reference", num_labels=3)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["wavlm_pooling"], saved["fusion_activation"]) == ("last", "relu")  # every argument is written
    del saved["rawnet_pooling"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert loaded.rawnet_pooling == "attentive_statistics"
    assert loaded.to_dict() | {"_name_or_path": ""} == config.to_dict() | {"_name_or_path": ""}


def test_min_input_covers_both_branches():
    config = WavLMRawNetConfig.from_preset("default")
    # RawNet: 251-tap sinc then 3 x 3^4 frames of pooling; WavLM: 400-sample receptive field.
    assert config.min_input_samples == 251 + (3 * 3**4 - 1)
    assert WavLMRawNetConfig.from_preset("default", use_rawnet_branch=False).min_input_samples == 400
