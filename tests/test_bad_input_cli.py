"""Bad input to the commands every user starts with (embed, verify) and to the model itself: an output that cannot
be written stops the run before any work, a damaged model folder or a bad option is a one-line error, a folder scan
says what it left out, and no NaN comes back as an embedding."""

from __future__ import annotations

import copy
import os
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import voice_like, write_wav

from wavlmrawnet.cli import main
from wavlmrawnet.cli.common import collect_audio


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    return write_wav(tmp_path_factory.mktemp("bad_input_cli") / "voice.wav", 1.5, 16000, seed=3)


def exit_code(argv: list[str]) -> int:
    """`wavlmrawnet ARGV` in this process: the exit status, whether main returns it or exits with it."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1


def test_an_output_that_cannot_be_written_stops_the_run_before_the_model_loads(
    tmp_path, saved_tiny_model, clip, capsys
):
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("not a folder")
    cases = {
        ("--out", str(a_file / "e.npy")): "cannot write",
        ("--out", str(tmp_path / "e.npy"), "--errors", str(a_file / "errors.tsv")): "cannot write",
        ("--out", str(tmp_path / "e.npy"), "--cache-dir", str(a_file)): "it is a file, not a folder",
        ("--out", str(tmp_path / "folder.npy"), "--errors", str(tmp_path)): "it is a folder, not a file",
    }
    for options, message in cases.items():
        assert exit_code(["embed", "--model", saved_tiny_model, clip, "--quiet", "--dtype", "fp32", *options]) == 1
        err = capsys.readouterr().err
        assert message in err, (options, err)
        assert "precision:" not in err, "the model was loaded before the output was checked"
    assert not list(tmp_path.glob("*.npy"))


def test_the_errors_report_is_rewritten_on_every_run(tmp_path, saved_tiny_model, clip, capsys):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(24000, np.float32), 16000)
    report = tmp_path / "reports" / "errors.tsv"  # its folder is created, as --out's is
    out = str(tmp_path / "e.safetensors")
    common = ["--model", saved_tiny_model, "--out", out, "--errors", str(report), "--quiet", "--dtype", "fp32"]
    nan = tmp_path / "nan.wav"
    samples = voice_like(1.5, 16000, 1)
    samples[100] = np.nan
    sf.write(nan, samples, 16000, subtype="FLOAT")
    assert main(["embed", clip, str(silent), str(nan), *common]) == 1
    rows = dict(line.split("\t") for line in report.read_text().splitlines()[1:])
    assert sorted(rows) == sorted([str(silent), str(nan)])
    assert rows[str(nan)] == "audio contains NaN or Inf samples", "the reason, without the path a second time"
    assert main(["embed", clip, *common]) == 0
    assert report.read_text() == "path\treason\n", "a report from an earlier run must not stand for this one"
    capsys.readouterr()


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--threads", "0", "expected a whole number >= 1"),
        ("--threads", "-1", "expected a whole number >= 1"),
        ("--threads", "100000", "expected at most 1024 threads"),
        ("--batch-size", "0", "expected a whole number >= 1"),
        ("--chunk-seconds", "nan", "expected a finite number"),
        ("--chunk-seconds", "-1", "expected a number >= 0"),
        ("--threshold", "nan", "expected a finite number"),
        ("--threshold", "inf", "expected a finite number"),
    ],
)
def test_bad_option_values_are_refused_naming_the_option(option, value, message, saved_tiny_model, clip, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", clip, clip, "--model", saved_tiny_model, option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and message in err, err


def test_verify_refuses_a_folder_and_an_empty_model_name(tmp_path, saved_tiny_model, clip, capsys):
    with pytest.raises(SystemExit, match=f"verify compares two recordings; {tmp_path} is a folder"):
        main(["verify", "--model", saved_tiny_model, str(tmp_path), clip])
    with pytest.raises(SystemExit, match="--model is empty"):
        main(["verify", "--model", "", clip, clip])


def test_a_damaged_model_folder_is_a_one_line_error(tmp_path, saved_tiny_model, clip, capsys):
    damaged = {}
    for name in ("bad_config", "truncated_weights", "no_weights"):
        damaged[name] = tmp_path / name
        shutil.copytree(saved_tiny_model, damaged[name])
    (damaged["bad_config"] / "config.json").write_text("{ not json")
    weights = damaged["truncated_weights"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])
    (damaged["no_weights"] / "model.safetensors").unlink()
    for name, folder in damaged.items():
        with pytest.raises(SystemExit, match=f"error: cannot load the model in {folder}: ") as exit_info:
            main(["verify", "--model", str(folder), clip, clip, "--dtype", "fp32"])
        assert "\n" not in str(exit_info.value), name


def test_a_folder_scan_embeds_every_audio_format_and_says_what_it_left_out(tmp_path, capsys):
    folder = tmp_path / "recordings"
    (folder / "deeper").mkdir(parents=True)
    audio = voice_like(1.0, 16000, 0)
    wanted = [folder / "UPPER.WAV", folder / "deeper" / "a.caf", folder / "b.w64", folder / "c.wave"]
    for path, fmt in zip(wanted, ("WAV", "CAF", "W64", "WAV")):
        sf.write(path, audio, 16000, format=fmt)
    (folder / "notes.txt").write_text("not audio")
    os.symlink(folder / "gone.wav", folder / "broken.wav")
    files, failures = collect_audio([str(folder)])
    assert sorted(files) == sorted(str(p) for p in wanted)
    assert failures == {str(folder / "broken.wav"): "a link to a file that does not exist"}
    assert f"note: {folder}: 1 file(s) without an audio extension not embedded" in capsys.readouterr().err
    os.symlink(tmp_path / "nowhere.wav", tmp_path / "named.wav")
    assert collect_audio([str(tmp_path / "named.wav")]) == ([], {str(tmp_path / "named.wav"): "a link to a file "
                                                                 "that does not exist"})  # fmt: skip


def test_get_embeddings_refuses_to_return_non_finite_embeddings(tiny_model):
    finite = torch.randn(2, 16000) * 0.1
    assert torch.isfinite(tiny_model.get_embeddings(finite)).all()
    for bad in (float("nan"), float("inf")):
        values = finite.clone()
        values[1, 100] = bad
        with pytest.raises(ValueError, match=r"non-finite embeddings for batch row\(s\) \[1\]"):
            tiny_model.get_embeddings(values)


def test_a_recording_that_is_mostly_silence_is_scored_with_a_warning(tmp_path, saved_tiny_model, clip, capsys):
    padded = tmp_path / "padded.wav"
    sf.write(padded, np.concatenate([np.zeros(30 * 16000, np.float32), voice_like(1.5, 16000, 3)]), 16000)
    with pytest.warns(UserWarning, match=f"{padded}: 95 % of the recording .* is silence below -70 dBFS"):
        assert main(["verify", "--model", saved_tiny_model, clip, str(padded), "--dtype", "fp32"]) == 0
    assert "score " in capsys.readouterr().out


def test_export_onnx_and_convert_check_their_outputs_before_any_work(tmp_path, saved_tiny_model, clip, capsys):
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("not a folder")
    assert exit_code(["export-onnx", "--model", saved_tiny_model, "--out", str(a_file / "model.onnx")]) == 1
    assert f"cannot write {a_file / 'model.onnx'}: {a_file} is a file, not a folder" in capsys.readouterr().err
    assert exit_code(["convert", os.path.dirname(clip), str(a_file)]) == 1
    assert f"cannot write into {a_file}: it is a file, not a folder" in capsys.readouterr().err


def test_python_api_misuse_gets_a_clear_error(saved_tiny_model, tiny_model, clip):
    from transformers import pipeline

    from wavlmrawnet.evaluation.embedding import embed_files

    extractor = tiny_model.default_feature_extractor()
    for one in (clip, {"array": voice_like(1.0, 16000, 0), "sampling_rate": 16000}):
        with pytest.raises(
            TypeError, match="paths must be a list of recordings, got a (str|dict): wrap one in a list"
        ):
            embed_files(tiny_model, extractor, one, progress=False)
    embed = pipeline("feature-extraction", model=saved_tiny_model, trust_remote_code=True, precision="fp32")
    verify = pipeline("speaker-verification", model=saved_tiny_model, trust_remote_code=True, precision="fp32")
    with pytest.raises(ValueError, match="no recordings given"):
        embed([])
    with pytest.raises(ValueError, match="no pairs given"):
        verify([])


def test_the_errors_report_keeps_one_row_per_failure_whatever_the_file_name(tmp_path, saved_tiny_model, capsys):
    odd = tmp_path / "tab\there\nnewline.wav"
    sf.write(odd, np.zeros(24000, np.float32), 16000)  # silence: a failure, listed under its odd name
    report = tmp_path / "errors.tsv"
    out = str(tmp_path / "e.npy")
    assert (
        main(["embed", str(odd), "--model", saved_tiny_model, "--out", out, "--errors", str(report), "--quiet"]) == 1
    )
    header, row = report.read_text().splitlines()
    path, reason = row.split("\t")
    assert path == str(odd).replace("\t", "\\t").replace("\n", "\\n") and "no speech found" in reason
    capsys.readouterr()


def test_a_folder_or_a_dangling_link_given_as_one_recording_is_named_as_such(tmp_path, tiny_model):
    from wavlmrawnet.audio_io import AudioDecodingError, load_audio
    from wavlmrawnet.evaluation.embedding import embed_files

    result = embed_files(tiny_model, tiny_model.default_feature_extractor(), [str(tmp_path)], progress=False)
    assert "a folder, not an audio file" in result.failures[str(tmp_path)]
    os.symlink(tmp_path / "gone.wav", tmp_path / "link.wav")
    with pytest.raises(AudioDecodingError, match="a link to a missing file"):
        load_audio(str(tmp_path / "link.wav"), 16000)


def test_a_failed_onnx_export_leaves_the_earlier_graph_as_it_was(tmp_path, tiny_model):
    from wavlmrawnet.onnx_export import export_onnx

    out = tmp_path / "model.onnx"
    assert export_onnx(tiny_model, out, dynamo=False, check=False) == out  # the TorchScript exporter: seconds
    before = out.read_bytes()
    # Another model's graph written, then failing its check (no difference is within a negative tolerance).
    changed = copy.deepcopy(tiny_model)
    with torch.no_grad():
        changed.fusion.bias.add_(1.0)
    with pytest.raises(RuntimeError, match="differ"):
        export_onnx(changed, out, dynamo=False, check=True, check_atol=-1.0)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"], "no staging folder or partial file left"


def test_card_and_export_onnx_name_what_is_wrong(tmp_path, saved_tiny_model, clip, capsys):
    assert exit_code(["card", "--model", clip]) == 1
    assert f"model folder {clip} is a file, not a model folder" in capsys.readouterr().err
    damaged = tmp_path / "damaged"
    shutil.copytree(saved_tiny_model, damaged)
    (damaged / "config.json").write_text("{bad")
    assert exit_code(["card", "--model", str(damaged)]) == 1
    assert f"{damaged / 'config.json'} is not valid JSON" in capsys.readouterr().err
    assert exit_code(["export-onnx", "--model", saved_tiny_model, "--out", str(tmp_path / "model")]) == 1
    assert "--out must end in .onnx" in capsys.readouterr().err
