"""Bad input to training, refused before any work with one line: an earlier run in output_dir (never mixed with this
one), a missing test trial list, an empty or malformed YAML, a damaged checkpoint (named, with what to do)."""

from __future__ import annotations

import pytest

pytest.importorskip("accelerate", reason='the train extra: pip install -e ".[train]"')

from wavlmrawnet.train import main  # noqa: E402
from wavlmrawnet.training.checkpoints import (  # noqa: E402
    STATE_FILE,
    CheckpointError,
    check_output_dir,
    load_last_checkpoint,
)

CONFIG = "configs/demo.yaml"


def test_an_earlier_run_is_continued_replaced_or_refused_never_mixed(tmp_path):
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"step": 4}\n')
    with pytest.raises(FileExistsError, match=r"holds an earlier run \(final, metrics.jsonl\): pass --resume"):
        check_output_dir(run, resume=False, overwrite=False)
    assert check_output_dir(run, resume=True, overwrite=False) == []
    assert check_output_dir(run, resume=False, overwrite=True) == [run / "final", run / "metrics.jsonl"]
    assert check_output_dir(tmp_path / "fresh", resume=False, overwrite=False) == []
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "a_file", resume=False, overwrite=False)
    with pytest.raises(NotADirectoryError, match="a_file is a file, not a folder"):
        check_output_dir(tmp_path / "a_file" / "sub", resume=False, overwrite=False)


def test_train_refuses_before_any_work_with_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "final" / "config.json").write_text("{}")
    assert main(["--config", CONFIG, "--output-dir", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: training.output_dir") and "holds an earlier run (final)" in err
    assert sorted(p.name for p in run.iterdir()) == ["final"], "nothing was written beside the earlier run"

    fresh = tmp_path / "fresh"
    missing = tmp_path / "nosuch.txt"
    assert main(["--config", CONFIG, "--output-dir", str(fresh), "--set", f"data.test_trials={missing}"]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err and not fresh.exists(), "refused before training"

    for name, text, message in (
        ("empty.yaml", "", "the file is empty"),
        ("broken.yaml", "model: [\n  bad", "not valid YAML"),
    ):
        (tmp_path / name).write_text(text)
        assert main(["--config", str(tmp_path / name)]) == 1
        assert f"{tmp_path / name}: {message}" in capsys.readouterr().err


def test_a_damaged_checkpoint_is_named_with_what_to_do(tmp_path):
    from accelerate import Accelerator

    checkpoint = tmp_path / "checkpoints" / "step-00000004"
    checkpoint.mkdir(parents=True)
    (checkpoint / STATE_FILE).write_text("{not json")
    (checkpoint / "model.safetensors").write_bytes(b"\0" * 50)
    with pytest.raises(
        CheckpointError, match=f"cannot resume from {checkpoint}, which is damaged .*remove that folder"
    ):
        load_last_checkpoint(Accelerator(cpu=True), tmp_path / "checkpoints", {"step": 0})
