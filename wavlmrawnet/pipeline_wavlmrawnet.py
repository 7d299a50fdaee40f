"""How the model is run: the precision chosen by the hardware, and two pipelines.

`feature-extraction` gives one speaker embedding per recording, `speaker-verification` says whether two recordings
are the same speaker. Both are declared in the saved `config.json` under `custom_pipelines`, so they load through
remote code:

    pipeline("feature-extraction", model=folder, trust_remote_code=True)
    pipeline("speaker-verification", model=folder, trust_remote_code=True)
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import os
import platform
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import Pipeline
from transformers.utils import logging

from .speech_check import NoSpeechError, check_speech

logger = logging.get_logger(__name__)


# ----------------------------------------------------------------------------------------------- precision
PRECISION_ALIASES = {
    "auto": "auto", "fp32": "fp32", "float32": "fp32", "no": "fp32",
    "bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16",
}  # fmt: skip
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@functools.cache
def describe_cpu() -> str:
    """The CPU model, core count and the instruction sets that decide precision, e.g.
    `"AMD EPYC, 2 cores: avx2 avx512 avx512_bf16, no amx; torch kernels AVX512"`."""
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            name = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), name)
    probes = {"avx2": "_is_avx2_supported", "avx512": "_is_avx512_supported",
              "avx512_bf16": "_is_avx512_bf16_supported", "amx": "_is_amx_tile_supported"}  # fmt: skip
    have = {flag: bool(getattr(torch.cpu, probe, lambda: False)()) for flag, probe in probes.items()}
    present = " ".join(flag for flag, ok in have.items() if ok) or "none of avx2/avx512"
    absent = " ".join(f"no {flag}" for flag in ("avx512_bf16", "amx") if not have[flag])
    flags = f"{present}, {absent}" if absent else present
    return f"{name}, {os.cpu_count()} cores: {flags}; torch kernels {torch.backends.cpu.get_cpu_capability()}"


@functools.cache
def cpu_native_bf16() -> tuple[bool, str]:
    """Whether this CPU runs bf16 natively (AMX or AVX512-BF16, and torch's and oneDNN's kernels use it), and why.

    Without native support torch still computes bf16, by emulation: on an AVX2-only CPU a bf16 matmul is over 100x
    slower than fp32. The ISA caps `ATEN_CPU_CAPABILITY` and `ONEDNN_MAX_CPU_ISA` are honoured.
    """
    cpu = describe_cpu()
    if platform.machine().lower() in ("arm64", "aarch64"):
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        return native, f"{'Arm CPU with' if native else 'Arm CPU without'} bf16 instructions: {cpu}"
    hardware = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    if not hardware:
        return False, f"CPU has no native bf16: {cpu}"
    if torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AMX"):
        return False, f"CPU has bf16, but torch's kernels are capped below AVX-512 (ATEN_CPU_CAPABILITY): {cpu}"
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False, f"CPU has bf16, but oneDNN does not use it (ONEDNN_MAX_CPU_ISA?): {cpu}"
    return True, f"CPU has native bf16 ({'AMX' if torch.cpu._is_amx_tile_supported() else 'AVX512-BF16'}): {cpu}"


@dataclass(frozen=True)
class Precision:
    """A resolved compute precision: `name` is "fp32", "bf16" or "fp16" (the last two run under autocast; weights stay
    fp32), `reason` says why it was chosen. `str(precision)` is the line to log."""

    name: str
    device_type: str
    reason: str
    requested: str = "auto"

    @property
    def dtype(self) -> torch.dtype:
        return PRECISION_DTYPES[self.name]

    @property
    def accelerate_mixed_precision(self) -> str:
        """The matching `Accelerator(mixed_precision=...)` value."""
        return "no" if self.name == "fp32" else self.name

    def autocast(self):
        """Autocast for bf16/fp16, nothing for fp32."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def to_dict(self) -> dict:
        return {"precision": self.name, "requested": self.requested, "device": self.device_type, "reason": self.reason}

    def __str__(self) -> str:
        return f"precision: {self.name} ({self.reason})"


