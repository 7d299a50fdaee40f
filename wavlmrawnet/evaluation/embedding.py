"""Embed many files once each: length-sorted batches, explicit failures, an on-disk cache keyed by path and model.

Under `torchrun --nproc_per_node N` or `accelerate launch --num_processes N` (CPU with gloo, or GPUs), `embed_files`
splits the files into N length-balanced shards, one per process; each process adds its embeddings to the shared
cache as it goes, and rank 0 gathers them all (and alone scores / writes outputs). One process stays the default.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from ..audio_io import AudioDecodingError, audio_duration, load_audio
from ..feature_extraction_wavlmrawnet import padding_mask
from ..precision import Precision, resolve_precision
from ..quantization import model_for_precision
from ..speech_check import check_speech


@dataclass
class EmbeddingResult:
    """`embeddings` maps each path to its L2-normalised embedding; `failures` maps each failed path to its reason."""

    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    computed: int = 0  # files run through the model in this call (the rest came from the cache)
    precision: Precision | None = None  # the precision the embeddings were computed in
    # False on the other ranks of a multi-process run: they hold their own shard only; rank 0 holds every embedding.
    is_main_process: bool = True

    def raise_for_failures(self) -> None:
        if self.failures:
            listing = "\n".join(f"  {path}: {reason}" for path, reason in list(self.failures.items())[:20])
            more = f"\n  ... and {len(self.failures) - 20} more" if len(self.failures) > 20 else ""
            raise RuntimeError(f"{len(self.failures)} file(s) could not be embedded:\n{listing}{more}")


def model_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of the config and every parameter and buffer: the cache key's model part."""
    digest = hashlib.sha256(json.dumps(model.config.to_diff_dict(), sort_keys=True, default=str).encode())
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        # an int8 model's linears (`quantization.py`) hold their int8 weight and bias as a tuple, and its dtype
        for tensor in value if isinstance(value, tuple) else (value,):
            if isinstance(tensor, torch.Tensor):
                tensor = tensor.int_repr() if tensor.is_quantized else tensor
                digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
            else:
                digest.update(str(tensor).encode())
    return digest.hexdigest()[:16]


def _file_key(path: str) -> str:
    stat = os.stat(path)
    return hashlib.sha256(f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:24]


def _resolve(model, precision: str | Precision) -> Precision:
    if isinstance(precision, Precision):
        return precision
    return resolve_precision(precision, next(model.parameters()).device)


# Fault injection for the resume test: the process SIGKILLs itself after writing this many cache parts.
KILL_AFTER_PARTS_ENV = "WAVLMRAWNET_TEST_KILL_AFTER_PARTS"


def distributed_state(device: torch.device):
    """accelerate's `PartialState` when launched with more than one process (torchrun / accelerate launch), else
    None: a single process never starts a process group."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    return PartialState(cpu=device.type == "cpu")  # gloo on CPUs, nccl on GPUs


def end_distributed() -> None:
    """Destroys the process group `distributed_state` started, if any; a command calls it once before it exits.
    A process that exits with gloo's threads still up can abort at shutdown ("terminate called without an active
    exception", pytorch/pytorch#190489): a rank that finished its shard first did so in about 1 run in 10."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def cache_parts(cache_file: Path) -> list[Path]:
    """The cache's part files (written while embedding, merged into `cache_file` at the end or on the next run)."""
    return sorted(cache_file.parent.glob(f"{cache_file.stem}.part-*.safetensors"))


# The cache key of an embedding whose audio passed the no-speech check (`speech_check`) ends in this; a plain key's
# embedding was computed without the check (`require_speech=False`, or a cache written before the check was recorded)
# and is served to a speech-requiring call only once its audio passes the check.
SPEECH_CHECKED = "+speech"


