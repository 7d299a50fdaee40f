"""Inference Endpoints entry point: `EndpointHandler(path)` and `handler(data) -> dict`.

Inference Endpoints imports this file as a top-level module from the model repository, so it imports no sibling file:
the model and the pipelines load from `path` through remote code (`trust_remote_code=True`).

Requests (JSON, or the raw audio bytes as the body):

    {"inputs": "<base64 audio>"}                            -> {"embedding": [...], "dimension": 256, ...}
    {"inputs": <raw audio bytes>}                           -> the same
    {"inputs": {"enroll": "<base64>", "test": "<base64>"}}  -> {"score": ..., "same_speaker": ..., "threshold": ...}
    {"inputs": ..., "parameters": {"threshold": 0.4, "chunk_seconds": 20}}

Audio is any file soundfile reads (wav, flac, ogg, ...), any rate and channel count; base64 may be a `data:` URL.
Bad input (not base64, not audio, empty, too short, NaN, longer than `MAX_AUDIO_SECONDS`, unknown keys) is answered
with `{"error": "..."}`, never an exception.
"""

from __future__ import annotations

import base64
import binascii
import io
import sys
from typing import Any

import numpy as np
import soundfile as sf
import torch
from transformers import pipeline

MAX_AUDIO_SECONDS = 600.0
PARAMETERS = ("threshold", "chunk_seconds")


class BadRequest(ValueError):
    """The request cannot be answered as sent; its message goes back to the caller."""


def decode_audio(value: Any, field: str, max_seconds: float = MAX_AUDIO_SECONDS) -> dict:
    """Base64 text (or a `data:` URL) or raw bytes of an audio file -> `{"bytes", "path": field, "seconds"}`."""
    if isinstance(value, str):
        text = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as error:
            raise BadRequest(f"{field}: not valid base64 ({error})") from error
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        raise BadRequest(f"{field}: expected base64 text or raw audio bytes, got {type(value).__name__}")
    if not data:
        raise BadRequest(f"{field}: no audio (0 bytes)")
    try:  # the header only: the limit is checked before anything is decoded
        info = sf.info(io.BytesIO(data))
    except Exception as error:  # soundfile raises LibsndfileError, RuntimeError or TypeError
        raise BadRequest(f"{field}: not a readable audio file ({error})") from error
    seconds = info.frames / info.samplerate
    if seconds > max_seconds:
        raise BadRequest(f"{field}: audio is {seconds:.1f} s long; the limit is {max_seconds:.0f} s")
    if info.frames == 0:
        raise BadRequest(f"{field}: the audio holds no samples")
    # The pipeline's feature extractor decodes the bytes with audio_io.load_audio, the one place audio is read.
    return {"bytes": data, "path": field, "seconds": seconds}


def _parameters(data: dict) -> dict:
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest(f"parameters must be an object, got {type(parameters).__name__}")
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise BadRequest(f"unknown parameters {unknown}; known: {list(PARAMETERS)}")
    checked = {}
    for name, value in parameters.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise BadRequest(f"parameters.{name} must be a finite number, got {value!r}")
        if name == "chunk_seconds" and value < 0:
            raise BadRequest(f"parameters.chunk_seconds must be >= 0 (0 = no chunking), got {value}")
        checked[name] = float(value)
    return checked


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers, so the answer serialises as JSON."""
    if isinstance(value, np.generic):
        return value.item()
    return value


class EndpointHandler:
    """The Inference Endpoints custom handler: loads the model folder once, answers each request with a dict."""

    def __init__(self, path: str = "", max_seconds: float = MAX_AUDIO_SECONDS):
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.max_seconds = max_seconds
        # Precision "auto": bf16 where the hardware runs it natively, else fp32.
        self.verifier = pipeline("speaker-verification", model=path or ".", trust_remote_code=True, device=device)
        # The embedding pipeline is the verifier's base class, from the same remote-code module: one model in memory.
        embedding_class = sys.modules[type(self.verifier).__module__].SpeakerEmbeddingPipeline
        self.embedder = embedding_class(
            model=self.verifier.model, feature_extractor=self.verifier.feature_extractor, device=self.verifier.device
        )

    def __call__(self, data: Any) -> dict:
        """`{"inputs": audio}` -> embedding, `{"inputs": {"enroll": audio, "test": audio}}` -> verification.

        Never raises: a bad request gets `{"error": message}`, anything else `{"error": "internal error: ..."}`.
        """
        try:
            return self._answer(data)
        except ValueError as error:  # BadRequest, or the feature extractor's checks: empty, NaN, too short, ...
            return {"error": str(error)}
        except Exception as error:  # the worker must survive any single request
            return {"error": f"internal error: {type(error).__name__}: {error}"}

    def _answer(self, data: Any) -> dict:
        if isinstance(data, (bytes, bytearray)):
            data = {"inputs": data}
        if not isinstance(data, dict) or "inputs" not in data:
            raise BadRequest('the request must be an object with "inputs" (base64 audio, or {"enroll", "test"})')
        parameters = _parameters(data)
        inputs = data["inputs"]
        chunk = {"chunk_seconds": parameters["chunk_seconds"]} if "chunk_seconds" in parameters else {}
        if isinstance(inputs, dict):
            missing = [key for key in ("enroll", "test") if key not in inputs]
            extra = sorted(set(inputs) - {"enroll", "test"})
            if missing or extra:
                raise BadRequest(f'verification takes inputs {{"enroll", "test"}}; missing {missing}, unknown {extra}')
            enroll = decode_audio(inputs["enroll"], "enroll", self.max_seconds)
            test = decode_audio(inputs["test"], "test", self.max_seconds)
            result = self.verifier((enroll, test), threshold=parameters.get("threshold"), **chunk)
            return {key: _plain(value) for key, value in result.items()}
        if "threshold" in parameters:
            raise BadRequest('parameters.threshold applies to verification ({"enroll", "test"}), not to embeddings')
        audio = decode_audio(inputs, "inputs", self.max_seconds)
        embedding = self.embedder(audio, **chunk)
        return {
            "embedding": [float(x) for x in embedding],
            "dimension": int(embedding.shape[0]),
            "duration_seconds": audio["seconds"],
        }
