"""ONNX export: one exported file runs in onnxruntime for several batch shapes and matches PyTorch."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector
from wavlmrawnet.layers import SincConv
from wavlmrawnet.onnx_export import _max_pool1d_as_2d, check_onnx_interface, export_onnx

ATOL = 1e-4


def padded_batch(lengths: list[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random waveforms zero-padded to the longest, with an int64 attention mask."""
    rng = np.random.default_rng(seed)
    values = np.zeros((len(lengths), max(lengths)), dtype=np.float32)
    mask = np.zeros(values.shape, dtype=np.int64)
    for row, length in enumerate(lengths):
        values[row, :length] = 0.1 * rng.standard_normal(length)
        mask[row, :length] = 1
    return values, mask


def pytorch_embeddings(model, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The model on what the feature extractor makes of the raw audio (the graph normalises it itself)."""
    extractor = model.default_feature_extractor()
    normalized = np.stack([extractor.normalize(row, row_mask) for row, row_mask in zip(values, mask)])
    with torch.inference_mode():
        return model(torch.from_numpy(normalized), attention_mask=torch.from_numpy(mask)).embeddings.numpy()


def onnx_embeddings(path, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (embeddings,) = session.run(["embeddings"], {"input_values": values, "attention_mask": mask})
    return embeddings


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return WavLMRawNetForXVector(WavLMRawNetConfig.from_preset("tiny", num_labels=5))


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    """The tiny model, exported once with the default (dynamo) exporter from TRAINING mode."""
    tiny.train()
    path = export_onnx(tiny, tmp_path_factory.mktemp("onnx") / "tiny.onnx")
    return path


@pytest.mark.slow
def test_export_leaves_model_unchanged(tiny, exported):
    assert exported.is_file() and exported.suffix == ".onnx"
    assert tiny.training, "export_onnx must restore the training mode"
    sinc = [module for module in tiny.modules() if isinstance(module, SincConv)]
    assert sinc and all("filters" not in module.__dict__ for module in sinc), "frozen sinc filters must be undone"


@pytest.mark.slow
def test_graph_inputs_are_named_and_dynamic(exported):
    graph = onnx.load(str(exported)).graph
    assert [value.name for value in graph.input] == ["input_values", "attention_mask"]
    assert [value.name for value in graph.output] == ["embeddings"]
    element_types = [value.type.tensor_type.elem_type for value in graph.input]
    assert element_types == [onnx.TensorProto.FLOAT, onnx.TensorProto.INT64]
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        assert len(dims) == 2
        for dim in dims:
            assert dim.dim_param and not dim.HasField("dim_value"), f"{value.name}: {dim} is not symbolic"
    batch, width = graph.output[0].type.tensor_type.shape.dim
    assert batch.dim_param and width.dim_value == 256


@pytest.mark.parametrize(
    "lengths",
    [
        pytest.param([16000], id="batch1-1.0s"),
        pytest.param([40000, 17000, 28123], id="batch3-mixed-up-to-2.5s"),
    ],
)
@pytest.mark.slow
def test_onnxruntime_matches_pytorch(tiny, exported, lengths):
    tiny.eval()
    values, mask = padded_batch(lengths, seed=len(lengths))
    expected = pytorch_embeddings(tiny, values, mask)
    got = onnx_embeddings(exported, values, mask)
    assert got.shape == expected.shape == (len(lengths), 256)
    assert np.abs(expected).max() > 1e-3, "a degenerate all-zero embedding would make the comparison meaningless"
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


@pytest.mark.slow
def test_torchscript_exporter_from_saved_folder(saved_tiny_model, tmp_path):
    """The legacy exporter, loading the model from a `save_pretrained` folder, at opset 17."""
    path = export_onnx(saved_tiny_model, tmp_path / "nested" / "legacy.onnx", opset=17, dynamo=False)
    assert onnx.load(str(path)).opset_import[0].version == 17
    check_onnx_interface(path)
    model = WavLMRawNetForXVector.from_pretrained(saved_tiny_model).eval()
    values, mask = padded_batch([24000, 9000, 31000], seed=7)
    expected = pytorch_embeddings(model, values, mask)
    np.testing.assert_allclose(onnx_embeddings(path, values, mask), expected, atol=ATOL, rtol=0)


@pytest.mark.slow
def test_interface_check_rejects_a_static_length(exported, tmp_path):
    proto = onnx.load(str(exported))
    proto.graph.input[1].type.tensor_type.shape.dim[1].dim_value = 16000  # as if the exporter had pinned it
    static = tmp_path / "static.onnx"
    onnx.save(proto, str(static))
    with pytest.raises(RuntimeError, match="attention_mask.*static"):
        check_onnx_interface(static)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=2, stride=1, dilation=2, ceil_mode=True),
    ],
)
def test_max_pool1d_rewrite_is_exact(kwargs):
    x = torch.randn(2, 4, 50)
    torch.testing.assert_close(_max_pool1d_as_2d(x, **kwargs), F.max_pool1d(x, **kwargs), rtol=0, atol=0)
    values, indices = _max_pool1d_as_2d(x, return_indices=True, **kwargs)
    expected_values, expected_indices = F.max_pool1d(x, return_indices=True, **kwargs)
    assert torch.equal(values, expected_values) and torch.equal(indices, expected_indices)


def test_bad_arguments_raise_clear_errors(tiny, tmp_path):
    with pytest.raises(ValueError, match="must end in .onnx"):
        export_onnx(tiny, tmp_path / "model.bin")
    with pytest.raises(ValueError, match="opset >= 18"):
        export_onnx(tiny, tmp_path / "model.onnx", opset=17)
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        export_onnx(tmp_path / "missing", tmp_path / "model.onnx")
    with pytest.raises(TypeError, match="WavLMRawNetForXVector"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "model.onnx")


@pytest.mark.slow
def test_docs_onnxruntime_example_needs_no_torch(tiny, exported, wav_files):
    """docs/examples/onnx_embed.py (shown on the Inference page) on the exported graph, run where torch and
    transformers cannot be imported: the same cosine as PyTorch through the feature extractor on the same files."""
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "docs" / "examples" / "onnx_embed.py"
    first, second = wav_files["mono_16k"], wav_files["stereo_16k"]
    blocker = (
        "import runpy, sys; sys.modules.update(torch=None, transformers=None, wavlmrawnet=None); "
        f"sys.argv = [{str(example)!r}, {str(exported)!r}, {first!r}, {second!r}]; "
        f"runpy.run_path({str(example)!r}, run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    cosine = float(done.stdout.split()[-1])

    was_training = tiny.training
    tiny.eval()
    try:
        inputs = tiny.default_feature_extractor()([first, second], return_tensors="pt")
        with torch.inference_mode():
            expected = tiny.get_embeddings(**inputs)
    finally:
        tiny.train(was_training)
    assert abs(cosine - float(expected[0] @ expected[1])) < 1e-4

    bad_rate = subprocess.run(
        [sys.executable, str(example), str(exported), wav_files["mono_8k"], first], capture_output=True, text=True
    )
    assert bad_rate.returncode != 0 and "resample it to 16 kHz" in bad_rate.stderr
