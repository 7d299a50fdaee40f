"""Inference Endpoints entry point: `EndpointHandler(path)` and `handler(data) -> dict`.

Inference Endpoints imports this file as a top-level module from the model repository, so it imports no sibling file:
the model and the pipelines load from `path` through remote code (`trust_remote_code=True`).

Requests (JSON, or the raw audio bytes as the body):

    {"inputs": "<base64 audio>"}                            -> {"embedding": [...], "dimension": 256, ...}
    {"inputs": <raw audio bytes>}                           -> the same
    {"inputs": {"enroll": "<base64>", "test": "<base64>"}}  -> {"score": ..., "same_speaker": ..., "threshold": ...}
    {"inputs": ..., "parameters": {"threshold": 0.4, "chunk_seconds": 20}}

Audio is any file soundfile reads (wav, flac, ogg, ...), any rate and channel count; base64 may be a `data:` URL.
It is read with the model's `audio_io` (remote code), within its decode limits (sampling rate, channels, decoded
samples x channels) and `MAX_AUDIO_SECONDS`, checked on the header before anything is decoded. A recording without
speech (silence, DC, hum, a steady tone) is refused rather than scored (`speech_check.py`). Parameters are checked
against `parameter_ranges(config)`. Bad input (not base64, not audio, empty, too short, NaN, over a limit, no
speech, unknown keys, a parameter out of range) is answered with `{"error": "..."}`, never an exception, and the
worker logs one line.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import logging
import math
import sys
import threading
from typing import Any

import numpy as np
import torch
from transformers import pipeline

MAX_AUDIO_SECONDS = 600.0
MAX_CHUNK_SECONDS = 60.0  # longer windows give up what chunking is for: memory bounded whatever the length
PARAMETERS = ("threshold", "chunk_seconds")
logger = logging.getLogger(__name__)


class BadRequest(ValueError):
    """The request cannot be answered as sent; its message goes back to the caller."""


def decode_base64(value: Any, field: str) -> bytes:
    """Base64 text (or a `data:` URL) or raw bytes -> the bytes of the audio file."""
    if isinstance(value, str):
        if value.startswith("data:") and "," not in value:
            raise BadRequest(f"{field}: a data: URL needs a comma before its base64 (data:audio/wav;base64,...)")
        text = value.split(",", 1)[1] if value.startswith("data:") else value
        if any(c in text for c in "\r\n"):  # `base64` wraps lines at 76 characters by default
            raise BadRequest(f"{field}: not valid base64: it holds line breaks (base64 -w 0 writes one line)")
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"{field}: not valid base64") from None
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        raise BadRequest(f"{field}: expected base64 text or raw audio bytes, got {type(value).__name__}")
    if not data:
        raise BadRequest(f"{field}: no audio (0 bytes)")
    return data


def parameter_ranges(config) -> dict[str, tuple[float, float]]:
    """The accepted range of each parameter, inclusive. `chunk_seconds` must leave room for the model's window
    overlap (`config.chunk_overlap_seconds`) twice over, so consecutive windows advance by at least the overlap, and
    stay at most `MAX_CHUNK_SECONDS`, so memory stays bounded: chunking cannot be turned off from a request."""
    overlap = float(getattr(config, "chunk_overlap_seconds", 0.0) or 0.0)
    return {"threshold": (-1.0, 1.0), "chunk_seconds": (max(2.0 * overlap, 1.0), MAX_CHUNK_SECONDS)}


def check_parameters(data: dict, ranges: dict[str, tuple[float, float]]) -> dict:
    """`data["parameters"]`, each a finite number within its range, else a `BadRequest` naming the parameter."""
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest(f"parameters must be an object, got {type(parameters).__name__}")
    unknown = sorted(str(name)[:40] for name in set(parameters) - set(PARAMETERS))
    if unknown:
        raise BadRequest(f"unknown parameters {unknown}; known: {list(PARAMETERS)}")
    checked = {}
    for name, value in parameters.items():
        if value is None:
            continue
        low, high = ranges[name]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (isinstance(value, float) and not math.isfinite(value)):
            raise BadRequest(f"parameters.{name} must be a finite number from {low:g} to {high:g}, got {value!r:.40}")
        if not low <= value <= high:  # a JSON integer of any size compares exactly (float() of it could overflow)
            shown = f"{value:g}" if isinstance(value, float) else str(value)[:40]
            raise BadRequest(f"parameters.{name} must be from {low:g} to {high:g}, got {shown}")
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
        # The model folder's audio reader (remote code beside this file): the same decode limits as every entry point.
        extractor_module = sys.modules[type(self.verifier.feature_extractor).__module__]
        self.load_audio = importlib.import_module(".audio_io", extractor_module.__package__).load_audio
        self.parameter_ranges = parameter_ranges(self.verifier.model.config)
        # The server may call the handler from several threads at once; the model's forward keeps per-call state on
        # its modules, so concurrent forwards corrupted each other (AttributeError / IndexError answers under load).
        # Requests are decoded and checked concurrently; the model runs one request at a time.
        self.model_lock = threading.Lock()

    def __call__(self, data: Any) -> dict:
        """`{"inputs": audio}` -> embedding, `{"inputs": {"enroll": audio, "test": audio}}` -> verification.

        Never raises: a bad request gets `{"error": message}` (and one log line), anything else
        `{"error": "internal error: ..."}` with the traceback in the log.
        """
        try:
            return self._answer(data)
        except ValueError as error:  # BadRequest, the decode limits, no speech, the feature extractor's checks
            logger.warning("refused request: %.300s", error)
            return {"error": str(error)}
        except Exception as error:  # the worker must survive any single request
            logger.exception("internal error")
            return {"error": f"internal error: {type(error).__name__}: {error}"}

    def read(self, value: Any, field: str) -> dict:
        """Base64 or raw bytes -> `{"array": mono float32 at the model's rate, "sampling_rate", "path": field}`."""
        rate = self.verifier.feature_extractor.sampling_rate
        try:
            waveform = self.load_audio(decode_base64(value, field), rate, name=field, max_seconds=self.max_seconds)
        except ValueError as error:
            if type(error).__name__ == "AudioDecodingError":  # "cannot read audio file 'inputs': ..." -> "inputs: ..."
                raise BadRequest(f"{field}: {error.reason}") from None
            raise  # AudioLimitError ("inputs is refused: ..., the limit is ..."), BadRequest
        return {"array": waveform, "sampling_rate": rate, "path": field}

    def _answer(self, data: Any) -> dict:
        if isinstance(data, (bytes, bytearray)):
            data = {"inputs": data}
        if not isinstance(data, dict) or "inputs" not in data:
            raise BadRequest('the request must be an object with "inputs" (base64 audio, or {"enroll", "test"})')
        parameters = check_parameters(data, self.parameter_ranges)
        inputs = data["inputs"]
        chunk = {"chunk_seconds": parameters["chunk_seconds"]} if "chunk_seconds" in parameters else {}
        if isinstance(inputs, dict):
            missing = [key for key in ("enroll", "test") if key not in inputs]
            extra = sorted(str(key)[:40] for key in set(inputs) - {"enroll", "test"})
            if missing or extra:
                raise BadRequest(f'verification takes inputs {{"enroll", "test"}}; missing {missing}, unknown {extra}')
            enroll = self.read(inputs["enroll"], "enroll")
            test = self.read(inputs["test"], "test")
            with self.model_lock:
                result = self.verifier((enroll, test), threshold=parameters.get("threshold"), **chunk)
            return {key: _plain(value) for key, value in result.items()}
        if "threshold" in parameters:
            raise BadRequest('parameters.threshold applies to verification ({"enroll", "test"}), not to embeddings')
        audio = self.read(inputs, "inputs")
        with self.model_lock:
            embedding = self.embedder(audio, **chunk)
        return {
            "embedding": [float(x) for x in embedding],
            "dimension": int(embedding.shape[0]),
            "duration_seconds": audio["array"].shape[-1] / audio["sampling_rate"],
        }
