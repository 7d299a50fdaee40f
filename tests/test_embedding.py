"""Embedding many files: one model pass per unique file, a cache, long-audio chunking, explicit failures."""

import numpy as np
import pytest
import torch
from conftest import write_wav

from wavlmrawnet import WavLMRawNetFeatureExtractor
from wavlmrawnet.evaluation.embedding import embed_files
from wavlmrawnet.evaluation.runner import evaluate_trial_list


class CountingModel(torch.nn.Module):
    """Wraps a model and counts the utterances that go through its forward."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.config, self.utterances = model, model.config, 0

    def forward(self, input_values, attention_mask=None, **kwargs):
        self.utterances += input_values.shape[0]
        return self.inner(input_values, attention_mask=attention_mask, **kwargs)

    def embed(self, input_values, attention_mask=None, chunk_seconds=None, **kwargs):
        return self.inner.__class__.embed(self, input_values, attention_mask, chunk_seconds, **kwargs)


@pytest.fixture(scope="module")
def trial_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("trial_wavs")
    files = [write_wav(root / f"f{i}.wav", 0.8 + 0.1 * i, 16000, seed=i) for i in range(6)]
    # Every pair of files: 15 trials over 6 files.
    lines = [f"{int(i % 2 == j % 2)} f{i}.wav f{j}.wav" for i in range(6) for j in range(i + 1, 6)]
    trials = root / "trials.txt"
    trials.write_text("\n".join(lines) + "\n")
    return root, trials, files


def test_each_file_is_embedded_once_not_once_per_trial(tiny_model, trial_setup, tmp_path):
    root, trials, files = trial_setup
    counting = CountingModel(tiny_model).eval()
    extractor = WavLMRawNetFeatureExtractor()
    results = evaluate_trial_list(counting, extractor, trials, root=root, cache_dir=tmp_path, progress=False)
    assert results["num_trials"] == 15 and results["num_files"] == 6
    assert counting.utterances == 6, "one forward per unique file"
    again = evaluate_trial_list(counting, extractor, trials, root=root, cache_dir=tmp_path, progress=False)
    assert counting.utterances == 6 and again["files_embedded_this_run"] == 0, "the second run reads the cache"
    assert again["eer"] == results["eer"]


def test_cache_is_keyed_by_model(tiny_model, trial_setup, tmp_path):
    _, _, files = trial_setup
    extractor = WavLMRawNetFeatureExtractor()
    first = embed_files(tiny_model, extractor, files, cache_dir=tmp_path, progress=False)
    other = type(tiny_model)(tiny_model.config).eval()
    second = embed_files(other, extractor, files, cache_dir=tmp_path, progress=False)
    assert second.computed == len(files), "another model's embeddings are not reused"
    assert not np.allclose(first.embeddings[files[0]], second.embeddings[files[0]])


def test_failures_are_listed_and_good_files_still_embed(tiny_model, tmp_path):
    good = write_wav(tmp_path / "good.wav", 1.0, 16000)
    short = write_wav(tmp_path / "short.wav", 0.05, 16000)
    text = tmp_path / "text.wav"
    text.write_text("nope")
    result = embed_files(
        tiny_model, WavLMRawNetFeatureExtractor(), [good, short, str(text), str(tmp_path / "x.wav")], progress=False
    )
    assert set(result.embeddings) == {good}
    assert set(result.failures) == {short, str(text), str(tmp_path / "x.wav")}
    assert "too short" in result.failures[short]
    with pytest.raises(RuntimeError, match="3 file"):
        result.raise_for_failures()


def test_short_audio_gives_exactly_the_unchunked_embedding(tiny_model):
    audio = torch.randn(2, 16000 * 3)
    unchunked = tiny_model.get_embeddings(audio, chunk_seconds=0)
    assert torch.equal(tiny_model.get_embeddings(audio, chunk_seconds=3.0), unchunked)
    assert torch.equal(tiny_model.get_embeddings(audio, chunk_seconds=20.0), unchunked)


def test_long_audio_is_chunked_with_duration_weights(tiny_model):
    torch.manual_seed(0)
    audio = torch.randn(1, 16000 * 7)
    chunked = tiny_model.embed(audio, chunk_seconds=3.0, overlap_seconds=1.0)
    # Windows start at 0, 2, 4 s (3 s each, the last one ends at 7 s): equal weights.
    windows = torch.stack([audio[0, s * 16000 : s * 16000 + 48000] for s in (0, 2, 4)])
    expected = tiny_model(windows).embeddings.mean(dim=0, keepdim=True)
    assert torch.allclose(chunked, expected, atol=1e-5)
    normalised = tiny_model.get_embeddings(audio, chunk_seconds=3.0, overlap_seconds=1.0)
    assert torch.allclose(normalised.norm(dim=1), torch.ones(1))
    with pytest.raises(ValueError, match="overlap_seconds"):
        tiny_model.embed(audio, chunk_seconds=3.0, overlap_seconds=3.0)


def test_cache_merge_survives_a_planted_temporary_name(tmp_path):
    """The merge wrote `<cache>.{pid}.tmp`, a name anyone can guess and plant beforehand (here a folder, which made
    every merge fail); it now writes a fresh mkstemp file and leaves nothing behind."""
    import os

    from safetensors.numpy import load_file, save_file

    from wavlmrawnet.evaluation.embedding import merge_cache_parts

    cache_file = tmp_path / "model-fp32.safetensors"
    save_file({"a": np.ones(4, np.float32)}, str(tmp_path / "model-fp32.part-1.safetensors"))
    planted = cache_file.with_suffix(f".{os.getpid()}.tmp")
    planted.mkdir()
    merge_cache_parts(cache_file)
    assert np.array_equal(load_file(cache_file)["a"], np.ones(4, np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([cache_file.name, planted.name])
