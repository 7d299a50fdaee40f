"""Inference paths: bf16 CPU autocast through `get_embeddings` and `embed_files`, and long-audio chunking through the
remote-code `feature-extraction` pipeline. Memory under chunking is measured by benchmarks/bench_long_audio.py."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import voice_like, write_wav

from wavlmrawnet import WavLMRawNetFeatureExtractor
from wavlmrawnet.evaluation.embedding import embed_files

SAMPLING_RATE = 16000


def assert_unit_rows(embeddings: np.ndarray) -> None:
    assert embeddings.dtype == np.float32
    assert np.isfinite(embeddings).all()
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=-1), 1.0, atol=1e-5)


# (clips, seconds, chunk_seconds): two 2 s clips in one forward; one 5 s clip in three 3 s windows (2 s overlap)
@pytest.mark.parametrize("clips, seconds, chunk_seconds", [(2, 2.0, 0.0), (1, 5.0, 3.0)], ids=["batch", "chunked"])
def test_bf16_autocast_get_embeddings_is_close_to_fp32(tiny_model, clips, seconds, chunk_seconds):
    audio = torch.from_numpy(np.stack([voice_like(seconds, SAMPLING_RATE, seed) for seed in range(clips)]))
    fp32 = tiny_model.get_embeddings(audio, chunk_seconds=chunk_seconds)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = tiny_model.get_embeddings(audio, chunk_seconds=chunk_seconds)
    assert_unit_rows(bf16.numpy())
    assert not torch.equal(bf16, fp32), "autocast did not reach the model: bf16 equals fp32 bit for bit"
    cosine = (bf16 * fp32).sum(dim=1)
    assert cosine.min() > 0.9, f"bf16 vs fp32 cosine {cosine.tolist()}"


def test_embed_files_bf16_is_close_to_fp32(tiny_model, tmp_path):
    # Two batches of two; the 5 s clip goes through three 3 s windows.
    paths = [write_wav(tmp_path / f"clip{i}.wav", seconds, SAMPLING_RATE, seed=i)
             for i, seconds in enumerate([1.0, 1.7, 2.5, 5.0])]  # fmt: skip
    extractor = WavLMRawNetFeatureExtractor()
    results = {
        name: embed_files(tiny_model, extractor, paths, batch_size=2, chunk_seconds=3.0, precision=name,
                          progress=False, cache_dir=tmp_path / "cache")
        for name in ("fp32", "bf16")
    }  # fmt: skip
    for name, result in results.items():
        assert result.failures == {} and result.computed == len(paths), "each precision has its own cache"
        assert result.precision.name == name
    assert sorted(p.name.split("-")[-1] for p in (tmp_path / "cache").iterdir()) == [
        "bf16.safetensors",
        "fp32.safetensors",
    ]
    fp32 = np.stack([results["fp32"].embeddings[p] for p in paths])
    bf16 = np.stack([results["bf16"].embeddings[p] for p in paths])
    assert_unit_rows(bf16)
    assert not np.array_equal(bf16, fp32), "precision='bf16' was ignored"
    cosine = (bf16 * fp32).sum(axis=1)
    assert cosine.min() > 0.9, f"bf16 vs fp32 cosine per file {cosine.tolist()}"


PIPELINE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from transformers import pipeline

    folder, path = sys.argv[1], sys.argv[2]
    embed = pipeline("feature-extraction", model=folder, trust_remote_code=True, precision="fp32")  # exact
    print("RESULT" + json.dumps({
        "module": type(embed.model).__module__,
        "chunked": embed(path, chunk_seconds=3.0).tolist(),
        "unchunked": embed(path, chunk_seconds=0).tolist(),
    }))
    """
)


def test_pipeline_chunk_seconds_matches_get_embeddings(tiny_model, saved_tiny_model, tmp_path):
    path = write_wav(tmp_path / "long.wav", 5.0, SAMPLING_RATE, seed=7)  # three 3 s windows
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    completed = subprocess.run([sys.executable, "-c", PIPELINE_SCRIPT, saved_tiny_model, path],
                               capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(next(line for line in completed.stdout.splitlines() if line.startswith("RESULT"))[6:])
    assert result["module"].startswith("transformers_modules"), "the pipeline should run the folder's remote code"

    inputs = WavLMRawNetFeatureExtractor.from_pretrained(saved_tiny_model)(path, return_tensors="pt")
    expected = {
        name: tiny_model.get_embeddings(inputs["input_values"], inputs["attention_mask"], chunk_seconds=seconds)[0]
        for name, seconds in (("chunked", 3.0), ("unchunked", 0.0))
    }
    for name, embedding in expected.items():
        np.testing.assert_allclose(
            np.array(result[name], dtype=np.float32), embedding.numpy(), atol=1e-5, err_msg=name
        )
    assert not np.allclose(result["chunked"], result["unchunked"], atol=1e-4), "chunk_seconds had no effect"


def test_an_unpadded_call_reaches_the_model_without_a_mask(tiny_model, tmp_path, monkeypatch):
    """One recording (a pipeline call, a batch of one in `embed_files`, diarization windows of one length) reaches the
    model without an attention mask, which it then need not read back from a GPU; a padded batch keeps its mask."""
    from wavlmrawnet import WavLMRawNetForXVector
    from wavlmrawnet.diarization.pipeline import WindowEmbedder
    from wavlmrawnet.pipeline_wavlmrawnet import SpeakerEmbeddingPipeline

    masks = []
    forward = WavLMRawNetForXVector.forward

    def recording_forward(self, input_values, attention_mask=None, **kwargs):
        masks.append(attention_mask is not None)
        return forward(self, input_values, attention_mask=attention_mask, **kwargs)

    monkeypatch.setattr(WavLMRawNetForXVector, "forward", recording_forward)
    extractor = WavLMRawNetFeatureExtractor()
    paths = [write_wav(tmp_path / f"{seconds}.wav", seconds, SAMPLING_RATE, seed=3) for seconds in (1.0, 1.5)]
    embed_files(tiny_model, extractor, paths, batch_size=1, precision="fp32", progress=False, distributed=False)
    assert masks == [False, False]
    masks.clear()
    embed_files(tiny_model, extractor, paths, batch_size=2, precision="fp32", progress=False, distributed=False)
    assert masks == [True], "two lengths in one batch: padded, masked"

    masks.clear()
    pipe = SpeakerEmbeddingPipeline(model=tiny_model, feature_extractor=extractor, precision="fp32")
    single = pipe(voice_like(1.0, SAMPLING_RATE, 4))
    batched = pipe([voice_like(1.0, SAMPLING_RATE, 4), voice_like(1.5, SAMPLING_RATE, 5)], batch_size=2)
    assert masks == [False, True]
    np.testing.assert_allclose(single, batched[0], atol=1e-5)  # the same embedding either way

    masks.clear()
    WindowEmbedder(tiny_model, extractor)([voice_like(1.0, SAMPLING_RATE, s) for s in (6, 7)])
    assert masks == [False]
