"""Tests for the synthetic VoxCeleb-layout speaker corpus (wavlmrawnet.synthetic.corpus)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from wavlmrawnet.synthetic.corpus import TRIALS_FILENAME, generate_corpus, main

# A small corpus: generates in about a second.
SMALL = dict(
    num_train_speakers=4,
    num_test_speakers=3,
    utterances_per_speaker=6,
    videos_per_speaker=2,
    min_seconds=1.0,
    max_seconds=2.0,
    num_trials=20,
)
PATH_PATTERN = re.compile(r"^id\d{5}/vid\d{2}/\d{5}\.wav$")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return generate_corpus(tmp_path_factory.mktemp("corpus"), seed=0, **SMALL)


def _wav_files(split_dir: Path) -> list[str]:
    return sorted(p.relative_to(split_dir).as_posix() for p in split_dir.rglob("*.wav"))


def _read_trials(corpus) -> list[tuple[int, str, str]]:
    trials = []
    for line in corpus.trials_path.read_text(encoding="utf-8").splitlines():
        fields = line.split(" ")
        assert len(fields) == 3, line
        assert fields[0] in ("0", "1"), line
        trials.append((int(fields[0]), fields[1], fields[2]))
    return trials


def _metadata(corpus) -> list[dict]:
    return [json.loads(line) for line in corpus.metadata_path.read_text(encoding="utf-8").splitlines()]


def _all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_counts(corpus):
    root = corpus.root
    assert corpus.trials_path == root / "test" / TRIALS_FILENAME
    assert corpus.train_wav_dir == root / "train" / "wav"
    assert corpus.test_wav_dir == root / "test" / "wav"
    assert corpus.num_train_speakers == 4 and corpus.num_test_speakers == 3
    assert corpus.num_train_utterances == 4 * 6 and corpus.num_test_utterances == 3 * 6

    splits = ((corpus.train_wav_dir, corpus.train_speakers), (corpus.test_wav_dir, corpus.test_speakers))
    for wav_dir, speakers in splits:
        assert sorted(p.name for p in wav_dir.iterdir()) == sorted(speakers)
        files = _wav_files(wav_dir)
        assert all(PATH_PATTERN.match(f) for f in files), files
        per_speaker = defaultdict(lambda: defaultdict(list))
        for f in files:
            speaker, video, name = f.split("/")
            per_speaker[speaker][video].append(name)
        for speaker in speakers:
            videos = per_speaker[speaker]
            assert sorted(videos) == ["vid00", "vid01"]
            assert sum(len(names) for names in videos.values()) == 6
            for names in videos.values():  # numbered 00001.wav, 00002.wav, ... within each video
                assert names == [f"{i:05d}.wav" for i in range(1, len(names) + 1)]

    rows = _metadata(corpus)
    assert len(rows) == 4 * 6 + 3 * 6
    assert {(r["split"], r["path"]) for r in rows} == {
        *(("train", f) for f in _wav_files(corpus.train_wav_dir)),
        *(("test", f) for f in _wav_files(corpus.test_wav_dir)),
    }
    assert corpus.total_seconds == pytest.approx(sum(r["seconds"] for r in rows))


def test_train_and_test_speakers_are_disjoint(corpus):
    assert not set(corpus.train_speakers) & set(corpus.test_speakers)
    train_dirs = {p.name for p in corpus.train_wav_dir.iterdir()}
    test_dirs = {p.name for p in corpus.test_wav_dir.iterdir()}
    assert not train_dirs & test_dirs
    # Different speakers also get different voices (not just different names).
    f0_by_speaker = {r["speaker"]: r["voice_f0_hz"] for r in _metadata(corpus)}
    assert len(set(f0_by_speaker.values())) == len(f0_by_speaker) == 7


def test_trial_list_is_valid(corpus):
    trials = _read_trials(corpus)
    assert len(trials) == corpus.num_trials == 20
    assert sum(label for label, _, _ in trials) == corpus.num_target_trials == 10
    test_files = set(_wav_files(corpus.test_wav_dir))
    pairs = set()
    for label, a, b in trials:
        for path in (a, b):
            assert PATH_PATTERN.match(path), path  # relative, like VoxCeleb's id10270/x6uYqmx31kE/00001.wav
            assert path in test_files
            assert (corpus.test_wav_dir / path).is_file()
        assert a != b
        assert label == int(a.split("/")[0] == b.split("/")[0])
        if label == 1:  # targets pair different videos of the speaker
            assert a.split("/")[1] != b.split("/")[1]
        pairs.add(frozenset((a, b)))
    assert len(pairs) == len(trials), "duplicate trials"


def test_trial_list_reads_like_voxceleb(corpus):
    from wavlmrawnet.evaluation.trials import read_trials

    trials = read_trials(corpus.trials_path, root=corpus.test_wav_dir)
    assert len(trials) == 20
    assert all(Path(t.enroll).is_file() and Path(t.test).is_file() for t in trials)


def test_same_seed_gives_byte_identical_files(corpus, tmp_path):
    # Also with worker processes: results must not depend on scheduling.
    again = generate_corpus(tmp_path / "again", seed=0, num_workers=2, **SMALL)
    first, second = _all_files(corpus.root), _all_files(again.root)
    assert sorted(first) == sorted(second)
    assert len(first) == 4 * 6 + 3 * 6 + 2  # wavs + trials + metadata
    differing = [name for name in first if first[name] != second[name]]
    assert differing == []


def test_different_seed_gives_different_audio(corpus, tmp_path):
    other = generate_corpus(tmp_path / "other", seed=1, **SMALL)
    for relative in ("train/wav/id10001/vid00/00001.wav", "test/wav/id10005/vid00/00001.wav"):
        a, _ = sf.read(corpus.root / relative)
        b, _ = sf.read(other.root / relative)
        n = min(len(a), len(b))
        assert len(a) != len(b) or not np.array_equal(a, b)
        assert abs(np.corrcoef(a[:n], b[:n])[0, 1]) < 0.5
    assert other.trials_path.read_bytes() != corpus.trials_path.read_bytes()


def test_audio_is_sane(corpus):
    for wav_dir in (corpus.train_wav_dir, corpus.test_wav_dir):
        for relative in _wav_files(wav_dir):
            path = wav_dir / relative
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
            audio, rate = sf.read(path, dtype="float64")
            assert audio.ndim == 1 and rate == 16000
            assert np.isfinite(audio).all()
            assert 1.0 <= len(audio) / rate <= 2.0 + 1 / rate
            peak = np.abs(audio).max()
            assert peak < 0.96, f"{relative}: peak {peak} (clipped?)"
            rms_dbfs = 10 * np.log10(np.mean(audio**2))
            assert -45.0 < rms_dbfs < -10.0, f"{relative}: level {rms_dbfs:.1f} dBFS"
            # Speech has pauses and loud parts: frame energies span a wide range.
            frames = audio[: len(audio) // 320 * 320].reshape(-1, 320)
            power = np.mean(frames**2, axis=1)
            assert 10 * np.log10(np.percentile(power, 95) / np.percentile(power, 5)) > 3.0, relative


def test_channel_varies_per_utterance_not_per_speaker(corpus):
    rows = [r for r in _metadata(corpus)]
    by_speaker = defaultdict(list)
    for r in rows:
        by_speaker[r["speaker"]].append(r)
    for speaker, utts in by_speaker.items():
        snrs = [u["channel_snr_db"] for u in utts]
        assert len(set(snrs)) == len(utts) and max(snrs) - min(snrs) > 5.0, speaker
        assert len({u["channel_eq_tilt_db_per_octave"] for u in utts}) == len(utts), speaker
        assert len({u["channel_level_dbfs"] for u in utts}) == len(utts), speaker
        # The voice itself is per speaker.
        assert len({u["voice_vocal_tract_scale"] for u in utts}) == 1, speaker

    # The audio follows the metadata: a lower SNR gives a higher noise floor
    # (quietest frames relative to the loudest), also within one speaker.
    floors, snrs = [], []
    for r in rows:
        audio, _ = sf.read(corpus.root / r["split"] / "wav" / r["path"])
        power = np.mean(audio[: len(audio) // 320 * 320].reshape(-1, 320) ** 2, axis=1)
        floors.append(10 * np.log10(np.percentile(power, 5) / np.percentile(power, 95)))
        snrs.append(r["channel_snr_db"])
    rank_correlation = np.corrcoef(np.argsort(np.argsort(floors)), np.argsort(np.argsort(snrs)))[0, 1]
    assert rank_correlation < -0.7
    for speaker, utts in by_speaker.items():
        speaker_floors = [floors[rows.index(u)] for u in utts]
        assert max(speaker_floors) - min(speaker_floors) > 3.0, speaker


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(num_test_speakers=1), "num_test_speakers"),
        (dict(num_train_speakers=0), "num_train_speakers"),
        (dict(utterances_per_speaker=1), "utterances_per_speaker"),
        (dict(videos_per_speaker=7), "utterances_per_speaker"),
        (dict(min_seconds=3.0, max_seconds=2.0), "min_seconds"),
        (dict(num_trials=21), "even"),
        (dict(num_trials=1000), "non-target pairs|target pairs"),
        (dict(sampling_rate=4000), "sampling_rate"),
        (dict(num_workers=0), "num_workers"),
    ],
)
def test_bad_arguments_raise_clear_errors(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        generate_corpus(tmp_path / "c", **{**SMALL, **change})


def test_existing_output_needs_overwrite(tmp_path):
    args = dict(SMALL, num_train_speakers=1, num_test_speakers=2, utterances_per_speaker=2, videos_per_speaker=1)
    args.update(num_trials=2)
    generate_corpus(tmp_path, **args)
    stale = tmp_path / "train" / "wav" / "stale.wav"
    stale.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_corpus(tmp_path, **args)
    info = generate_corpus(tmp_path, overwrite=True, **args)
    assert not stale.exists()
    assert info.num_train_utterances == 2 and len(_read_trials(info)) == 2


def test_cli_writes_corpus_and_prints_summary(tmp_path, capsys):
    # In-process: `python -m wavlmrawnet.synthetic.corpus` only adds `raise SystemExit(main())`.
    out = tmp_path / "cli"
    argv = ["--out", str(out), "--train-speakers", "2", "--test-speakers", "2", "--utterances-per-speaker", "3",
            "--videos-per-speaker", "2", "--min-seconds", "1", "--max-seconds", "1.5", "--trials", "4",
            "--seed", "3", "--workers", "1"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "train: 2 speakers, 6 utterances" in printed
    assert "test:  2 speakers, 6 utterances" in printed
    assert "trials: 4 (2 target)" in printed
    assert len(_wav_files(out / "train" / "wav")) == 6
    assert len((out / "test" / TRIALS_FILENAME).read_text().splitlines()) == 4

    with pytest.raises(SystemExit) as exit_info:  # refuses to overwrite, with a readable message
        main(["--out", str(out), "--trials", "4"])
    assert exit_info.value.code == 2
    assert "already exists" in capsys.readouterr().err
