"""Streaming training data: a `datasets.IterableDataset` (`data.dataset.streaming: true`) read without listing or
downloading it first.

* Order: `shuffle(seed, buffer_size)` (a seeded buffer; `set_epoch` reshuffles each epoch), then
  `split_dataset_by_node(rank, world_size)`: each DDP rank reads its own rows. Within a rank, `datasets` gives each
  DataLoader worker its own shards (files); a worker without a shard stays idle (`datasets` warns: use a source with
  at least `num_workers` shards). Workers decode with soundfile (PyAV for m4a).
* Labels: the speakers come from a first pass over the speaker column only (`first_pass_speakers`), or from a
  `label2id_file`; held-out validation speakers are drawn from them with the seed, as in `speaker_disjoint_split`.
* Resume: every item carries (worker, epoch, position), the position counting the rows of that worker's stream. The
  trainer records, per rank and worker, the last (epoch, position) a training step consumed and stores it in the
  checkpoint; a resumed worker replays its stream for that epoch (rows are read, not decoded) and starts after that
  position (so resume with the same `num_workers` and number of processes). Each rank's stream is endless (epoch
  after epoch), so ranks never run out at different times.
* Bad audio is found on the fly: with `skip_bad_audio`, a bad item is skipped and appended to `bad_audio.tsv`
  (path, reason); without it, the run stops with `BadAudioError`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import ClassLabel, IterableDataset
from datasets.distributed import split_dataset_by_node

from ...audio_io import AudioDecodingError, load_audio
from ...feature_extraction_wavlmrawnet import crop
from ..augment import Augmenter
from .audio_checks import BAD_AUDIO_FILENAME, BadAudio, BadAudioError


def speaker_names(stream: IterableDataset, speaker_column: str, value: Any) -> str:
    feature = stream.features[speaker_column] if stream.features is not None else None
    return feature.int2str(int(value)) if isinstance(feature, ClassLabel) else str(value)


def first_pass_speakers(stream: IterableDataset, speaker_column: str) -> tuple[dict[str, int], int, float]:
    """Rows per speaker from one pass over the speaker column only; returns (counts, rows, seconds)."""
    started = time.perf_counter()
    counts: dict[str, int] = {}
    rows = 0
    for rows, row in enumerate(stream.select_columns([speaker_column]), 1):
        value = row[speaker_column]
        if value is None or value == "":
            raise ValueError(f"row {rows - 1}: empty speaker id in column {speaker_column!r}")
        name = speaker_names(stream, speaker_column, value)
        counts[name] = counts.get(name, 0) + 1
    return counts, rows, time.perf_counter() - started


def read_label2id_file(path: str | os.PathLike) -> list[str]:
    """Every speaker of the stream, from a JSON `{speaker: id}` file (ids 0..N-1, each once) or from a previous run's
    `speakers.json` (its `label2id` plus its `held_out` speakers)."""
    mapping = json.loads(Path(path).read_text())
    if isinstance(mapping, dict) and isinstance(mapping.get("label2id"), dict):
        return sorted(mapping["label2id"]) + sorted(mapping.get("held_out", []))
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError(f"label2id_file {str(path)!r} must hold a non-empty JSON object {{speaker: id}}")
    if sorted(mapping.values()) != list(range(len(mapping))):
        raise ValueError(f"label2id_file {str(path)!r}: the ids must be 0..{len(mapping) - 1}, each once")
    return sorted(mapping, key=mapping.get)


def held_out_speakers(speakers: list[str], validation_speakers: int | float, seed: int) -> set[str]:
    """The validation speakers, drawn as `speaker_disjoint_split` draws them (same count rules, same seed)."""
    ordered = sorted(speakers)
    total = len(ordered)
    if total < 3:
        raise ValueError(f"the stream has {total} speaker(s); training needs at least 2 plus 1 held out")
    count = validation_speakers if isinstance(validation_speakers, int) else round(validation_speakers * total)
    if not 1 <= count < total:
        raise ValueError(f"validation_speakers={validation_speakers} of {total} speakers leaves a side empty")
    rng = np.random.default_rng(seed)
    return {ordered[i] for i in rng.choice(total, size=count, replace=False)}


def audio_source(entry: Any, position: int) -> tuple[Any, str]:
    """(bytes or path, a name for messages) of an `Audio(decode=False)` entry or a path string."""
    if isinstance(entry, str):
        return entry, entry
    if isinstance(entry, Mapping):
        data, path = entry.get("bytes"), entry.get("path")
        if data:
            return data, path or f"stream row {position}"
        if path:
            return path, path
    return None, f"stream row {position}"


class StreamingSpeakerDataset(torch.utils.data.IterableDataset):
    """Endless, shuffled, rank-split stream of cropped (and augmented) training utterances; see the module docstring.

    Items are dicts like `SpeakerAudioDataset`'s (`waveform`, `label`, `path`, `sampling_rate`) plus `stream`:
    (worker, epoch, position), which the trainer keeps to resume.
    """

    def __init__(
        self,
        stream: IterableDataset,
        audio_column: str,
        speaker_column: str,
        label2id: dict[str, int],
        held_out: set[str],
        rank: int,
        world_size: int,
        segment_seconds: float,
        sampling_rate: int = 16000,
        augmenter: Augmenter | None = None,
        seed: int = 0,
        min_seconds: float = 0.5,
        shuffle_buffer: int = 10000,
        skip_bad_audio: bool = False,
        bad_audio_report: str | os.PathLike | None = None,
    ):
        self.stream = stream
        self.audio_column, self.speaker_column = audio_column, speaker_column
        self.label2id, self.held_out = dict(label2id), set(held_out)
        self.rank, self.world_size = rank, world_size
        self.num_samples = int(round(segment_seconds * sampling_rate))
        self.sampling_rate = sampling_rate
        self.augmenter = augmenter
        self.seed = seed
        self.min_seconds = min_seconds
        self.min_samples = int(math.ceil(min_seconds * sampling_rate))
        self.shuffle_buffer = shuffle_buffer
        self.skip_bad_audio = skip_bad_audio
        self.bad_audio_report = str(bad_audio_report) if bad_audio_report else None
        if skip_bad_audio and not self.bad_audio_report:
            raise ValueError(f"skip_bad_audio needs a report file ({BAD_AUDIO_FILENAME}) for the skipped items")
        self.resume: dict[int, tuple[int, int]] = {}  # worker -> (epoch, last consumed position)

    def load_state(self, cursors: Mapping[int, tuple[int, int]]) -> None:
        """Resume after these (epoch, position) per worker (from `StreamCursor.state`)."""
        self.resume = {int(w): (int(e), int(p)) for w, (e, p) in cursors.items()}

    def rank_stream(self, epoch: int) -> IterableDataset:
        stream = self.stream.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
        stream = split_dataset_by_node(stream, rank=self.rank, world_size=self.world_size)
        stream.set_epoch(epoch)
        return stream

    def _report(self, bad: BadAudio) -> None:
        with open(self.bad_audio_report, "a", encoding="utf-8", newline="") as handle:
            csv.writer(handle, delimiter="\t", lineterminator="\n").writerow([bad.path, bad.reason])

    def _decode(self, entry: Any, position: int) -> tuple[np.ndarray | None, str, BadAudio | None]:
        source, name = audio_source(entry, position)
        if source is None:
            return None, name, BadAudio(name, "unreadable: the audio entry has neither bytes nor a path")
        try:
            waveform = load_audio(source, self.sampling_rate, name=name)
        except AudioDecodingError as error:
            return None, name, BadAudio(name, f"unreadable: {error.reason}")
        non_finite = int(np.count_nonzero(~np.isfinite(waveform)))
        if non_finite:
            return None, name, BadAudio(name, f"nan/inf: {non_finite} of {waveform.size} samples are NaN or Inf")
        if waveform.size < self.min_samples:
            seconds = waveform.size / self.sampling_rate
            return None, name, BadAudio(name, f"too short: {seconds:.3f} s < min_seconds {self.min_seconds:g} s")
        return waveform, name, None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        epoch, after = self.resume.get(worker, (0, -1))
        seen_bad: set[str] = set()
        while True:
            produced, rows = False, 0
            # Inside a DataLoader worker, `datasets` iterates only this worker's shards.
            for position, row in enumerate(self.rank_stream(epoch)):
                rows += 1
                if position <= after:
                    continue
                speaker = speaker_names(self.stream, self.speaker_column, row[self.speaker_column])
                if speaker in self.held_out:
                    continue  # a validation speaker
                if speaker not in self.label2id:
                    raise ValueError(f"stream row {position}: speaker {speaker!r} is not in the speaker list")
                waveform, name, bad = self._decode(row[self.audio_column], position)
                if bad is not None:
                    if not self.skip_bad_audio:
                        raise BadAudioError(
                            [bad], 1, self.min_seconds, hint="Fix or remove it, or set skip_bad_audio=True to skip "
                            f"bad items on the fly (listed in {BAD_AUDIO_FILENAME})",
                        )  # fmt: skip
                    if name not in seen_bad:
                        seen_bad.add(name)
                        self._report(bad)
                    continue
                rng = np.random.default_rng([self.seed, epoch, position])
                if self.augmenter is not None:
                    waveform = self.augmenter.perturb_speed(waveform, rng, min_samples=self.min_samples)
                waveform = crop(waveform, self.num_samples, True, rng)
                if self.augmenter is not None:
                    waveform = self.augmenter.add_reverb_and_noise(waveform, rng)
                produced = True
                yield {
                    "waveform": np.ascontiguousarray(waveform, dtype=np.float32),
                    "label": self.label2id[speaker],
                    "path": name,
                    "sampling_rate": self.sampling_rate,
                    "stream": (worker, epoch, position),
                }
            if rows == 0:
                return  # a worker without a shard (more workers than shards)
            if not produced and after < 0:
                raise ValueError(
                    f"rank {self.rank} worker {worker} found no usable training item in a whole epoch of the stream"
                )
            epoch, after = epoch + 1, -1


class StreamCursor:
    """The last (epoch, position) each worker's items reached in training steps: what a checkpoint stores."""

    def __init__(self, state: Mapping[int, tuple[int, int]] | None = None):
        self.state: dict[int, tuple[int, int]] = {int(w): tuple(v) for w, v in (state or {}).items()}

    def update(self, stream_items: list) -> None:
        for worker, epoch, position in stream_items:
            worker, epoch, position = int(worker), int(epoch), int(position)
            if (epoch, position) > self.state.get(worker, (-1, -1)):
                self.state[worker] = (epoch, position)
