"""Evaluation conditions (issue 30): each condition does what its name says, the enrolment side is never altered, the
altered audio is fixed by the seed, each condition's embeddings are cached, and `score --conditions` feeds the results
JSON and the model card."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from conftest import cli_in_process, voice_like, write_wav

from wavlmrawnet.audio_io import load_audio
from wavlmrawnet.evaluation.conditions import (
    CONDITIONS,
    TELEPHONE_BAND_HZ,
    Condition,
    ConditionContext,
    codec_round_trip,
    parse_condition,
    parse_conditions,
)
from wavlmrawnet.evaluation.noise_bank import NoiseBank, seeded_rng, speakers_of
from wavlmrawnet.evaluation.results import EvaluationResults
from wavlmrawnet.training.augment import Augmenter
from wavlmrawnet.training.config import ConfigError, TrainConfig

SR = 16000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return voice_like(3.0, SR, seed=7)


@pytest.fixture(scope="module")
def tone_corpus(tmp_path_factory) -> dict[str, str]:
    """Three 'speakers', each a pure tone of its own pitch (300, 700, 1,100 Hz): babble is made of the others."""
    root = tmp_path_factory.mktemp("tones")
    speakers = {}
    for index, speaker in enumerate(("s1", "s2", "s3")):
        (root / speaker).mkdir()
        path = root / speaker / "a.wav"
        sf.write(path, 0.3 * np.sin(2 * np.pi * (300 + 400 * index) * np.arange(2 * SR) / SR), SR)
        speakers[str(path)] = speaker
    return speakers


def power_db(signal: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(signal, dtype=np.float64)))


def band_energy(signal: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(signal.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(signal.size, 1 / SR)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def test_dur_crops_a_window_of_the_stated_length(speech):
    crop = parse_condition("dur2").apply(speech, SR, seed=0, key="a.wav")
    assert crop.size == 2 * SR
    starts = [s for s in range(speech.size - crop.size + 1) if speech[s] == crop[0]]
    assert any(np.array_equal(speech[s : s + crop.size], crop) for s in starts), "a contiguous window of the input"
    assert np.array_equal(parse_condition("dur5").apply(speech, SR, 0, "a.wav"), speech), "shorter files kept whole"
    assert parse_condition("dur1.5").apply(speech, SR, 0, "a.wav").size == int(1.5 * SR)


@pytest.mark.parametrize("snr", [0, 5, 10])
def test_noise_is_mixed_at_the_stated_snr_from_every_family(speech, tone_corpus, snr):
    bank = NoiseBank(seed=3, sampling_rate=SR, speakers=tone_corpus)
    condition = parse_condition(f"noise{snr}")
    families = set()
    for key in (f"s1/{i}.wav" for i in range(20)):  # different keys draw different families and windows
        noisy = condition.apply(speech, SR, 0, key, ConditionContext(noise_bank=bank, speaker="s1"))
        assert abs(power_db(speech) - power_db(noisy - speech) - snr) < 0.5
        families.add(bank.draw(speech.size, "s1", seeded_rng(0, condition.name, key))[1])  # the draw it made
    assert families == {"babble", "music", "channel"}


def test_speaker_is_the_voxceleb_speaker_folder():
    keys = ["/data/wav/id10001/vid1/1.wav", "id10002/vid1/1.wav", "s3/1.wav"]
    assert list(speakers_of(keys).values()) == ["id10001", "id10002", "s3"]


def test_babble_holds_other_speakers_only(tone_corpus):
    babble = NoiseBank(seed=0, sampling_rate=SR, speakers=tone_corpus).babble("s1")
    own, others = band_energy(babble, 280, 320), band_energy(babble, 680, 720) + band_energy(babble, 1080, 1120)
    assert own < 1e-4 * others, "the test speaker's own voice (300 Hz) is not in its babble"
    with pytest.raises(ValueError, match="at least 2 speakers"):
        NoiseBank(seed=0, sampling_rate=SR, speakers={"x.wav": "s1"}).babble("s1")


def test_tel8k_keeps_300_to_3400_hz_and_removes_the_rest():
    white = np.random.default_rng(0).standard_normal(2 * SR).astype(np.float32)
    phone = parse_condition("tel8k").apply(white, SR, 0, "w.wav")
    assert phone.size == white.size
    low, high = TELEPHONE_BAND_HZ
    for band in [(500, 3000)]:  # the pass band keeps its energy within 1 dB
        assert abs(10 * np.log10(band_energy(phone, *band) / band_energy(white, *band))) < 1.0
    inside = band_energy(phone, low, high)
    assert band_energy(phone, 0, low - 60) < 1e-4 * inside  # below 240 Hz: -40 dB
    assert band_energy(phone, high + 250, SR / 2) < 1e-4 * inside  # above 3,650 Hz (nothing above 4 kHz survives)


@pytest.mark.parametrize("name", ["opus8", "opus16", "mp3-32"])
def test_codecs_round_trip_at_their_bit_rate(speech, name):
    condition = parse_condition(name)
    decoded, size = codec_round_trip(speech, SR, condition.key.rstrip("-"), condition.value)
    kbps = size * 8 / (speech.size / SR) / 1000
    assert 0.75 * condition.value < kbps < 1.25 * condition.value, f"{name}: {kbps:.1f} kbit/s in the file"
    assert decoded.size == speech.size and not np.array_equal(decoded, speech)
    assert abs(power_db(decoded) - power_db(speech)) < 3.0, "the decoded audio keeps the level"
    assert np.array_equal(condition.apply(speech, SR, 0, "k"), decoded), "the condition is the round trip"


def test_same_seed_same_audio_other_seed_other_audio(speech, tone_corpus):
    bank = NoiseBank(seed=0, sampling_rate=SR, speakers=tone_corpus)
    context = ConditionContext(noise_bank=bank, speaker="s2")
    for name in ("noise5", "reverb", "dur2"):
        condition = parse_condition(name)
        first, again = (condition.apply(speech, SR, 1, "s2/x.wav", context) for _ in range(2))
        assert np.array_equal(first, again), name
        assert not np.array_equal(first, condition.apply(speech, SR, 2, "s2/x.wav", context)), name
    reverb = parse_condition("reverb").apply(speech, SR, 1, "s2/x.wav")
    assert reverb.size == speech.size and band_energy(reverb - speech, 0, SR / 2) > 0.01 * band_energy(speech, 0, SR)


@pytest.mark.parametrize(
    "names, message",
    [
        ("noize5", "unknown condition 'noize5'; known: clean"),
        ("dur", "'dur' takes a number \\(seconds\\)"),
        ("reverb3", "'reverb' takes no number"),
        ("dur0", "'dur' takes 0.1 to 3600 seconds"),
        ("mp3-320", "'mp3-' takes 8 to 160 kbit/s"),
        ("clean,clean", "listed twice"),
        ("clean,,dur2", "comma-separated"),
    ],
)
def test_bad_condition_names_are_clear_errors(names, message):
    with pytest.raises(ValueError, match=message):
        parse_conditions(names)


def test_training_config_checks_conditions_and_codec_augmentation(speech):
    config = TrainConfig.from_dict({"data": {"conditions": ["clean", "noise5"]}})
    assert config.data.conditions == ["clean", "noise5"]
    with pytest.raises(ConfigError, match="unknown condition 'loud'"):
        TrainConfig.from_dict({"data": {"conditions": ["loud"]}})
    with pytest.raises(ConfigError, match="not a codec condition"):
        TrainConfig.from_dict({"data": {"augment": {"codecs": ["tel8k"]}}})
    augmenter = Augmenter(telephone_prob=1.0, codecs=["opus8"], codec_prob=1.0)
    assert augmenter.enabled and "opus8" in repr(augmenter)
    out = augmenter(speech, np.random.default_rng(0))
    phone = parse_condition("tel8k").apply(speech, SR, 0, "k")
    assert out.size == speech.size and band_energy(out, 4100, SR / 2) < 1e-4 * band_energy(out, 300, 3400)
    assert not np.allclose(out, phone, atol=1e-3), "the codec ran after the telephone band"


def test_results_json_rejects_a_bad_condition_row():
    base = {"eer": 0.1, "min_dcf": {"0.01": 0.5}, "num_trials": 4, "trial_list": "t"}
    good = EvaluationResults.from_dict({**base, "conditions": {"dur2": {"eer": 0.2, "min_dcf": {"0.01": 0.6}}}})
    assert good.conditions["dur2"]["eer_percent"] == pytest.approx(20.0)
    with pytest.raises(ValueError, match=r"'conditions'\['dur2'\]: 'eer' is a fraction"):
        EvaluationResults.from_dict({**base, "conditions": {"dur2": {"eer": 20, "min_dcf": {"0.01": 0.6}}}})


@pytest.fixture(scope="module")
def trial_corpus(tmp_path_factory):
    """Three speakers, two 2.5 s files each; `e_only.wav` of s1 is only ever an enrolment file."""
    folder = tmp_path_factory.mktemp("condition_corpus")
    root = folder / "wav"
    for number, speaker in enumerate(("s1", "s2", "s3")):
        (root / speaker / "v").mkdir(parents=True)
        for index in range(2):
            write_wav(root / speaker / "v" / f"{index}.wav", 2.5, SR, seed=10 * number + index)
    write_wav(root / "s1" / "v" / "e_only.wav", 2.5, SR, seed=99)
    trials = folder / "trials.txt"
    trials.write_text(
        "1 s1/v/e_only.wav s1/v/1.wav\n1 s2/v/0.wav s2/v/1.wav\n1 s3/v/0.wav s3/v/1.wav\n"
        "0 s1/v/e_only.wav s2/v/1.wav\n0 s2/v/0.wav s3/v/1.wav\n0 s3/v/0.wav s1/v/0.wav\n"
    )
    return folder, root, trials


@pytest.mark.slow
def test_score_conditions_end_to_end(trial_corpus, saved_tiny_model, tmp_path, monkeypatch):
    """`score --conditions` on a tiny model: the table printed, the JSON and the DET plot written, the card's
    Robustness section and model-index; an added table entry is used; only test files are ever altered; a rerun
    embeds nothing."""
    folder, root, trials = trial_corpus
    altered = []

    def quieter(waveform, sampling_rate, rng, db, context):
        altered.append(waveform.copy())
        return waveform * 10 ** (-db / 20)

    monkeypatch.setitem(CONDITIONS, "quiet", Condition(quieter, "dB", "{value} dB quieter", "quiet20"))
    model = tmp_path / "model"
    shutil.copytree(saved_tiny_model, model)
    args = ["score", "--model", str(model), "--trials", str(trials), "--root", str(root), "--output-dir", str(model)]
    args += ["--cache-dir", str(tmp_path / "cache"), "--conditions", "clean,dur2,noise5,quiet20"]
    result = cli_in_process(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "condition" in result.stdout and all(f"\n{c} " in result.stdout for c in ("clean", "dur2", "noise5"))
    test_files = {line.split()[2] for line in trials.read_text().splitlines()}
    enrol_only = {line.split()[1] for line in trials.read_text().splitlines()} - test_files
    clean = {name: load_audio(root / name, SR) for name in test_files | enrol_only}
    matches = [{n for n, audio in clean.items() if np.array_equal(audio, seen)} for seen in altered]
    assert sorted(n for match in matches for n in match) == sorted(test_files), "each test file altered once"
    assert enrol_only and not enrol_only & set().union(*matches), "no enrolment-only file was ever altered"

    saved = json.loads((model / "trials_results.json").read_text())
    rows = saved["conditions"]
    assert list(rows) == ["clean", "dur2", "noise5", "quiet20"] and saved["condition_seed"] == 0
    assert saved["noise_bank"]["seed"] == 0 and saved["noise_bank"]["corpus_speakers"] == 3
    assert rows["clean"]["eer"] == saved["eer"] and rows["clean"]["min_dcf"] == saved["min_dcf"]
    assert rows["quiet20"]["meaning"] == "20 dB quieter" and "act_dcf" in rows["noise5"]
    assert all(rows[c]["files_embedded_this_run"] == len(test_files) for c in ("dur2", "noise5", "quiet20"))
    assert (model / "trials_conditions_det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = cli_in_process(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = json.loads((model / "trials_results.json").read_text())
    assert rerun["files_embedded_this_run"] == 0
    assert all(row["files_embedded_this_run"] == 0 for row in rerun["conditions"].values()), "all from the cache"
    assert {c: r["eer"] for c, r in rerun["conditions"].items()} == {c: r["eer"] for c, r in rows.items()}

    card = cli_in_process("card", "--model", str(model))
    assert card.returncode == 0, card.stderr[-3000:]
    text = (model / "README.md").read_text()
    assert "## Robustness" in text and "| noise5 | noise from the seeded bank at 5 dB SNR |" in text
    assert f"| dur2 | a random 2-second crop of the test audio | {rows['dur2']['eer_percent']:.2f} |" in text
    assert "config: trials, condition noise5" in text and "![DET curve per condition, trials]" in text
