"""int8 on the CPU (`precision="int8"`, `wavlmrawnet.quantization`): opt-in only, close to fp32, recorded where used,
and refused where it cannot hold (training, saving, a GPU, transformers' own layers)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import cli_in_process, voice_like, write_wav

from wavlmrawnet import precision as precision_module
from wavlmrawnet.evaluation.embedding import embed_files
from wavlmrawnet.model_card import write_model_card
from wavlmrawnet.precision import resolve_precision
from wavlmrawnet.quantization import int8_linear_names, is_int8, quantize_int8

COSINE_BOUND = 0.99  # issue #31: mean embedding cosine of int8 to fp32


@pytest.fixture(scope="module")
def padded_batch() -> dict[str, torch.Tensor]:
    """Three speech-like clips of 2.0, 1.5 and 1.0 s, zero-padded into one batch with its mask."""
    clips = [torch.from_numpy(voice_like(seconds, 16000, seed)) for seconds, seed in ((2.0, 1), (1.5, 2), (1.0, 3))]
    values = torch.zeros(len(clips), len(clips[0]))
    mask = torch.zeros_like(values, dtype=torch.long)
    for row, clip in enumerate(clips):
        values[row, : len(clip)], mask[row, : len(clip)] = clip, 1
    return {"input_values": values, "attention_mask": mask}


def test_int8_embeddings_stay_within_the_cosine_bound_and_leave_the_float_model_alone(tiny_model, padded_batch):
    with torch.inference_mode():
        before = tiny_model(**padded_batch).embeddings
    int8 = tiny_model.for_precision("int8")
    assert is_int8(int8) and not is_int8(tiny_model)
    assert tiny_model.for_precision("int8") is int8, "the int8 twin is built once and kept"
    quantised = dict(int8.named_modules())
    names = int8_linear_names(tiny_model)
    assert "fusion" in names and any(name.endswith("feed_forward.intermediate_dense") for name in names)
    assert all(type(quantised[name]).__name__ == "Linear" and "quantized" in type(quantised[name]).__module__
               for name in names)  # fmt: skip
    assert type(int8.wavlm.encoder.layers[0].attention).__name__ == "WavLMFastAttention", "fast paths stay on"
    convs = [layer.conv for layer in int8.wavlm.feature_extractor.conv_layers]
    assert not hasattr(convs[0], "int8_windows") and all(
        "quantized" in type(c.int8_windows).__module__ for c in convs[1:]
    )
    assert not any(hasattr(layer.conv, "int8_windows") for layer in tiny_model.wavlm.feature_extractor.conv_layers)
    with torch.inference_mode():
        after = tiny_model(**padded_batch).embeddings
        quantised_out = int8(**padded_batch).embeddings
    assert torch.equal(before, after), "quantising the twin changed the float model"
    cosine = F.cosine_similarity(quantised_out, before)
    assert cosine.mean() >= COSINE_BOUND and cosine.min() >= 0.98, cosine.tolist()
    assert not torch.equal(quantised_out, before), "int8 computed nothing in int8"
    # a padded clip gets (close to) what it gets alone: the mask is honoured in int8 as in fp32
    with torch.inference_mode():
        alone = int8(padded_batch["input_values"][2:, :16000]).embeddings
    assert F.cosine_similarity(alone, quantised_out[2:]).item() > 0.999


def test_auto_never_resolves_to_int8(monkeypatch):
    for native in (False, True):  # whatever the CPU does natively
        monkeypatch.setattr(precision_module, "cpu_native_bf16", lambda native=native: (native, "test"))
        for training in (False, True):
            assert resolve_precision("auto", "cpu", training=training).name in ("fp32", "bf16")
            assert resolve_precision(None, "cpu", training=training).name != "int8"
    monkeypatch.undo()
    for alias in ("int8", "INT8", "qint8"):
        resolved = resolve_precision(alias, "cpu")
        assert resolved.name == "int8" and "torch.ao dynamic int8" in str(resolved) and str(resolved).startswith(
            "precision: int8"
        )  # fmt: skip
    with pytest.raises(ValueError, match="int8 is for inference"):
        resolve_precision("int8", "cpu", training=True)
    with pytest.raises(ValueError, match="int8 runs on the CPU"):
        resolve_precision("int8", "cuda")
    with pytest.raises(ValueError, match="int8 is for inference"):
        _ = resolve_precision("int8", "cpu").accelerate_mixed_precision


def test_int8_engines_give_the_same_embeddings_and_an_unknown_one_is_refused(tiny_model, padded_batch):
    engines = torch.backends.quantized.supported_engines
    chosen = precision_module.int8_engine()
    assert chosen in engines and chosen in str(resolve_precision("int8", "cpu"))
    if "onednn" in engines and "x86" in engines:  # an x86 build: oneDNN's kernels, fbgemm's ("x86") the same sums
        assert chosen == "onednn"
        with torch.inference_mode():
            onednn, x86 = (quantize_int8(tiny_model, engine=e)(**padded_batch).embeddings for e in ("onednn", "x86"))
        assert F.cosine_similarity(onednn, x86).min().item() > 0.99999
    with pytest.raises(ValueError, match="int8 engine 'nope' is not in this torch build"):
        quantize_int8(tiny_model, engine="nope")


def test_int8_model_is_for_inference_and_cannot_be_saved(tiny_model, tmp_path):
    int8 = quantize_int8(tiny_model)
    with pytest.raises(ValueError, match="int8 model cannot be saved.*save the float model"):
        int8.save_pretrained(tmp_path / "int8")
    assert not (tmp_path / "int8" / "model.safetensors").exists()
    with pytest.raises(ValueError, match="for inference only"):
        int8.train()
    with pytest.raises(ValueError, match="keeps its fast paths"):
        int8.set_fast_paths(False)
    with pytest.raises(ValueError, match="quantised to int8; run it with precision int8, not fp32"):
        int8.for_precision("fp32")
    assert quantize_int8(int8) is int8


def test_embed_files_int8_is_its_own_cache_entry(tiny_model, tmp_path):
    files = [write_wav(tmp_path / f"{seed}.wav", 1.2, 16000, seed=seed) for seed in (5, 6)]
    fp32 = embed_files(tiny_model, tiny_model.default_feature_extractor(), files, precision="fp32")
    int8 = embed_files(tiny_model, tiny_model.default_feature_extractor(), files, precision="int8",
                       cache_dir=tmp_path / "cache")  # fmt: skip
    assert int8.precision.name == "int8" and not int8.failures
    assert [p.name.endswith("-int8.safetensors") for p in (tmp_path / "cache").iterdir()] == [True]
    cosines = [float(np.dot(fp32.embeddings[f], int8.embeddings[f])) for f in files]
    assert min(cosines) >= COSINE_BOUND and max(cosines) < 1.0 - 1e-7, cosines


def test_cli_dtype_int8_is_printed_recorded_in_the_results_and_the_card(saved_tiny_model, tmp_path):
    root = tmp_path / "wav"
    for speaker in ("s1", "s2"):
        (root / speaker).mkdir(parents=True)
        for index in range(2):
            write_wav(root / speaker / f"{index}.wav", 1.0, 16000, seed=10 * len(speaker) + index + ord(speaker[1]))
    trials = tmp_path / "trials.txt"
    trials.write_text("1 s1/0.wav s1/1.wav\n1 s2/0.wav s2/1.wav\n0 s1/0.wav s2/0.wav\n0 s1/1.wav s2/1.wav\n")
    out = tmp_path / "out"
    args = ["score", "--model", saved_tiny_model, "--trials", str(trials), "--root", str(root), "--device", "cpu"]
    result = cli_in_process(*args, "--dtype", "int8", "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    assert "precision: int8 (asked for: torch.ao dynamic int8" in result.stderr
    saved = json.loads((out / "trials_results.json").read_text())
    assert saved["dtype"] == "int8" and "torch.ao dynamic int8" in saved["precision_reason"]
    folder = shutil.copytree(saved_tiny_model, tmp_path / "model")
    card = write_model_card(folder, [out / "trials_results.json"]).read_text()
    assert "| int8 |" in card, "the card's evaluation table shows the int8 dtype"
    compiled = cli_in_process(*args, "--dtype", "int8", "--engine", "torch-compile")
    assert compiled.returncode == 1 and "int8 runs on the torch engine (torch.ao) or onnxruntime" in compiled.stderr


@pytest.mark.slow
def test_cli_onnxruntime_int8_is_named_in_the_precision_line_and_the_results(saved_tiny_model, tmp_path):
    """`--engine onnxruntime --dtype int8`: onnxruntime's own int8 (engines.quantize_onnx_int8) runs, within the
    cosine bound of fp32 and not equal to it, and the precision line names it, not torch.ao's."""
    clips = [write_wav(tmp_path / f"clip{seed}.wav", 1.5, 16000, seed=seed) for seed in (3, 4)]
    outputs = {}
    for dtype, engine in (("fp32", "torch"), ("int8", "onnxruntime")):
        out = tmp_path / f"{dtype}.npy"
        result = cli_in_process("embed", "--model", saved_tiny_model, *clips, "--out", str(out), "--quiet",
                                "--device", "cpu", "--engine", engine, "--dtype", dtype)  # fmt: skip
        assert result.returncode == 0, result.stderr
        outputs[dtype] = np.load(out)
    assert "precision: int8 (asked for: onnxruntime dynamic int8" in result.stderr and "torch.ao" not in result.stderr
    cosines = (outputs["fp32"] * outputs["int8"]).sum(axis=1)
    assert cosines.min() >= COSINE_BOUND and cosines.max() < 1.0 - 1e-7, cosines