def resolve_precision(requested: str | None = "auto", device: str | torch.device = "cpu", training: bool = False):
    """Turns a requested precision ("auto", "fp32"/"no", "bf16", "fp16" or their torch names) into a [`Precision`].

    `auto` on CUDA: bf16 where the GPU supports it, else fp16 for training (Accelerate adds the grad scaler) and fp32
    for inference. `auto` on a CPU: bf16 only where it runs natively ([`cpu_native_bf16`]), else fp32. An explicit
    bf16 on a CPU without native bf16 runs, with a warning; fp16 on a CPU is refused.
    """
    key = "auto" if requested is None else str(requested).lower()
    if key not in PRECISION_ALIASES:
        raise ValueError(f"unknown precision {requested!r}; choose one of {sorted(PRECISION_ALIASES)}")
    name = PRECISION_ALIASES[key]
    device_type = torch.device(device).type
    if device_type == "cuda":
        bf16_ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
        if name == "auto":
            if bf16_ok:
                return Precision("bf16", "cuda", f"GPU supports bf16: {gpu}", key)
            fallback = "fp16" if training else "fp32"
            purpose = "training" if training else "inference"
            return Precision(fallback, "cuda", f"GPU has no bf16, {fallback} for {purpose}: {gpu}", key)
        if name == "bf16" and not bf16_ok:
            warnings.warn(
                f"bf16 was asked for, but this GPU does not support it ({gpu}); expect errors or slow emulation"
            )
        return Precision(name, "cuda", f"asked for: {gpu}", key)
    if device_type != "cpu":
        return Precision("fp32" if name == "auto" else name, device_type, f"asked for on {device_type}", key)
    native, why = cpu_native_bf16()
    if name == "auto":
        return Precision("bf16" if native else "fp32", "cpu", why, key)
    if name == "fp16":
        raise ValueError(
            "fp16 is for CUDA GPUs; on a CPU use bf16 (fast where the CPU has AMX or AVX512-BF16) or fp32"
        )
    if name == "bf16" and not native:
        warnings.warn(
            f"bf16 was asked for on a CPU without native bf16 ({why}): it runs, several times slower than fp32"
        )
        return Precision("bf16", "cpu", f"asked for, emulated: {why}", key)
    return Precision(name, "cpu", f"asked for; {why}", key)


# ----------------------------------------------------------------------------------------------- pipelines
def _as_audio_dict(audio: Any, sampling_rate: int | None) -> Any:
    """Arrays get the call's `sampling_rate`; paths and `{"array", "sampling_rate"}` dicts carry their own."""
    if isinstance(audio, (np.ndarray, torch.Tensor)):
        return {"array": audio, "sampling_rate": sampling_rate}
    return audio


def silence_remover(vad: Any):
    """`vad=True` -> `wavlmrawnet.vad.remove_silence` (the `[vad]` extra); a callable `(waveform, sampling_rate) ->
    waveform` is used as it is; False/None -> None."""
    if vad is None or vad is False:
        return None
    if callable(vad):
        return vad
    if vad is not True:
        raise ValueError(f"vad must be True, False or a callable (waveform, sampling_rate) -> waveform, got {vad!r}")
    try:
        return importlib.import_module("wavlmrawnet.vad").remove_silence
    except ImportError as error:
        raise ImportError(
            f'vad=True needs the wavlmrawnet package with silero-vad: pip install "wavlmrawnet[vad]" ({error})'
        ) from None


class SpeakerEmbeddingPipeline(Pipeline):
    """Recording(s) -> L2-normalised speaker embedding(s), as float32 numpy arrays of shape (embedding_dim,).

    Inputs: a path, a numpy array (pass `sampling_rate=`), a `{"array", "sampling_rate"}` dict, or a list of these.
    Options: `sampling_rate`, `normalize` (default True), `chunk_seconds` (long-audio window; default from the
    config, 0 = off), `batch_size`, `precision` ("auto" by default: bf16 autocast where the hardware runs bf16
    natively, else fp32; or "fp32", "bf16", "fp16"), `vad` (False by default; True removes silence with silero-vad,
    `pip install "wavlmrawnet[vad]"`, or pass a callable `(waveform, sampling_rate) -> waveform`), `require_speech`
    (True by default: a recording without speech, such as silence, DC, hum or a steady tone, raises `NoSpeechError`,
    a ValueError; see `speech_check.py`), given to `pipeline(...)` or to each call. `model=` may be a folder or a Hub
    id (`revision=` picks a branch, tag or commit).
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def _sanitize_parameters(
        self,
        sampling_rate=None,
        normalize=None,
        chunk_seconds=None,
        precision=None,
        vad=None,
        require_speech=None,
        **kwargs,
    ):
        preprocess_params = {} if sampling_rate is None else {"sampling_rate": sampling_rate}
        if vad is not None:
            preprocess_params["vad"] = silence_remover(vad)
        if require_speech is not None:
            preprocess_params["require_speech"] = bool(require_speech)
        forward_params = {} if chunk_seconds is None else {"chunk_seconds": chunk_seconds}
        if precision is not None:
            forward_params["precision"] = precision
        postprocess_params = {} if normalize is None else {"normalize": normalize}
        return preprocess_params, forward_params, postprocess_params

    def __call__(self, inputs, **kwargs):
        if isinstance(inputs, np.ndarray) and inputs.ndim == 2 and kwargs.get("sampling_rate") is None:
            raise ValueError("a 2-D array is one multi-channel recording; pass `sampling_rate=` with array inputs")
        return super().__call__(inputs, **kwargs)

    def preprocess(self, audio, sampling_rate=None, vad=None, require_speech=True):
        audio = _as_audio_dict(audio, sampling_rate)
        rate = self.feature_extractor.sampling_rate
        name = (
            audio if isinstance(audio, (str, os.PathLike)) else audio.get("path") if isinstance(audio, dict) else None
        )
        where = str(name or "audio")
        waveform = self.feature_extractor.prepare_one(audio)  # read within the decode limits, mono, validated
        if vad is not None:
            waveform = np.asarray(vad(waveform, rate))
            self.feature_extractor.validate(waveform, f"{where} (speech only, after vad)")
        if require_speech:  # silence, DC, hum or a steady tone: no embedding, so no confident score
            check_speech(waveform, rate, where)
        features = self.feature_extractor(
            {"array": waveform, "sampling_rate": rate}, return_tensors="pt", return_attention_mask=True
        )
        return {"input_values": features["input_values"], "attention_mask": features["attention_mask"]}

    def _forward(self, model_inputs, chunk_seconds=None, precision="auto"):
        # Long recordings are embedded in bounded windows (config.chunk_seconds unless `chunk_seconds=` is given).
        with self.resolved_precision(precision).autocast():
            return {"embeddings": self.model.embed(**model_inputs, chunk_seconds=chunk_seconds)}

    def resolved_precision(self, requested: str = "auto"):
        """The model's `Precision` for `requested` on its device, resolved (and logged) once per pipeline."""
        resolved = self.__dict__.setdefault("_resolved_precisions", {})
        if requested not in resolved:
            resolved[requested] = self.model.precision(requested)
            logger.info(str(resolved[requested]))
        return resolved[requested]

    def postprocess(self, model_outputs, normalize=True):
        embedding = model_outputs["embeddings"][0].float()
        if normalize:
            embedding = torch.nn.functional.normalize(embedding, dim=0)
        return embedding.cpu().numpy()


