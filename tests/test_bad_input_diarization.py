"""Bad input to `wavlmrawnet diarize` (and the `Diarizer` it runs): RTTM outputs that would collide, an output folder
that cannot be written, options out of range or that do not apply, and the too-short message's precision. Each is
refused before any work with a message naming it; nothing is lost or silently overwritten."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from conftest import voice_like, write_wav

from wavlmrawnet.cli import build_parser, main
from wavlmrawnet.cli.diarization import rttm_file_ids
from wavlmrawnet.diarization import DiarizationInputError, Diarizer, read_rttm
from wavlmrawnet.diarization.pipeline import check_settings
from wavlmrawnet.diarization.windows import too_short_reason

pytest.importorskip("spectralcluster", reason='the diarize extra: pip install -e ".[diarize]"')
RATE = 16000
LOADED = "precision:"  # the first line `load` prints: its absence shows the model was never loaded


def diarize(capsys, *args: str):
    rc = main(["diarize", *args, "--no-vad", "--quiet", "--threads", "1"])
    out, err = capsys.readouterr()
    return rc, out, err


def test_recordings_sharing_a_stem_are_refused_before_any_work(tmp_path, saved_tiny_model, capsys):
    """x/rec.wav and y/rec.wav would both write rec.rttm (one silently lost): refused with both listed, exit 1, no
    folder made, nothing diarized, the model not loaded."""
    for folder, seed in (("x", 1), ("y", 2)):
        (tmp_path / "dz" / folder).mkdir(parents=True)
        write_wav(tmp_path / "dz" / folder / "rec.wav", 4.0, seed=seed)
    out = tmp_path / "rt2"
    rc, stdout, err = diarize(capsys, str(tmp_path / "dz"), "--model", saved_tiny_model, "--rttm-out", str(out))
    assert rc == 1
    assert "error: --rttm-out names each RTTM (and its file id) after the recording's file stem" in err
    assert f"rec.rttm: {tmp_path / 'dz' / 'x' / 'rec.wav'}, {tmp_path / 'dz' / 'y' / 'rec.wav'}" in err
    assert "Nothing was diarized" in err and LOADED not in err and "Traceback" not in err
    assert stdout == "" and not out.exists()


def test_file_ids_clash_on_extension_case_and_spaces():
    """rec.wav / rec.flac, Rec.wav / rec.wav (one file on macOS and Windows), "a b" / "a_b" (one RTTM file id): each
    pair clashes; distinct stems in nested folders do not, and the id has no spaces."""
    for pair in (["a/rec.wav", "b/rec.flac"], ["a/Rec.wav", "b/rec.wav"], ["a b.wav", "c/a_b.wav"]):
        with pytest.raises(ValueError, match="would be shared by several recordings") as refused:
            rttm_file_ids(pair)
        assert all(path in str(refused.value) for path in pair)
    assert rttm_file_ids(["d/x/one.wav", "d/y/two.flac", "my rec.wav"]) == {
        "d/x/one.wav": "one",
        "d/y/two.flac": "two",
        "my rec.wav": "my_rec",
    }


def test_unique_stems_each_get_their_rttm_named_by_their_file_id(tmp_path, saved_tiny_model, capsys):
    """Nested folders with distinct stems: one <file id>.rttm each, the file id (column 2) that same name, spaces as
    "_" in both."""
    (tmp_path / "dz" / "x").mkdir(parents=True)
    (tmp_path / "dz" / "y").mkdir()
    write_wav(tmp_path / "dz" / "x" / "one.wav", 4.0, seed=1)
    write_wav(tmp_path / "dz" / "y" / "my rec.wav", 4.0, seed=2)
    out = tmp_path / "rttm"
    rc, _, err = diarize(capsys, str(tmp_path / "dz"), "--model", saved_tiny_model, "--rttm-out", str(out))
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["my_rec.rttm", "one.rttm"]
    for name in ("one", "my_rec"):
        assert list(read_rttm(out / f"{name}.rttm")) == [name]


@pytest.mark.parametrize("where", ["a_file", "under_a_file"])
def test_an_unwritable_rttm_out_is_refused_before_the_model_loads(tmp_path, saved_tiny_model, capsys, where):
    """--rttm-out naming an existing file or a folder under a file: a one-line error naming it before the model is
    loaded (was FileExistsError / PermissionError tracebacks partway through the run). `check_writable` probes a
    read-only folder the same way (a write that fails there fails this check)."""
    recording = write_wav(tmp_path / "conv.wav", 4.0, seed=1)
    target = {"a_file": tmp_path / "conv.wav", "under_a_file": tmp_path / "conv.wav" / "rttm"}[where]
    before = (tmp_path / "conv.wav").read_bytes()
    rc, stdout, err = diarize(capsys, recording, "--model", saved_tiny_model, "--rttm-out", str(target))
    assert rc == 1 and stdout == ""
    expected = {"a_file": "it is a file, not a folder", "under_a_file": "conv.wav is a file, not a folder"}[where]
    assert "error: cannot write" in err and str(target) in err and expected in err, err
    assert LOADED not in err and "Traceback" not in err
    assert (tmp_path / "conv.wav").read_bytes() == before


@pytest.mark.parametrize(
    "options, message",
    [
        (["--min-turn", "-1"], "--min-turn must be a finite number of seconds, 0 or more, got -1.0"),
        (["--min-turn", "nan"], "--min-turn must be a finite number of seconds, 0 or more, got nan"),
        (["--window", "0"], "--window must be a finite number of seconds, above 0, got 0.0"),
        (["--window", "inf"], "--window must be a finite number of seconds, above 0, got inf"),
        (["--hop", "nan"], "--hop must be a finite number of seconds, above 0, got nan"),
        (["--hop", "2"], "--hop (2 s) must be at most --window (1.5 s)"),
        (["--num-speakers", "0"], "--num-speakers must be at least 1, got 0"),
        (["--min-speakers", "3", "--max-speakers", "2"], "--min-speakers (3) is above --max-speakers (2)"),
        (["--db", "speakers.safetensors", "--threshold", "2"], "--threshold is a cosine score: a number from -1 to 1"),
    ],
)
def test_bad_options_are_refused_by_name_before_any_work(tmp_path, saved_tiny_model, capsys, options, message):
    """Each option out of range stops the command before the model loads, naming the option, never the
    recording."""
    recording = write_wav(tmp_path / "conv.wav", 4.0, seed=1)
    rc, stdout, err = diarize(capsys, recording, "--model", saved_tiny_model, *options)
    assert rc == 1 and stdout == ""
    assert f"error: {message}" in err, err
    assert LOADED not in err and "conv.wav" not in err and "Traceback" not in err


def test_chunk_seconds_is_not_offered_by_diarize(capsys):
    """diarize does not offer --chunk-seconds (it embeds windows, never whole files): --help does not list it and
    giving it is refused, not ignored; --batch-size counts windows."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["diarize", "--help"])
    shown = capsys.readouterr().out
    assert "--chunk-seconds" not in shown and "windows per forward pass (32)" in shown
    for options, message in (
        (["--chunk-seconds", "20"], "unrecognized arguments: --chunk-seconds 20"),
        (["--batch-size", "0"], "argument --batch-size: expected a whole number >= 1, got 0"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(["diarize", "rec.wav", "--model", "m", *options])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_window_shorter_than_the_model_takes_names_the_window(tmp_path, saved_tiny_model, capsys):
    """--window 0.3 on a 16 s recording: the error names --window and the model's shortest input (0.5 s), not the
    recording (was "conv.wav: audio is too short: 0.300 s")."""
    recording = write_wav(tmp_path / "conv.wav", 16.0, seed=1)
    rc, stdout, err = diarize(capsys, recording, "--model", saved_tiny_model, "--window", "0.3", "--hop", "0.3")
    assert rc == 1 and stdout == ""
    assert (
        "error: the window (0.3 s) is shorter than the shortest input this model embeds (0.5 s): give a window "
        "(--window) of at least 0.5 s" in err
    ), err
    assert "conv.wav" not in err and "too short: 0.300" not in err


def test_too_short_message_shows_the_shortfall(tmp_path, tiny_model):
    """A recording of 1.4993 s (23988 samples) beside a 1.5 s window reads "1.499 s", not "1.50 s"; a whole second
    stays "1.00 s"."""
    path = tmp_path / "short.wav"
    sf.write(path, voice_like(23988 / RATE, RATE, 3), RATE, subtype="PCM_16")
    with pytest.raises(DiarizationInputError) as refused:
        Diarizer(tiny_model, vad=False)(str(path))
    assert refused.value.reason.startswith("the recording is 1.499 s long, shorter than one window (1.5 s)")
    assert too_short_reason(1.0, 1.5).startswith("the recording is 1.00 s long, shorter than one window (1.5 s)")
    assert too_short_reason(1.4999375, 1.5).startswith("the recording is 1.4999 s long")  # one sample short
    assert too_short_reason(2.0, 2.0000001).startswith(  # the window too, beyond %g's 6 digits
        "the recording is 2.00 s long, shorter than one window (2.0000001 s)"
    )


def test_api_settings_are_checked_by_name(tiny_model):
    """`Diarizer` refuses the same settings with the argument's name, before any recording."""
    for kwargs, message in (
        ({"min_turn": -1.0}, "min_turn must be a finite number of seconds, 0 or more"),
        ({"min_gap": float("nan")}, "min_gap must be a finite number"),
        ({"window": float("nan")}, "window must be a finite number"),
        ({"threshold": float("nan")}, "threshold is a cosine score"),
        ({"batch_size": 0}, "batch_size must be a whole number of at least 1"),
        ({"window": 0.3, "hop": 0.3}, r"the window \(0.3 s\) is shorter than the shortest input"),
    ):
        with pytest.raises(ValueError, match=message):
            Diarizer(tiny_model, **kwargs)
    check_settings(1.5, 0.75, 0.0, threshold=np.float32(0.5), batch_size=np.int64(4))  # numpy numbers are fine
