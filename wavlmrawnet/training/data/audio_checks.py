"""The bad-audio check run before training: unreadable, empty, NaN/Inf or too-short files are listed (and written
to `bad_audio.tsv`), then either stop the run or are dropped, never silently."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from datasets import Dataset
from tqdm.auto import tqdm

from ...audio_io import AudioDecodingError, load_audio
from .sources import _default_workers, _listing, _require_columns, relabel

logger = logging.getLogger(__name__)

BAD_AUDIO_FILENAME = "bad_audio.tsv"
# How many problem items an error message names (all are kept on the exception).
_MAX_LISTED = 50


@dataclass(frozen=True)
class BadAudio:
    """An unusable audio file. `reason` starts with its kind: unreadable, empty, nan/inf or too short."""

    path: str
    reason: str


class BadAudioError(ValueError):
    """Some audio files are unusable; `.bad` lists all of them (path + reason)."""

    def __init__(
        self,
        bad: Sequence[BadAudio],
        total: int,
        min_seconds: float,
        report: str | None = None,
        hint: str = "Fix or remove them, or set skip_bad_audio=True to leave them out of training",
    ):
        self.bad = list(bad)
        self.total = total
        self.report = report
        shown = "\n  ".join(f"{b.path}\t{b.reason}" for b in self.bad[:_MAX_LISTED])
        more = ""
        if len(self.bad) > _MAX_LISTED:
            more = f"\n  ... and {len(self.bad) - _MAX_LISTED} more (all in BadAudioError.bad)"
        written = f"; the full list is in {report}" if report else ""
        super().__init__(
            f"{len(self.bad)} of {total} audio files are unusable (min_seconds={min_seconds:g}){written}. {hint}:"
            f"\n  {shown}{more}"
        )


# Integer PCM in an uncompressed container cannot hold NaN/Inf and its frame count comes from the data chunk size,
# so the header check is enough; float and compressed files are decoded.
_HEADER_ONLY_FORMATS = {"WAV", "WAVEX", "RF64", "AIFF", "W64", "CAF"}
_HEADER_ONLY_SUBTYPES = {"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32"}


def _check_audio_file(path: str, min_seconds: float, sampling_rate: int, full_decode: bool) -> BadAudio | None:
    if not os.path.isfile(path):
        return BadAudio(path, "unreadable: no such file")
    try:
        info = sf.info(path)
    except Exception:  # not a libsndfile format (m4a/AAC, ...): decoded below, through PyAV
        info = None
    if info is not None:
        if info.frames <= 0:
            return BadAudio(path, "empty: the file holds no audio samples")
        if info.frames / info.samplerate < min_seconds:
            return BadAudio(path, f"too short: {info.frames / info.samplerate:.3f} s < min_seconds {min_seconds:g} s")
        if not full_decode and info.format in _HEADER_ONLY_FORMATS and info.subtype in _HEADER_ONLY_SUBTYPES:
            return None
    try:
        audio = load_audio(path, sampling_rate)
    except AudioDecodingError as error:
        return BadAudio(path, f"unreadable: {error.reason}")
    if audio.size == 0:
        return BadAudio(path, "empty: the file holds no audio samples")
    non_finite = int(np.count_nonzero(~np.isfinite(audio)))
    if non_finite:
        return BadAudio(path, f"nan/inf: {non_finite} of {audio.size} samples are NaN or Inf")
    seconds = audio.shape[-1] / sampling_rate
    if seconds < min_seconds:
        return BadAudio(path, f"too short: {seconds:.3f} s < min_seconds {min_seconds:g} s")
    return None


def scan_audio(
    paths: Iterable[str],
    min_seconds: float,
    num_workers: int | None = None,
    sampling_rate: int = 16000,
    full_decode: bool = False,
    progress: bool = False,
) -> list[BadAudio]:
    """Finds unusable audio files, in input order: unreadable, empty, NaN/Inf samples, shorter than `min_seconds`.

    Headers are read first. Integer-PCM WAV/AIFF files that pass the header check are not decoded (they cannot hold
    NaN/Inf); float and compressed files (FLAC, OGG, ...) are decoded once with `load_audio` to check the samples.
    `full_decode=True` decodes every file. Files are checked in `num_workers` threads (default: up to 8).
    """
    paths = [os.fspath(p) for p in paths]
    if min_seconds < 0:
        raise ValueError(f"min_seconds must be >= 0, got {min_seconds}")

    def check(path: str) -> BadAudio | None:
        return _check_audio_file(path, min_seconds, sampling_rate, full_decode)

    with ThreadPoolExecutor(max_workers=num_workers or _default_workers()) as pool:
        results = pool.map(check, paths, chunksize=16)
        results = list(tqdm(results, total=len(paths), desc="checking audio", unit="file", disable=not progress))
    return [bad for bad in results if bad is not None]


def _write_bad_audio(bad: Sequence[BadAudio], run_dir: str | os.PathLike) -> str:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    report = run_dir / BAD_AUDIO_FILENAME
    with open(report, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, delimiter="\t", lineterminator="\n")
        writer.writerow(["path", "reason"])
        writer.writerows((b.path, b.reason) for b in bad)
    return str(report)


def check_dataset_audio(
    dataset: Dataset,
    min_seconds: float,
    skip_bad_audio: bool,
    run_dir: str | os.PathLike | None,
    sampling_rate: int = 16000,
    num_workers: int | None = None,
    full_decode: bool = False,
) -> Dataset:
    """Checks every file of `dataset` (see `scan_audio`) before training starts; nothing is dropped silently.

    With bad files and `skip_bad_audio=False`, raises `BadAudioError` (count, paths and reasons; all in `.bad`).
    With `skip_bad_audio=True`, drops them, logs the count and returns the rest; if a speaker loses all its files the
    labels are renumbered (recompute `label_maps`). In both cases the list is written to `<run_dir>/bad_audio.tsv`
    (header `path<TAB>reason`, one row per file) when `run_dir` is given; it is required for `skip_bad_audio=True`.
    """
    _require_columns(dataset, ("path",))
    if skip_bad_audio and run_dir is None:
        raise ValueError(f"skip_bad_audio=True needs a run_dir to record the dropped files in {BAD_AUDIO_FILENAME}")
    paths = list(dataset["path"])
    bad = scan_audio(
        paths,
        min_seconds,
        sampling_rate=sampling_rate,
        num_workers=num_workers,
        full_decode=full_decode,
        progress=len(paths) >= 5000,
    )
    if not bad:
        logger.info("All %d audio files passed the check (min_seconds=%g).", len(paths), min_seconds)
        return dataset
    report = _write_bad_audio(bad, run_dir) if run_dir is not None else None
    if not skip_bad_audio:
        raise BadAudioError(bad, len(paths), min_seconds, report)
    if len(bad) == len(paths):
        raise BadAudioError(bad, len(paths), min_seconds, report, hint="No file is left to train on")

    bad_paths = {b.path for b in bad}
    kept = dataset.select([i for i, p in enumerate(paths) if p not in bad_paths])
    logger.warning("Dropped %d bad audio file(s) of %d; they are listed in %s", len(bad), len(paths), report)
    if "speaker" in dataset.column_names:
        lost = sorted(set(dataset["speaker"]) - set(kept["speaker"]))
        if lost:
            logger.warning("Speaker(s) %s lost all their files; labels are renumbered.", _listing(lost))
            kept = relabel(kept)
    return kept
