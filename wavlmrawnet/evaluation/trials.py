"""VoxCeleb-style trial lists (``label enroll_path test_path`` per line): read, write, and make from labelled files."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
            f"{len(self.missing)} audio files referenced by {self.trial_list} do not exist:\n  {shown}{tail}"
        )


def read_trials(path, root=None, check_exists: bool = True) -> list[Trial]:
    """Read a trial list such as veri_test2.txt / list_test_all2.txt / list_test_hard2.txt.

    Each non-blank line is ``label path1 path2`` (whitespace separated, label 0
    or 1). With ``root``, paths are joined onto it and returned as absolute
    strings. With ``check_exists``, every referenced file must exist; otherwise
    MissingTrialFilesError lists all missing ones (nothing is skipped).

    A list that is not UTF-8 text is a ValueError naming the file and line. Nothing listed is dropped, but a trial
    listed again (the same enrolment and test file) is warned of: with the same label, counting the repeats (each is
    scored and counts again in the error rates); with the other label, naming the lines. A trial that pairs a file
    with itself scores 1.0 whoever speaks: warned of, naming it.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a trial list file ('label enroll test' per line)")
    if not path.exists():
        raise FileNotFoundError(f"trial list {path} does not exist")
    trials: list[Trial] = []
    seen: dict[tuple[str, str], tuple[int, int]] = {}  # (enroll, test) -> (label, first line)
    repeats, conflicts, self_pairs = 0, [], []
    try:
        handle = path.open("rb")
    except OSError as error:  # unreadable: permissions, a broken link...
        raise ValueError(f"cannot read trial list {path}: {error.strerror or error}") from None
    with handle:
        for line_number, raw in enumerate(handle, start=1):
            line = _decode_line(raw, path, line_number)
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
            first_label, first_line = seen.setdefault((enroll, test), (int(label), line_number))
            if first_line != line_number and first_label == int(label):
                repeats += 1
            elif first_line != line_number:
                what = f"line {line_number} labels {fields[1]} {fields[2]} {label}, line {first_line} {first_label}"
                conflicts.append(what)
            if enroll == test:
                self_pairs.append(f"line {line_number}: {fields[1]}")
            trials.append(Trial(int(label), enroll, test))
    if not trials:
        raise ValueError(f"{path}: trial list contains no trials")
    if repeats:
        warnings.warn(
            f"{path}: {repeats} of {len(trials)} trials repeat one listed before (same label, enrolment and test "
            "file); they are kept and each repeat counts again in the error rates. Remove them to count every trial "
            "once",
            stacklevel=2,
        )
    if conflicts:
        warnings.warn(
            f"{path}: {len(conflicts)} trial(s) list a pair again with the other label; both are kept and scored, so "
            f"one of them counts as an error whatever the score: {_listing(conflicts)}",
            stacklevel=2,
        )
    if self_pairs:
        warnings.warn(
            f"{path}: {len(self_pairs)} trial(s) pair a file with itself, which scores 1.0 whoever speaks; they are "
            f"kept and scored: {_listing(self_pairs)}",
            stacklevel=2,
        )

    if check_exists:
        missing = [p for p in unique_paths(trials) if not os.path.isfile(p)]
        if missing:
            raise MissingTrialFilesError(path, missing)
    return trials


def _listing(items: list[str]) -> str:
    more = len(items) - _MAX_LISTED
    return "; ".join(items[:_MAX_LISTED]) + (f"; ... and {more} more" if more > 0 else "")


def _decode_line(raw: bytes, path: Path, line_number: int) -> str:
    """One line of a trial list as text (a UTF-8 byte-order mark on the first line is dropped); other encodings are
    a ValueError naming the file, the line and the byte."""
    try:
        return raw.decode("utf-8-sig" if line_number == 1 else "utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}:{line_number}: not UTF-8 text (byte 0x{raw[error.start]:02x} at column {error.start + 1}); "
            "save the trial list as UTF-8"
        ) from None


def unique_paths(trials: Iterable[Trial]) -> list[str]:
    """All enroll/test paths of ``trials``, each once, in first-seen order."""
    seen: dict[str, None] = {}
    for trial in trials:
        seen.setdefault(trial.enroll)
        seen.setdefault(trial.test)
    return list(seen)


