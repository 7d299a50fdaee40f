"""Embed many files once each: length-sorted batches, explicit failures, an on-disk cache keyed by path and model."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from ..feature_extraction_wavlmrawnet import AudioDecodingError, audio_duration, load_audio
from ..modeling_wavlmrawnet import Precision, resolve_precision


@dataclass
class EmbeddingResult:
    """`embeddings` maps each path to its L2-normalised embedding; `failures` maps each failed path to its reason."""

    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    computed: int = 0  # files run through the model in this call (the rest came from the cache)
    precision: Precision | None = None  # the precision the embeddings were computed in

    def raise_for_failures(self) -> None:
        if self.failures:
            listing = "\n".join(f"  {path}: {reason}" for path, reason in list(self.failures.items())[:20])
            more = f"\n  ... and {len(self.failures) - 20} more" if len(self.failures) > 20 else ""
            raise RuntimeError(f"{len(self.failures)} file(s) could not be embedded:\n{listing}{more}")


def model_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of the config and every parameter and buffer: the cache key's model part."""
    digest = hashlib.sha256(json.dumps(model.config.to_diff_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _file_key(path: str) -> str:
    stat = os.stat(path)
    return hashlib.sha256(f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:24]


def _resolve(model, precision: str | Precision) -> Precision:
    if isinstance(precision, Precision):
        return precision
    return resolve_precision(precision, next(model.parameters()).device)


def embed_files(
    model,
    feature_extractor,
    paths: Sequence[str],
    batch_size: int = 8,
    max_batch_seconds: float = 120.0,
    chunk_seconds: float | None = None,
    precision: str | Precision = "auto",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> EmbeddingResult:
    """Embeds each unique path once, longest first, in batches of similar length (minimal padding).

    A file that cannot be read or is invalid (empty, NaN, too short) is recorded in `failures` with its reason;
    nothing is skipped silently. `precision` is "auto" (bf16 where the hardware runs it natively, else fp32), "fp32",
    "bf16" or a resolved [`Precision`]. With `cache_dir`, embeddings are stored in
    `<cache_dir>/<model fingerprint>-<precision>.safetensors` keyed by path, size and modification time, and reused.
    """
    unique = list(dict.fromkeys(os.fspath(p) for p in paths))
    result = EmbeddingResult(precision=_resolve(model, precision))
    cache_file, cache = None, {}
    if cache_dir is not None:
        cache_file = Path(cache_dir) / f"{model_fingerprint(model)}-{result.precision.name}.safetensors"
        if cache_file.exists():
            cache = load_file(cache_file)
    todo = []
    for path in unique:
        try:
            key = _file_key(path)
        except OSError as error:
            result.failures[path] = f"cannot read audio file: {error.strerror or error}"
            continue
        if key in cache:
            result.embeddings[path] = cache[key]
        else:
            todo.append((path, key))

    durations = {}
    for path, _ in todo:
        try:
            durations[path] = audio_duration(path)
        except AudioDecodingError as error:
            result.failures[path] = error.reason
    todo = sorted((item for item in todo if item[0] in durations), key=lambda item: -durations[item[0]])

    device = next(model.parameters()).device
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
                    waveform = load_audio(path, feature_extractor.sampling_rate)
                    feature_extractor.validate(waveform, path)
                except ValueError as error:  # AudioDecodingError is a ValueError
                    result.failures[path] = getattr(error, "reason", None) or str(error)
                    continue
                waveforms.append(waveform)
                kept.append((path, key))
            if kept:
                inputs = feature_extractor(
                    waveforms, sampling_rate=feature_extractor.sampling_rate, return_tensors="pt"
                )
                with torch.inference_mode(), result.precision.autocast():
                    embeddings = model.embed(
                        inputs["input_values"].to(device), inputs["attention_mask"].to(device), chunk_seconds
                    )
                embeddings = torch.nn.functional.normalize(embeddings.float(), dim=1).cpu().numpy()
                for (path, key), embedding in zip(kept, embeddings):
                    result.embeddings[path] = cache[key] = embedding
                result.computed += len(kept)
            bar.update(len(batch))
    finally:
        bar.close()
        model.train(was_training)
    if cache_file is not None and result.computed:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = cache_file.with_suffix(".tmp")
        save_file(cache, str(temporary))
        os.replace(temporary, cache_file)
    return result