class SpeakerVerificationPipeline(SpeakerEmbeddingPipeline):
    """Pair(s) of recordings -> `{"score": cosine, "same_speaker": bool, "threshold": t}`.

    Input: a pair `(a, b)` or a list of pairs; each side is anything `SpeakerEmbeddingPipeline` accepts. The
    threshold defaults to the model's `config.verification_threshold`; pass `threshold=` to override it.
    A calibrated model (`config.calibration = {"scale", "offset"}`, set by `wavlmrawnet calibrate`) also returns
    `llr` (natural-log likelihood ratio, `scale * score + offset`) and `probability`, the posterior of the same
    speaker at the prior `config.p_target`.
    """

    def __call__(self, pairs, threshold: float | None = None, **kwargs):
        single = isinstance(pairs, tuple) or (
            isinstance(pairs, list) and len(pairs) == 2 and not self._is_pair(pairs[0])
        )
        pairs = [pairs] if single else list(pairs)
        for index, pair in enumerate(pairs):
            if not self._is_pair(pair):
                raise ValueError(f"speaker verification takes pairs of recordings; item {index} is not a pair")
        threshold = self.model.config.verification_threshold if threshold is None else float(threshold)
        calibration = getattr(self.model.config, "calibration", None)
        p_target = getattr(self.model.config, "p_target", 0.01)
        prior_log_odds = math.log(p_target / (1.0 - p_target))
        flat = [side for pair in pairs for side in pair]
        embeddings = super().__call__(flat, normalize=True, **kwargs)
        results = []
        for first, second in zip(embeddings[0::2], embeddings[1::2]):
            score = float(np.dot(first, second))
            result = {"score": score, "same_speaker": score >= threshold, "threshold": threshold}
            if calibration:
                result["llr"] = calibration["scale"] * score + calibration["offset"]
                result["probability"] = 1.0 / (1.0 + math.exp(-min(max(result["llr"] + prior_log_odds, -700), 700)))
            results.append(result)
        return results[0] if single else results

    @staticmethod
    def _is_pair(item) -> bool:
        return isinstance(item, (tuple, list)) and len(item) == 2


CUSTOM_PIPELINES = {
    "feature-extraction": {
        "impl": "pipeline_wavlmrawnet.SpeakerEmbeddingPipeline",
        "pt": ["AutoModel"],
        "type": "audio",
    },
    "speaker-verification": {
        "impl": "pipeline_wavlmrawnet.SpeakerVerificationPipeline",
        "pt": ["AutoModel"],
        "type": "audio",
    },
}

__all__ = [
    "CUSTOM_PIPELINES",
    "NoSpeechError",
    "PRECISION_ALIASES",
    "PRECISION_DTYPES",
    "Precision",
    "SpeakerEmbeddingPipeline",
    "SpeakerVerificationPipeline",
    "cpu_native_bf16",
    "describe_cpu",
    "resolve_precision",
    "silence_remover",
]
