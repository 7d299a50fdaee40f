"""Enrolled speakers for identification: one averaged, L2-normalised embedding per speaker, searched by matmul.

The file is safetensors with a SHA-256 checksum over its contents in the metadata, verified on load; writers that
share a file take its lock (`SpeakerDatabase.lock`, a `filelock` lock file beside it) across read-modify-write, so
two concurrent `wavlmrawnet enroll` runs both land.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import stat
import tempfile
import unicodedata
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock, Timeout
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

__all__ = [
    "MAX_NAME_LENGTH",
    "ModelMismatchError",
    "SpeakerDatabase",
    "UNKNOWN_SPEAKER",
    "check_speaker_name",
    "check_threshold",
    "model_identity",
    "shown_name",
]

UNKNOWN_SPEAKER = "unknown"
FORMAT = "wavlmrawnet-speaker-database/2"  # /2 adds the checksum
FORMAT_V1 = "wavlmrawnet-speaker-database/1"  # still read: no checksum, every value is checked
MAX_NAME_LENGTH = 100
LOCK_TIMEOUT_SECONDS = 600.0
# Config keys that do not change the embeddings: calibrating a model or moving its threshold keeps its database.
_DECISION_KEYS = frozenset(
    ("verification_threshold", "calibration", "p_target", "auto_map", "custom_pipelines", "transformers_version",
     "architectures", "_name_or_path", "chunk_seconds", "chunk_overlap_seconds", "dtype", "torch_dtype")
)  # fmt: skip


class ModelMismatchError(ValueError):
    """The database's embeddings come from another model than the one given."""


def shown_name(name, limit: int = 40) -> str:
    """`repr` of a name for a message, cut to `limit` characters: a 100,000-character name is not echoed whole."""
    text = name if isinstance(name, str) else str(name)
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def check_speaker_name(name) -> str:
    """Returns `name` if it can be a speaker's name, else raises a ValueError that says why.

    A name is shown in tables, TSV lines and titles, and "unknown" is the answer for no match, so it must be a
    non-empty string of at most `MAX_NAME_LENGTH` characters, without leading or trailing spaces, without control or
    line-separator characters (a newline or tab would break `identify`'s TSV output), and not "unknown" in any
    letter case.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a speaker name must be a non-empty string, got {shown_name(name)}")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"a speaker name is at most {MAX_NAME_LENGTH} characters, got {len(name)}")
    if name != name.strip():
        raise ValueError(f"a speaker name must not start or end with spaces, got {shown_name(name)}")
    if any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in name):
        raise ValueError(
            f"a speaker name must not hold control characters (newline, tab, ...), got {shown_name(name)}"
        )
    if name.casefold() == UNKNOWN_SPEAKER:
        raise ValueError(f"{name!r} reads as the answer for no match ({UNKNOWN_SPEAKER!r}); choose another name")
    return name


def check_threshold(threshold, what: str = "threshold") -> float:
    """`threshold` as a float if it is a finite number, else a ValueError naming `what`: a NaN threshold answered
    every query "unknown" (every comparison with NaN is false), silently. Any finite value is a decision: above 1 no
    cosine reaches it (everything is unknown), below -1 every one does."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(threshold, bool) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number (a cosine score), got {threshold!r:.40}")
    return value


def replacement_mode(path: Path) -> int:
    """The mode a file written to replace `path` should get: that of the file it replaces, or for a new file 0666 less
    the umask (what `open` would give it; `mkstemp` creates 0600, which a rename would keep)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _write_protected(path: Path) -> bool:
    """An existing file this process may not write, or one with no write bit at all: protected on purpose, which
    the atomic save's rename would otherwise ignore (root could write it; like `rm`, we do not)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return False
    return not os.access(path, os.W_OK) or not mode & 0o222


def model_identity(model) -> str:
    """A hash of the model's weights and of the config keys that shape its embeddings (not the threshold or the
    calibration), as 32 hex digits: embeddings of two models are comparable only if this matches."""
    config = {k: v for k, v in model.config.to_dict().items() if k not in _DECISION_KEYS}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def _as_matrix(embeddings, dim: int | None, what: str) -> np.ndarray:
    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().to("cpu", torch.float32).numpy()
    matrix = np.asarray(embeddings, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None]
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError(f"{what}: expected one (d,) or several (n, d) embeddings, got shape {matrix.shape}")
    if dim is not None and matrix.shape[1] != dim:
        raise ValueError(f"{what}: embeddings have {matrix.shape[1]} dimensions, the database holds {dim}")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{what}: embeddings hold NaN or infinite values")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{what}: an embedding is all zeros")
    return matrix / norms


