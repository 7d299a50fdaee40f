"""Tests for wavlmrawnet.training.data, on real wav files written to tmp_path."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from datasets import Audio, ClassLabel, Dataset, Features, Value

from wavlmrawnet.feature_extraction_wavlmrawnet import WavLMRawNetFeatureExtractor
from wavlmrawnet.training.augment import Augmenter
from wavlmrawnet.training.data import (
    BAD_AUDIO_FILENAME,
    BadAudioError,
    SpeakerAudioDataset,
    SpeakerCollator,
    check_dataset_audio,
    dataset_from_hf,
    dataset_from_manifest,
    dataset_from_voxceleb,
    label_maps,
    relabel,
    scan_audio,
    speaker_disjoint_split,
)

SR = 16000
SPEAKERS = ["id10001", "id10002", "id10003", "id10004"]
VIDEOS = ["vidA", "vidB"]
UTTERANCES = ["00001.wav", "00002.wav"]


def write_voxceleb(root, speakers=SPEAKERS, seed=0) -> dict[str, int]:
    """4 speakers x 2 videos x 2 utterances of 1-2 s (sine + noise); returns {relative path: number of samples}."""
    rng = np.random.default_rng(seed)
    lengths = {}
    for s, speaker in enumerate(speakers):
        for video in VIDEOS:
            folder = root / "wav" / speaker / video
            folder.mkdir(parents=True)
            for utt in UTTERANCES:
                n = int(rng.integers(SR, 2 * SR))
                t = np.arange(n) / SR
                audio = 0.3 * np.sin(2 * np.pi * (150 + 40 * s) * t) + 0.05 * rng.standard_normal(n)
                subtype = "FLOAT" if utt == UTTERANCES[1] and video == VIDEOS[1] else "PCM_16"
                sf.write(folder / utt, audio.astype(np.float32), SR, subtype=subtype)
                lengths[f"{speaker}/{video}/{utt}"] = n
    return lengths


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("voxceleb")
    lengths = write_voxceleb(root)
    return root, lengths


@pytest.fixture
def bad_corpus(tmp_path):
    """A VoxCeleb tree with 4 good files and 4 bad ones (empty, text named .wav, 50 ms, NaN samples)."""
    root = tmp_path / "vox"
    good = root / "wav" / "spk1" / "v1"
    bad = root / "wav" / "spk2" / "v1"
    good.mkdir(parents=True)
    bad.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        sf.write(good / f"{i}.wav", 0.1 * rng.standard_normal(SR), SR)
    sf.write(bad / "ok.wav", 0.1 * rng.standard_normal(SR), SR)
    sf.write(bad / "empty.wav", np.zeros(0, np.float32), SR)
    (bad / "text.wav").write_text("this is a text file, not a RIFF header\n")
    sf.write(bad / "short.wav", 0.1 * rng.standard_normal(SR // 20), SR)  # 50 ms
    with_nan = 0.1 * rng.standard_normal(SR).astype(np.float32)
    with_nan[100] = np.nan
    sf.write(bad / "nan.wav", with_nan, SR, subtype="FLOAT")
    bad_files = {str(bad / name) for name in ("empty.wav", "text.wav", "short.wav", "nan.wav")}
    return root, bad_files


# ---------------------------------------------------------------------------------------------------- voxceleb
def test_voxceleb_columns_labels_durations_and_order(corpus):
    root, lengths = corpus
    ds = dataset_from_voxceleb(root)
    assert ds.column_names == ["path", "speaker", "label", "duration", "video"]
    assert {k: v.dtype for k, v in ds.features.items()} == {
        "path": "string",
        "speaker": "string",
        "label": "int64",
        "duration": "float64",
        "video": "string",
    }
    assert len(ds) == len(lengths) == 16
    assert ds["path"] == sorted(ds["path"]) and all(os.path.isabs(p) for p in ds["path"])
    for row in ds:
        relative = os.path.relpath(row["path"], root / "wav")
        assert row["speaker"] == relative.split(os.sep)[0] and row["video"] == relative.split(os.sep)[1]
        assert row["label"] == SPEAKERS.index(row["speaker"])
        assert row["duration"] == pytest.approx(lengths[relative] / SR)
    assert label_maps(ds) == ({i: s for i, s in enumerate(SPEAKERS)}, {s: i for i, s in enumerate(SPEAKERS)})
    assert dataset_from_voxceleb(root / "wav")[:] == ds[:]  # root may be the wav folder itself


def test_voxceleb_errors_name_the_problem(tmp_path, corpus):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dataset_from_voxceleb(tmp_path / "missing")
    (tmp_path / "empty" / "wav" / "spk" / "vid").mkdir(parents=True)
    with pytest.raises(ValueError, match="no audio files"):
        dataset_from_voxceleb(tmp_path / "empty")
    root = tmp_path / "misplaced"
    shutil.copytree(corpus[0] / "wav", root / "wav")
    shutil.copy(root / "wav" / "id10001" / "vidA" / "00001.wav", root / "wav" / "id10001" / "stray.wav")
    with pytest.raises(ValueError, match="1 audio file.*stray.wav"):
        dataset_from_voxceleb(root)


def test_unreadable_headers_are_kept_with_nan_duration(bad_corpus, caplog):
    root, bad_files = bad_corpus
    with caplog.at_level(logging.WARNING):
        ds = dataset_from_voxceleb(root)
    assert len(ds) == 8  # nothing dropped at listing time
    durations = dict(zip(ds["path"], ds["duration"]))
    text_wav = next(p for p in bad_files if p.endswith("text.wav"))
    assert math.isnan(durations[text_wav])
    assert durations[next(p for p in bad_files if p.endswith("short.wav"))] == pytest.approx(0.05)
    assert "1 of 8 audio headers could not be read" in caplog.text


# ---------------------------------------------------------------------------------------------------- manifest
def test_csv_manifest_resolves_relative_paths_and_keeps_extras(corpus, tmp_path):
    root, lengths = corpus
    manifest = root / "train.csv"
    relative = sorted(lengths)[:6]
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "speaker", "gender"])
        for i, rel in enumerate(relative):
            writer.writerow([f"wav/{rel}", "00" + rel.split("/")[0][-1], "f" if i % 2 else "m"])
    ds = dataset_from_manifest(manifest)
    assert ds.column_names == ["path", "speaker", "label", "duration", "gender"]
    assert ds["path"] == [str(root / "wav" / rel) for rel in relative]
    assert ds["speaker"] == ["001"] * 4 + ["002"] * 2  # CSV values stay strings: leading zeros survive
    assert ds["label"] == [0] * 4 + [1] * 2
    assert ds["gender"] == ["m", "f", "m", "f", "m", "f"]
    assert ds["duration"] == pytest.approx([lengths[rel] / SR for rel in relative])


def test_jsonl_manifest_with_duration_and_matching_labels(corpus, tmp_path):
    root, lengths = corpus
    rows = [
        {"path": str(root / "wav" / rel), "speaker": rel.split("/")[0], "duration": 9.5, "label": 0}
        for rel in sorted(lengths)[:4]
    ]
    del rows[1]["duration"]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")  # a trailing blank line is fine
    ds = dataset_from_manifest(manifest)
    # a given duration is used as is; a missing one comes from the header
    assert ds["duration"] == [9.5, pytest.approx(lengths[sorted(lengths)[1]] / SR), 9.5, 9.5]
    assert ds["label"] == [0] * 4
    rows[0]["label"] = 3
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(ValueError, match="'label' column does not number"):
        dataset_from_manifest(manifest)


def test_manifest_errors_name_the_problem(tmp_path):
    missing_column = tmp_path / "a.csv"
    missing_column.write_text("path,spk\nx.wav,a\n")
    with pytest.raises(ValueError, match=r"missing required column\(s\) \['speaker'\]"):
        dataset_from_manifest(missing_column)
    ragged = tmp_path / "b.csv"
    ragged.write_text("path,speaker\nx.wav,a\ny.wav,b,extra\n")
    with pytest.raises(ValueError, match="line 3: more fields"):
        dataset_from_manifest(ragged)
    bad_json = tmp_path / "c.jsonl"
    bad_json.write_text('{"path": "x.wav", "speaker": "a"}\n{"path": "y.wav"\n')
    with pytest.raises(ValueError, match="line 2: invalid JSON"):
        dataset_from_manifest(bad_json)
    no_speaker = tmp_path / "d.jsonl"
    no_speaker.write_text('{"path": "x.wav"}\n')
    with pytest.raises(ValueError, match="line 1: no 'speaker' field"):
        dataset_from_manifest(no_speaker)
    duplicated = tmp_path / "e.csv"
    duplicated.write_text("path,speaker\nx.wav,a\nx.wav,b\n")
    with pytest.raises(ValueError, match="more than once"):
        dataset_from_manifest(duplicated)
    text_manifest = tmp_path / "f.txt"
    text_manifest.write_text("path,speaker\n")
    with pytest.raises(ValueError, match="unsupported extension '.txt'"):
        dataset_from_manifest(text_manifest)


# ---------------------------------------------------------------------------------------------------- hf datasets
def test_hf_dataset_with_a_path_column_and_classlabel_speakers(corpus):
    root, lengths = corpus
    rels = sorted(lengths)
    names = ["zed", "amy", "bob", "cat"]  # ClassLabel order differs from sorted order
    source = Dataset.from_dict(
        {
            "file": [str(root / "wav" / r) for r in rels],
            "spk": [SPEAKERS.index(r.split("/")[0]) for r in rels],
            "x": list(range(16)),
        },
        features=Features({"file": Value("string"), "spk": ClassLabel(names=names), "x": Value("int32")}),
    )
    ds = dataset_from_hf(source, audio_column="file", speaker_column="spk")
    assert ds.column_names == ["path", "speaker", "label", "duration", "x"]
    assert ds["speaker"][:4] == ["zed"] * 4
    id2label, _ = label_maps(ds)
    assert id2label == {0: "amy", 1: "bob", 2: "cat", 3: "zed"}
    assert ds["x"] == list(range(16))
    assert ds["duration"] == pytest.approx([lengths[r] / SR for r in rels])


@pytest.mark.parametrize("decode", [False, True])
def test_hf_dataset_with_an_audio_column_is_not_decoded(corpus, decode):
    root, lengths = corpus
    rels = sorted(lengths)
    source = Dataset.from_dict(
        {"audio": [str(root / "wav" / r) for r in rels], "speaker": [r.split("/")[0] for r in rels]}
    )
    source = source.cast_column("audio", Audio(decode=decode))
    ds = dataset_from_hf(source)
    assert ds["path"] == [str(root / "wav" / r) for r in rels]
    assert ds["label"] == [SPEAKERS.index(r.split("/")[0]) for r in rels]


def test_hf_dataset_with_embedded_bytes_needs_extract_dir(corpus, tmp_path):
    root, lengths = corpus
    rels = sorted(lengths)[:3]
    entries = [{"bytes": (root / "wav" / r).read_bytes(), "path": f"remote/{i}.wav"} for i, r in enumerate(rels)]
    # The struct storage of Hub parquet audio, cast to Audio(decode=False) (building it via Audio needs torchcodec).
    storage = Features({"audio": {"bytes": Value("binary"), "path": Value("string")}, "speaker": Value("string")})
    source = Dataset.from_dict({"audio": entries, "speaker": ["a", "a", "b"]}, features=storage)
    source = source.cast_column("audio", Audio(decode=False))
    with pytest.raises(ValueError, match="row 0: the audio is embedded as bytes.*extract_dir"):
        dataset_from_hf(source)
    ds = dataset_from_hf(source, extract_dir=tmp_path / "extracted")
    for path, rel in zip(ds["path"], rels):
        assert path.startswith(str(tmp_path / "extracted")) and path.endswith(".wav")
        np.testing.assert_array_equal(sf.read(path)[0], sf.read(root / "wav" / rel)[0])
    assert ds["duration"] == pytest.approx([lengths[r] / SR for r in rels])


def test_hf_dataset_errors(corpus):
    source = Dataset.from_dict({"audio": ["a.wav"], "speaker": ["s"], "path": ["other"]})
    with pytest.raises(ValueError, match="column\\(s\\) \\['path'\\]"):
        dataset_from_hf(source)
    with pytest.raises(ValueError, match="speaker_column 'spk' is not a column"):
        dataset_from_hf(source.remove_columns("path"), speaker_column="spk")
    with pytest.raises(TypeError, match="must hold path strings"):
        dataset_from_hf(Dataset.from_dict({"audio": [1], "speaker": ["s"]}))


# ---------------------------------------------------------------------------------------------------- split
def test_speaker_disjoint_split_is_disjoint_contiguous_and_deterministic(corpus):
    ds = dataset_from_voxceleb(corpus[0])
    split = speaker_disjoint_split(ds, validation_speakers=1, seed=3)
    train, validation = split["train"], split["validation"]
    assert not set(train["speaker"]) & set(validation["speaker"])
    assert len(train) + len(validation) == len(ds) and len(validation) == 4
    assert sorted(list(train["path"]) + list(validation["path"])) == list(ds["path"])
    for part in (train, validation):
        id2label, label2id = label_maps(part)
        assert sorted(id2label) == list(range(len(id2label)))
        assert all(label2id[s] == label for s, label in zip(part["speaker"], part["label"]))
    assert speaker_disjoint_split(ds, 1, seed=3)["validation"]["path"] == validation["path"]
    # the split depends on the speakers, not on the row order
    shuffled = speaker_disjoint_split(ds.shuffle(seed=0), 1, seed=3)
    assert shuffled["validation"]["speaker"][0] == validation["speaker"][0]
    held_out = {speaker_disjoint_split(ds, 1, seed=s)["validation"]["speaker"][0] for s in range(10)}
    assert len(held_out) > 1  # seeds draw different speakers
    assert len(set(speaker_disjoint_split(ds, 0.5, seed=0)["validation"]["speaker"])) == 2


@pytest.mark.parametrize("value", [0, 4, 0.0, 1.0, 0.05, True, "1"])
def test_split_rejects_impossible_sizes(corpus, value):
    ds = dataset_from_voxceleb(corpus[0])
    with pytest.raises((ValueError, TypeError)):
        speaker_disjoint_split(ds, value, seed=0)


def test_label_maps_and_relabel_check_consistency():
    ds = Dataset.from_dict({"speaker": ["b", "a", "b"], "label": [0, 0, 1]})
    with pytest.raises(ValueError, match="more than one"):
        label_maps(ds)
    fixed = relabel(ds)
    assert fixed["label"] == [1, 0, 1]
    assert label_maps(fixed) == ({0: "a", 1: "b"}, {"a": 0, "b": 1})
    with pytest.raises(ValueError, match="not contiguous"):
        label_maps(Dataset.from_dict({"speaker": ["a", "b"], "label": [0, 2]}))


# ---------------------------------------------------------------------------------------------------- bad audio
@pytest.mark.parametrize("full_decode", [False, True])
def test_scan_audio_reports_each_kind_of_bad_file(bad_corpus, full_decode):
    root, bad_files = bad_corpus
    paths = sorted(str(p) for p in root.rglob("*.wav")) + [str(root / "missing.wav")]
    bad = scan_audio(paths, min_seconds=0.5, num_workers=2, full_decode=full_decode)
    reasons = {os.path.basename(b.path): b.reason for b in bad}
    assert set(reasons) == {"empty.wav", "text.wav", "short.wav", "nan.wav", "missing.wav"}
    assert reasons["empty.wav"].startswith("empty")
    assert reasons["text.wav"].startswith("unreadable")
    assert reasons["missing.wav"] == "unreadable: no such file"
    assert reasons["short.wav"].startswith("too short: 0.050 s")
    assert reasons["nan.wav"].startswith("nan/inf: 1 of")
    assert [b.path for b in bad] == [p for p in paths if p in {b.path for b in bad}]  # input order


def test_check_dataset_audio_raises_listing_every_bad_file(bad_corpus, tmp_path):
    root, bad_files = bad_corpus
    ds = dataset_from_voxceleb(root)
    with pytest.raises(BadAudioError) as caught:
        check_dataset_audio(ds, min_seconds=0.5, skip_bad_audio=False, run_dir=tmp_path / "run")
    error = caught.value
    assert str(error).startswith("4 of 8 audio files are unusable")
    assert {b.path for b in error.bad} == bad_files
    for path in bad_files:
        assert path in str(error)
    assert error.report == str(tmp_path / "run" / BAD_AUDIO_FILENAME)


def test_check_dataset_audio_skips_and_records_bad_files(bad_corpus, tmp_path, caplog):
    root, bad_files = bad_corpus
    ds = dataset_from_voxceleb(root)
    with caplog.at_level(logging.WARNING):
        kept = check_dataset_audio(ds, min_seconds=0.5, skip_bad_audio=True, run_dir=tmp_path / "run")
    assert len(kept) == 4 and not set(kept["path"]) & bad_files
    with open(tmp_path / "run" / BAD_AUDIO_FILENAME, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["path", "reason"]
    assert {r[0] for r in rows[1:]} == bad_files and len(rows) == 5
    assert "Dropped 4 bad audio file(s) of 8" in caplog.text
    assert label_maps(kept)[0] == {0: "spk1", 1: "spk2"}
    # a clean dataset passes through unchanged, and skipping needs a run_dir
    assert check_dataset_audio(kept, 0.5, skip_bad_audio=False, run_dir=None) is kept
    with pytest.raises(ValueError, match="needs a run_dir"):
        check_dataset_audio(ds, 0.5, skip_bad_audio=True, run_dir=None)


def test_dropping_every_file_of_a_speaker_renumbers_labels(bad_corpus, tmp_path):
    root, _ = bad_corpus
    os.remove(root / "wav" / "spk2" / "v1" / "ok.wav")
    (root / "wav" / "spk3" / "v1").mkdir(parents=True)
    sf.write(root / "wav" / "spk3" / "v1" / "a.wav", 0.1 * np.random.default_rng(0).standard_normal(SR), SR)
    ds = dataset_from_voxceleb(root)
    assert label_maps(ds)[0] == {0: "spk1", 1: "spk2", 2: "spk3"}
    kept = check_dataset_audio(ds, 0.5, skip_bad_audio=True, run_dir=tmp_path)
    assert label_maps(kept)[0] == {0: "spk1", 1: "spk3"}
    with pytest.raises(BadAudioError, match="No file is left"):
        only_spk2 = ds.select([i for i, s in enumerate(ds["speaker"]) if s == "spk2"])
        check_dataset_audio(only_spk2, 0.5, skip_bad_audio=True, run_dir=tmp_path)


# ---------------------------------------------------------------------------------------------------- torch side
def test_random_crops_are_exact_reproducible_and_change_with_the_epoch(corpus):
    ds = dataset_from_voxceleb(corpus[0])
    train = SpeakerAudioDataset(ds, segment_seconds=0.5, random_crop=True, seed=11)
    item = train[3]
    assert item["waveform"].dtype == np.float32 and item["waveform"].shape == (8000,)
    assert item["label"] == ds[3]["label"] and item["path"] == ds[3]["path"]
    np.testing.assert_array_equal(train[3]["waveform"], item["waveform"])
    np.testing.assert_array_equal(train[-13]["waveform"], item["waveform"])
    full = sf.read(ds[3]["path"], dtype="float32")[0]
    start = [s for s in range(full.size - 8000 + 1) if np.array_equal(full[s : s + 8000], item["waveform"])]
    assert len(start) == 1
    train.set_epoch(1)
    assert not np.array_equal(train[3]["waveform"], item["waveform"])
    with pytest.raises(IndexError):
        train[16]


def test_centred_crop_and_whole_short_utterances(corpus):
    ds = dataset_from_voxceleb(corpus[0])
    evaluation = SpeakerAudioDataset(ds, segment_seconds=0.5, random_crop=False)
    full = sf.read(ds[0]["path"], dtype="float32")[0]
    start = (full.size - 8000) // 2
    np.testing.assert_array_equal(evaluation[0]["waveform"], full[start : start + 8000])
    long_segments = SpeakerAudioDataset(ds, segment_seconds=3.0, random_crop=True)
    np.testing.assert_array_equal(long_segments[0]["waveform"], full)  # shorter than 3 s: returned whole
    with pytest.raises(ValueError, match="segment_seconds"):
        SpeakerAudioDataset(ds, segment_seconds=0)


def test_collator_pads_masks_and_normalises_valid_samples_only(corpus):
    ds = dataset_from_voxceleb(corpus[0])
    items = [SpeakerAudioDataset(ds, segment_seconds=None)[i] for i in (0, 5, 9)]
    lengths = [item["waveform"].size for item in items]
    batch = SpeakerCollator(WavLMRawNetFeatureExtractor())(items)
    assert set(batch) == {"input_values", "attention_mask", "labels"}
    assert batch["input_values"].dtype == torch.float32 and batch["input_values"].shape == (3, max(lengths))
    assert batch["attention_mask"].dtype == torch.long and batch["labels"].dtype == torch.long
    assert batch["labels"].tolist() == [items[i]["label"] for i in range(3)]
    for row, length in enumerate(lengths):
        mask = batch["attention_mask"][row]
        values = batch["input_values"][row].double()
        assert mask[:length].all() and not mask[length:].any()
        assert torch.all(values[length:] == 0)
        assert abs(values[:length].mean().item()) < 1e-4 and abs(values[:length].std().item() - 1) < 1e-3
    with_paths = SpeakerCollator(WavLMRawNetFeatureExtractor(), return_paths=True)(items)
    assert with_paths["paths"] == [item["path"] for item in items]


def test_collator_names_the_file_of_too_short_audio(corpus):
    ds = dataset_from_voxceleb(corpus[0])
    item = SpeakerAudioDataset(ds, segment_seconds=0.25)[0]
    with pytest.raises(ValueError, match=f"{item['path']}.*too short"):
        SpeakerCollator(WavLMRawNetFeatureExtractor(min_seconds=0.5))([item])


@pytest.mark.slow
def test_dataloader_with_two_workers_gives_the_same_batches(corpus, tmp_path):
    root, _ = corpus
    noise = tmp_path / "noise"
    noise.mkdir()
    sf.write(noise / "n.wav", 0.1 * np.random.default_rng(0).standard_normal(SR // 2), SR)
    augmenter = Augmenter(noise_dir=noise, noise_prob=0.7, speed_factors=[0.9, 1.0, 1.1])
    ds = dataset_from_voxceleb(root)
    train = SpeakerAudioDataset(ds, segment_seconds=0.75, random_crop=True, augmenter=augmenter, seed=5)
    collator = SpeakerCollator(WavLMRawNetFeatureExtractor())

    def batches(num_workers, epoch):
        train.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            train, batch_size=4, shuffle=False, num_workers=num_workers, collate_fn=collator
        )
        return list(loader)

    serial, parallel = batches(0, epoch=2), batches(2, epoch=2)
    assert len(serial) == len(parallel) == 4
    for a, b in zip(serial, parallel):
        assert a["input_values"].shape == (4, 12000)
        for key in a:
            assert torch.equal(a[key], b[key]), key
    next_epoch = batches(0, epoch=3)
    assert not torch.equal(next_epoch[0]["input_values"], serial[0]["input_values"])


def test_bad_files_of_both_splits_are_reported_together(tmp_path):
    from wavlmrawnet.synthetic.corpus import generate_corpus
    from wavlmrawnet.training.config import TrainConfig
    from wavlmrawnet.training.data import BadAudioError
    from wavlmrawnet.training.trainer import load_splits

    generate_corpus(tmp_path / "corpus", num_train_speakers=6, num_test_speakers=2, utterances_per_speaker=3,
                    videos_per_speaker=1, min_seconds=1.0, max_seconds=1.2, num_trials=4)  # fmt: skip
    speakers = sorted((tmp_path / "corpus" / "train" / "wav").iterdir())
    for speaker in speakers:  # a bad file for every speaker: both the training and the validation side have some
        (next(speaker.iterdir()) / "99999.wav").write_text("not audio")
    config = TrainConfig.from_dict(
        {
            "data": {"train_dir": str(tmp_path / "corpus" / "train"), "validation_speakers": 2, "num_workers": 0},
            "training": {"output_dir": str(tmp_path / "run")},
        }
    )
    with pytest.raises(BadAudioError) as refused:
        load_splits(config, 0.5, tmp_path / "refused")
    assert len(refused.value.bad) == len(speakers)

    config.data.skip_bad_audio = True
    train, validation = load_splits(config, 0.5, tmp_path / "skipped")
    report = (tmp_path / "skipped" / "bad_audio.tsv").read_text().splitlines()[1:]
    assert len(report) == len(speakers), "every dropped file is listed, whichever split it was in"
    assert len(set(train["speaker"])) == 4 and len(set(validation["speaker"])) == 2
    assert not any(path.endswith("99999.wav") for path in [*train["path"], *validation["path"]])
