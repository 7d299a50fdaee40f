"""The corpus: the speaker-disjoint split, every voice rendered (in processes), metadata, trial lists, the report."""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .synthesizers import SynthesisError, Synthesizer
from .text import base_language, slugify
from .utterances import plan_voice, write_voice
from .voices import Voice

# The project (wavlmrawnet) is imported inside the functions that need it: importing it loads torch and
# transformers, which the processes that render voices do not need.

TRIALS_FILENAME = "trials.txt"
SAME_LANGUAGE_TRIALS_FILENAME = "trials_same_language.txt"
METADATA_FILENAME = "metadata.jsonl"
REPORT_FILENAME = "build_report.json"
SPLITS = {  # split name -> folder under --out
    "in_domain_train": "in_domain/train",
    "in_domain_test": "in_domain/test",
    "cross_synth_test": "cross_synth/test",
}
_SPLIT_CODES = {name: code for code, name in enumerate(SPLITS, start=1)}  # part of the trial seeds


def split_speakers(speakers: Iterable[str], test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded speaker-disjoint ``(train, test)`` split: ``round(test_fraction * n)`` test speakers, at least 2
    (non-target trials need two) and at least 1 train speaker. Both lists are sorted."""
    unique = sorted(set(speakers))
    if len(unique) < 3:
        raise ValueError(f"a train/test split needs at least 3 speakers, got {len(unique)}: {unique}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    num_test = min(max(2, round(test_fraction * len(unique))), len(unique) - 1)
    order = np.random.default_rng(np.random.SeedSequence([seed, 31])).permutation(len(unique))
    test = sorted(unique[i] for i in order[:num_test])
    train = sorted(unique[i] for i in order[num_test:])
    return train, test


def balanced_trials(utterances, max_trials: int, rng: np.random.Generator) -> list:
    """Balanced trials (``wavlmrawnet.evaluation.Trial``) over ``utterances`` (``.speaker``, ``.video``,
    ``.relative_path``), target pairs across videos: as many as the pools allow, at most ``max_trials``, half target;
    empty when there is no target or no non-target pair. ``make_trials`` with every pair listed."""
    from wavlmrawnet.evaluation.trials import make_trials

    paths, speakers, videos = ([getattr(u, key) for u in utterances] for key in ("relative_path", "speaker", "video"))
    return make_trials(paths, speakers, max_trials, rng, videos, all_pairs=True, at_most=True)


def make_split_trials(utterances, max_trials: int, rng: np.random.Generator) -> list:
    """`balanced_trials`; raises ValueError when there is no target or no non-target pair."""
    trials = balanced_trials(utterances, max_trials, rng)
    if not trials:
        raise ValueError(
            f"no trials possible: no target or no non-target pair among {len(utterances)} utterances "
            f"of {len({u.speaker for u in utterances})} speakers"
        )
    return trials


def make_same_language_trials(utterances, languages: Mapping[str, str], max_trials: int, rng) -> list:
    """Balanced trials in which both sides of every trial are in the same language (the language gives nothing
    away; a person who speaks two languages has target trials within each).

    ``languages`` maps an utterance's ``relative_path`` to its language; only languages with 2+ speakers take
    part, each with an equal share of ``max_trials``. Empty when no language has two speakers.
    """
    groups: dict[str, list] = {}
    for u in utterances:
        groups.setdefault(base_language(languages[u.relative_path]), []).append(u)
    usable = [group for _, group in sorted(groups.items()) if len({u.speaker for u in group}) >= 2]
    share = 2 * max(1, max_trials // (2 * len(usable))) if usable else 0
    return [trial for group in usable for trial in balanced_trials(group, share, rng)]


@dataclass
class VoiceOutcome:
    voice: Voice
    split: str
    rows: list[dict] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0  # wall time spent on the voice


@dataclass
class BuildReport:
    out: Path
    splits: dict[str, dict]  # split -> speakers, voices, utterances, seconds, trials
    failed: dict[str, str]  # voice key -> reason
    problems: list[str]  # things that make the corpus incomplete beyond failed voices
    seconds: float
    wav_bytes: int

    def to_json(self) -> dict:
        return {
            "out": str(self.out),
            "splits": self.splits,
            "failed_voices": self.failed,
            "problems": self.problems,
            "build_seconds": round(self.seconds, 1),
            "wav_bytes": self.wav_bytes,
        }


def existing_outputs(out: Path) -> list[Path]:
    """The corpus folders and report already under ``out``."""
    outputs = sorted({out / folder.split("/")[0] for folder in SPLITS.values()}) + [out / REPORT_FILENAME]
    return [path for path in outputs if path.exists()]


def _voice_seed(seed: int, voice: Voice) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, zlib.crc32(voice.key.encode("utf-8"))])


def _run_voice_job(job: tuple) -> VoiceOutcome:
    voice, split, plans, wav_dir, synthesize, channel_seed, min_seconds = job
    start = time.perf_counter()
    outcome = VoiceOutcome(voice, split)
    try:
        outcome.rows = write_voice(
            voice, plans, wav_dir, synthesize, np.random.default_rng(channel_seed), min_seconds, split
        )
    except SynthesisError as error:
        outcome.error = str(error)
    except Exception as error:  # reported with the failed voices; the build goes on with the others
        where = traceback.extract_tb(error.__traceback__)[-1]
        outcome.error = f"{type(error).__name__}: {error} (at {Path(where.filename).name}:{where.lineno})"
    outcome.seconds = time.perf_counter() - start
    return outcome


def check_build_arguments(utterances_per_voice, videos_per_speaker, min_seconds, max_seconds, max_trials, jobs):
    if videos_per_speaker < 1 or utterances_per_voice < max(2, videos_per_speaker):
        raise ValueError(
            f"need videos_per_speaker >= 1 and utterances_per_voice >= max(2, videos_per_speaker), got "
            f"{utterances_per_voice} utterances and {videos_per_speaker} videos"
        )
    if not 0.5 <= min_seconds <= max_seconds:
        raise ValueError(f"need 0.5 <= min_seconds <= max_seconds, got {min_seconds} and {max_seconds}")
    if max_trials < 2:
        raise ValueError(f"max_trials must be >= 2, got {max_trials}")
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")


def build_corpus(
    out: str | os.PathLike,
    mbrola_voices: Sequence[Voice],
    rhvoice_voices: Sequence[Voice],
    synthesizers: Mapping[str, Synthesizer],
    *,
    utterances_per_voice: int = 20,
    videos_per_speaker: int = 3,
    min_seconds: float = 3.0,
    max_seconds: float = 10.0,
    test_fraction: float = 0.3,
    seed: int = 0,
    max_trials: int = 6000,
    jobs: int = 1,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> BuildReport:
    """Write the corpus under ``out`` (the layout is in the package docstring) from the given voices.

    ``synthesizers`` maps a voice's ``engine`` to the function that speaks it (inject a fake one to test).
    MBROLA speakers are split into in-domain train / test (seeded, speaker-disjoint); RHVoice speakers form the
    cross-synthesiser test set. A voice that fails is reported (``BuildReport.failed``) and the others go on.
    ``jobs > 1`` renders voices in that many processes.
    """
    check_build_arguments(utterances_per_voice, videos_per_speaker, min_seconds, max_seconds, max_trials, jobs)
    start = time.perf_counter()
    out = Path(out)
    for voice in [*mbrola_voices, *rhvoice_voices]:
        if voice.engine not in synthesizers:
            raise ValueError(f"no synthesiser for engine {voice.engine!r} (voice {voice.key})")
    if {v.speaker for v in mbrola_voices} & {v.speaker for v in rhvoice_voices}:
        raise ValueError("MBROLA and RHVoice voices must not share speaker ids")
    existing = existing_outputs(out)
    if existing and not overwrite:
        raise FileExistsError(f"corpus output already exists: {', '.join(map(str, existing))} (use --overwrite)")
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    mbrola_speakers = [v.speaker for v in mbrola_voices]
    train, test = split_speakers(mbrola_speakers, test_fraction, seed) if mbrola_speakers else ([], [])
    split_of = {s: "in_domain_train" for s in train} | {s: "in_domain_test" for s in test}
    split_of |= {v.speaker: "cross_synth_test" for v in rhvoice_voices}
    voices_of: dict[str, list[Voice]] = {}
    for voice in [*mbrola_voices, *rhvoice_voices]:
        voices_of.setdefault(voice.speaker, []).append(voice)

    job_list = []
    for voice in [*mbrola_voices, *rhvoice_voices]:
        plan_seed, channel_seed = _voice_seed(seed, voice).spawn(2)
        prefix = f"{slugify(voice.name)}-" if len(voices_of[voice.speaker]) > 1 else ""
        plans = plan_voice(
            voice,
            utterances_per_voice,
            videos_per_speaker,
            min_seconds,
            max_seconds,
            np.random.default_rng(plan_seed),
            prefix,
        )
        split = split_of[voice.speaker]
        wav_dir = out / SPLITS[split] / "wav"
        job_list.append((voice, split, plans, wav_dir, synthesizers[voice.engine], channel_seed, min_seconds))

    outcomes: list[VoiceOutcome] = []

    def record(outcome: VoiceOutcome) -> None:
        outcomes.append(outcome)
        status = "FAILED: " + outcome.error if outcome.error else f"{len(outcome.rows)} utterances"
        progress = f"[{len(outcomes)}/{len(job_list)}]"
        log(f"{progress} {outcome.voice.key} -> {outcome.split} ({outcome.seconds:.1f} s) {status}")

    if jobs == 1:
        for job in job_list:
            record(_run_voice_job(job))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for outcome in pool.map(_run_voice_job, job_list):
                record(outcome)

    from wavlmrawnet.evaluation.trials import write_trials
    from wavlmrawnet.synthetic.corpus import Utterance

    failed = {o.voice.key: o.error for o in outcomes if o.error}
    problems: list[str] = []
    splits: dict[str, dict] = {}
    for split, folder in SPLITS.items():
        rows = sorted((r for o in outcomes if o.split == split for r in o.rows), key=lambda r: r["path"])
        voices = [o for o in outcomes if o.split == split]
        info = {
            "folder": folder,
            "voices_planned": len(voices),
            "voices_ok": sum(1 for o in voices if not o.error),
            "speakers": len({r["speaker"] for r in rows}),
            "utterances": len(rows),
            "seconds": round(sum(r["seconds"] for r in rows), 1),
            "languages": sorted({base_language(r["language"]) for r in rows}),
        }
        splits[split] = info
        if not voices:
            continue
        split_dir = out / folder
        if not rows:
            problems.append(f"{folder}: every voice failed, the split is empty")
            continue
        split_dir.mkdir(parents=True, exist_ok=True)
        with open(split_dir / METADATA_FILENAME, "w", encoding="utf-8") as file:
            file.writelines(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows)
        if split == "in_domain_train":
            continue
        utterances = [Utterance(r["speaker"], r["video"], r["path"]) for r in rows]
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7, _SPLIT_CODES[split]]))
        try:
            trials = make_split_trials(utterances, max_trials, rng)
        except ValueError as error:
            problems.append(f"{folder}: {error}")
            continue
        write_trials(trials, split_dir / TRIALS_FILENAME)
        info["trials"] = len(trials)
        language_of = {r["path"]: r["language"] for r in rows}
        same_language = make_same_language_trials(utterances, language_of, max_trials, rng)
        if same_language:
            write_trials(same_language, split_dir / SAME_LANGUAGE_TRIALS_FILENAME)
        info["trials_same_language"] = len(same_language)

    wav_bytes = sum(p.stat().st_size for p in out.rglob("*.wav") if p.is_file())
    report = BuildReport(out, splits, failed, problems, time.perf_counter() - start, wav_bytes)
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_FILENAME).write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n", "utf-8")
    return report
