"""Inference engines (`wavlmrawnet.engines.use_engine`, `--engine` in the CLI) give the eager model's embeddings."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import write_wav

from wavlmrawnet import WavLMRawNetForXVector
from wavlmrawnet.engines import ENGINES, _finite, model_fingerprint, onnx_cache_root, use_engine


@pytest.fixture(scope="module")
def model(saved_tiny_model) -> WavLMRawNetForXVector:
    """The session's saved tiny model: the CLI test below loads the same folder, so its fresh process finds the graph
    the tests before it exported in the cache (the same fingerprint) instead of exporting again."""
    return WavLMRawNetForXVector.from_pretrained(saved_tiny_model).eval()


def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    mask = torch.ones(2, 24000, dtype=torch.long)
    mask[1, 14000:] = 0
    return torch.randn(2, 24000) * mask, mask


def test_use_engine_refuses_unknown_engines_and_training_models(model):
    with pytest.raises(ValueError, match=r"engine must be one of \['torch', 'torch-compile', 'onnxruntime'\]"):
        use_engine(copy.deepcopy(model), "tensorrt")
    with pytest.raises(ValueError, match="call model.eval"):
        use_engine(copy.deepcopy(model).train(), "onnxruntime")
    with pytest.raises(TypeError, match="expected a WavLMRawNetForXVector"):
        use_engine(torch.nn.Linear(2, 2), "torch")
    assert ENGINES == ("torch", "torch-compile", "onnxruntime")
    with pytest.raises(ValueError, match="int8 through an engine is onnxruntime's"):
        use_engine(copy.deepcopy(model), "torch-compile", int8=True)


def check_engine(model, engine: str) -> None:
    values, mask = padded_batch()
    engine_model = copy.deepcopy(model)
    seconds = use_engine(engine_model, engine)
    assert seconds >= 0 and engine_model.engine == engine
    with torch.inference_mode():
        expected = model(values, attention_mask=mask).embeddings
        got = engine_model(values, attention_mask=mask).embeddings
        # A different length and batch size: the engine's batch and length axes are dynamic.
        expected_single = model.get_embeddings(values[1:, :14000])
        got_single = engine_model.get_embeddings(values[1:, :14000])
    assert got.shape == expected.shape and (got - expected).abs().max() <= 1e-4
    assert (got_single - expected_single).abs().max() <= 1e-4
    # Switching the fast paths off afterwards keeps the engine working: the same function either way.
    engine_model.set_fast_paths(False)
    with torch.inference_mode():
        got_off = engine_model(values, attention_mask=mask).embeddings
    engine_model.set_fast_paths(True)
    assert (got_off - expected).abs().max() <= 1e-4
    with pytest.raises(ValueError, match="takes no labels"):
        engine_model(values, attention_mask=mask, labels=torch.tensor([0, 1]))


@pytest.mark.slow
def test_onnxruntime_engine_matches_eager(model):
    check_engine(model, "onnxruntime")


@pytest.mark.slow
def test_onnx_graph_cache_reuses_a_graph_and_replaces_a_damaged_one(model, monkeypatch, caplog):
    """The onnxruntime engine's graph is exported once per model fingerprint (the test above exported this one), and a
    cached graph onnxruntime cannot load is exported again, with a warning, not used or left to fail. Writing a graph
    keeps the cache within its budget: a stale graph of another model (2 GB, sparse) goes, with a message."""
    values, mask = padded_batch()
    with torch.inference_mode():
        expected = model(values, attention_mask=mask).embeddings
    first, second, third = (copy.deepcopy(model) for _ in range(3))
    use_engine(first, "onnxruntime")
    graph = first.onnx_graph
    assert graph.parent == onnx_cache_root() / model_fingerprint(model) and graph.is_file()
    written = graph.stat().st_mtime_ns
    use_engine(second, "onnxruntime")
    assert second.onnx_graph == graph and graph.stat().st_mtime_ns == written, "exported again"
    # Any change to the weights is another graph.
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.fusion.bias.add_(1e-3)
    assert model_fingerprint(changed) != model_fingerprint(model) == model_fingerprint(second)
    monkeypatch.setenv("WAVLMRAWNET_ONNX_CACHE_MAX_GB", "lots")
    with pytest.raises(ValueError, match="WAVLMRAWNET_ONNX_CACHE_MAX_GB must be a size in GB"):
        use_engine(copy.deepcopy(model), "onnxruntime")
    monkeypatch.setenv("WAVLMRAWNET_ONNX_CACHE_MAX_GB", "1")
    stale = cache_entry(onnx_cache_root(), "f" * 32, 2 * 10**9, last_used=0)
    graph.write_bytes(b"not an ONNX graph")
    with pytest.warns(UserWarning, match="could not be loaded .*exporting it again"):
        use_engine(third, "onnxruntime")
    with torch.inference_mode():
        got = third(values, attention_mask=mask).embeddings
    assert third.onnx_graph == graph and (got - expected).abs().max() <= 1e-4
    assert not stale.exists() and f"removed the least recently used ONNX graph {stale}" in caplog.text
    # A damaged int8 graph is quantised again from the exported graph, which stays as it was (no export: seconds).
    fourth, fifth = copy.deepcopy(model), copy.deepcopy(model)
    use_engine(fourth, "onnxruntime", int8=True)
    int8_graph, exported = fourth.onnx_graph, graph.stat().st_mtime_ns
    assert int8_graph.parent == graph.parent and int8_graph != graph
    int8_graph.write_bytes(b"not an ONNX graph either")
    with pytest.warns(UserWarning, match="could not be loaded .*quantising it again"):
        use_engine(fifth, "onnxruntime", int8=True)
    with torch.inference_mode():
        int8_expected, int8_got = (
            fourth(values, attention_mask=mask).embeddings,
            fifth(values, attention_mask=mask).embeddings,
        )
    assert fifth.onnx_graph == int8_graph and graph.stat().st_mtime_ns == exported
    assert (int8_got - int8_expected).abs().max() <= 1e-5
    monkeypatch.setenv("WAVLMRAWNET_ONNX_CACHE", "off")
    assert onnx_cache_root() is None


@pytest.mark.slow
def test_torch_compile_engine_matches_eager(model):
    """Where torch runs AVX2 CPU kernels, inductor's AVX2 code gave NaN embeddings (torch 2.13): the engine refuses
    there with a clear error. Elsewhere it gives eager's embeddings."""
    if torch.backends.cpu.get_cpu_capability() == "AVX2":
        with pytest.raises(ValueError, match="not available where torch runs AVX2 CPU kernels"):
            use_engine(copy.deepcopy(model), "torch-compile")
    else:
        check_engine(model, "torch-compile")
        compiled = copy.deepcopy(model)
        use_engine(compiled, "torch-compile")
        # WavLM's feature encoder stays eager: inductor's AVX-512 code for it corrupted the heap at Large size
        assert compiled.wavlm.feature_extractor.forward._torchdynamo_disable
        assert not hasattr(model.wavlm.feature_extractor.forward, "_torchdynamo_disable")


