"""SpeakerDatabase (enrol, update, remove, search, identify, save/load) and the `enroll` / `identify` commands on
real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import cli_in_process, write_wav
from safetensors import safe_open
from safetensors.numpy import save_file

import wavlmrawnet.recognition.database as database_module
from wavlmrawnet import ModelMismatchError, SpeakerDatabase, WavLMRawNetConfig, WavLMRawNetForXVector, model_identity

DIM = 256
V1 = "wavlmrawnet-speaker-database/1"  # the first format, without a checksum


def unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector)


@pytest.fixture
def database(tiny_model) -> SpeakerDatabase:
    return SpeakerDatabase.for_model(tiny_model)


def test_add_averages_normalised_utterances_and_updates(database):
    rng = np.random.default_rng(0)
    first, second, third = rng.normal(size=(3, DIM)) * [[1.0], [5.0], [0.2]]  # norms differ; they must not weigh
    database.add("alice", first)
    assert np.allclose(database.embedding("alice"), unit(first), atol=1e-6)
    database.add("alice", torch.tensor(np.stack([second, third]), dtype=torch.float32))
    expected = unit(unit(first) + unit(second) + unit(third))
    assert np.allclose(database.embedding("alice"), expected, atol=1e-6)
    assert database.count("alice") == 3 and database.names == ["alice"] and len(database) == 1


def test_search_ranks_and_identify_answers_unknown_below_threshold(database):
    rng = np.random.default_rng(1)
    speakers = {name: rng.normal(size=DIM) for name in ("ann", "bob", "cyd", "dee")}
    for name, vector in speakers.items():
        database.add(name, vector)
    query = unit(speakers["bob"]) + 0.5 * unit(speakers["cyd"])
    [ranked] = database.search(query, top_k=3)  # a (d,) query gives one list
    expected = sorted(((n, float(unit(v) @ unit(query))) for n, v in speakers.items()), key=lambda x: -x[1])[:3]
    assert [n for n, _ in ranked] == [n for n, _ in expected] == ["bob", "cyd", ranked[2][0]]
    assert np.allclose([s for _, s in ranked], [s for _, s in expected], atol=1e-5)
    assert len(database.search(np.stack([query, query]), top_k=10)) == 2
    assert len(database.search(query, top_k=10)[0]) == 4  # top_k beyond the speakers: all of them

    known, stranger = database.identify(np.stack([speakers["ann"], rng.normal(size=DIM)]), threshold=0.5)
    assert known["speaker"] == "ann" and known["score"] == pytest.approx(1.0, abs=1e-5)
    assert stranger["speaker"] == "unknown" and stranger["score"] < 0.5
    assert stranger["candidates"][0][0] in speakers and len(stranger["candidates"]) == 4
    # Default threshold: the model's verification_threshold (0.5 for the tiny model).
    assert database.threshold == 0.5
    assert database.identify(speakers["dee"])[0]["speaker"] == "dee"


def test_remove_and_bad_input_give_clear_errors(database):
    with pytest.raises(ValueError, match="empty"):
        database.search(np.ones(DIM))
    database.add("ann", np.ones(DIM))
    database.add("bob", -np.ones(DIM) + np.eye(DIM)[0])
    with pytest.raises(KeyError, match="'zed' is not enrolled; enrolled: 'ann', 'bob'"):
        database.remove("zed")
    database.remove("ann")
    assert database.names == ["bob"] and database.search(np.ones(DIM))[0][0][0] == "bob"
    with pytest.raises(ValueError, match="dimensions"):
        database.add("cyd", np.ones(DIM + 1))
    with pytest.raises(ValueError, match="NaN"):
        database.add("cyd", np.full(DIM, np.nan))
    with pytest.raises(ValueError, match="all zeros"):
        database.add("cyd", np.zeros(DIM))
    for name in ("unknown", "Unknown", "UNKNOWN"):  # each reads as the no-match answer
        with pytest.raises(ValueError, match="answer for no match"):
            database.add(name, np.ones(DIM))
    for name, reason in (("a\nb", "control characters"), ("a\tb", "control characters"), (" ann", "spaces"),
                         ("x" * 101, "at most 100 characters"), ("", "non-empty")):  # fmt: skip
        with pytest.raises(ValueError, match=reason):
            database.add(name, np.ones(DIM))
    with pytest.raises(KeyError, match=r"'xxxx.*\.\.\. \(100000 characters\) is not enrolled"):
        database.remove("x" * 100_000)  # the message does not echo the whole name
    with pytest.raises(ValueError, match="top_k"):
        database.search(np.ones(DIM), top_k=0)
    assert database.names == ["bob"]  # failed adds changed nothing


def test_save_load_round_trip_and_model_checks(tmp_path, tiny_model, database):
    rng = np.random.default_rng(2)
    for index in range(40):
        database.add(f"speaker{index}", rng.normal(size=(2, DIM)))
    path = database.save(tmp_path / "db" / "speakers.safetensors")
    loaded = SpeakerDatabase.load(path, tiny_model)
    assert loaded.names == database.names and loaded.count("speaker7") == 2
    assert np.array_equal(loaded.matrix, database.matrix)
    loaded.add("speaker7", rng.normal(size=DIM))  # updating a loaded speaker continues its running mean
    assert loaded.count("speaker7") == 3
    assert os.listdir(path.parent) == ["speakers.safetensors"]  # no temporary file left behind

    torch.manual_seed(1)
    other = WavLMRawNetForXVector(WavLMRawNetConfig.from_preset("tiny", num_labels=5))
    with pytest.raises(ModelMismatchError, match="another model"):
        SpeakerDatabase.load(path, other)
    assert model_identity(other) != model_identity(tiny_model)


def test_identity_ignores_the_threshold_and_calibration_but_not_weights(tiny_model):
    config = WavLMRawNetConfig.from_dict(tiny_model.config.to_dict())
    config.verification_threshold, config.calibration = 0.7, {"scale": 5.0, "offset": -1.0}
    calibrated = WavLMRawNetForXVector(config)
    calibrated.load_state_dict(tiny_model.state_dict())
    assert model_identity(calibrated) == model_identity(tiny_model)
    with torch.no_grad():
        next(calibrated.parameters()).view(-1)[0] += 1e-3
    assert model_identity(calibrated) != model_identity(tiny_model)


def test_corrupt_and_foreign_files_are_refused(tmp_path, database):
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SpeakerDatabase.load(missing)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01 not a safetensors file at all")
    with pytest.raises(ValueError, match="not a readable speaker database"):
        SpeakerDatabase.load(garbage)
    database.add("ann", np.ones(DIM))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(database.save(tmp_path / "ok.safetensors").read_bytes()[:-100])
    with pytest.raises(ValueError, match="not a readable speaker database"):
        SpeakerDatabase.load(truncated)
    foreign = tmp_path / "embeddings.safetensors"  # e.g. what `wavlmrawnet embed` writes
    save_file({"a.wav": np.ones(DIM, np.float32)}, str(foreign), metadata={"model": "x"})
    with pytest.raises(ValueError, match="not a wavlmrawnet speaker database"):
        SpeakerDatabase.load(foreign)


def test_a_failed_save_leaves_the_old_file_whole(tmp_path, database, monkeypatch):
    database.add("ann", np.ones(DIM))
    path = database.save(tmp_path / "speakers.safetensors")
    before = path.read_bytes()
    real_save_file = database_module.save_file

    def disk_full(tensors, filename, metadata=None):  # writes part of the file, then fails as a full disk would
        real_save_file(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as handle:
            handle.truncate(50)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(database_module, "save_file", disk_full)
    database.add("bob", -np.ones(DIM))
    with pytest.raises(OSError, match="No space"):
        database.save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["speakers.safetensors"]
    assert SpeakerDatabase.load(path).names == ["ann"]


def test_damaged_databases_are_refused_with_the_reason(tmp_path, tiny_model, database):
    """Random bytes over the file's tail, NaN sums, a stored "unknown" name or a wrong dimension: a ValueError
    that names the damage, never a database that answers `0.0000` or `nan`."""
    database.add("allison", np.ones(DIM))
    database.add("bob", -np.ones(DIM) + np.eye(DIM)[0])
    path = database.save(tmp_path / "speakers.safetensors")
    good = path.read_bytes()
    rng = np.random.default_rng(0)
    flipped = tmp_path / "flipped.safetensors"
    flipped.write_bytes(good[:-100] + rng.integers(0, 256, 100, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="checksum does not match"):
        SpeakerDatabase.load(flipped, tiny_model)

    def write(name, names, sums, counts, fmt=database_module.FORMAT, checksum=True, dim=DIM):
        metadata = {"format": fmt, "model_identity": database.identity, "threshold": "0.5", "names": json.dumps(names)}
        tensors = {"sums": np.asarray(sums, np.float64).reshape(len(names), dim), "counts": np.asarray(counts)}
        if checksum:  # a consistent checksum: the values themselves must be checked
            metadata["checksum"] = database_module._checksum(metadata, tensors)
        save_file(tensors, str(tmp_path / name), metadata=metadata)
        return tmp_path / name

    nan_sums = np.ones((2, DIM))
    nan_sums[1, 5] = np.nan
    cases = {
        "NaN or infinite": write("nan.safetensors", ["allison", "bob"], nan_sums, [1, 1]),
        "NaN or infinite ": write("nan_v1.safetensors", ["allison", "bob"], nan_sums, [1, 1], V1, False),
        "answer for no match": write("unknown.safetensors", ["allison", "Unknown"], np.ones((2, DIM)), [1, 1]),
        "control characters": write("newline.safetensors", ["al\nlison"], np.ones((1, DIM)), [1]),
        "count below 1": write("count.safetensors", ["allison"], np.ones((1, DIM)), [0]),
        "all zeros": write("zeros.safetensors", ["allison"], np.zeros((1, DIM)), [1]),
        "255 dimensions": write("dim.safetensors", ["allison"], np.ones((1, DIM - 1)), [1], dim=DIM - 1),
        "appears twice": write("twice.safetensors", ["allison", "allison"], np.ones((2, DIM)), [1, 1]),
    }  # fmt: skip
    for reason, damaged in cases.items():
        with pytest.raises(ValueError, match=f"damaged speaker database.*{reason.strip()}"):
            SpeakerDatabase.load(damaged, tiny_model)
    # A database of the first format (no checksum) with valid values still loads, and gains a checksum when saved.
    v1 = write("v1.safetensors", ["allison"], np.ones((1, DIM)), [2], V1, False)
    loaded = SpeakerDatabase.load(v1, tiny_model)
    assert loaded.names == ["allison"] and loaded.count("allison") == 2
    with safe_open(str(loaded.save(v1)), framework="numpy") as handle:
        assert handle.metadata()["checksum"].startswith("sha256:")


def test_save_keeps_the_file_mode(tmp_path, database):
    """mkstemp creates 0600 and the rename kept it: a shared 0644 database became private after each save."""
    database.add("ann", np.ones(DIM))
    path = database.save(tmp_path / "speakers.safetensors")
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # a new file: what open() would give
    for mode in (0o644, 0o640, 0o664):
        path.chmod(mode)
        database.add("bob", -np.ones(DIM) + np.eye(DIM)[0]) if "bob" not in database else database.add(
            "bob", -np.ones(DIM)
        )
        database.save(path)
        assert path.stat().st_mode & 0o777 == mode


def test_the_lock_serialises_writers_in_one_process(tmp_path, database):
    path = tmp_path / "speakers.safetensors"
    with SpeakerDatabase.lock(path):
        with pytest.raises(RuntimeError, match="locked by another writer.*speakers.safetensors.lock"):
            with SpeakerDatabase.lock(path, timeout=0.2):
                pass  # filelock's lock is per path and thread-reentrant: a second FileLock object still waits
    with SpeakerDatabase.lock(path, timeout=0.2):  # released
        pass


# ----------------------------------------------------------------------------------------------- command line
# Each command's own `main`, in this process (a fresh interpreter per call cost ~6 s each); the database lives on
# disk between calls as it does between processes. Real processes: the concurrent writers below.
cli = cli_in_process


@pytest.mark.slow
def test_enroll_and_identify_commands(tmp_path, saved_tiny_model):
    files = {name: write_wav(tmp_path / f"{name}.wav", 1.5, 16000, seed=seed) for name, seed in
             [("ann1", 11), ("ann2", 12), ("bob1", 21), ("query", 11)]}  # fmt: skip
    (tmp_path / "bad.wav").write_text("not audio")
    db = str(tmp_path / "speakers.safetensors")
    runtime = ["--model", saved_tiny_model, "--dtype", "fp32", "--db", db]

    first = cli("enroll", *runtime, "--speaker", "ann", files["ann1"], files["ann2"])
    assert first.returncode == 0, first.stderr
    assert "enrolled 'ann' from 2 file(s)" in first.stdout and "holds 1 speaker(s)" in first.stdout
    second = cli("enroll", *runtime, "--speaker", "bob", files["bob1"])
    assert second.returncode == 0 and "holds 2 speaker(s)" in second.stdout

    failed = cli("enroll", *runtime, "--speaker", "cyd", files["bob1"], str(tmp_path / "bad.wav"))
    assert failed.returncode == 1 and "bad.wav" in failed.stderr and "'cyd' was not enrolled" in failed.stderr
    assert SpeakerDatabase.load(db).names == ["ann", "bob"]

    found = cli("identify", *runtime, "--json", "--top-k", "2", files["query"], files["bob1"])
    assert found.returncode == 0, found.stderr
    answers = json.loads(found.stdout)
    assert [a["speaker"] for a in answers] == ["ann", "bob"]
    assert answers[1]["score"] == pytest.approx(1.0, abs=1e-4) and len(answers[0]["candidates"]) == 2
    import soundfile as sf

    sf.write(tmp_path / "silence.wav", np.zeros(16000, np.float32), 16000)  # was answered with a score
    strict = cli("identify", *runtime, "--threshold", "1.01", files["bob1"], str(tmp_path / "silence.wav"))
    assert strict.returncode == 1 and "silence.wav: no speech found (silence" in strict.stderr
    assert "\tunknown\t" in strict.stdout and "silence.wav" not in strict.stdout  # the good file is answered

    update = cli("enroll", *runtime, "--speaker", "bob", files["query"])
    assert update.returncode == 0 and "updated 'bob'" in update.stdout and "(2 in all)" in update.stdout

    torch.manual_seed(3)
    other = tmp_path / "other_model"
    WavLMRawNetForXVector(WavLMRawNetConfig.from_preset("tiny", num_labels=5)).save_pretrained(other)
    refused = cli("identify", "--model", str(other), "--db", db, files["query"])
    assert refused.returncode == 1 and "enrolled with another model" in refused.stderr
    (tmp_path / "corrupt.safetensors").write_bytes(b"garbage")
    corrupt = cli("identify", *runtime[:-1], str(tmp_path / "corrupt.safetensors"), files["query"])
    assert corrupt.returncode == 1 and "not a readable speaker database" in corrupt.stderr


@pytest.mark.slow
def test_concurrent_enroll_processes_lose_no_speaker(tmp_path, saved_tiny_model):
    """Two `wavlmrawnet enroll` processes on one --db, different speakers, started together: both speakers are in
    the database afterwards, every round (without the lock one was lost in every round)."""
    files = {s: [write_wav(tmp_path / f"{s}{i}.wav", 1.0, 16000, seed=seed + i) for i in range(3)]
             for s, seed in (("ann", 10), ("bob", 20))}  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for round_index in range(3):
        db = tmp_path / f"round{round_index}.safetensors"
        runtime = ["--model", saved_tiny_model, "--dtype", "fp32", "--db", str(db)]
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "wavlmrawnet", "enroll", *runtime, "--speaker", speaker, *paths],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            )
            for speaker, paths in files.items()
        ]  # fmt: skip
        outputs = [process.communicate(timeout=300) for process in processes]
        assert [p.returncode for p in processes] == [0, 0], outputs
        assert sorted(SpeakerDatabase.load(db).names) == ["ann", "bob"], (round_index, outputs)
        assert SpeakerDatabase.load(db).count("ann") == SpeakerDatabase.load(db).count("bob") == 3
