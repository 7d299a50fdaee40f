"""benchmarks/corpora/debian (the Debian voice corpus) without the network: text, channel, splits, trials, layout,
apt config.

Synthesis is replaced by a fake synthesiser (injected), so no Debian package is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmarks.corpora.debian.apt import os_codename, parse_apt_sources, private_apt_config, private_sources_list
from benchmarks.corpora.debian.cli import check_outside_repository
from benchmarks.corpora.debian.corpus import (
    balanced_trials,
    build_corpus,
    make_same_language_trials,
    make_split_trials,
    split_speakers,
)
from benchmarks.corpora.debian.synthesizers import SynthesisError, SynthesisRequest
from benchmarks.corpora.debian.text import WORDS, base_language, make_text
from benchmarks.corpora.debian.utterances import (
    apply_random_channel,
    cut_at_pause,
    plan_voice,
    to_mono_16k,
    trim_silence,
    write_voice,
)
from benchmarks.corpora.debian.voices import (
    Voice,
    mbrola_candidates,
    parse_espeak_mbrola_voices,
    parse_rhvoice_voices,
    select_speakers,
)
from wavlmrawnet.evaluation.trials import read_trials, write_trials
from wavlmrawnet.synthetic.corpus import Utterance
from wavlmrawnet.training.data import dataset_from_voxceleb

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------------------------
# A fake synthesiser: one voiced "word" per token, with pauses, at 22.05 kHz; length follows the text.
# ---------------------------------------------------------------------------------------------------------------------
class FakeSynthesizer:
    def __init__(self, seconds_per_token: float = 0.3, sampling_rate: int = 22050):
        self.seconds_per_token = seconds_per_token
        self.sampling_rate = sampling_rate
        self.calls: list[tuple[str, int]] = []

    def __call__(self, voice, requests):
        self.calls.append((voice.name, len(requests)))
        return [(self.speak(voice, r), self.sampling_rate) for r in requests]

    def speak(self, voice, request):
        sr = self.sampling_rate
        f0 = (100 + sum(map(ord, voice.name)) % 100) * 2**request.pitch
        word = int(self.seconds_per_token / request.rate * sr)
        t = np.arange(word) / sr
        envelope = np.sin(np.pi * np.minimum(t / (0.8 * t[-1]), 1.0)) ** 2  # sound, then a pause
        syllable = envelope * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
        silence = np.zeros(sr // 5)
        return np.concatenate([silence, np.tile(syllable, len(request.text.split())), silence]).astype(np.float32)


def failing_synthesizer(voice, requests):
    raise SynthesisError(f"voice {voice.name} is broken on purpose")


def make_voice(engine, name, speaker, language="en", gender="male"):
    return Voice(engine, name, speaker, language, gender, f"{engine}-{name}")


# ---------------------------------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------------------------------
def test_text_is_seeded_and_in_the_voice_language():
    first = make_text("de", 40, np.random.default_rng(3))
    assert first == make_text("de", 40, np.random.default_rng(3))
    assert first != make_text("de", 40, np.random.default_rng(4))
    words = [w.strip(".,").lower() for w in first.split() if not w.strip(".,").isdigit()]
    german = {w.lower() for w in WORDS["de"]}
    assert words and all(w in german for w in words), words
    assert any(w.strip(".,").isdigit() for w in first.split()), "numbers are part of the text"
    russian = make_text("Russian", 30, np.random.default_rng(0))
    assert any("\u0400" <= ch <= "\u04ff" for ch in russian)  # Cyrillic
    assert not any(ch.isascii() and ch.isalpha() for ch in russian)


def test_language_codes_map_to_word_lists():
    assert base_language("en-uk") == "en"
    assert base_language("pt-br") == "pt"
    assert base_language("Brazilian-Portuguese") == "pt"
    assert base_language("cmn") == "zh"
    with pytest.raises(ValueError, match="grc"):
        base_language("grc")
    with pytest.raises(ValueError, match="num_tokens"):
        make_text("en", 0, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------------------------------
# Audio: cutting and channel
# ---------------------------------------------------------------------------------------------------------------------
def test_trim_and_cut_at_a_pause():
    sr = 16000
    tone = np.sin(2 * np.pi * 200 * np.arange(sr // 2) / sr)
    gap = np.zeros(sr // 5)
    audio = np.concatenate([gap, tone, gap, tone, gap, tone, gap])  # pauses at 0.7-0.9 s and 1.4-1.6 s
    trimmed = trim_silence(audio, sr)
    assert abs(len(trimmed) / sr - (len(audio) / sr - 0.3)) < 0.05
    cut = cut_at_pause(trimmed, sr, max_seconds=1.4, min_seconds=0.5)
    assert len(cut) <= 1.4 * sr
    assert np.max(np.abs(cut[-sr // 50 :])) < 0.05, "the cut falls in the pause, not mid-tone"
    np.testing.assert_array_equal(cut_at_pause(trimmed[: sr // 2], sr, 1.4, 0.5), trimmed[: sr // 2])
    with pytest.raises(SynthesisError, match="silence"):
        to_mono_16k(np.zeros(1000), sr)
    with pytest.raises(SynthesisError, match="NaN"):
        to_mono_16k(np.full(1000, np.nan), sr)


def test_channel_differs_per_utterance():
    sr = 16000
    speech = FakeSynthesizer(sampling_rate=sr).speak(make_voice("x", "a", "a"), SynthesisRequest("a b c d", 1, 0))
    first, channel_1 = apply_random_channel(speech, sr, np.random.default_rng(1))
    again, _ = apply_random_channel(speech, sr, np.random.default_rng(1))
    second, channel_2 = apply_random_channel(speech, sr, np.random.default_rng(2))
    assert first.shape == speech.shape and np.isfinite(first).all() and np.abs(first).max() <= 0.95 + 1e-9
    np.testing.assert_array_equal(first, again)
    assert channel_1 != channel_2
    assert channel_1.snr_db != channel_2.snr_db and 5.0 <= channel_1.snr_db <= 30.0
    spectrum = [np.abs(np.fft.rfft(x)) for x in (first, second)]
    assert np.corrcoef(np.log(spectrum[0] + 1e-9), np.log(spectrum[1] + 1e-9))[0, 1] < 0.99


# ---------------------------------------------------------------------------------------------------------------------
# Splits and trials
# ---------------------------------------------------------------------------------------------------------------------
def test_split_is_speaker_disjoint_and_seeded():
    speakers = [f"mbrola-s{i}" for i in range(10)]
    train, test = split_speakers(speakers, 0.3, seed=0)
    assert not set(train) & set(test) and set(train) | set(test) == set(speakers) and len(test) == 3
    assert (train, test) == split_speakers(list(reversed(speakers)), 0.3, seed=0)
    assert any(split_speakers(speakers, 0.3, seed=s)[1] != test for s in range(1, 5))
    assert len(split_speakers(speakers[:3], 0.1, seed=0)[1]) == 2  # at least two test speakers
    with pytest.raises(ValueError, match="at least 3 speakers"):
        split_speakers(speakers[:2], 0.3, seed=0)


def test_trials_are_balanced_and_readable(tmp_path):
    utterances = [
        Utterance(s, f"s0{v}", f"{s}/s0{v}/0000{n}.wav") for s in ("a", "b", "c") for v in (1, 2) for n in (1, 2)
    ]
    for u in utterances:
        path = tmp_path / "wav" / u.relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    # The pools the draws come from, as the union of many draws: the target pool holds cross-video pairs only.
    drawn = [t for seed in range(60) for t in balanced_trials(utterances, 100, np.random.default_rng(seed))]
    target, nontarget = ({frozenset((t.enroll, t.test)) for t in drawn if t.label == label} for label in (1, 0))
    assert (len(target), len(nontarget)) == (3 * 4, 66 - 3 * 6)  # 18 of 66 pairs are same-speaker, 12 across videos
    trials = make_split_trials(utterances, 100, np.random.default_rng(0))
    assert len(trials) == 2 * 12 and sum(t.label for t in trials) == 12
    for t in trials:
        same = t.enroll.split("/")[0] == t.test.split("/")[0]
        assert same == bool(t.label)
        assert not (t.label and t.enroll.split("/")[1] == t.test.split("/")[1]), "targets cross videos"
    path = write_trials(trials, tmp_path / "trials.txt")
    assert read_trials(path, root=tmp_path / "wav", check_exists=True)[0].label in (0, 1)
    # a and b speak English; c speaks German in video s01 and English in s02 (like RHVoice's Evgeniy)
    languages = {u.relative_path: "de" if u.relative_path.startswith("c/s01") else "en-us" for u in utterances}
    same_language = make_same_language_trials(utterances, languages, 100, np.random.default_rng(0))
    assert same_language and all(languages[t.enroll][:2] == languages[t.test][:2] for t in same_language)
    assert not any("c/s01" in t.enroll or "c/s01" in t.test for t in same_language), "German has one speaker"
    assert any(t.label == 0 and "c/s02" in t.enroll + t.test for t in same_language)
    with pytest.raises(ValueError, match="no trials possible"):
        make_split_trials([u for u in utterances if u.speaker == "a"], 10, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------------------------------
# Layout writer and the whole build, with the fake synthesiser
# ---------------------------------------------------------------------------------------------------------------------
def test_write_voice_writes_voxceleb_layout(tmp_path):
    voice = make_voice("mbrola", "mb-xx1", "mbrola-xx1", language="fr-fr")
    plans = plan_voice(voice, 5, 2, 1.0, 2.0, np.random.default_rng(0))
    assert plans == plan_voice(voice, 5, 2, 1.0, 2.0, np.random.default_rng(0))
    assert [p.video for p in plans] == ["s01", "s01", "s01", "s02", "s02"]
    rows = write_voice(voice, plans, tmp_path / "wav", FakeSynthesizer(), np.random.default_rng(1), 1.0, "x")
    files = sorted((tmp_path / "wav").rglob("*.wav"))
    assert [str(f.relative_to(tmp_path / "wav")) for f in files] == sorted(r["path"] for r in rows)
    assert files[0].relative_to(tmp_path / "wav").parts == ("mbrola-xx1", "s01", "00001.wav")
    for path, plan in zip(files, plans):
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 1.0 - 1e-3 <= info.duration <= plan.target_seconds + 1e-3
    assert rows[0]["language"] == "fr-fr" and rows[0]["text"].startswith(plans[0].text.split()[0])
    with pytest.raises(FileExistsError, match="already exists"):
        write_voice(voice, plans, tmp_path / "wav", FakeSynthesizer(), np.random.default_rng(1), 1.0)


def test_short_audio_is_resynthesised_then_reported(tmp_path):
    voice = make_voice("mbrola", "mb-xx1", "mbrola-xx1")
    plans = plan_voice(voice, 2, 1, 3.0, 3.5, np.random.default_rng(0))
    slow_start = FakeSynthesizer(seconds_per_token=0.08)  # first text too short; longer text on retry
    rows = write_voice(voice, plans, tmp_path / "ok", slow_start, np.random.default_rng(0), 3.0)
    assert len(slow_start.calls) >= 2 and len(rows) == 2
    assert all(sf.info(str(tmp_path / "ok" / r["path"])).duration >= 3.0 - 1e-3 for r in rows)
    with pytest.raises(SynthesisError, match="stayed shorter than 3.0 s after 3 attempts"):
        write_voice(voice, plans, tmp_path / "bad", FakeSynthesizer(0.005), np.random.default_rng(0), 3.0)
    assert not (tmp_path / "bad").exists(), "nothing is written for a failed voice"


def _fake_voices():
    mbrola = [
        make_voice("mbrola", f"mb-{n}", f"mbrola-{n}", lang)
        for n, lang in [("de1", "de"), ("de2", "de"), ("en1", "en-uk"), ("fr1", "fr-fr"), ("us1", "en-us")]
    ]
    rhvoice = [
        make_voice("rhvoice", "Slt", "rhvoice-slt", "English"),
        make_voice("rhvoice", "Evgeniy-Eng", "rhvoice-evgeniy", "English"),
        make_voice("rhvoice", "Evgeniy-Rus", "rhvoice-evgeniy", "Russian"),
        make_voice("rhvoice", "Anna", "rhvoice-anna", "Russian"),
    ]
    return mbrola, rhvoice


def test_build_corpus_with_a_fake_synthesiser(tmp_path):
    mbrola, rhvoice = _fake_voices()
    broken = make_voice("broken", "mb-xx9", "mbrola-xx9")
    synthesizers = {"mbrola": FakeSynthesizer(), "rhvoice": FakeSynthesizer(0.25, 24000),
                    "broken": failing_synthesizer}  # fmt: skip
    options = dict(
        utterances_per_voice=4,
        videos_per_speaker=2,
        min_seconds=1.0,
        max_seconds=1.6,
        seed=5,
        log=lambda message: None,
    )
    report = build_corpus(tmp_path / "out", [*mbrola, broken], rhvoice, synthesizers, **options)
    out = tmp_path / "out"

    assert report.failed == {"broken/mb-xx9": "voice mb-xx9 is broken on purpose"}
    assert json.loads((out / "build_report.json").read_text())["failed_voices"] == report.failed
    train = {p.name for p in (out / "in_domain/train/wav").iterdir()}
    test = {p.name for p in (out / "in_domain/test/wav").iterdir()}
    cross = {p.name for p in (out / "cross_synth/test/wav").iterdir()}
    assert not train & test and train | test == {v.speaker for v in mbrola}, "the broken voice left no folder"
    assert cross == {"rhvoice-slt", "rhvoice-evgeniy", "rhvoice-anna"}
    videos = {p.name for p in (out / "cross_synth/test/wav/rhvoice-evgeniy").iterdir()}
    assert videos == {"evgeniy-eng-s01", "evgeniy-eng-s02", "evgeniy-rus-s01", "evgeniy-rus-s02"}
    for folder in ("in_domain/test", "cross_synth/test"):
        trials = read_trials(out / folder / "trials.txt", root=out / folder / "wav", check_exists=True)
        assert 0 < sum(t.label for t in trials) == len(trials) / 2
    assert (out / "cross_synth/test/trials_same_language.txt").exists()  # English: Slt + Evgeniy; Russian: two
    dataset = dataset_from_voxceleb(out / "in_domain/train")
    assert len(dataset) == 4 * len(train)
    rows = [json.loads(line) for line in (out / "cross_synth/test/metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and {r["voice"] for r in rows} == {"Slt", "Evgeniy-Eng", "Evgeniy-Rus", "Anna"}
    assert report.splits["cross_synth_test"]["speakers"] == 3 and report.wav_bytes > 0

    again = build_corpus(tmp_path / "again", [*mbrola, broken], rhvoice, synthesizers, **options)
    assert again.splits == report.splits
    trial_list = "in_domain/test/trials.txt"
    assert (tmp_path / "again" / trial_list).read_text() == (out / trial_list).read_text()
    first_wav = sorted((out / "in_domain/train/wav").rglob("*.wav"))[0]
    assert first_wav.read_bytes() == (tmp_path / "again" / first_wav.relative_to(out)).read_bytes()

    with pytest.raises(FileExistsError, match="--overwrite"):
        build_corpus(out, mbrola, rhvoice, synthesizers, **options)
    with pytest.raises(ValueError, match="no synthesiser for engine 'mbrola'"):
        build_corpus(tmp_path / "other", mbrola, [], {}, **options)


# ---------------------------------------------------------------------------------------------------------------------
# Debian side: apt sources, voice files, selection, repository guard
# ---------------------------------------------------------------------------------------------------------------------
def test_private_apt_sources_add_contrib_and_non_free(tmp_path):
    deb822 = (
        "Types: deb\n# a comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\n"
    )
    one_line = "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main  # comment\n#deb x y z\n"
    sources = parse_apt_sources(deb822, deb822=True) + parse_apt_sources(one_line, deb822=False)
    assert [s.uri for s in sources] == [
        "http://deb.debian.org/debian",
        "http://deb.debian.org/debian-security",
        "http://mirror.example/debian",
    ]
    text = private_sources_list(sources, "bookworm")
    assert text.splitlines() == [
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm "
        "main contrib non-free",
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian "
        "bookworm-updates main contrib non-free",
        "deb [signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib non-free",
    ]
    with pytest.raises(RuntimeError, match="--mirror"):
        private_sources_list(sources, "trixie")
    config = private_apt_config(tmp_path, as_root=True)
    assert f'Dir::State::Lists "{tmp_path}/lists";' in config
    assert 'Dir::State::status "/var/lib/dpkg/status";' in config
    assert f'Dir::Etc::SourceList "{tmp_path}/sources.list";' in config and "Sandbox" in config
    assert "Sandbox" not in private_apt_config(tmp_path, as_root=False)
    os_release = tmp_path / "os-release"
    os_release.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n')
    assert os_codename(os_release) == "bookworm"


def test_voice_files_become_speakers(tmp_path):
    mb = tmp_path / "espeak-ng-data/voices/mb"
    mb.mkdir(parents=True)
    (mb / "mb-de2").write_text("name german-mbrola-2\nlanguage de 6\ngender male\nmbrola de2 de2_phtrans\n")
    (mb / "mb-de2-en").write_text("name en\nlanguage en\ngender male\nmbrola de2 de2_phtrans\n")
    (mb / "mb-cn1").write_text("name chinese\nlanguage zh\nmbrola cn1 cn1_phtrans\n")
    (mb / "mb-xy1").write_text("name odd\nlanguage grc\nmbrola xy1 xy1_phtrans\n")
    espeak = parse_espeak_mbrola_voices(mb)
    assert espeak["mb-de2"] == {"language": "de", "database": "de2", "gender": "male"}
    voices, unusable = mbrola_candidates(espeak, ["mbrola-de2", "mbrola-cn1", "mbrola-bz1", "mbrola-xy1"])
    assert [(v.name, v.speaker, v.gender) for v in voices] == [
        ("mb-cn1", "mbrola-cn1", "unknown"),
        ("mb-de2", "mbrola-de2", "male"),
    ]
    assert set(unusable) == {"mbrola-bz1", "mbrola-xy1"} and "no voice mb-bz1" in unusable["mbrola-bz1"]

    rh = tmp_path / "RHVoice/voices"
    for folder, name, language in [
        ("evgeniy-eng", "Evgeniy-Eng", "English"), ("evgeniy-rus", "Evgeniy-Rus", "Russian"),
        ("Leticia-F123", "Letícia-F123", "Brazilian-Portuguese"), ("slt", "Slt", "English"),
    ]:  # fmt: skip
        (rh / folder).mkdir(parents=True)
        (rh / folder / "voice.info").write_text(f"name={name}\nlanguage={language}\ngender=female\n", encoding="utf-8")
    rhvoice = parse_rhvoice_voices(rh)
    assert {v.name: v.speaker for v in rhvoice} == {
        "Evgeniy-Eng": "rhvoice-evgeniy",
        "Evgeniy-Rus": "rhvoice-evgeniy",
        "Letícia-F123": "rhvoice-leticia-f123",
        "Slt": "rhvoice-slt",
    }
    assert {v.package for v in rhvoice} == {"rhvoice-english", "rhvoice-russian", "rhvoice-brazilian-portuguese"}
    chosen = select_speakers(rhvoice, 2, seed=0, salt=2)
    assert len({v.speaker for v in chosen}) == 2 and chosen == select_speakers(rhvoice, 2, seed=0, salt=2)
    if "rhvoice-evgeniy" in {v.speaker for v in chosen}:
        assert sum(v.speaker == "rhvoice-evgeniy" for v in chosen) == 2, "a person's voices stay together"
    assert select_speakers(rhvoice, None, seed=0, salt=2) == rhvoice


def test_output_inside_the_repository_must_be_git_ignored(tmp_path):
    check_outside_repository(tmp_path / "corpus", "--out")  # outside: fine
    check_outside_repository(REPO / ".venv" / "corpus", "--out")  # ignored by .gitignore: fine
    with pytest.raises(ValueError, match="not git-ignored"):
        check_outside_repository(REPO / "benchmarks" / "corpus_output", "--out")