def _checksum(metadata: dict[str, str], tensors: dict[str, np.ndarray]) -> str:
    """SHA-256 over the metadata (sorted) and each tensor's name, dtype, shape and bytes: any changed byte of the
    contents changes it."""
    digest = hashlib.sha256(json.dumps(metadata, sort_keys=True).encode())
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}".encode())
        digest.update(array.tobytes())
    return "sha256:" + digest.hexdigest()


class SpeakerDatabase:
    """Enrolled speakers of one model: each speaker is the mean of its utterances' L2-normalised embeddings,
    renormalised. `search` and `identify` score queries by cosine against every speaker (one matmul, no index).

    Create one with `SpeakerDatabase.for_model(model)` or `SpeakerDatabase.load(path, model)`; `save` writes a
    safetensors file atomically (a temporary file, then a rename).
    """

    def __init__(self, identity: str, dim: int, threshold: float):
        self.identity = identity
        self.dim = int(dim)
        self.threshold = float(threshold)
        self._names: list[str] = []
        self._rows: dict[str, int] = {}
        # Row i: the sum of speaker i's normalised embeddings, and their count. Rows beyond len(self) are spare
        # capacity (doubled when full), so enrolling n speakers one by one costs O(n), not O(n^2).
        self._sum_buffer = np.zeros((0, self.dim), dtype=np.float64)
        self._count_buffer = np.zeros(0, dtype=np.int64)
        self._matrix: np.ndarray | None = None  # normalised means (float32), rebuilt after a change

    @property
    def _sums(self) -> np.ndarray:
        return self._sum_buffer[: len(self._names)]

    @property
    def _counts(self) -> np.ndarray:
        return self._count_buffer[: len(self._names)]

    def _set_rows(self, sums: np.ndarray, counts: np.ndarray) -> None:
        self._sum_buffer, self._count_buffer = sums.astype(np.float64), counts.astype(np.int64)

    @classmethod
    def for_model(cls, model) -> SpeakerDatabase:
        """An empty database tied to `model` (its identity, embedding size and `config.verification_threshold`)."""
        return cls(model_identity(model), model.config.embedding_dim, model.config.verification_threshold)

    # ------------------------------------------------------------------ contents
    @property
    def names(self) -> list[str]:
        """Enrolled speakers, in enrollment order."""
        return list(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: str) -> bool:
        return name in self._rows

    def count(self, name: str) -> int:
        """Utterances averaged into `name`."""
        return int(self._counts[self._row(name)])

    def embedding(self, name: str) -> np.ndarray:
        """The speaker's normalised mean embedding."""
        return self.matrix[self._row(name)].copy()

    def _row(self, name: str) -> int:
        if name not in self._rows:
            raise KeyError(f"speaker {shown_name(name)} is not enrolled; enrolled: {self._preview()}")
        return self._rows[name]

    def _preview(self) -> str:
        if not self._names:
            return "none (the database is empty)"
        shown = ", ".join(shown_name(n) for n in self._names[:10])
        return shown + (f" and {len(self._names) - 10} more" if len(self._names) > 10 else "")

    @property
    def matrix(self) -> np.ndarray:
        """(speakers, dim) float32 matrix of normalised speaker embeddings."""
        if self._matrix is None:
            sums = self._sums
            self._matrix = (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)
        return self._matrix

    def add(self, name: str, embeddings) -> None:
        """Enrols `name` from one (d,) or several (n, d) embeddings, or adds them to its utterances: the speaker's
        embedding is the renormalised mean of all its normalised utterance embeddings."""
        check_speaker_name(name)
        matrix = _as_matrix(embeddings, self.dim, f"speaker {name!r}")
        if name in self._rows:
            row = self._rows[name]
            self._sums[row] += matrix.sum(axis=0, dtype=np.float64)
            self._counts[row] += len(matrix)
        else:
            row = len(self._names)
            if row == len(self._sum_buffer):
                capacity = max(16, 2 * row)
                self._sum_buffer = np.resize(self._sum_buffer, (capacity, self.dim))
                self._count_buffer = np.resize(self._count_buffer, capacity)
            self._sum_buffer[row] = matrix.sum(axis=0, dtype=np.float64)
            self._count_buffer[row] = len(matrix)
            self._rows[name] = row
            self._names.append(name)
        if np.linalg.norm(self._sums[self._rows[name]]) < 1e-6:
            raise ValueError(f"speaker {name!r}: its utterance embeddings cancel out (their mean is zero)")
        self._matrix = None

    def remove(self, name: str) -> None:
        """Removes a speaker; a `KeyError` names the enrolled ones if `name` is not one of them."""
        row = self._row(name)
        sums, counts = np.delete(self._sums, row, axis=0), np.delete(self._counts, row)
        del self._names[row]
        self._set_rows(sums, counts)
        self._rows = {n: i for i, n in enumerate(self._names)}
        self._matrix = None

    # ------------------------------------------------------------------ search
    def search(self, embeddings, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """For each query embedding ((d,) or (n, d)), the `top_k` most similar speakers as (name, cosine), best
        first. An empty database is a `ValueError`."""
        if not self._names:
            raise ValueError("the speaker database is empty: enrol speakers first")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        queries = _as_matrix(embeddings, self.dim, "query")
        scores = queries @ self.matrix.T  # (queries, speakers)
        k = min(top_k, scores.shape[1])
        if k < scores.shape[1]:
            best = np.argpartition(scores, -k, axis=1)[:, -k:]  # the k best, unordered: O(speakers)
        else:
            best = np.tile(np.arange(k), (len(scores), 1))
        results = []
        for row, candidates in zip(scores, best):
            ranked = candidates[np.argsort(-row[candidates], kind="stable")]
            results.append([(self._names[i], float(row[i])) for i in ranked])
        return results

    def identify(self, embeddings, threshold: float | None = None, top_k: int = 5) -> list[dict]:
        """Open-set identification: per query `{"speaker", "score", "candidates"}`. `speaker` is the best match, or
        "unknown" when its cosine is below `threshold` (default: the model's verification threshold, `threshold`
        attribute); `candidates` are the `top_k` (name, score) pairs."""
        threshold = check_threshold(self.threshold if threshold is None else threshold)
        answers = []
        for candidates in self.search(embeddings, top_k=top_k):
            name, score = candidates[0]
            answers.append(
                {"speaker": name if score >= threshold else UNKNOWN_SPEAKER, "score": score, "candidates": candidates}
            )
        return answers

    # ------------------------------------------------------------------ files
    @staticmethod
    def lock(path: str | os.PathLike, timeout: float = LOCK_TIMEOUT_SECONDS) -> contextlib.AbstractContextManager:
        """The database file's write lock (`<path>.lock`, a `filelock.FileLock`): hold it from `load` to `save` so
        that concurrent writers never overwrite each other's update. Waiting longer than `timeout` seconds raises a
        `RuntimeError` that names the lock file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path.with_name(path.name + ".lock")), timeout=timeout)

        @contextlib.contextmanager
        def held():
            try:
                lock.acquire()
            except Timeout:
                raise RuntimeError(
                    f"speaker database {path} is locked by another writer for over {timeout:.0f} s "
                    f"(lock file {lock.lock_file}); try again when it has finished"
                ) from None
            try:
                yield
            finally:
                lock.release()

        return held()

    @staticmethod
    def check_writable(path: str | os.PathLike) -> Path:
        """Refuses, with a ValueError that says why, a path `save` must not write: a folder, a path under a file,
        or an existing database that is write-protected (read-only for this process, or without any write bit).
        Call it before minutes of embedding; `save` checks it again."""
        path = Path(path)
        if path.is_dir():
            raise ValueError(
                f"speaker database {path} is a folder, not a database file: give a file path such as "
                f"{path / 'speakers.safetensors'}"
            )
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise ValueError(f"cannot write speaker database {path}: {parent} is a file, not a folder")
                break
        if _write_protected(path):
            raise ValueError(
                f"speaker database {path} is write-protected (mode {stat.S_IMODE(path.stat().st_mode):o}): it is "
                "left as it is; make it writable (chmod u+w) or give another database file"
            )
        return path

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the database as safetensors with a checksum of its contents; the file appears complete or not at
        all (temporary file + rename) and keeps the permissions of the file it replaces (a new file gets the usual
        mode, 0666 less the umask). A write-protected file is refused (`check_writable`), not replaced by the rename.
        Concurrent writers must hold `lock(path)` from `load` to `save`."""
        path = self.check_writable(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {
            "format": FORMAT,
            "model_identity": self.identity,
            "threshold": repr(self.threshold),
            "names": json.dumps(self._names),
        }
        tensors = {"sums": self._sums.astype(np.float64), "counts": self._counts.astype(np.int64)}
        metadata["checksum"] = _checksum(metadata, tensors)
        mode = replacement_mode(path)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
        try:
            save_file(tensors, temporary, metadata=metadata)
            os.chmod(temporary, mode)  # mkstemp creates 0600, and the rename would keep it
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, model=None) -> SpeakerDatabase:
        """Reads a saved database. With `model`, refuses (`ModelMismatchError`) one enrolled with another model and
        takes the model's current threshold. A file that is not a speaker database, fails its checksum or holds an
        invalid value (NaN, a wrong dimension, a bad count, an invalid or duplicate name) is a `ValueError` that
        says so. Files of the first format (no checksum) are read, with every value checked, and gain a checksum
        when next saved."""
        path = Path(path)
        if path.is_dir():
            raise ValueError(
                f"speaker database {path} is a folder, not a database file: give the .safetensors file that "
                "`wavlmrawnet enroll` wrote"
            )
        if not path.exists():
            raise FileNotFoundError(f"speaker database {path} does not exist")
        if not path.is_file():
            raise ValueError(f"speaker database {path} is not a regular file (a device or a pipe?)")
        try:
            with safe_open(str(path), framework="numpy") as handle:
                metadata = handle.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise ValueError(f"{path} is not a readable speaker database (corrupt?): {error}") from None
        if metadata.get("format") not in (FORMAT, FORMAT_V1):
            raise ValueError(f"{path} is not a wavlmrawnet speaker database (format {metadata.get('format')!r})")
        damaged = f"{path} is a damaged speaker database"
        if metadata["format"] == FORMAT:
            stored = metadata.get("checksum")
            if stored != _checksum({k: v for k, v in metadata.items() if k != "checksum"}, tensors):
                raise ValueError(
                    f"{damaged}: its checksum does not match its contents (changed or corrupted after it was "
                    "written); restore a backup or enrol the speakers again"
                )
        try:
            names = json.loads(metadata["names"])
            sums, counts = tensors["sums"], tensors["counts"]
            threshold = float(metadata["threshold"])
            identity = metadata["model_identity"]
        except (KeyError, ValueError) as error:
            raise ValueError(f"{damaged}: {error!r}") from None
        if not isinstance(names, list) or sums.ndim != 2 or len(names) != len(sums) or counts.shape != (len(names),):
            raise ValueError(f"{damaged}: names, embeddings and counts disagree")
        if len(set(names)) != len(names):
            raise ValueError(f"{damaged}: a speaker name appears twice")
        for name in names:
            try:
                check_speaker_name(name)
            except ValueError as error:
                raise ValueError(f"{damaged}: invalid stored name: {error}") from None
        if sums.dtype.kind != "f" or counts.dtype.kind not in "iu":
            raise ValueError(f"{damaged}: embeddings must be floats and counts integers")
        if not np.isfinite(sums).all() or not np.isfinite(threshold):
            raise ValueError(f"{damaged}: it holds NaN or infinite values")
        if (counts < 1).any():
            raise ValueError(f"{damaged}: a speaker has a count below 1")
        if len(sums) and (np.linalg.norm(sums, axis=1) < 1e-6).any():
            raise ValueError(f"{damaged}: a speaker's embedding is all zeros")
        if not isinstance(identity, str) or not identity:
            raise ValueError(f"{damaged}: no model identity")
        if model is not None and sums.shape[1] != model.config.embedding_dim:
            raise ValueError(
                f"{damaged}: its embeddings have {sums.shape[1]} dimensions, the model's have "
                f"{model.config.embedding_dim}"
            )
        database = cls(identity, sums.shape[1], threshold)
        if model is not None:
            expected = model_identity(model)
            if expected != identity:
                raise ModelMismatchError(
                    f"{path} was enrolled with another model (identity {identity}, this model's is {expected}); "
                    "its embeddings cannot be compared with this model's: enrol again with this model"
                )
            database.threshold = float(model.config.verification_threshold)
        database._names = list(names)
        database._rows = {n: i for i, n in enumerate(names)}
        database._set_rows(sums, counts)
        return database

    def __repr__(self) -> str:
        return f"SpeakerDatabase({len(self)} speakers, dim {self.dim}, model {self.identity[:12]})"
