"""Every input form, on real files, gives the same audio and the same embedding: a path (str or Path), the bytes of
the file, `{"array"|"raw", "sampling_rate"}`, numpy and torch arrays with their rate, a `datasets` dataset built with
`Audio()`, saved and read back (`Audio(decode=False)`, as a column and row by row, paths and bytes), through the
feature extractor, both pipelines and `embed_files`; a bad form names the accepted ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import pipeline

from wavlmrawnet.audio_io import ACCEPTED_FORMS, load_audio
from wavlmrawnet.evaluation.embedding import embed_files
from wavlmrawnet.training.data.sources import torchcodec_available

datasets = pytest.importorskip("datasets")  # the `train` extra; always there with `[dev]`


def forms(path: str) -> dict[str, object]:
    """The same recording in every form a caller may hold it in."""
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    channels_first = np.ascontiguousarray(samples.T)
    data = Path(path).read_bytes()
    return {
        "path": path,
        "pathlib": Path(path),
        "bytes": data,
        "array dict": {"array": channels_first, "sampling_rate": rate},
        "raw dict": {"raw": channels_first, "sampling_rate": rate},
        "torch in dict": {"array": torch.from_numpy(channels_first), "sampling_rate": rate},
        "int16 in dict": {"array": (channels_first * 32767).astype(np.int16), "sampling_rate": rate},
        "decode=False path": {"path": path, "bytes": None},
        "decode=False bytes": {"path": None, "bytes": data},
    }


@pytest.fixture(scope="module")
def saved_dataset(wav_files, tmp_path_factory):
    """A dataset built with `Audio()` from paths, saved with `save_to_disk` and loaded back, plus one that holds the
    audio as bytes only (as Hub parquet does): both read with `Audio(decode=False)`."""
    files = [wav_files["mono_16k"], wav_files["stereo_44k"]]
    folder = tmp_path_factory.mktemp("audio_dataset")
    built = datasets.Dataset.from_dict({"audio": files, "speaker": ["a", "b"]}).cast_column("audio", datasets.Audio())
    built.save_to_disk(str(folder / "paths"))
    as_bytes = datasets.Dataset.from_dict(
        {"audio": [{"bytes": Path(f).read_bytes(), "path": None} for f in files], "speaker": ["a", "b"]}
    ).cast_column("audio", datasets.Audio(decode=False))
    as_bytes.save_to_disk(str(folder / "bytes"))
    loaded = {name: datasets.load_from_disk(str(folder / name)) for name in ("paths", "bytes")}
    assert isinstance(loaded["paths"].features["audio"], datasets.Audio)
    return files, {name: ds.cast_column("audio", datasets.Audio(decode=False)) for name, ds in loaded.items()}


@pytest.fixture(scope="module")
def embedder(saved_tiny_model):
    return pipeline("feature-extraction", model=saved_tiny_model, trust_remote_code=True, precision="fp32")


def test_feature_extractor_takes_every_form(tiny_model, wav_files):
    extractor = tiny_model.default_feature_extractor()
    for key in ("mono_16k", "stereo_44k"):
        expected = load_audio(wav_files[key], 16000)
        for form, value in forms(wav_files[key]).items():
            got = extractor.prepare_one(value)
            assert got.shape == expected.shape, (key, form)
            assert np.allclose(got, expected, atol=2e-4), (key, form)  # int16 in dict: quantised once more


def test_datasets_audio_column_read_back(tiny_model, saved_dataset):
    extractor = tiny_model.default_feature_extractor()
    files, loaded = saved_dataset
    reference = extractor(files, return_tensors="np")["input_values"]
    for name, dataset in loaded.items():
        column = dataset["audio"]  # a column, not a list: a batch
        assert np.allclose(extractor(column, return_tensors="np")["input_values"], reference, atol=1e-6), name
        rows = [row["audio"] for row in dataset]  # {"path", "bytes"} entries, row by row
        assert np.allclose(extractor(rows, return_tensors="np")["input_values"], reference, atol=1e-6), name


@pytest.mark.skipif(not torchcodec_available(), reason="torchcodec is not usable here (it needs FFmpeg's libraries)")
def test_datasets_decoded_audio_column(tiny_model, saved_dataset):
    extractor = tiny_model.default_feature_extractor()
    files, loaded = saved_dataset
    decoded = loaded["paths"].cast_column("audio", datasets.Audio())  # torchcodec AudioDecoder entries
    reference = extractor(files, return_tensors="np")["input_values"]
    assert np.allclose(extractor(decoded["audio"], return_tensors="np")["input_values"], reference, atol=1e-4)


def test_pipelines_and_embed_files_take_every_form(embedder, saved_tiny_model, tiny_model, wav_files, saved_dataset):
    path = wav_files["stereo_44k"]
    reference = embedder(path)
    for form, value in forms(path).items():
        assert float(embedder(value) @ reference) > 0.9999, form
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    for array in (np.ascontiguousarray(samples.T), torch.from_numpy(np.ascontiguousarray(samples.T))):
        assert float(embedder(array, sampling_rate=rate) @ reference) > 0.9999

    files, loaded = saved_dataset
    for dataset in loaded.values():
        column = embedder(dataset["audio"])
        assert len(column) == 2 and float(column[1] @ reference) > 0.9999

    verify = pipeline("speaker-verification", model=saved_tiny_model, trust_remote_code=True, precision="fp32")
    pair = verify((Path(path).read_bytes(), {"raw": samples.T, "sampling_rate": rate}))
    assert pair["score"] > 0.9999 and pair["same_speaker"]

    values = list(forms(path).values()) + [loaded["bytes"][1]["audio"]]
    result = embed_files(tiny_model, tiny_model.default_feature_extractor(), values, progress=False, precision="fp32")
    assert not result.failures and len(result.embeddings) == 8  # path, Path and the decode=False path: one file
    assert all(float(vector @ reference) > 0.9999 for vector in result.embeddings.values())


@pytest.mark.parametrize("bad", [3.5, object(), {"sampling_rate": 16000}, {"array": None, "bytes": None}])
def test_bad_form_names_the_accepted_forms(embedder, tiny_model, bad):
    extractor = tiny_model.default_feature_extractor()
    for call in (lambda: extractor(bad), lambda: embedder(bad)):
        with pytest.raises(TypeError, match="accepted forms") as raised:
            call()
        assert all(form in str(raised.value) for form in ACCEPTED_FORMS)
    with pytest.raises(TypeError, match="accepted forms"):
        embed_files(tiny_model, tiny_model.default_feature_extractor(), [bad], progress=False)


def test_bad_bytes_are_a_decoding_error_that_names_them(tiny_model):
    extractor = tiny_model.default_feature_extractor()
    with pytest.raises(ValueError, match="cannot read audio file '<bytes>'"):
        extractor(b"not audio at all")


def test_audiofolder_trains_without_torchcodec_and_without_patching_datasets(wav_files, tmp_path):
    """`data.dataset: {path: audiofolder}` reads through public `datasets` API only: `Audio.encode_example` stays
    the library's own function (no monkeypatch), with or without torchcodec."""
    import shutil

    from datasets.features.audio import Audio

    from wavlmrawnet.training.config import DatasetSource
    from wavlmrawnet.training.data.sources import dataset_from_source

    original = Audio.encode_example
    for speaker, key in (("alice", "mono_16k"), ("bob", "stereo_44k"), ("bob", "mono_8k")):
        (tmp_path / "folder" / speaker).mkdir(parents=True, exist_ok=True)
        shutil.copy(wav_files[key], tmp_path / "folder" / speaker / f"{key}.wav")
    source = DatasetSource(path="audiofolder", data_dir=str(tmp_path / "folder"), speaker_column="label")
    dataset = dataset_from_source(source, tmp_path / "extracted")
    assert sorted(dataset["speaker"]) == ["alice", "bob", "bob"]
    assert Audio.encode_example is original and Audio.encode_example.__module__ == "datasets.features.audio"
