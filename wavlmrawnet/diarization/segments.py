"""From window labels to turns: a majority vote per frame, short turns merged, and RTTM / JSON in and out.

Each window votes for its cluster on every frame it covers; a frame inside the speech regions takes the speaker with
the most votes (ties: the smaller label, which is the speaker heard first). Frames outside the speech regions are
silence. A turn shorter than `min_turn` seconds goes to the neighbouring turn it touches (the longer one when it
touches two), and the turns of one speaker separated by less than `min_gap` seconds of silence are joined. One
speaker per frame: overlapped speech is given to one of its speakers (DER counts the other as missed).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "FRAME_SECONDS",
    "Segment",
    "frame_labels",
    "labels_to_segments",
    "merge_short_turns",
    "read_rttm",
    "segments_to_json",
    "write_rttm",
]

FRAME_SECONDS = 0.01  # the vote's resolution


@dataclass(frozen=True)
class Segment:
    """One speaker turn: `start` and `end` in seconds from the start of the recording, and the speaker's label."""

    start: float
    end: float
    speaker: str

    @property
    def duration(self) -> float:
        return self.end - self.start

    def __iter__(self):  # start, end, speaker = segment
        return iter((self.start, self.end, self.speaker))


def frame_labels(
    windows: np.ndarray, labels: np.ndarray, regions: np.ndarray, duration: float, num_labels: int
) -> np.ndarray:
    """One label per `FRAME_SECONDS` frame (-1: silence) by majority over the windows covering it.

    `windows` (n, 2) and `regions` (m, 2) are (start, end) in seconds; `labels` (n,) the windows' clusters. A speech
    frame no window covers (a region shorter than the vote's resolution) takes its nearest window's label.
    """
    frames = int(np.ceil(duration / FRAME_SECONDS))
    spans = np.clip(np.round(np.asarray(windows, dtype=np.float64) / FRAME_SECONDS).astype(np.int64), 0, frames)
    votes = np.zeros((frames + 1, num_labels), dtype=np.int32)  # a running sum: +1 at a start, -1 at an end
    np.add.at(votes, (spans[:, 0], labels), 1)
    np.add.at(votes, (spans[:, 1], labels), -1)
    votes = np.cumsum(votes, axis=0)[:frames]
    result = np.where(votes.max(axis=1) > 0, votes.argmax(axis=1), -2).astype(np.int64)
    speech = np.zeros(frames, dtype=bool)
    for start, end in np.clip(np.round(np.asarray(regions) / FRAME_SECONDS).astype(np.int64), 0, frames):
        speech[start:end] = True
    uncovered = np.flatnonzero(speech & (result == -2))
    if len(uncovered):
        centres = spans.mean(axis=1)
        result[uncovered] = labels[np.abs(centres[None, :] - uncovered[:, None]).argmin(axis=1)]
    result[~speech] = -1
    return result


def _runs(values: np.ndarray) -> list[list[int]]:
    """[label, first frame, end frame] for each run of equal values."""
    if len(values) == 0:
        return []
    edges = np.flatnonzero(np.diff(values)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(values)]])
    return [[int(values[s]), int(s), int(e)] for s, e in zip(starts, ends)]


def merge_short_turns(frames: np.ndarray, min_turn: float, min_gap: float) -> np.ndarray:
    """`frames` with each speech run shorter than `min_turn` seconds relabelled as the neighbouring speech run it
    touches (the longer of the two), shortest first, and silences shorter than `min_gap` between two runs of one
    speaker filled with that speaker."""
    frames = frames.copy()
    shortest, gap = int(round(min_turn / FRAME_SECONDS)), int(round(min_gap / FRAME_SECONDS))
    while True:
        runs = _runs(frames)
        candidates = []
        for index, (label, start, end) in enumerate(runs):
            if label < 0 or end - start >= shortest:
                continue
            neighbours = [runs[i] for i in (index - 1, index + 1) if 0 <= i < len(runs) and runs[i][0] >= 0]
            if neighbours:
                candidates.append((end - start, start, end, max(neighbours, key=lambda run: run[2] - run[1])[0]))
        if not candidates:
            break
        _, start, end, label = min(candidates)
        frames[start:end] = label
    runs = _runs(frames)
    for index in range(1, len(runs) - 1):
        label, start, end = runs[index]
        if label == -1 and end - start < gap and runs[index - 1][0] == runs[index + 1][0] >= 0:
            frames[start:end] = runs[index - 1][0]
    return frames


def labels_to_segments(frames: np.ndarray, names: list[str]) -> list[Segment]:
    """The speech runs of `frames` as segments named `names[label]`."""
    return [
        Segment(round(start * FRAME_SECONDS, 3), round(end * FRAME_SECONDS, 3), names[label])
        for label, start, end in _runs(frames)
        if label >= 0
    ]


def rttm_lines(segments: list[Segment], uri: str) -> list[str]:
    """NIST RTTM `SPEAKER` lines; `uri` (the file's name) must not hold spaces, which would split the fields."""
    uri = uri.replace(" ", "_") or "audio"
    return [
        f"SPEAKER {uri} 1 {s.start:.3f} {s.duration:.3f} <NA> <NA> {s.speaker.replace(' ', '_')} <NA> <NA>"
        for s in segments
    ]


def write_rttm(path: str | os.PathLike, segments: list[Segment], uri: str) -> Path:
    """Writes the segments as RTTM (one `SPEAKER` line each). No segment is an error, never an empty file."""
    if not segments:
        raise ValueError(f"no speaker turn to write to {path}: an empty RTTM would read as a recording without speech")
    path = Path(path)
    path.write_text("\n".join(rttm_lines(segments, uri)) + "\n")
    return path


def read_rttm(path: str | os.PathLike) -> dict[str, list[Segment]]:
    """The `SPEAKER` lines of an RTTM file, by file id (uri), in file order. A malformed line raises a ValueError
    naming it."""
    recordings: dict[str, list[Segment]] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":
            continue
        try:
            start, duration = float(fields[3]), float(fields[4])
            speaker = fields[7]
        except (IndexError, ValueError):
            raise ValueError(f"{path}:{number}: not an RTTM SPEAKER line: {line[:200]!r}") from None
        if not (np.isfinite(start) and np.isfinite(duration)) or duration < 0:
            raise ValueError(f"{path}:{number}: bad start or duration: {line[:200]!r}")
        recordings.setdefault(fields[1], []).append(Segment(start, start + duration, speaker))
    return recordings


def segments_to_json(segments: list[Segment], **fields) -> str:
    """`{**fields, "speakers": [...], "segments": [{"start", "end", "speaker"}, ...]}` as indented JSON."""
    speakers = list(dict.fromkeys(s.speaker for s in segments))
    body = {**fields, "speakers": speakers, "segments": [{"start": s.start, "end": s.end, "speaker": s.speaker}
                                                        for s in segments]}  # fmt: skip
    return json.dumps(body, indent=2)