def test_engines_refuse_to_return_non_finite_embeddings():
    embeddings = torch.tensor([[0.5, float("nan")], [0.1, 0.2]])
    with pytest.raises(RuntimeError, match="torch-compile engine returned non-finite embeddings"):
        _finite(embeddings, "torch-compile")
    finite = torch.tensor([[0.5, 0.1]])
    assert _finite(finite, "onnxruntime") is finite


@pytest.mark.slow
def test_cli_engine_option_gives_the_same_embeddings(tmp_path, saved_tiny_model, model):
    """`wavlmrawnet embed --engine onnxruntime` in a fresh process writes the eager engine's embeddings."""
    clips = [write_wav(tmp_path / f"clip{i}.wav", 1.0 + 0.4 * i, 16000, seed=i) for i in range(2)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    outputs = {}
    for engine in ("torch", "onnxruntime"):
        out = tmp_path / f"{engine}.npy"
        result = subprocess.run(
            [sys.executable, "-m", "wavlmrawnet", "embed", "--model", saved_tiny_model, *clips, "--out", str(out),
             "--quiet", "--engine", engine, "--dtype", "fp32"],
            capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        outputs[engine] = np.load(out)
    assert "engine onnxruntime: prepared in" in result.stderr
    # The model loaded in a fresh process has the fingerprint of the same folder loaded here.
    assert f"(graph: {onnx_cache_root() / model_fingerprint(model) / 'model.onnx'})" in result.stderr, result.stderr
    assert outputs["torch"].shape == (2, 256)
    assert np.abs(outputs["torch"] - outputs["onnxruntime"]).max() <= 1e-4


def saturating_product(folder) -> tuple[object, np.ndarray, np.ndarray]:
    """An ONNX graph `X @ W` whose int8 form overflows int16 pair sums at full range: every weight at the int8
    extreme, every activation at the top of its u8 range. Returns (path, x, exact result)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.ones((64, 8), np.float32)
    weight[:, 1::2] = -1
    x = np.ones((4, 64), np.float32)
    x[:, 0] = 0
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])], "product",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [4, 64])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4, 8])], [numpy_helper.from_array(weight, "W")],
    )  # fmt: skip
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path, x, x @ weight


def test_onnx_int8_keeps_weights_to_7_bits_where_int8_products_saturate(tmp_path, monkeypatch):
    """On x86 without VNNI/AMX, onnxruntime's full-range int8 product overflows (the exact 63 comes out near 32): the
    detection (`int8_products_may_saturate`) must agree with what this CPU's kernels do, and the 7-bit weights
    (`reduce_range`) that the engine then uses must be exact. The graph cache names the two graphs apart."""
    import onnxruntime as ort

    from wavlmrawnet import engines
    from wavlmrawnet.engines import onnx_int8_description, quantize_onnx_int8
    from wavlmrawnet.precision import int8_products_may_saturate

    path, x, exact = saturating_product(tmp_path)
    errors = {}
    for reduce_range in (False, True):
        quantised = quantize_onnx_int8(path, tmp_path / f"int8-{reduce_range}.onnx", reduce_range=reduce_range)
        session = ort.InferenceSession(str(quantised), providers=["CPUExecutionProvider"])
        errors[reduce_range] = float(np.abs(session.run(None, {"X": x})[0] - exact).max())
    assert errors[True] < 1e-3, errors
    assert (errors[False] > 10) == int8_products_may_saturate(), (errors, "saturation detection disagrees")
    assert ("7-bit weights" in onnx_int8_description()) == int8_products_may_saturate()

    (tmp_path / "complete").write_text("exported\n")
    for saturates, name in ((True, "model.int8-7bit.onnx"), (False, "model.int8.onnx")):
        monkeypatch.setattr(engines, "int8_products_may_saturate", lambda saturates=saturates: saturates)
        assert engines._cached_graph(None, tmp_path, int8=True) == tmp_path / name and (tmp_path / name).is_file()
    assert sorted(p.name for p in tmp_path.glob(".*")) == [], "no partial graph left behind"


def cache_entry(root, name: str, size: int, last_used: float):
    """A complete graph folder in the cache `root`: a sparse `model.onnx` of `size` bytes, last used at `last_used`."""
    folder = root / name
    folder.mkdir(parents=True)
    with open(folder / "model.onnx", "wb") as graph:
        graph.truncate(size)
    (folder / "complete").write_text("exported\n")
    os.utime(folder / "complete", (last_used, last_used))
    return folder


def test_graph_cache_budget_removes_the_least_recently_used_graphs_and_nothing_else(tmp_path, monkeypatch):
    import time

    from wavlmrawnet.engines import onnx_cache_max_bytes, prune_onnx_cache

    now = time.time()
    oldest, middle, newest = (
        cache_entry(tmp_path, f"{digit}" * 32, size, now - age)
        for digit, size, age in ((1, 300, 300), (2, 200, 200), (3, 100, 100))
    )
    incomplete = tmp_path / ("4" * 32)  # a fingerprint folder without its marker: not a graph the budget counts
    incomplete.mkdir()
    (tmp_path / "notes.txt").write_text("the user's own file")
    stale_staging, fresh_staging, stale_prune = (tmp_path / f".{'5' * 32}-a", tmp_path / f".{'6' * 32}-b",
                                                 tmp_path / f".pruned-{'7' * 32}-1")  # fmt: skip
    for leftover in (stale_staging, fresh_staging, stale_prune):
        leftover.mkdir()
    for leftover in (stale_staging, stale_prune):
        os.utime(leftover, (now - 2 * 86400, now - 2 * 86400))

    assert prune_onnx_cache(tmp_path, None) == []  # no budget: graphs stay, a killed run's day-old leftovers go
    assert not stale_staging.exists() and not stale_prune.exists() and fresh_staging.exists()
    # 600 bytes against a budget of 350: the oldest goes and that is enough.
    assert prune_onnx_cache(tmp_path, 350, keep=newest) == [oldest]
    # The graph in use is never removed, even when it is the least recently used one.
    os.utime(newest / "complete", (now - 1000, now - 1000))
    assert prune_onnx_cache(tmp_path, 0, keep=newest) == [middle]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [newest.name, incomplete.name, "notes.txt", fresh_staging.name]
    )

    monkeypatch.delenv("WAVLMRAWNET_ONNX_CACHE_MAX_GB", raising=False)
    assert onnx_cache_max_bytes() == 10 * 10**9
    for value, expected in (("2.5", 2_500_000_000), ("0", 0), ("unlimited", None), ("inf", None)):
        monkeypatch.setenv("WAVLMRAWNET_ONNX_CACHE_MAX_GB", value)
        assert onnx_cache_max_bytes() == expected
    for value in ("lots", "-1", "nan"):
        monkeypatch.setenv("WAVLMRAWNET_ONNX_CACHE_MAX_GB", value)
        with pytest.raises(ValueError, match="must be a size in GB"):
            onnx_cache_max_bytes()
