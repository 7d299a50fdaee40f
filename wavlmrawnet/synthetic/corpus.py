"""Deterministic synthetic speaker corpus in VoxCeleb layout (for the CPU demo and tests).

Speakers are source-filter voices (`voice`, `speech`); every utterance gets its own random recording channel
(`channel`). Every random draw is seeded from (seed, split, speaker, video/utterance), so the same arguments give
byte-identical files.

Layout written by :func:`generate_corpus` (same as VoxCeleb1)::

    <root>/train/wav/<speaker>/<video>/<utt>.wav
    <root>/test/wav/<speaker>/<video>/<utt>.wav
    <root>/test/veri_test2.txt   "label path1 path2", paths relative to <root>/test/wav
    <root>/metadata.jsonl        one JSON line per utterance (voice and channel values)

CLI::

    python -m wavlmrawnet.synthetic.corpus --out DIR [--train-speakers N --test-speakers N --seed S ...]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..evaluation.trials import make_trials, write_trials
from .channel import ChannelParams, apply_channel, draw_channel
from .speech import synthesize_speech
from .voice import SessionParams, VoiceProfile, draw_session, draw_voice_profile, plan_utterance

__all__ = ["CorpusInfo", "Utterance", "generate_corpus", "main", "synthesize_utterance"]

TRIALS_FILENAME = "veri_test2.txt"
METADATA_FILENAME = "metadata.jsonl"
FIRST_SPEAKER_NUMBER = 10001  # speaker ids are id10001, id10002, ...
_SPLIT_CODES = {"train": 1, "test": 2}  # part of every random seed


def synthesize_utterance(
    profile: VoiceProfile,
    session: SessionParams,
    channel: ChannelParams,
    num_samples: int,
    sampling_rate: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """One finished utterance (float64 in [-0.95, 0.95]): plan, voice, channel."""
    phones = plan_utterance(profile, session, num_samples / sampling_rate, rng)
    speech = synthesize_speech(phones, profile, session, num_samples, sampling_rate, rng)
    return apply_channel(speech, channel, sampling_rate, rng)


@dataclass(frozen=True)
class CorpusInfo:
    """Paths and counts of a generated corpus."""

    root: Path
    train_wav_dir: Path
    test_wav_dir: Path
    trials_path: Path
    metadata_path: Path
    train_speakers: tuple[str, ...]
    test_speakers: tuple[str, ...]
    num_train_utterances: int
    num_test_utterances: int
    num_trials: int
    num_target_trials: int
    total_seconds: float
    sampling_rate: int
    seed: int

    @property
    def num_train_speakers(self) -> int:
        return len(self.train_speakers)

    @property
    def num_test_speakers(self) -> int:
        return len(self.test_speakers)


@dataclass(frozen=True)
class Utterance:
    """One written utterance, as used to build trials."""

    speaker: str
    video: str
    relative_path: str  # <speaker>/<video>/<nnnnn>.wav, relative to <split>/wav


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def _video_sizes(num_utterances: int, num_videos: int, rng) -> list[int]:
    """Random split of utterances over videos, at least one each."""
    extra = rng.multinomial(num_utterances - num_videos, rng.dirichlet(np.full(num_videos, 2.0)))
    return [1 + int(x) for x in extra]


def _speaker_utterances(split: str, speaker_index: int, speaker: str, args: dict) -> list[Utterance]:
    """The utterances (paths) of one speaker, before any audio is made."""
    rng = _rng(args["seed"], _SPLIT_CODES[split], speaker_index, 500)
    sizes = _video_sizes(args["utterances_per_speaker"], args["videos_per_speaker"], rng)
    return [
        Utterance(speaker, f"vid{video:02d}", f"{speaker}/vid{video:02d}/{number:05d}.wav")
        for video, size in enumerate(sizes)
        for number in range(1, size + 1)
    ]


def _write_speaker(job: tuple) -> list[dict]:
    """Write all utterances of one speaker; return their metadata rows.

    Every random draw is seeded from (seed, split, speaker, video/utterance), so
    the result does not depend on the order or the process speakers run in.
    """
    split, speaker_index, speaker, wav_dir, args = job
    seed, code, sr = args["seed"], _SPLIT_CODES[split], args["sampling_rate"]
    profile = draw_voice_profile(_rng(seed, code, speaker_index))
    sessions = {}
    metadata = []
    for utt_index, utterance in enumerate(_speaker_utterances(split, speaker_index, speaker, args)):
        if utterance.video not in sessions:
            sessions[utterance.video] = draw_session(_rng(seed, code, speaker_index, 1000 + len(sessions)))
        session = sessions[utterance.video]
        rng = _rng(seed, code, speaker_index, 2000 + utt_index)
        num_samples = int(round(rng.uniform(args["min_seconds"], args["max_seconds"]) * sr))
        channel = draw_channel(rng, sr)
        audio = synthesize_utterance(profile, session, channel, num_samples, sr, rng)
        path = wav_dir / utterance.relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio, sr, subtype="PCM_16", format="WAV")
        metadata.append(_metadata_row(split, utterance.relative_path, profile, session, channel, num_samples / sr))
    return metadata


def _run_jobs(jobs: list[tuple], num_workers: int) -> list[list[dict]]:
    """_write_speaker over all jobs, in order, optionally in worker processes."""
    if num_workers == 1 or len(jobs) <= 1:
        return [_write_speaker(job) for job in jobs]
    # fork needs no re-import of the caller's __main__ (spawn would re-run unguarded scripts)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(min(num_workers, len(jobs)), mp_context=multiprocessing.get_context(method)) as pool:
        return list(pool.map(_write_speaker, jobs))


def _metadata_row(split, relative, profile, session, channel, seconds) -> dict:
    """One metadata.jsonl row: path, speaker, voice (without accent), session and channel values."""

    def rounded(value):
        if isinstance(value, float):
            return round(value, 4)
        if isinstance(value, (list, tuple)):
            return [rounded(v) for v in value]
        return value

    row = {"split": split, "path": relative, "speaker": relative.split("/")[0], "seconds": seconds}
    voice = {k: v for k, v in asdict(profile).items() if k != "accent"}
    row.update({f"voice_{k}": v for k, v in voice.items()})
    row.update({f"session_{k}": v for k, v in asdict(session).items()})
    row.update({f"channel_{k}": v for k, v in asdict(channel).items()})
    return {k: rounded(v) for k, v in row.items()}


def _validate(args: dict) -> None:
    def check(condition, message):
        if not condition:
            raise ValueError(message)

    check(args["num_train_speakers"] >= 1, f"num_train_speakers must be >= 1, got {args['num_train_speakers']}")
    check(
        args["num_test_speakers"] >= 2,
        f"num_test_speakers must be >= 2 (non-target trials need two), got {args['num_test_speakers']}",
    )
    total = args["num_train_speakers"] + args["num_test_speakers"]
    check(total <= 99999 - FIRST_SPEAKER_NUMBER + 1, f"too many speakers ({total}) for 5-digit ids")
    check(args["videos_per_speaker"] >= 1, f"videos_per_speaker must be >= 1, got {args['videos_per_speaker']}")
    check(
        args["utterances_per_speaker"] >= max(2, args["videos_per_speaker"]),
        "utterances_per_speaker must be >= 2 and >= videos_per_speaker, "
        f"got {args['utterances_per_speaker']} (videos_per_speaker={args['videos_per_speaker']})",
    )
    check(
        0.5 <= args["min_seconds"] <= args["max_seconds"],
        f"need 0.5 <= min_seconds <= max_seconds, got {args['min_seconds']}, {args['max_seconds']}",
    )
    check(8000 <= args["sampling_rate"] <= 48000, f"sampling_rate must be 8000..48000, got {args['sampling_rate']}")
    check(args["seed"] >= 0, f"seed must be >= 0, got {args['seed']}")
    check(args["num_workers"] >= 1, f"num_workers must be >= 1, got {args['num_workers']}")


def generate_corpus(
    root,
    num_train_speakers: int = 40,
    num_test_speakers: int = 10,
    utterances_per_speaker: int = 20,
    videos_per_speaker: int = 3,
    min_seconds: float = 3.0,
    max_seconds: float = 6.0,
    sampling_rate: int = 16000,
    seed: int = 0,
    num_trials: int = 800,
    overwrite: bool = False,
    num_workers: int = 1,
) -> CorpusInfo:
    """Write a synthetic speaker corpus in VoxCeleb layout under ``root``.

    Train and test speakers are disjoint; the same arguments give byte-identical
    files whatever ``num_workers`` (processes, one speaker per task) is.
    ``num_trials`` (even) trials are written to ``<root>/test/veri_test2.txt``,
    half of them target trials across different videos of a speaker.
    ``overwrite=True`` first deletes an existing ``<root>/train``,
    ``<root>/test`` and metadata file; otherwise their presence is an error.
    """
    args = dict(locals())
    args.pop("root"), args.pop("overwrite")
    _validate(args)
    root = Path(root)
    train_dir, test_dir = root / "train", root / "test"
    metadata_path = root / METADATA_FILENAME
    existing = [p for p in (train_dir, test_dir, metadata_path) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"corpus output already exists: {', '.join(map(str, existing))} (use overwrite=True)")
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    speaker_ids = [f"id{FIRST_SPEAKER_NUMBER + i}" for i in range(num_train_speakers + num_test_speakers)]
    train_speakers, test_speakers = speaker_ids[:num_train_speakers], speaker_ids[num_train_speakers:]
    splits = (("train", train_speakers), ("test", test_speakers))
    utterances = {
        split: [u for index, speaker in enumerate(speakers) for u in _speaker_utterances(split, index, speaker, args)]
        for split, speakers in splits
    }
    test = utterances["test"]
    trials = make_trials(  # checks num_trials before any work
        [u.relative_path for u in test],
        [u.speaker for u in test],
        num_trials,
        _rng(seed, 99),
        sessions=[u.video for u in test],
        all_pairs=True,
    )
    jobs = [
        (split, index, speaker, root / split / "wav", args)
        for split, speakers in splits
        for index, speaker in enumerate(speakers)
    ]
    metadata = [row for rows in _run_jobs(jobs, num_workers) for row in rows]
    test_dir.mkdir(parents=True, exist_ok=True)
    trials_path = write_trials(trials, test_dir / TRIALS_FILENAME)
    metadata_path.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in metadata), encoding="utf-8")
    return CorpusInfo(
        root=root,
        train_wav_dir=train_dir / "wav",
        test_wav_dir=test_dir / "wav",
        trials_path=trials_path,
        metadata_path=metadata_path,
        train_speakers=tuple(train_speakers),
        test_speakers=tuple(test_speakers),
        num_train_utterances=len(utterances["train"]),
        num_test_utterances=len(utterances["test"]),
        num_trials=len(trials),
        num_target_trials=sum(t.label for t in trials),
        total_seconds=float(sum(row["seconds"] for row in metadata)),
        sampling_rate=sampling_rate,
        seed=seed,
    )


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------
def _disk_bytes(info: CorpusInfo) -> int:
    files = [info.metadata_path, *info.root.joinpath("train").rglob("*"), *info.root.joinpath("test").rglob("*")]
    return sum(p.stat().st_size for p in files if p.is_file())


def _generate_from_args(a: argparse.Namespace) -> CorpusInfo:
    return generate_corpus(
        a.out,
        num_train_speakers=a.train_speakers,
        num_test_speakers=a.test_speakers,
        utterances_per_speaker=a.utterances_per_speaker,
        videos_per_speaker=a.videos_per_speaker,
        min_seconds=a.min_seconds,
        max_seconds=a.max_seconds,
        sampling_rate=a.sampling_rate,
        seed=a.seed,
        num_trials=a.trials,
        overwrite=a.overwrite,
        num_workers=a.workers,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wavlmrawnet.synthetic.corpus",
        description="Write a deterministic synthetic speaker corpus in VoxCeleb layout.",
    )
    parser.add_argument("--out", required=True, help="corpus root directory")
    parser.add_argument("--train-speakers", type=int, default=40)
    parser.add_argument("--test-speakers", type=int, default=10)
    parser.add_argument("--utterances-per-speaker", type=int, default=20)
    parser.add_argument("--videos-per-speaker", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--max-seconds", type=float, default=6.0)
    parser.add_argument("--sampling-rate", type=int, default=16000)
    parser.add_argument("--trials", type=int, default=800, help="number of trials (even; half are targets)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing corpus under --out")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    a = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        info = _generate_from_args(a)
    except (ValueError, FileExistsError) as error:
        parser.error(str(error))
    elapsed = time.perf_counter() - start
    print(f"synthetic corpus written to {info.root} in {elapsed:.1f} s (seed {info.seed})")
    train, test = info.num_train_utterances, info.num_test_utterances
    print(f"  train: {info.num_train_speakers} speakers, {train} utterances -> {info.train_wav_dir}")
    print(f"  test:  {info.num_test_speakers} speakers, {test} utterances -> {info.test_wav_dir}")
    print(f"  trials: {info.num_trials} ({info.num_target_trials} target) -> {info.trials_path}")
    size_mb = _disk_bytes(info) / 1e6
    print(f"  audio: {info.total_seconds / 60:.1f} min at {info.sampling_rate} Hz, {size_mb:.1f} MB on disk")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
