"""VoxCeleb-style trial lists (``label enroll_path test_path`` per line)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Trial", "MissingTrialFilesError", "make_trials", "read_trials", "unique_paths", "write_trials"]

# How many missing paths to show in the error message (all are in `.missing`).
_MAX_LISTED = 20


@dataclass(frozen=True)
class Trial:
    label: int  # 1 = same speaker (target), 0 = different speakers
    enroll: str
    test: str


class MissingTrialFilesError(FileNotFoundError):
    """Audio files named in a trial list do not exist. ``.missing`` lists all of them."""

    def __init__(self, trial_list: str | os.PathLike, missing: list[str]):
        self.trial_list = str(trial_list)
        self.missing = list(missing)
        shown = "\n  ".join(self.missing[:_MAX_LISTED])
        more = len(self.missing) - _MAX_LISTED
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(
            f"{len(self.missing)} audio files referenced by {self.trial_list} "
            f"do not exist:\n  {shown}{tail}"
        )


def read_trials(path, root=None, check_exists: bool = True) -> list[Trial]:
    """Read a trial list such as veri_test2.txt / list_test_all2.txt / list_test_hard2.txt.

    Each non-blank line is ``label path1 path2`` (whitespace separated, label 0
    or 1). With ``root``, paths are joined onto it and returned as absolute
    strings. With ``check_exists``, every referenced file must exist; otherwise
    MissingTrialFilesError lists all missing ones (nothing is skipped).
    """
    path = Path(path)
    trials: list[Trial] = []
    with path.open(encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 3:
                raise ValueError(
                    f"{path}:{line_number}: expected 'label enroll test' "
                    f"(3 fields), got {len(fields)}: {line.strip()!r}"
                )
            label, enroll, test = fields
            if label not in ("0", "1"):
                raise ValueError(f"{path}:{line_number}: label must be 0 or 1, got {label!r}")
            if root is not None:
                enroll = os.path.abspath(os.path.join(root, enroll))
                test = os.path.abspath(os.path.join(root, test))
            trials.append(Trial(int(label), enroll, test))
    if not trials:
        raise ValueError(f"{path}: trial list contains no trials")

    if check_exists:
        missing = [p for p in unique_paths(trials) if not os.path.isfile(p)]
        if missing:
            raise MissingTrialFilesError(path, missing)
    return trials


def unique_paths(trials: Iterable[Trial]) -> list[str]:
    """All enroll/test paths of ``trials``, each once, in first-seen order."""
    seen: dict[str, None] = {}
    for trial in trials:
        seen.setdefault(trial.enroll)
        seen.setdefault(trial.test)
    return list(seen)


def make_trials(
    paths: list[str], speakers: list[str], num_trials: int, seed: int = 0, sessions: list[str] | None = None
) -> list[Trial]:
    """Balanced random trials (half same-speaker, half different) among `paths`, no file paired with itself.

    With `sessions` (e.g. VoxCeleb video ids), same-speaker trials pair different sessions wherever the speaker has
    more than one, as VoxCeleb's own trial lists do: same-session pairs would reward recognising the recording.
    """
    import numpy as np

    sessions = sessions if sessions is not None else list(paths)
    by_speaker: dict[str, list[tuple[str, str]]] = {}
    for path, speaker, session in zip(paths, speakers, sessions):
        by_speaker.setdefault(speaker, []).append((path, session))
    eligible = [s for s, files in by_speaker.items() if len(files) >= 2]
    if not eligible or len(by_speaker) < 2:
        raise ValueError("trials need at least 2 speakers, one of them with 2 or more files")
    rng = np.random.default_rng(seed)
    names = sorted(by_speaker)
    trials: set[Trial] = set()
    for _ in range(20 * num_trials):
        if len(trials) >= num_trials:
            break
        if len(trials) % 2 == 0:
            files = by_speaker[eligible[rng.integers(len(eligible))]]
            first, second = (files[i] for i in rng.choice(len(files), size=2, replace=False))
            if first[1] == second[1] and len({session for _, session in files}) > 1:
                continue
            trials.add(Trial(1, first[0], second[0]))
        else:
            a, b = rng.choice(len(names), size=2, replace=False)
            first = by_speaker[names[a]][rng.integers(len(by_speaker[names[a]]))][0]
            second = by_speaker[names[b]][rng.integers(len(by_speaker[names[b]]))][0]
            trials.add(Trial(0, first, second))
    return sorted(trials, key=lambda t: (t.enroll, t.test, t.label))


def write_trials(trials: Iterable[Trial], path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{t.label} {t.enroll} {t.test}\n" for t in trials), encoding="utf-8")
    return path