def make_trials(
    paths: Sequence[str],
    speakers: Sequence[str],
    num_trials: int,
    seed: int | np.random.Generator = 0,
    sessions: Sequence[str] | None = None,
    *,
    all_pairs: bool = False,
    at_most: bool = False,
) -> list[Trial]:
    """Balanced random trials among `paths` (half same-speaker, half different), no file paired with itself.

    With `sessions` (e.g. VoxCeleb video ids), same-speaker trials pair different sessions wherever the speaker has
    more than one, as VoxCeleb's own trial lists do: same-session pairs would reward recognising the recording.
    `seed` is an int or a `np.random.Generator` (advanced by the draw).

    By default pairs are drawn at random, which is cheap on lists of any size; a draw that repeats a trial is
    dropped, so a small list may give fewer than `num_trials`. The result is sorted by path.

    With `all_pairs=True`, every eligible pair is listed and `num_trials // 2` of each kind drawn without
    replacement: uniform over pairs, no pair twice in either order, in random order and with random sides.
    `num_trials` must then be even, and a kind with too few pairs is a ValueError; with `at_most=True` instead as
    many trials as the smaller pool allows (none when a pool is empty).
    """
    sessions = list(paths) if sessions is None else list(sessions)
    if not len(paths) == len(speakers) == len(sessions):
        raise ValueError(f"got {len(paths)} paths, {len(speakers)} speakers and {len(sessions)} sessions")
    found: dict[str, set[str]] = {}
    for speaker, session in zip(speakers, sessions):
        found.setdefault(speaker, set()).add(session)
    multi_session = {speaker for speaker, speaker_sessions in found.items() if len(speaker_sessions) > 1}
    rng = np.random.default_rng(seed)
    if all_pairs:
        return _all_pair_trials(list(paths), speakers, sessions, multi_session, num_trials, rng, at_most)
    return _sampled_trials(paths, speakers, sessions, multi_session, num_trials, rng)


def _sampled_trials(paths, speakers, sessions, multi_session, num_trials, rng) -> list[Trial]:
    by_speaker: dict[str, list[tuple[str, str]]] = {}
    for path, speaker, session in zip(paths, speakers, sessions):
        by_speaker.setdefault(speaker, []).append((path, session))
    eligible = [s for s, files in by_speaker.items() if len(files) >= 2]
    if not eligible or len(by_speaker) < 2:
        raise ValueError("trials need at least 2 speakers, one of them with 2 or more files")
    names = sorted(by_speaker)
    trials: set[Trial] = set()
    for _ in range(20 * num_trials):
        if len(trials) >= num_trials:
            break
        if len(trials) % 2 == 0:
            speaker = eligible[rng.integers(len(eligible))]
            files = by_speaker[speaker]
            first, second = (files[i] for i in rng.choice(len(files), size=2, replace=False))
            if first[1] == second[1] and speaker in multi_session:
                continue
            trials.add(Trial(1, first[0], second[0]))
        else:
            a, b = rng.choice(len(names), size=2, replace=False)
            first = by_speaker[names[a]][rng.integers(len(by_speaker[names[a]]))][0]
            second = by_speaker[names[b]][rng.integers(len(by_speaker[names[b]]))][0]
            trials.add(Trial(0, first, second))
    return sorted(trials, key=lambda t: (t.enroll, t.test, t.label))


def _all_pair_trials(paths, speakers, sessions, multi_session, num_trials, rng, at_most) -> list[Trial]:
    if not at_most and (num_trials < 2 or num_trials % 2):
        raise ValueError(f"num_trials must be an even number >= 2, got {num_trials}")
    speakers, sessions = np.asarray(speakers), np.asarray(sessions)
    first, second = np.triu_indices(len(paths), 1)
    same_speaker = speakers[first] == speakers[second]
    cross_session = (sessions[first] != sessions[second]) | ~np.isin(speakers[first], list(multi_session))
    target = np.flatnonzero(same_speaker & cross_session)
    nontarget = np.flatnonzero(~same_speaker)
    half = num_trials // 2
    if at_most:
        half = min(half, len(target), len(nontarget))
        if half == 0:
            return []
    for name, pool in (("target", target), ("non-target", nontarget)):
        if len(pool) < half:
            raise ValueError(
                f"num_trials={num_trials} needs {half} {name} pairs but the test set only has {len(pool)}; "
                "use fewer trials or more test speakers/utterances"
            )
    chosen = np.concatenate([rng.choice(target, half, replace=False), rng.choice(nontarget, half, replace=False)])
    labels = np.repeat([1, 0], half)
    order = rng.permutation(2 * half)
    swap = rng.random(2 * half) < 0.5
    trials = []
    for i in order:
        a, b = first[chosen[i]], second[chosen[i]]
        if swap[i]:
            a, b = b, a
        trials.append(Trial(int(labels[i]), paths[a], paths[b]))
    return trials


def write_trials(trials: Iterable[Trial], path) -> Path:
    """Write `trials` as `label enroll test` lines (the format `read_trials` reads); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{t.label} {t.enroll} {t.test}\n" for t in trials), encoding="utf-8")
    return path
