"""Bad input to `enroll`, `identify`, `calibrate` and the verification pipeline: a clear error before any work,
and nothing lost or half-written (read-only folders and files, a folder as the database, non-finite thresholds,
file names that would break `identify`'s TSV)."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from conftest import permissions_apply, write_wav

import wavlmrawnet.cli.recognition as recognition_cli
from wavlmrawnet import SpeakerDatabase
from wavlmrawnet.cli import main


def snapshot(folder: Path) -> dict:
    """Every entry under `folder`: its bytes (files), mode, inode and modification time, hidden files included."""
    return {
        str(path.relative_to(folder)): (
            path.read_bytes() if path.is_file() else None,
            stat.S_IMODE(path.stat().st_mode),
            path.stat().st_ino,
            path.stat().st_mtime_ns,
        )
        for path in sorted(folder.rglob("*"))
    }


def no_model_loading(monkeypatch):
    """The command must fail before it loads the model (and so before any embedding)."""

    def refuse(args):
        raise AssertionError("the model was loaded: the bad input was not refused first")

    monkeypatch.setattr(recognition_cli, "load", refuse)


@pytest.fixture
def dev_scores(tmp_path) -> str:
    """A dev scores TSV whose classes overlap (a finite calibration fits it)."""
    rng = np.random.default_rng(0)
    lines = ["enrol\ttest\tlabel\tscore"]
    lines += [f"a{i}.wav\tb{i}.wav\t1\t{s:.6f}" for i, s in enumerate(rng.normal(0.6, 0.15, 40))]
    lines += [f"c{i}.wav\td{i}.wav\t0\t{s:.6f}" for i, s in enumerate(rng.normal(0.3, 0.15, 200))]
    path = tmp_path / "dev.tsv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def model_copy(tmp_path, saved_tiny_model) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(saved_tiny_model, folder)
    for path in folder.iterdir():
        path.chmod(0o644)
    return folder


# ----------------------------------------------------------------------------------------------- calibrate
def test_calibrate_in_place_rewrites_only_the_config_and_keeps_modes(model_copy, dev_scores, capsys):
    before = snapshot(model_copy)
    assert main(["calibrate", "--model", str(model_copy), "--scores", dev_scores]) == 0
    after = snapshot(model_copy)
    assert sorted(after) == sorted(before)  # no temporary file left, nothing added
    changed = [name for name in before if before[name] != after[name]]
    assert changed == ["config.json"]  # the weights were not rewritten (same bytes, inode and mtime)
    assert after["config.json"][1] == 0o644 and after["model.safetensors"][1] == 0o644
    config = json.loads((model_copy / "config.json").read_text())
    assert set(config["calibration"]) == {"scale", "offset"} and config["p_target"] == 0.01
    old = json.loads(before["config.json"][0])
    assert {k: v for k, v in config.items() if k not in ("calibration", "p_target", "verification_threshold")} == {
        k: v for k, v in old.items() if k not in ("calibration", "p_target", "verification_threshold")
    }
    assert "written to" in capsys.readouterr().out


def test_calibrate_refuses_a_read_only_model_folder_and_changes_nothing(model_copy, dev_scores, capsys):
    before = snapshot(model_copy)
    model_copy.chmod(0o555)
    try:
        with permissions_apply():
            rc = main(["calibrate", "--model", str(model_copy), "--scores", dev_scores])
    finally:
        model_copy.chmod(0o755)
    err = capsys.readouterr().err
    assert rc == 1 and f"error: cannot write {model_copy / 'config.json'}: Permission denied" in err, err
    assert "Traceback" not in err and snapshot(model_copy) == before  # the config was not changed either


def test_calibrate_refuses_a_write_protected_config(model_copy, dev_scores, capsys):
    (model_copy / "config.json").chmod(0o444)
    before = snapshot(model_copy)
    assert main(["calibrate", "--model", str(model_copy), "--scores", dev_scores]) == 1
    assert "config.json: the file is " in capsys.readouterr().err
    assert snapshot(model_copy) == before


def test_a_failed_calibrate_write_leaves_the_folders_as_they_were(model_copy, dev_scores, capsys, monkeypatch):
    before = snapshot(model_copy)

    def disk_full(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(recognition_cli.os, "replace", disk_full)
    assert main(["calibrate", "--model", str(model_copy), "--scores", dev_scores]) == 1
    err = capsys.readouterr().err
    assert f"cannot write the calibrated model to {model_copy}: No space left on device" in err, err
    assert snapshot(model_copy) == before  # no temporary config left behind
    out = model_copy.parent / "calibrated"
    assert main(["calibrate", "--model", str(model_copy), "--scores", dev_scores, "--out", str(out)]) == 1
    assert not out.exists() and sorted(p.name for p in model_copy.parent.iterdir()) == ["dev.tsv", "model"]
    monkeypatch.undo()
    assert main(["calibrate", "--model", str(model_copy), "--scores", dev_scores, "--out", str(out)]) == 0
    assert snapshot(model_copy) == before and json.loads((out / "config.json").read_text())["calibration"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~_umask()  # not mkdtemp's 0700
    assert stat.S_IMODE((out / "model.safetensors").stat().st_mode) == 0o644
    capsys.readouterr()


def test_calibrate_out_must_be_a_folder(model_copy, dev_scores, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    assert (
        main(["calibrate", "--model", str(model_copy), "--scores", dev_scores, "--out", str(tmp_path / "a_file")]) == 1
    )
    assert "it is a file, not a folder" in capsys.readouterr().err


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


# ----------------------------------------------------------------------------------------------- enroll / identify
@pytest.fixture
def speech(tmp_path) -> str:
    return write_wav(tmp_path / "good1.wav", 1.0, 16000, seed=11)


def test_enroll_refuses_a_write_protected_database_before_embedding(
    tmp_path, saved_tiny_model, speech, capsys, monkeypatch
):
    db = tmp_path / "db.safetensors"
    runtime = ["--model", saved_tiny_model, "--dtype", "fp32", "--db", str(db)]
    assert main(["enroll", *runtime, "--speaker", "ann", speech]) == 0
    db.chmod(0o444)
    before = snapshot(tmp_path)
    no_model_loading(monkeypatch)
    assert main(["enroll", *runtime, "--speaker", "bob", speech]) == 1  # root too: the rename ignored the mode
    err = capsys.readouterr().err
    assert f"speaker database {db} is write-protected (mode 444)" in err, err
    assert snapshot(tmp_path) == before and SpeakerDatabase.load(db).names == ["ann"]


@pytest.mark.parametrize("case", ["read-only folder", "under a file", "a folder"])
def test_enroll_refuses_an_unwritable_database_path_before_embedding(tmp_path, speech, case, capsys, monkeypatch):
    no_model_loading(monkeypatch)
    folder = tmp_path / "rodb"
    folder.mkdir()
    db, expected = {
        "read-only folder": (folder / "s.safetensors", f"cannot write {folder / 's.safetensors'}: Permission denied"),
        "under a file": (Path(speech) / "db.safetensors", f"{speech} is a file, not a folder"),
        "a folder": (folder, f"speaker database {folder} is a folder, not a database file"),
    }[case]
    folder.chmod(0o555)
    try:
        with permissions_apply():
            rc = main(["enroll", "--model", "unused", "--db", str(db), "--speaker", "ann", speech])
    finally:
        folder.chmod(0o755)
    err = capsys.readouterr().err
    assert rc == 1 and expected in err and "Traceback" not in err, err
    assert list(folder.iterdir()) == []  # no lock file, no temporary file


def test_identify_says_a_folder_is_not_a_database(tmp_path, speech, capsys, monkeypatch):
    no_model_loading(monkeypatch)
    assert main(["identify", "--model", "unused", "--db", str(tmp_path), speech]) == 1
    assert f"speaker database {tmp_path} is a folder, not a database file" in capsys.readouterr().err
    assert main(["identify", "--model", "unused", "--db", str(tmp_path / "missing.safetensors"), speech]) == 1
    assert "missing.safetensors does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_identify_refuses_a_non_finite_threshold(value, speech, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["identify", "--model", "unused", "--db", "x.safetensors", f"--threshold={value}", speech])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --threshold" in err and "expected a finite number" in err, err


def test_identify_refuses_top_k_below_one(speech, capsys):
    with pytest.raises(SystemExit):
        main(["identify", "--model", "unused", "--db", "x.safetensors", "--top-k", "0", speech])
    assert "argument --top-k" in capsys.readouterr().err


def test_database_identify_refuses_a_non_finite_threshold(tiny_model):
    database = SpeakerDatabase.for_model(tiny_model)
    database.add("ann", np.ones(256))
    for bad in (float("nan"), float("inf"), "0.5x", True):
        with pytest.raises(ValueError, match="threshold must be a finite number"):
            database.identify(np.ones(256), threshold=bad)
    assert database.identify(np.ones(256), threshold=1.01)[0]["speaker"] == "unknown"  # finite: a decision


def test_identify_tsv_fails_file_names_that_would_break_a_line(tmp_path, saved_tiny_model, speech, capsys):
    db = str(tmp_path / "db.safetensors")
    runtime = ["--model", saved_tiny_model, "--dtype", "fp32", "--db", db]
    assert main(["enroll", *runtime, "--speaker", "ann", speech]) == 0
    tab = write_wav(tmp_path / "a\tb.wav", 1.0, 16000, seed=12)
    newline = write_wav(tmp_path / "c\nd.wav", 1.0, 16000, seed=13)
    capsys.readouterr()
    assert main(["identify", *runtime, speech, tab, newline]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 1 and lines[0].split("\t")[:2] == [speech, "ann"] and len(lines[0].split("\t")) == 3
    assert f"{tab!r}: its path holds a tab, newline" in captured.err and f"{newline!r}: " in captured.err
    assert "2 input(s) failed" in captured.err
    assert main(["identify", *runtime, "--json", speech, tab, newline]) == 0  # JSON shows any name
    assert [answer["file"] for answer in json.loads(capsys.readouterr().out)] == [speech, tab, newline]


# ----------------------------------------------------------------------------------------------- pipeline
def test_verification_pipeline_refuses_a_non_finite_threshold(saved_tiny_model, speech):
    from transformers import pipeline

    verify = pipeline("speaker-verification", model=saved_tiny_model, trust_remote_code=True)
    for bad in (float("nan"), float("inf"), "high", True):
        with pytest.raises(ValueError, match=r"^threshold must be a finite number \(a cosine score\), got"):
            verify((speech, speech), threshold=bad)
    assert verify((speech, speech), threshold=1.01)["same_speaker"] is False  # finite: a decision
    verify.model.config.verification_threshold = float("nan")  # e.g. a hand-edited config.json
    with pytest.raises(ValueError, match="config.verification_threshold must be a finite number"):
        verify((speech, speech))


def test_database_save_refuses_a_write_protected_file_and_load_a_folder(tmp_path, tiny_model):
    database = SpeakerDatabase.for_model(tiny_model)
    database.add("ann", np.ones(256))
    path = database.save(tmp_path / "db.safetensors")
    path.chmod(0o444)
    before = path.read_bytes()
    database.add("bob", -np.ones(256))
    with pytest.raises(ValueError, match="is write-protected \\(mode 444\\)"):
        database.save(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["db.safetensors"]
    with pytest.raises(ValueError, match="is a folder, not a database file"):
        SpeakerDatabase.load(tmp_path)
