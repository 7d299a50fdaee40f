"""Bad input to `score`, trial lists, the embedding cache and audio reading: recordings without speech refused by
`score` (and its cohort) and never served past the check from the cache, a damaged cache moved aside and recomputed,
a truncated WAV refused, trial lists that are not UTF-8, a folder, repeats or self-pairs, unwritable outputs refused
before the model loads."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import permissions_apply, voice_like, write_wav
from safetensors.numpy import load_file

import wavlmrawnet.cli.embedding as embedding_cli
from wavlmrawnet import WavLMRawNetFeatureExtractor
from wavlmrawnet.audio_io import AudioDecodingError, load_audio
from wavlmrawnet.cli import main
from wavlmrawnet.evaluation.embedding import SPEECH_CHECKED, embed_files
from wavlmrawnet.evaluation.runner import evaluate_trial_list
from wavlmrawnet.evaluation.trials import read_trials

SR = 16000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Four voices, two silent files, a 440 Hz tone and a trial list among the voices."""
    root = tmp_path_factory.mktemp("eval_corpus")
    for index in range(4):
        write_wav(root / f"v{index}.wav", 1.0, SR, seed=index)
    for name in ("silent.wav", "silent2.wav"):
        sf.write(root / name, np.zeros(2 * SR, np.float32), SR, subtype="PCM_16")
    sf.write(root / "tone.wav", 0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * SR) / SR), SR, subtype="PCM_16")
    (root / "voices.txt").write_text("1 v0.wav v1.wav\n0 v0.wav v2.wav\n1 v2.wav v3.wav\n0 v1.wav v3.wav\n")
    return root


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def refuse_model_loading(monkeypatch):
    """`score` must fail before it loads the model (and so before any embedding)."""

    def refuse(args):
        raise AssertionError("the model was loaded: the bad input was not refused first")

    monkeypatch.setattr(embedding_cli, "load", refuse)


# ----------------------------------------------------------------------------------------------- no speech
def test_score_refuses_trial_and_cohort_files_without_speech(corpus, saved_tiny_model, tiny_model, tmp_path, capsys):
    """Two silent files scored 0.99999 "same speaker" with rc 0: now the run fails listing every file without speech,
    trial files and cohort files alike, and writes no results."""
    trials = tmp_path / "t.txt"
    trials.write_text("1 silent.wav silent2.wav\n0 silent.wav tone.wav\n1 v0.wav v1.wav\n0 v0.wav v2.wav\n")
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    sf.write(cohort / "quiet.wav", np.zeros(SR, np.float32), SR, subtype="PCM_16")
    write_wav(cohort / "c0.wav", 1.0, SR, seed=7)
    out = tmp_path / "out"
    args = ["score", "--model", saved_tiny_model, "--trials", str(trials), "--root", str(corpus)]
    rc, stdout, err = run(capsys, *args, "--output-dir", str(out), "--cohort", str(cohort), "--top-n", "1")
    assert rc == 1 and "EER" not in stdout and "Traceback" not in err
    assert "error: 4 file(s) could not be embedded" in err, err
    for name in ("silent.wav", "silent2.wav", "tone.wav"):
        assert f"{corpus / name}: no speech found" in err
    assert f"{cohort / 'quiet.wav'}: no speech found" in err
    assert not list(out.glob("*_results.json"))

    # the library's opt-out still scores them, as before
    scores = tmp_path / "scores.tsv"
    results = evaluate_trial_list(tiny_model, WavLMRawNetFeatureExtractor(), trials, root=corpus, progress=False,
                                  scores_out=scores, require_speech=False)  # fmt: skip
    assert results["num_trials"] == 4
    first = scores.read_text().splitlines()[1].split("\t")
    assert first[0].endswith("silent.wav") and float(first[3]) > 0.999


def test_a_cached_embedding_is_served_past_the_speech_check_only_once_it_passed(corpus, tiny_model, tmp_path, capsys):
    """An embedding cached without the check (`require_speech=False`, or an older cache) was served to `embed` as is:
    a silent file came back "from the cache". Now its audio is checked first (the model does not run again): the
    silent file fails, the voice is served and its entry marked checked."""
    cache = tmp_path / "cache"
    extractor = WavLMRawNetFeatureExtractor()
    silent, voice = str(corpus / "silent.wav"), str(corpus / "v0.wav")
    unchecked = embed_files(tiny_model, extractor, [silent, voice], cache_dir=cache, progress=False)
    assert not unchecked.failures and unchecked.computed == 2
    (cache_file,) = cache.glob("*.safetensors")
    assert not any(key.endswith(SPEECH_CHECKED) for key in load_file(cache_file)), "no check ran"

    checked = embed_files(tiny_model, extractor, [silent, voice], cache_dir=cache, progress=False, require_speech=True)
    assert checked.computed == 0, "the voice's cached embedding is reused once its audio passes the check"
    assert list(checked.failures) == [silent] and "no speech found" in checked.failures[silent]
    np.testing.assert_array_equal(checked.embeddings[voice], unchecked.embeddings[voice])
    keys = list(load_file(cache_file))
    assert len(keys) == 2 and sum(key.endswith(SPEECH_CHECKED) for key in keys) == 1, keys

    again = embed_files(tiny_model, extractor, [voice], cache_dir=cache, progress=False, require_speech=True)
    assert again.computed == 0 and list(again.embeddings) == [voice]
    # without the check, the unchecked entry is still served as before
    plain = embed_files(tiny_model, extractor, [silent], cache_dir=cache, progress=False)
    assert plain.computed == 0 and list(plain.embeddings) == [silent]