def _set_aside(path: Path, problem: str) -> None:
    """Moves a damaged cache file to `<name>.corrupt-<timestamp>` (kept for a look, never read again) and warns
    naming both paths: the cache is derived data, its embeddings are computed again."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    number = 1
    while aside.exists():
        number += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{number}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:  # another process of a multi-process run moved it first
        return
    except OSError as error:
        raise RuntimeError(
            f"the embedding cache {path} is damaged ({problem}) and could not be moved aside to {aside} "
            f"({error.strerror or error}); remove it, or use another --cache-dir"
        ) from None
    warnings.warn(
        f"the embedding cache {path} is damaged ({problem}); it was moved to {aside} and its embeddings are "
        "computed again",
        stacklevel=3,
    )


def read_cache(path: Path) -> dict[str, np.ndarray]:
    """The embeddings a cache (or part) file holds, `{}` when there is none. A file that is not a readable
    safetensors file of 1-D, finite float vectors of one size (a cut write, a full disk, a stray file) is moved
    aside with a warning (`_set_aside`) and reads as empty: nothing is lost, and the run goes on."""
    if not path.exists():
        return {}
    try:
        cache = load_file(path)
    except PermissionError as error:
        raise RuntimeError(f"cannot read the embedding cache {path}: {error.strerror or error}") from None
    except Exception as error:  # safetensors' SafetensorError (header, length), OSError on a short read...
        _set_aside(path, f"{type(error).__name__}: {error}")
        return {}
    shapes = Counter(value.shape for value in cache.values())
    common = shapes.most_common(1)[0][0] if shapes else None
    for key, value in cache.items():
        if value.ndim != 1 or value.dtype.kind != "f" or value.shape != common or not np.isfinite(value).all():
            what = "non-finite values" if value.shape == common and value.dtype.kind == "f" else str(value.shape)
            _set_aside(path, f"entry {key!r} holds {value.dtype} {what}, not a finite vector of shape {common}")
            return {}
    return cache


def _drop_superseded(cache: dict[str, np.ndarray]) -> None:
    """Removes the plain entries whose speech-checked twin (`SPEECH_CHECKED`) is there: one entry per file."""
    for key in [k for k in cache if k.endswith(SPEECH_CHECKED)]:
        cache.pop(key[: -len(SPEECH_CHECKED)], None)


def merge_cache_parts(cache_file: Path) -> dict[str, np.ndarray]:
    """Folds the part files a finished or killed run left into `cache_file` (atomically), then removes them; returns
    the cache's embeddings. A damaged cache or part file is moved aside with a warning (`read_cache`)."""
    cache = read_cache(cache_file)
    parts = cache_parts(cache_file)
    if not parts:
        return cache
    for part in parts:
        cache.update(read_cache(part))
    _drop_superseded(cache)
    # mkstemp: a fresh, unpredictable name opened O_EXCL (a `.{pid}.tmp` name could be planted as a symlink)
    handle, temporary = tempfile.mkstemp(dir=cache_file.parent, prefix=f".{cache_file.name}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file(cache, temporary)
        os.replace(temporary, cache_file)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    for part in parts:
        part.unlink(missing_ok=True)
    return cache


def balanced_shards(items: Sequence, seconds: Sequence[float], count: int) -> list[list]:
    """`count` shards of about equal total duration: longest first, each to the shard with the least so far (every
    process computes the same shards from the same durations)."""
    shards, loads = [[] for _ in range(count)], [0.0] * count
    for item, duration in sorted(zip(items, seconds), key=lambda pair: -pair[1]):
        lightest = loads.index(min(loads))
        shards[lightest].append(item)
        loads[lightest] += duration
    return shards


def gather_to_main(state, embeddings: dict[str, np.ndarray], failures: dict[str, str]):
    """Every rank's embeddings to rank 0 (as one array per rank), every rank's failures to all ranks."""
    import torch.distributed as dist

    paths = list(embeddings)
    block = np.stack([embeddings[p] for p in paths]) if paths else None
    received = [None] * state.num_processes if state.is_main_process else None
    dist.gather_object((paths, block), received, dst=0)
    all_failures = [None] * state.num_processes
    dist.all_gather_object(all_failures, failures)
    gathered = {}
    if state.is_main_process:
        for rank_paths, rank_block in received:
            gathered.update(zip(rank_paths, rank_block if rank_block is not None else []))
    merged_failures = {}
    for rank_failures in all_failures:
        merged_failures.update(rank_failures)
    return gathered, merged_failures


def _in_memory_inputs(items: Sequence, feature_extractor) -> tuple[list[str], dict[str, np.ndarray], dict[str, str]]:
    """Splits `embed_files`' inputs: paths (kept as they are, cached) and every other accepted form (bytes, arrays,
    dicts, `datasets` entries), decoded now and named `<index>` or by the entry's `path`; plus their failures."""
    paths, decoded, failures = [], {}, {}
    for index, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            paths.append(os.fspath(item))
            continue
        local = item.get("path") if isinstance(item, dict) else None
        if local and not item.get("bytes") and item.get("array") is None and item.get("raw") is None:
            paths.append(os.fspath(local))  # an Audio(decode=False) entry of a local file: a path
            continue
        name = f"{local or 'input'}#{index}"
        try:
            decoded[name] = feature_extractor.prepare_one(item, name=name)
        except ValueError as error:  # AudioDecodingError, empty, NaN, too short
            failures[name] = getattr(error, "reason", None) or str(error)
    return paths, decoded, failures


def embed_files(
    model,
    feature_extractor,
    paths: Sequence,
    batch_size: int = 8,
    max_batch_seconds: float = 120.0,
    chunk_seconds: float | None = None,
    precision: str | Precision = "auto",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    vad: bool = False,
    require_speech: bool = False,
    flush_seconds: float = 60.0,
    distributed: bool | None = None,
    transform: Callable[[str, np.ndarray], np.ndarray] | None = None,
    transform_tag: str | None = None,
) -> EmbeddingResult:
    """Embeds each unique path once, longest first, in batches of similar length (minimal padding).

    `paths` may also hold any other input form the feature extractor accepts (`audio_io.ACCEPTED_FORMS`: bytes,
    `{"array"|"raw", "sampling_rate"}`, arrays with their rate in a dict, `datasets` audio entries); those are decoded
    up front, never cached, and keyed `"<path or 'input'>#<index>"` in the result. A form that is none of them raises
    a `TypeError` that lists the accepted ones.

    A file that cannot be read or is invalid (empty, NaN, too short) is recorded in `failures` with its reason; nothing
    is skipped silently. `precision` is "auto" (bf16 where the hardware runs it natively, else fp32), "fp32", "bf16",
    "int8" (CPU: the model's int8 twin runs, `quantization.py`; never chosen by "auto") or a resolved [`Precision`].
    With `cache_dir`, embeddings are stored in `<cache_dir>/<model fingerprint>-<precision>.safetensors` keyed by path,
    size and modification time, and reused; a damaged cache file is moved aside to `<name>.corrupt-<timestamp>` with a
    warning and its embeddings computed again. With `vad=True`, silence is removed first (`wavlmrawnet.vad`, the
    `[vad]` extra); a file without speech, or too short once its silence is removed, is a failure. With
    `require_speech=True` (the command line's default), a file without speech (silence, DC, hum, a steady tone:
    `wavlmrawnet.speech_check`) is a failure, not an embedding; the cache records which embeddings passed that check
    (`SPEECH_CHECKED`), and serves one computed without it only after its audio passes the check (the model does not
    run again).

    While embedding, new cache entries are written every `flush_seconds` to part files beside the cache (atomically),
    so a killed run resumes without recomputing them. Under several processes (see the module docstring) each rank
    embeds its length-balanced shard; rank 0 gets every embedding and failure, the other ranks return
    `is_main_process=False` with their shard only (and every failure, so that all exit alike). `distributed=None`
    shares the work whenever several processes were launched; pass False where one process embeds alone (e.g. the
    trainer's validation on rank 0), or every rank would wait for it.

    `transform(path, waveform)` alters each file's decoded audio before it is checked and embedded (an evaluation
    condition, `evaluation.conditions`); with `cache_dir`, `transform_tag` must name it (the condition, its seed...):
    its embeddings get their own cache file, `<fingerprint>-<precision>[-vad]-<transform_tag>.safetensors`.
    """
    if isinstance(paths, (str, bytes, os.PathLike, dict)) or not isinstance(paths, Iterable):
        raise TypeError(f"paths must be a list of recordings, got a {type(paths).__name__}: wrap one in a list")
    paths = list(paths)
    file_paths, in_memory, memory_failures = _in_memory_inputs(paths, feature_extractor)
    unique = list(dict.fromkeys(file_paths + list(in_memory) + list(memory_failures)))
    if vad:
        from ..vad import remove_silence  # optional dependency: a clear ImportError names the extra
    result = EmbeddingResult(precision=_resolve(model, precision))
    cache_file, cache = None, {}
    if cache_dir is not None:
        if transform is not None and not transform_tag:
            raise ValueError("embed_files: a transform needs a transform_tag to key its cached embeddings")
        vad_tag = "-vad" if vad else ""
        tag = f"-{transform_tag}" if transform is not None else ""
        cache_file = Path(cache_dir) / f"{model_fingerprint(model)}-{result.precision.name}{vad_tag}{tag}.safetensors"
    state = distributed_state(next(model.parameters()).device) if distributed is not False else None
    runner = model_for_precision(model, result.precision.name)  # int8: the model's int8 twin (`quantization.py`)
    if cache_file is not None:
        if state is None or state.is_main_process:
            cache = merge_cache_parts(cache_file)  # with what a killed run left; a damaged file moved aside
        if state is not None:
            state.wait_for_everyone()
            if not state.is_main_process:
                cache = read_cache(cache_file)
    result.failures.update(memory_failures)
    todo = []
    unchecked = {}  # path -> its cached embedding, computed without the speech check this call requires
    for path in unique:
        if path in in_memory or path in memory_failures:
            if path in in_memory:
                todo.append((path, None))  # not cached: no file to key it by
            continue
        try:
            key = _file_key(path)
        except OSError as error:
            result.failures[path] = f"cannot read audio file: {error.strerror or error}"
            continue
        if key + SPEECH_CHECKED in cache:
            result.embeddings[path] = cache[key + SPEECH_CHECKED]
        elif key in cache and not require_speech:
            result.embeddings[path] = cache[key]
        else:
            if key in cache:
                unchecked[path] = cache[key]  # its audio is read and checked; the model does not run
            todo.append((path, key))

    durations = {}
    for path, _ in todo:
        if path in in_memory:
            durations[path] = in_memory[path].shape[-1] / feature_extractor.sampling_rate
            continue
        try:
            durations[path] = audio_duration(path)
        except AudioDecodingError as error:
            result.failures[path] = error.reason
    todo = sorted((item for item in todo if item[0] in durations), key=lambda item: -durations[item[0]])
    if state is not None:
        todo = balanced_shards(todo, [durations[path] for path, _ in todo], state.num_processes)[state.process_index]
        if next(model.parameters()).device.type == "cuda":
            model.to(state.device)  # one GPU per process

    device = next(model.parameters()).device
    fresh, parts_written, last_flush, done_here = {}, 0, time.monotonic(), []
    stored = SPEECH_CHECKED if require_speech else ""  # the cache key's ending: the check ran and passed, or not
    kill_after = int(os.environ.get(KILL_AFTER_PARTS_ENV, "0"))

    def flush() -> None:
        nonlocal fresh, parts_written, last_flush
        if cache_file is None or not fresh:
            return
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        part = cache_file.with_name(f"{cache_file.stem}.part-{uuid.uuid4().hex}.safetensors")
        temporary = part.with_name(f".{part.name}.tmp")  # not matched by cache_parts until complete
        save_file(fresh, str(temporary))
        os.replace(temporary, part)
        fresh, parts_written, last_flush = {}, parts_written + 1, time.monotonic()
        if kill_after and parts_written >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    was_training = model.training
    model.eval()
    bar = tqdm(total=len(todo), desc="embedding", unit="file", disable=not progress)
    try:
        start = 0
        while start < len(todo):
            # Batches hold at most `batch_size` files and `max_batch_seconds` of padded audio.
            longest = max(durations[todo[start][0]], 1e-3)
            size = max(1, min(batch_size, int(max_batch_seconds // longest)))
            batch = todo[start : start + size]
            start += size
            waveforms, kept = [], []
            for path, key in batch:
                try:
                    waveform = in_memory.get(path)
                    if waveform is None:
                        waveform = load_audio(path, feature_extractor.sampling_rate)
                    if transform is not None:
                        waveform = transform(path, waveform)
                    feature_extractor.validate(waveform)  # the failure is listed under its path: not named twice
                    if vad:
                        waveform = remove_silence(waveform, feature_extractor.sampling_rate, where=path)
                        feature_extractor.validate(waveform, f"{path} (speech only, after --vad)")
                    if require_speech:
                        check_speech(waveform, feature_extractor.sampling_rate, path, warn_mostly_silent=True)
                except ValueError as error:  # AudioDecodingError is a ValueError
                    result.failures[path] = getattr(error, "reason", None) or str(error)
                    continue
                if path in unchecked:  # cached without the check, which it has now passed
                    result.embeddings[path] = cache[key + stored] = fresh[key + stored] = unchecked[path]
                    done_here.append(path)
                    continue
                waveforms.append(waveform)
                kept.append((path, key))
            if kept:
                inputs = feature_extractor(
                    waveforms, sampling_rate=feature_extractor.sampling_rate, return_tensors="pt"
                )
                mask = padding_mask(inputs["attention_mask"])  # checked here, not read back from the device
                with torch.inference_mode(), result.precision.autocast():
                    embeddings = runner.embed(
                        inputs["input_values"].to(device), None if mask is None else mask.to(device), chunk_seconds
                    )
                embeddings = torch.nn.functional.normalize(embeddings.float(), dim=1).cpu().numpy()
                for (path, key), embedding in zip(kept, embeddings):
                    result.embeddings[path] = embedding
                    if key is not None:
                        cache[key + stored] = fresh[key + stored] = embedding
                    done_here.append(path)
                result.computed += len(kept)
            if time.monotonic() - last_flush >= flush_seconds:
                flush()
            bar.update(len(batch))
        flush()
    finally:
        bar.close()
        model.train(was_training)
    if state is not None:
        computed = result.computed
        mine = {p: result.embeddings[p] for p in done_here}  # the cached ones every rank has already
        gathered, result.failures = gather_to_main(state, mine, result.failures)
        if state.is_main_process:
            result.embeddings.update(gathered)
            result.embeddings = {p: result.embeddings[p] for p in unique if p in result.embeddings}
            result.computed = sum(_all_counts(state, computed))
        else:
            _all_counts(state, computed)
            result.is_main_process = False
    else:
        result.embeddings = {p: result.embeddings[p] for p in unique if p in result.embeddings}
    if cache_file is not None:
        if state is not None:
            state.wait_for_everyone()
        if state is None or state.is_main_process:
            merge_cache_parts(cache_file)
        if state is not None:
            state.wait_for_everyone()
    return result


def _all_counts(state, count: int) -> list[int]:
    import torch.distributed as dist

    counts = [0] * state.num_processes
    dist.all_gather_object(counts, count)
    return counts
