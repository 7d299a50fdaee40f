"""Speaker-labelled `datasets.Dataset`s from a VoxCeleb folder, a CSV/JSONL manifest or any `datasets.Dataset`;
their labels and the speaker-disjoint validation split.

Every builder (`dataset_from_voxceleb`, `dataset_from_manifest`, `dataset_from_hf`) returns the same columns:

* ``path``: absolute path of the audio file (str),
* ``speaker``: speaker id (str),
* ``label``: int, contiguous 0..N-1 in sorted speaker order,
* ``duration``: seconds, read from the file header (float). A file whose header cannot be read is **kept** with a
  NaN duration (and a warning): listing never decodes or drops anything. `check_dataset_audio` then reports it as
  unreadable, together with the empty, NaN/Inf and too-short files, before training starts.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from datasets import (
    Audio,
    ClassLabel,
    Dataset,
    DatasetDict,
    Features,
    IterableDataset,
    Value,
    load_dataset,
    load_from_disk,
)

from ...audio_io import AudioDecodingError, audio_duration

logger = logging.getLogger(__name__)

_CORE_COLUMNS = ("path", "speaker", "label", "duration")


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _listing(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(x) for x in items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


# ---------------------------------------------------------------------------------------------------- builders
def _header_duration(path: str) -> float:
    try:
        return audio_duration(path)
    except AudioDecodingError:
        return math.nan


def _header_durations(paths: Sequence[str], num_workers: int | None = None) -> list[float]:
    """Durations from the file headers (NaN where unreadable), read in threads (libsndfile releases the GIL)."""
    with ThreadPoolExecutor(max_workers=num_workers or _default_workers()) as pool:
        durations = list(pool.map(_header_duration, paths, chunksize=64))
    unreadable = [p for p, d in zip(paths, durations) if math.isnan(d)]
    if unreadable:
        logger.warning(
            "%d of %d audio headers could not be read (kept with duration NaN; check_dataset_audio reports them): %s",
            len(unreadable),
            len(paths),
            _listing(unreadable),
        )
    return durations


def _labels_for(speakers: Sequence[str]) -> tuple[list[int], dict[str, int]]:
    label2id = {speaker: i for i, speaker in enumerate(sorted(set(speakers)))}
    return [label2id[s] for s in speakers], label2id


def _make_dataset(paths: list[str], speakers: list[str], extras: dict[str, list], source: str) -> Dataset:
    """The common columns (+ `extras`) as a Dataset; checks duplicates and any given `label` / `duration` column."""
    if not paths:
        raise ValueError(f"{source} lists no audio files")
    duplicates = [p for p, n in Counter(paths).items() if n > 1]
    if duplicates:
        raise ValueError(f"{source} lists {len(duplicates)} audio file(s) more than once: {_listing(duplicates)}")
    labels, _ = _labels_for(speakers)
    extras = dict(extras)

    given_labels = extras.pop("label", None)
    if given_labels is not None:
        try:
            given = [int(x) for x in given_labels]
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: the 'label' column must hold integers ({error})") from None
        if given != labels:
            raise ValueError(
                f"{source}: its 'label' column does not number the speakers 0..N-1 in sorted order; labels are "
                "derived from the 'speaker' column here, so remove or rename the 'label' column"
            )

    given_durations = extras.pop("duration", None)
    if given_durations is None:
        durations = _header_durations(paths)
    else:
        try:
            durations = [math.nan if x is None or x == "" else float(x) for x in given_durations]
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: the 'duration' column must hold numbers in seconds ({error})") from None
        negative = [p for p, d in zip(paths, durations) if d < 0]
        if negative:
            raise ValueError(f"{source}: negative 'duration' for {_listing(negative)}")
        blank = [i for i, d in enumerate(durations) if math.isnan(d)]
        for i, duration in zip(blank, _header_durations([paths[i] for i in blank]) if blank else []):
            durations[i] = duration  # rows without a given duration get the header's

    core = Features(
        {"path": Value("string"), "speaker": Value("string"), "label": Value("int64"), "duration": Value("float64")}
    )
    dataset = Dataset.from_dict(
        {"path": paths, "speaker": speakers, "label": labels, "duration": durations}, features=core
    )
    for name, values in extras.items():  # extra columns keep their inferred types
        dataset = dataset.add_column(name, values)
    return dataset


def dataset_from_voxceleb(root: str | os.PathLike, extensions: Sequence[str] = (".wav",)) -> Dataset:
    """A dataset of every `<root>/wav/<speaker_id>/<video_id>/<utt>.wav` file, sorted by path.

    `root` may also be the `wav` folder itself. Extra column: ``video`` (the video id). See the module docstring for
    the common columns.

    Raises:
        FileNotFoundError: `root` does not exist.
        ValueError: no audio files, or audio files outside the `<speaker>/<video>/<utt>` layout (listed).
    """
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise FileNotFoundError(f"VoxCeleb folder {str(root)!r} does not exist or is not a directory")
    wav_dir = root / "wav" if (root / "wav").is_dir() else root
    suffixes = {ext.lower() for ext in extensions}
    files = sorted(p for p in wav_dir.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
    if not files:
        raise ValueError(
            f"no audio files ({', '.join(sorted(suffixes))}) under {str(wav_dir)!r}; expected the VoxCeleb layout "
            "<root>/wav/<speaker_id>/<video_id>/<utt>.wav"
        )
    relative = [p.relative_to(wav_dir).parts for p in files]
    misplaced = [str(p) for p, parts in zip(files, relative) if len(parts) != 3]
    if misplaced:
        raise ValueError(
            f"{len(misplaced)} audio file(s) under {str(wav_dir)!r} are not at <speaker_id>/<video_id>/<utt>: "
            f"{_listing(misplaced)}"
        )
    return _make_dataset(
        [str(p) for p in files],
        [parts[0] for parts in relative],
        {"video": [parts[1] for parts in relative]},
        source=f"VoxCeleb folder {str(wav_dir)!r}",
    )


def _read_csv_manifest(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        if not reader.fieldnames:
            raise ValueError(f"manifest {str(path)!r} is empty (no header row)")
        rows = []
        for row in reader:
            if None in row:
                raise ValueError(f"manifest {str(path)!r} line {reader.line_num}: more fields than header columns")
            missing = [k for k, v in row.items() if v is None]
            if missing:
                raise ValueError(f"manifest {str(path)!r} line {reader.line_num}: no value for column(s) {missing}")
            rows.append(row)
    return list(reader.fieldnames), rows


def _read_jsonl_manifest(path: Path) -> tuple[list[str], list[dict]]:
    columns: dict[str, None] = {}
    rows = []
    with open(path, encoding="utf-8") as file:
        for line_number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"manifest {str(path)!r} line {line_number}: invalid JSON ({error})") from None
            if not isinstance(row, dict):
                raise ValueError(f"manifest {str(path)!r} line {line_number}: expected a JSON object, got {row!r:.80}")
            for key in ("path", "speaker"):
                if key not in row:
                    raise ValueError(f"manifest {str(path)!r} line {line_number}: no {key!r} field")
            columns.update(dict.fromkeys(row))
            rows.append(row)
    return list(columns), rows


def dataset_from_manifest(path: str | os.PathLike) -> Dataset:
    """A dataset from a CSV (`.csv`) or JSON-lines (`.jsonl` / `.json`) manifest with at least `path` and `speaker`.

    Relative paths are resolved against the manifest's folder. Other columns are kept (CSV values stay strings; a
    JSONL row without an optional field gets None). A `duration` column is used as given (seconds) instead of reading
    the headers (blank entries are read from the header); a `label` column must match the derived numbering (0..N-1
    in sorted speaker order). Rows keep the manifest's order.
    """
    path = Path(os.path.abspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"manifest {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        columns, rows = _read_csv_manifest(path)
    elif suffix in (".jsonl", ".json"):
        columns, rows = _read_jsonl_manifest(path)
    else:
        raise ValueError(f"manifest {str(path)!r}: unsupported extension {suffix!r}; use .csv or .jsonl")
    missing = [c for c in ("path", "speaker") if c not in columns]
    if missing:
        raise ValueError(f"manifest {str(path)!r} is missing required column(s) {missing}; its columns are {columns}")

    paths, speakers = [], []
    for number, row in enumerate(rows, 1):
        audio_path, speaker = row["path"], row["speaker"]
        if not isinstance(audio_path, str) or not audio_path.strip():
            raise ValueError(
                f"manifest {str(path)!r} row {number}: 'path' must be a non-empty string, got {audio_path!r}"
            )
        if speaker is None or (isinstance(speaker, str) and not speaker.strip()):
            raise ValueError(f"manifest {str(path)!r} row {number}: 'speaker' is empty")
        paths.append(os.path.normpath(os.path.join(path.parent, os.path.expanduser(audio_path))))
        speakers.append(str(speaker))
    extras = {c: [row.get(c) for row in rows] for c in columns if c not in ("path", "speaker")}
    return _make_dataset(paths, speakers, extras, source=f"manifest {str(path)!r}")


def _embedded_audio_path(entry: Any, row: int, extract_dir: Path | None) -> str:
    """The local path of one `Audio(decode=False)` entry; embedded bytes are written to `extract_dir` if needed."""
    if not isinstance(entry, Mapping):
        raise ValueError(f"row {row}: expected an audio dict with 'path' / 'bytes', got {type(entry).__name__}")
    path, data = entry.get("path"), entry.get("bytes")
    if path and (data is None or os.path.isfile(path)):
        return os.path.abspath(path)
    if data is None:
        raise ValueError(f"row {row}: the audio entry has neither a path nor bytes")
    if extract_dir is None:
        raise ValueError(
            f"row {row}: the audio is embedded as bytes (path {path!r} is not a local file); pass extract_dir= to "
            "write embedded audio to files there"
        )
    # <content hash>/<the entry's own relative path>: unique, and error reports still name the original file.
    digest = hashlib.sha1(data).hexdigest()
    relative = Path(path) if path and not os.path.isabs(path) and ".." not in Path(path).parts else None
    if relative is not None and relative.suffix:
        target = extract_dir / digest[:16] / relative
    else:
        suffix = Path(path).suffix if path and Path(path).suffix else ".audio"  # soundfile detects the format
        target = extract_dir / f"{digest}{suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file():
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        partial.write_bytes(data)
        os.replace(partial, target)
    return str(target)


def dataset_from_hf(
    dataset: Dataset,
    audio_column: str = "audio",
    speaker_column: str = "speaker",
    extract_dir: str | os.PathLike | None = None,
) -> Dataset:
    """A dataset from any `datasets.Dataset` with an audio column and a speaker column, without decoding audio.

    `audio_column` is either a string path column or an `Audio` column (a decoding `Audio()` column is cast to
    `Audio(decode=False)` first). Entries whose `path` is a local file use it; entries holding only `bytes` (e.g. Hub
    parquet datasets) are written once to `extract_dir` (named by content hash), which must then be given.
    `speaker_column` may hold strings, integers or a `ClassLabel` (its names become the speaker ids). Other columns are
    kept, except that a `label` or `duration` column is checked / used as in `dataset_from_manifest`, and a column
    named `path` or `speaker` that is not the audio / speaker column is refused (rename it first).
    """
    if isinstance(dataset, DatasetDict):
        raise TypeError(f"expected a datasets.Dataset, got a DatasetDict with splits {list(dataset)}; pick one split")
    if not isinstance(dataset, Dataset):
        raise TypeError(f"expected a datasets.Dataset, got {type(dataset).__name__}")
    for option, column in (("audio_column", audio_column), ("speaker_column", speaker_column)):
        if column not in dataset.column_names:
            raise ValueError(
                f"{option} {column!r} is not a column of the dataset; its columns are {dataset.column_names}"
            )
    clashes = [c for c in ("path", "speaker") if c in dataset.column_names and c not in (audio_column, speaker_column)]
    if clashes:
        raise ValueError(
            f"the dataset has column(s) {clashes}, which the output uses for the audio path / speaker id; rename them "
            "first (dataset.rename_column)"
        )

    audio_feature = dataset.features[audio_column]
    if isinstance(audio_feature, Audio):
        if audio_feature.decode:
            dataset = dataset.cast_column(audio_column, Audio(decode=False))
        target = Path(os.path.abspath(extract_dir)) if extract_dir is not None else None
        if target is not None:
            target.mkdir(parents=True, exist_ok=True)
        paths = [_embedded_audio_path(entry, i, target) for i, entry in enumerate(dataset[audio_column])]
    elif isinstance(audio_feature, Value) and audio_feature.dtype in ("string", "large_string"):
        paths = []
        for i, entry in enumerate(dataset[audio_column]):
            if not entry:
                raise ValueError(f"row {i}: empty audio path in column {audio_column!r}")
            paths.append(os.path.abspath(entry))
    else:
        raise TypeError(
            f"audio_column {audio_column!r} must hold path strings or be an Audio feature, got {audio_feature!r}"
        )

    speaker_feature = dataset.features[speaker_column]
    raw_speakers = list(dataset[speaker_column])
    if any(s is None or s == "" for s in raw_speakers):
        row = next(i for i, s in enumerate(raw_speakers) if s is None or s == "")
        raise ValueError(f"row {row}: empty speaker id in column {speaker_column!r}")
    if isinstance(speaker_feature, ClassLabel):
        speakers = [speaker_feature.int2str(int(s)) for s in raw_speakers]
    else:
        speakers = [str(s) for s in raw_speakers]

    # A speaker column named "label" is not an extra: it becomes the renumbered label.
    extras = {c: list(dataset[c]) for c in dataset.column_names if c not in (audio_column, speaker_column)}
    return _make_dataset(paths, speakers, extras, source="the Hugging Face dataset")


# ---------------------------------------------------------------------------------------------------- labels / split
def _require_columns(dataset: Dataset, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(f"the dataset is missing column(s) {missing}; its columns are {dataset.column_names}")


def label_maps(dataset: Dataset) -> tuple[dict[int, str], dict[str, int]]:
    """(id2label, label2id) from the `label` and `speaker` columns, checked to be one-to-one and contiguous."""
    _require_columns(dataset, ("label", "speaker"))
    id2label: dict[int, str] = {}
    label2id: dict[str, int] = {}
    for label, speaker in sorted(set(zip(dataset["label"], dataset["speaker"]))):
        label = int(label)
        if label in id2label:
            raise ValueError(f"label {label} is used by more than one speaker ({id2label[label]!r}, {speaker!r})")
        if speaker in label2id:
            raise ValueError(f"speaker {speaker!r} has more than one label ({label2id[speaker]}, {label})")
        id2label[label] = speaker
        label2id[speaker] = label
    if sorted(id2label) != list(range(len(id2label))):
        raise ValueError(f"labels are not contiguous 0..{len(id2label) - 1}: {sorted(id2label)[:20]}")
    return id2label, label2id


def relabel(dataset: Dataset) -> Dataset:
    """The dataset with `label` renumbered 0..N-1 in sorted speaker order (a no-op when it already is)."""
    _require_columns(dataset, ("speaker",))
    labels, _ = _labels_for(list(dataset["speaker"]))
    if "label" in dataset.column_names:
        if list(dataset["label"]) == labels:
            return dataset
        dataset = dataset.remove_columns("label")
    dataset = dataset.add_column("label", labels, feature=Value("int64"))
    order = [c for c in _CORE_COLUMNS if c in dataset.column_names]
    return dataset.select_columns(order + [c for c in dataset.column_names if c not in order])


def speaker_disjoint_split(dataset: Dataset, validation_speakers: int | float, seed: int = 0) -> DatasetDict:
    """Splits by speaker: "train" and "validation" share no speaker; the same seed gives the same split.

    Args:
        validation_speakers: number of held-out speakers (int >= 1) or their fraction (float in (0, 1), rounded,
            at least one speaker on each side).
        seed: draws which speakers are held out (independent of the row order).

    Each split's labels are renumbered 0..N-1 in sorted speaker order; use `label_maps(split["train"])` for the
    classifier's id2label / label2id. Validation labels number the held-out speakers only (for verification trials),
    they are not classifier classes.
    """
    _require_columns(dataset, ("speaker",))
    column = list(dataset["speaker"])
    speakers = sorted(set(column))
    total = len(speakers)
    if total < 2:
        raise ValueError(f"a speaker-disjoint split needs at least 2 speakers, the dataset has {total}")
    if isinstance(validation_speakers, bool) or not isinstance(
        validation_speakers, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            f"validation_speakers must be an int (count) or a float (fraction), got {validation_speakers!r}"
        )
    if isinstance(validation_speakers, (int, np.integer)):
        count = int(validation_speakers)
        if not 1 <= count < total:
            raise ValueError(
                f"validation_speakers={count} must be between 1 and {total - 1} (the dataset has {total} speakers)"
            )
    else:
        if not 0.0 < validation_speakers < 1.0:
            raise ValueError(f"validation_speakers={validation_speakers} as a fraction must be in (0, 1)")
        count = round(validation_speakers * total)
        if not 1 <= count < total:
            raise ValueError(
                f"validation_speakers={validation_speakers} of {total} speakers gives {count} held-out speakers; "
                "each side needs at least one"
            )
    rng = np.random.default_rng(seed)
    held_out = {speakers[i] for i in rng.choice(total, size=count, replace=False)}
    train_rows = [i for i, s in enumerate(column) if s not in held_out]
    validation_rows = [i for i, s in enumerate(column) if s in held_out]
    return DatasetDict(
        train=relabel(dataset.select(train_rows)),
        validation=relabel(dataset.select(validation_rows)),
    )


# ---------------------------------------------------------------------------------------------------- config sources
def is_saved_dataset(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
    folder = Path(path)
    return folder.is_dir() and ((folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file())


def torchcodec_available() -> bool:
    """Whether torchcodec can be imported (it also needs FFmpeg's shared libraries): `datasets` needs it to decode an
    `Audio()` column and to encode the audio that packaged builders such as `audiofolder` write."""
    try:
        from torchcodec.decoders import AudioDecoder  # noqa: F401
    except (ImportError, OSError, RuntimeError):
        return False
    return True


# An `Audio` column's Arrow storage, as plain features: rows read as `{"bytes", "path"}` like `Audio(decode=False)`.
AUDIO_STORAGE = {"bytes": Value("binary"), "path": Value("string")}

AUDIOFOLDER_METADATA = ("metadata.csv", "metadata.jsonl", "metadata.parquet")


def audiofolder_features(data_dir: str | os.PathLike, audio_column: str = "audio") -> Features:
    """`features=` for `load_dataset("audiofolder", ...)` that keep the audio as file paths (a string column), so the
    builder encodes nothing and needs no torchcodec; the labels are the audio files' folder names, sorted, as
    `audiofolder` infers them. A folder with a metadata file is refused (its columns would need features too)."""
    from datasets.packaged_modules.audiofolder.audiofolder import AudioFolder

    root = Path(data_dir)
    if any(next(root.rglob(name), None) for name in AUDIOFOLDER_METADATA):
        raise ValueError(
            f"{root} has a metadata file: reading it with audiofolder needs torchcodec (and FFmpeg's libraries) "
            "to encode the audio; install torchcodec, or list the files in data.train_manifest instead"
        )
    extensions = {extension.lower() for extension in AudioFolder.EXTENSIONS}
    labels = sorted({p.parent.name for p in root.rglob("*") if p.is_file() and p.suffix.lower() in extensions})
    return Features({audio_column: Value("string"), "label": ClassLabel(names=labels)})


def load_hf_source(source: Any) -> Dataset | IterableDataset:
    """The `data.dataset` source (a `DatasetSource`) as a `Dataset`, or an `IterableDataset` with `streaming`.

    A `save_to_disk` folder goes to `load_from_disk` (its `split` is picked from a DatasetDict); anything else to
    `load_dataset(path, name=, split=, data_files=, data_dir=, revision=, streaming=)`. The audio column is cast to
    `Audio(decode=False)`: audio is decoded later by `audio_io.load_audio` (soundfile, PyAV for m4a), never through
    `datasets`. Where torchcodec is missing, an `audiofolder` source is read with its audio column as paths
    (`audiofolder_features`), which `datasets` need not encode.
    """
    if is_saved_dataset(source.path):
        dataset = load_from_disk(source.path)
        if isinstance(dataset, DatasetDict):
            if source.split not in dataset:
                raise ValueError(f"{source.path!r} has splits {list(dataset)}; data.dataset.split is {source.split!r}")
            dataset = dataset[source.split]
        if source.streaming:
            dataset = dataset.to_iterable_dataset(num_shards=max(1, min(len(dataset), 64)))
    else:
        options = {k: getattr(source, k) for k in ("name", "data_files", "data_dir", "revision")}
        if source.path == "audiofolder" and source.data_dir and not torchcodec_available():
            options["features"] = audiofolder_features(source.data_dir, source.audio_column)
        dataset = load_dataset(
            source.path,
            split=source.split,
            streaming=source.streaming,
            **{k: v for k, v in options.items() if v is not None},
        )
    columns = list(dataset.features) if dataset.features is not None else None
    for option in ("audio_column", "speaker_column"):
        column = getattr(source, option)
        if columns is not None and column not in columns:
            raise ValueError(
                f"data.dataset.{option} {column!r} is not a column of {source.path!r}; its columns are {columns}"
            )
    if isinstance(dataset.features[source.audio_column], Audio):
        # A stream re-encodes every row through its features as it iterates, and `Audio.encode_example` needs
        # torchcodec even for `decode=False`; the same storage as a plain struct needs nothing.
        target = AUDIO_STORAGE if isinstance(dataset, IterableDataset) else Audio(decode=False)
        dataset = dataset.cast_column(source.audio_column, target)
    return dataset


def dataset_from_source(source: Any, extract_dir: str | os.PathLike) -> Dataset:
    """A speaker dataset (the columns of `dataset_from_hf`) from a non-streaming `data.dataset` source; audio held
    only as bytes (parquet, Hub) is written once to `extract_dir`, named by its content hash."""
    if source.streaming:
        raise ValueError("a streaming source is an IterableDataset; read it with training/data/streaming.py")
    return dataset_from_hf(load_hf_source(source), source.audio_column, source.speaker_column, extract_dir)


# The training sources, by their `data` key: `training_dataset` builds the one the config sets.
TRAINING_SOURCES: dict[str, Callable[[Any, Path], Dataset]] = {
    "train_dir": lambda data, work_dir: dataset_from_voxceleb(data.train_dir, tuple(data.audio_extensions)),
    "train_manifest": lambda data, work_dir: dataset_from_manifest(data.train_manifest),
    "dataset": lambda data, work_dir: dataset_from_source(data.dataset, work_dir / "extracted_audio"),
}


def chosen_source(data: Any) -> str:
    """The one `data` key among `TRAINING_SOURCES` that is set (a clear error for none or several)."""
    chosen = [key for key in TRAINING_SOURCES if getattr(data, key, None)]
    if len(chosen) != 1:
        keys = ", ".join(f"data.{k}" for k in TRAINING_SOURCES)
        raise ValueError(f"set exactly one training source among {keys}; set: {chosen or 'none'}")
    return chosen[0]


def training_dataset(data: Any, work_dir: str | os.PathLike) -> Dataset:
    """The speaker dataset of the training source the `data` config section sets (see `TRAINING_SOURCES`).

    Raises:
        ValueError: no source or several, a missing column, or fewer than 2 speakers (named with the column).
    """
    key = chosen_source(data)
    dataset = TRAINING_SOURCES[key](data, Path(work_dir))
    speakers = sorted(set(dataset["speaker"]))
    if len(speakers) < 2:
        where = f" (column data.dataset.speaker_column {data.dataset.speaker_column!r})" if key == "dataset" else ""
        raise ValueError(
            f"the training source data.{key} has {len(speakers)} speaker(s){where}: {_listing(speakers)}; speaker "
            "verification training needs at least 2 (and held-out validation speakers)"
        )
    return dataset