def test_embed_command_does_not_serve_a_silent_file_from_the_cache(corpus, saved_tiny_model, tmp_path, capsys):
    """The audit's repro: a cache that holds the silent file (embedded without the check), then `embed` on it."""
    from wavlmrawnet import WavLMRawNetForXVector

    cache = tmp_path / "cache"
    model = WavLMRawNetForXVector.from_pretrained(saved_tiny_model).eval()
    silent = str(corpus / "silent.wav")
    assert embed_files(model, WavLMRawNetFeatureExtractor(), [silent], cache_dir=cache, progress=False).computed == 1
    out = tmp_path / "c.safetensors"
    rc, stdout, err = run(capsys, "embed", "--model", saved_tiny_model, "--cache-dir", str(cache), "--out", str(out),
                          "--quiet", "--dtype", "fp32", silent)  # fmt: skip
    assert rc == 1 and "embedded 0 file(s)" in stdout and not out.exists()
    assert f"{silent}: no speech found" in err


# ----------------------------------------------------------------------------------------------- damaged cache
@pytest.mark.parametrize("damaged", ["cache", "part"])
def test_a_damaged_cache_is_moved_aside_with_a_warning_and_recomputed(corpus, tiny_model, tmp_path, damaged):
    """`head -c 50` of the cache stopped every later run with "SafetensorError: Error while deserializing header",
    not naming the file. Now the file is kept as `<name>.corrupt-<timestamp>`, a warning names both paths, and the
    embeddings are computed again (a damaged part file likewise)."""
    cache = tmp_path / "cache"
    files = [str(corpus / f"v{i}.wav") for i in range(3)]
    extractor = WavLMRawNetFeatureExtractor()
    first = embed_files(tiny_model, extractor, files, cache_dir=cache, progress=False, require_speech=True)
    (cache_file,) = cache.glob("*.safetensors")
    target = cache_file if damaged == "cache" else cache_file.with_name(f"{cache_file.stem}.part-x.safetensors")
    cut = cache_file.read_bytes()[:50]
    if damaged == "part":
        cache_file.unlink()  # the part holds what a killed run saved: nothing else is cached
    target.write_bytes(cut)
    with pytest.warns(UserWarning) as caught:
        again = embed_files(tiny_model, extractor, files, cache_dir=cache, progress=False, require_speech=True)
    (aside,) = cache.glob(f"{target.name}.corrupt-*")
    message = str(caught[0].message)
    assert f"the embedding cache {target} is damaged" in message and str(aside) in message, message
    assert "computed again" in message
    assert aside.read_bytes() == cut, "the damaged file is kept, not deleted"
    assert again.computed == 3 and not again.failures
    for path in files:
        np.testing.assert_allclose(again.embeddings[path], first.embeddings[path], atol=1e-6)
    assert len(load_file(cache_file)) == 3, "a fresh cache replaces it"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert embed_files(tiny_model, extractor, files, cache_dir=cache, progress=False).computed == 0


def test_a_cache_of_the_wrong_shape_is_moved_aside(corpus, tiny_model, tmp_path):
    """A readable safetensors file whose entries are not the model's vectors (here a NaN one) is set aside too."""
    from safetensors.numpy import save_file

    cache = tmp_path / "cache"
    files = [str(corpus / "v0.wav")]
    embed_files(tiny_model, WavLMRawNetFeatureExtractor(), files, cache_dir=cache, progress=False)
    (cache_file,) = cache.glob("*.safetensors")
    entries = load_file(cache_file)
    save_file({key: np.full_like(value, np.nan) for key, value in entries.items()}, str(cache_file))
    with pytest.warns(UserWarning, match="non-finite values"):
        again = embed_files(tiny_model, WavLMRawNetFeatureExtractor(), files, cache_dir=cache, progress=False)
    assert again.computed == 1 and np.isfinite(again.embeddings[files[0]]).all()
    assert len(list(cache.glob(f"{cache_file.name}.corrupt-*"))) == 1


