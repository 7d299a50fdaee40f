"""Training data from `datasets` sources given in the config (`data.dataset`): parquet with embedded audio bytes, an
`audiofolder` layout and a `save_to_disk` folder, each read into the speaker dataset, and parquet trained 2 steps
through train.py; streaming with a seeded shuffle, a real kill and resume, and two ranks that see disjoint items."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from datasets import Audio, Dataset

from wavlmrawnet.synthetic.corpus import generate_corpus
from wavlmrawnet.training.config import DatasetSource, TrainConfig
from wavlmrawnet.training.data import BadAudioError, check_dataset_audio, dataset_from_source, training_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, dict]:
    """The synthetic corpus as parquet (audio bytes), an audiofolder tree and a save_to_disk folder."""
    root = tmp_path_factory.mktemp("sources")
    generate_corpus(root / "corpus", num_train_speakers=6, num_test_speakers=2, utterances_per_speaker=4,
                    videos_per_speaker=2, min_seconds=1.0, max_seconds=1.3, num_trials=4, seed=0)  # fmt: skip
    files = sorted((root / "corpus" / "train" / "wav").rglob("*.wav"))
    speakers = [f.parts[-3] for f in files]
    with_bytes = Dataset.from_dict(
        {"audio": [{"bytes": f.read_bytes(), "path": "/".join(f.parts[-3:])} for f in files], "speaker": speakers}
    ).cast_column("audio", Audio(decode=False))
    with_bytes.to_parquet(root / "train.parquet")
    folder = root / "audiofolder"
    for f, speaker in zip(files, speakers):
        (folder / speaker).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, folder / speaker / f"{f.parent.name}_{f.name}")
    with_paths = Dataset.from_dict({"audio": [str(f) for f in files], "speaker": speakers})
    with_paths.cast_column("audio", Audio(decode=False)).save_to_disk(root / "saved")
    return {
        "parquet": {"path": "parquet", "data_files": str(root / "train.parquet")},
        "audiofolder": {"path": "audiofolder", "data_dir": str(folder), "speaker_column": "label"},
        "save_to_disk": {"path": str(root / "saved")},
        "_speakers": sorted(set(speakers)),
        "_files": len(files),
    }


@pytest.mark.parametrize("kind", ["parquet", "audiofolder", "save_to_disk"])
def test_each_source_gives_the_speaker_dataset(exports, kind, tmp_path):
    dataset = dataset_from_source(DatasetSource(**exports[kind]), tmp_path / "extracted")
    assert len(dataset) == exports["_files"] and sorted(set(dataset["speaker"])) == exports["_speakers"]
    assert all(os.path.isfile(p) for p in dataset["path"])
    assert dataset["label"] == [exports["_speakers"].index(s) for s in dataset["speaker"]]


def test_missing_column_and_a_single_speaker_are_clear_errors(exports, tmp_path):
    with pytest.raises(ValueError, match="speaker_column 'spk' is not a column"):
        dataset_from_source(DatasetSource(**exports["parquet"], speaker_column="spk"), tmp_path)
    wavs = [str(p) for p in Path(exports["save_to_disk"]["path"]).parent.rglob("*.wav")][:3]
    one = Dataset.from_dict({"audio": wavs, "speaker": ["a"] * 3})
    one.save_to_disk(tmp_path / "one")
    data = TrainConfig.from_dict({"data": {"dataset": {"path": str(tmp_path / "one")}}}).data
    with pytest.raises(ValueError, match="has 1 speaker.*data.dataset.speaker_column 'speaker'"):
        training_dataset(data, tmp_path)
    both = TrainConfig.from_dict({"data": {"dataset": {"path": "x"}, "train_dir": "y"}}).data
    with pytest.raises(ValueError, match="exactly one training source"):
        training_dataset(both, tmp_path)


def write_config(folder: Path, dataset: dict, **training) -> Path:
    config = {
        "model": {"preset": "tiny", "overrides": {"wavlm_config": {"mask_time_prob": 0.0}}},
        "data": {"dataset": dataset, "validation_speakers": 2, "validation_trials": 10, "segment_seconds": 1.0,
                 "num_workers": 0},
        "training": {"output_dir": str(folder / "run"), "max_steps": 2, "batch_size": 2, "warmup_steps": 1,
                     "checkpoint_every": 2, "eval_every": 2, "log_every": 1, "eval_batch_size": 4,
                     "mixed_precision": "no", **training},
    }  # fmt: skip
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train(config: Path, *extra: str, nproc: int = 1, env: dict | None = None, check: bool = True):
    script = [str(REPO / "train.py"), "--config", str(config), *extra]
    if nproc > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
        command += [str(REPO / "tests" / "record_training.py"), str(config)]
    else:
        command = [sys.executable, *script]
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(env or {}))
    completed = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=environment, timeout=900)
    if check:
        assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    return completed


def final_id2label(run: Path) -> dict[str, str]:
    return json.loads((run / "final" / "config.json").read_text())["id2label"]


@pytest.mark.slow
def test_train_two_steps_from_a_dataset_source(exports, tmp_path):
    """train.py end to end from one `datasets` source (parquet with the audio bytes inside); every source's
    conversion to the speaker dataset is tested above, without a training run each."""
    train(write_config(tmp_path, exports["parquet"]))
    id2label = final_id2label(tmp_path / "run")
    held_out = set(exports["_speakers"]) - set(id2label.values())
    assert len(held_out) == 2 and list(id2label) == ["0", "1", "2", "3"]
    assert list(id2label.values()) == sorted(set(exports["_speakers"]) - held_out)


@pytest.mark.slow
def test_streaming_trains_and_labels_from_the_first_pass(exports, tmp_path):
    train(write_config(tmp_path, {**exports["parquet"], "streaming": True, "shuffle_buffer": 8}))
    speakers = json.loads((tmp_path / "run" / "speakers.json").read_text())
    assert speakers["from"] == "first pass" and speakers["rows"] == exports["_files"]
    assert final_id2label(tmp_path / "run") == {str(i): s for s, i in speakers["label2id"].items()}
    assert len(speakers["held_out"]) == 2 and not set(speakers["held_out"]) & set(speakers["label2id"])


@pytest.mark.slow
def test_streaming_on_two_ranks_sees_disjoint_items(exports, tmp_path):
    config = write_config(tmp_path, {**exports["parquet"], "streaming": True, "shuffle_buffer": 4}, max_steps=3)
    train(config, nproc=2)
    seen = []
    for rank in (0, 1):
        lines = (tmp_path / "run" / f"seen_batches.rank{rank}.jsonl").read_text().splitlines()
        seen.append([p for line in lines for p in json.loads(line)["paths"]])
    assert len(seen[0]) == len(seen[1]) == 6
    assert not set(seen[0]) & set(seen[1]), "the ranks read disjoint rows of the stream"


def recorded(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "stream_batches.rank0.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_killed_streaming_run_resumes_at_the_next_item(exports, tmp_path):
    """SIGKILL right after the step-2 checkpoint; --resume must feed steps 3-4 exactly the batches an uninterrupted
    run feeds them (the stream position is in the checkpoint), not replay steps 1-2."""
    dataset = {**exports["parquet"], "streaming": True, "shuffle_buffer": 8}
    script = [sys.executable, str(REPO / "tests" / "record_streaming.py")]
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    reference = tmp_path / "reference"
    reference.mkdir()
    config = write_config(reference, dataset, max_steps=4, checkpoint_every=2, eval_every=4)
    subprocess.run([*script, str(config)], cwd=REPO, env=environment, check=True, capture_output=True, timeout=900)

    killed = tmp_path / "killed"
    killed.mkdir()
    config = write_config(killed, dataset, max_steps=4, checkpoint_every=2, eval_every=4)
    process = subprocess.Popen([*script, str(config)], cwd=REPO, env=environment, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    checkpoint = killed / "run" / "checkpoints" / "step-00000002" / "trainer_state.json"
    deadline = time.monotonic() + 600
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists() and not (killed / "run" / "final").exists(), "killed after step 2, before the end"
    subprocess.run([*script, str(config), "--resume"], cwd=REPO, env=environment, check=True, capture_output=True,
                   timeout=900)  # fmt: skip

    expected = {b["step"]: b["paths"] for b in recorded(reference / "run")}
    resumed = [b for b in recorded(killed / "run") if b["step"] >= 2][-2:]
    assert [b["step"] for b in resumed] == [2, 3]
    assert [b["paths"] for b in resumed] == [expected[2], expected[3]]
    assert json.loads(checkpoint.read_text())["stream"]["0"], "the checkpoint holds the stream position"


def test_unreadable_audio_in_a_dataset_source_is_reported_like_the_folder_form(exports, tmp_path):
    rows = Dataset.from_parquet(exports["parquet"]["data_files"]).cast_column("audio", Audio(decode=False)).to_list()
    rows[5]["audio"] = {"bytes": b"RIFF this is not audio", "path": rows[5]["audio"]["path"]}
    broken = Dataset.from_list(rows).cast_column("audio", Audio(decode=False))
    broken.to_parquet(tmp_path / "broken.parquet")
    source = {"path": "parquet", "data_files": str(tmp_path / "broken.parquet")}
    dataset = training_dataset(TrainConfig.from_dict({"data": {"dataset": source}}).data, tmp_path / "run")
    name = rows[5]["audio"]["path"]  # e.g. id10002/vid01/00002.wav
    with pytest.raises(BadAudioError, match=f"(?s)1 of 24 audio files are unusable.*{name}\tunreadable"):
        check_dataset_audio(dataset, 0.5, skip_bad_audio=False, run_dir=tmp_path / "strict")
    kept = check_dataset_audio(dataset, 0.5, skip_bad_audio=True, run_dir=tmp_path / "skip")
    assert len(kept) == 23
    report = (tmp_path / "skip" / "bad_audio.tsv").read_text().splitlines()
    assert report[0] == "path\treason" and len(report) == 2 and report[1].split("\t")[0].endswith(name)