# ----------------------------------------------------------------------------------------------- truncated audio
def test_a_truncated_wav_is_refused_and_intact_compressed_files_read_whole(tmp_path, tiny_model):
    """A WAV cut to half its bytes read as half its audio without a word (libsndfile clamps its count to what is
    there). Now the header's count is compared: refused as truncated, as a path or as bytes; AIFF likewise. Intact
    FLAC, OGG and MP3 (whose counts libsndfile estimates) and a streamed WAV (no size in its header) read whole."""
    audio = voice_like(3.0, SR, seed=5)
    paths = {}
    for name, fmt, subtype in [("a.wav", "WAV", "PCM_16"), ("f.wav", "WAV", "FLOAT"), ("a.aiff", "AIFF", "PCM_16")]:
        whole = tmp_path / name
        sf.write(whole, audio, SR, format=fmt, subtype=subtype)
        cut = tmp_path / f"cut_{name}"
        cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
        paths[name] = cut
        with pytest.raises(AudioDecodingError, match=r"truncated: the header says 48,000 samples, the file holds"):
            load_audio(cut)
    with pytest.raises(AudioDecodingError, match=r"'<bytes>': truncated: the header says 48,000 samples"):
        load_audio(paths["a.wav"].read_bytes())
    result = embed_files(tiny_model, WavLMRawNetFeatureExtractor(), [str(paths["a.wav"])], progress=False)
    assert not result.embeddings and "truncated" in result.failures[str(paths["a.wav"])]

    for name, fmt, subtype in [("a.flac", "FLAC", "PCM_16"), ("a.ogg", "OGG", "VORBIS"), ("a.mp3", "MP3", None)]:
        sf.write(tmp_path / name, audio, SR, format=fmt, subtype=subtype)
        samples = load_audio(tmp_path / name)
        assert abs(samples.size - audio.size) < 0.01 * SR, (name, samples.size)
    streamed = bytearray((tmp_path / "a.wav").read_bytes())
    assert streamed[36:40] == b"data"
    streamed[40:44] = b"\xff\xff\xff\xff"  # the data size a writer to a pipe leaves: "to the end of the file"
    assert load_audio(bytes(streamed)).size == audio.size


# ----------------------------------------------------------------------------------------------- trial lists
def test_a_trial_list_that_is_not_utf8_names_the_file_and_line(corpus, tmp_path):
    trials = tmp_path / "latin1.txt"
    trials.write_bytes("1 v0.wav v1.wav\n0 v0.wav caf\u00e9.wav\n".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"^{trials}:2: not UTF-8 text \(byte 0xe9 at column 13\); save"):
        read_trials(trials, root=corpus)
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf1 v0.wav v1.wav\n")
    assert read_trials(bom, root=corpus)[0].label == 1, "a UTF-8 byte-order mark is not part of the label"


def test_score_refuses_a_folder_as_trial_list_without_a_traceback(corpus, saved_tiny_model, capsys):
    rc, stdout, err = run(capsys, "score", "--model", saved_tiny_model, "--trials", str(corpus), "--dtype", "fp32")
    assert rc == 1 and "Traceback" not in err
    assert f"error: {corpus} is a folder, not a trial list file" in err, err
    rc, _, err = run(capsys, "score", "--model", saved_tiny_model, "--trials", str(corpus / "none.txt"))
    assert rc == 1 and f"error: trial list {corpus / 'none.txt'} does not exist" in err


def test_repeated_and_self_paired_trials_are_kept_with_a_warning(corpus, tmp_path):
    """Repeats counted silently and a file paired with itself scored 1.0 silently: both are kept and warned of."""
    trials = tmp_path / "t.txt"
    trials.write_text("1 v0.wav v1.wav\n1 v0.wav v1.wav\n1 v0.wav v1.wav\n0 v0.wav v2.wav\n1 v3.wav v3.wav\n")
    with pytest.warns(UserWarning) as caught:
        read = read_trials(trials, root=corpus)
    assert len(read) == 5, "nothing is dropped"
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2, messages
    assert f"{trials}: 2 of 5 trials repeat one listed before" in messages[0] and "kept" in messages[0]
    assert f"{trials}: 1 trial(s) pair a file with itself" in messages[1] and "line 5: v3.wav" in messages[1]

    trials.write_text("1 v0.wav v1.wav\n0 v0.wav v1.wav\n")
    with pytest.warns(UserWarning, match=r"1 trial\(s\) list a pair again with the other label.*line 2 labels v0.wav "
                      r"v1.wav 0, line 1 1"):  # fmt: skip
        assert [t.label for t in read_trials(trials, root=corpus)] == [1, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_trials(corpus / "voices.txt", root=corpus)) == 4, "a clean list warns of nothing"


# ----------------------------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("option", ["--scores-out", "--output-dir", "--cache-dir"])
def test_score_refuses_an_unwritable_output_before_the_model_loads(corpus, tmp_path, capsys, monkeypatch, option):
    """A read-only folder gave a PermissionError traceback after all the embedding; now it fails at once."""
    refuse_model_loading(monkeypatch)
    folder = tmp_path / "ro"
    folder.mkdir()
    target = folder / "s.tsv" if option == "--scores-out" else folder / "inner"
    folder.chmod(0o555)
    try:
        with permissions_apply():
            rc, stdout, err = run(capsys, "score", "--model", "unused", "--trials", str(corpus / "voices.txt"),
                                  "--root", str(corpus), option, str(target))  # fmt: skip
    finally:
        folder.chmod(0o755)
    assert rc == 1 and stdout == "" and "Traceback" not in err
    assert f"error: cannot write {target}: Permission denied" in err, err
    assert list(folder.iterdir()) == []
