"""How the model is run: two pipelines, in the precision the hardware suits (`precision.py`).

`feature-extraction` gives one speaker embedding per recording, `speaker-verification` says whether two recordings
are the same speaker. Both are declared in the saved `config.json` under `custom_pipelines`, so they load through
remote code:

    pipeline("feature-extraction", model=folder, trust_remote_code=True)
    pipeline("speaker-verification", model=folder, trust_remote_code=True)
"""

from __future__ import annotations

import importlib
import math
import os
from typing import Any

import numpy as np
import torch
from transformers import Pipeline
from transformers.utils import logging

from .feature_extraction_wavlmrawnet import padding_mask
from .speech_check import NoSpeechError, check_speech

logger = logging.get_logger(__name__)


# ----------------------------------------------------------------------------------------------- pipelines
def _as_audio_dict(audio: Any, sampling_rate: int | None) -> Any:
    """Arrays get the call's `sampling_rate`; paths and `{"array", "sampling_rate"}` dicts carry their own."""
    if isinstance(audio, (np.ndarray, torch.Tensor)):
        return {"array": audio, "sampling_rate": sampling_rate}
    return audio


def _is_column(inputs: Any) -> bool:
    """An iterable with a length that is no single input (e.g. `dataset["audio"]`)."""
    single = (str, bytes, bytearray, memoryview, dict, list, tuple, np.ndarray, torch.Tensor, os.PathLike)
    if isinstance(inputs, single) or hasattr(inputs, "get_all_samples"):  # the last: a torchcodec AudioDecoder
        return False
    return hasattr(inputs, "__iter__") and hasattr(inputs, "__len__")


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

    Inputs: a path, the bytes of an audio file, a numpy array or torch tensor (pass `sampling_rate=`), a
    `{"array" or "raw", "sampling_rate"}` dict, a `datasets` audio entry (decoded, or `Audio(decode=False)`), or a list
    or `datasets` column of these.
    Options: `sampling_rate`, `normalize` (default True), `chunk_seconds` (long-audio window; default from the
    config, 0 = off), `batch_size`, `precision` ("auto" by default: bf16 autocast where the hardware runs bf16
    natively, else fp32; or "fp32", "bf16", "fp16", or "int8": dynamic int8 linears on a CPU, never chosen by
    "auto"), `vad` (False by default; True removes silence with silero-vad,
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
        if _is_column(inputs):  # e.g. a `datasets` audio column: a batch, as a list
            inputs = list(inputs)
        if isinstance(inputs, (list, tuple)) and not inputs:
            raise ValueError("no recordings given: pass a path, bytes, an array or a list of them")
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
            check_speech(waveform, rate, where, warn_mostly_silent=True)  # mostly silence: embedded, with a warning
        features = self.feature_extractor(
            {"array": waveform, "sampling_rate": rate}, return_tensors="pt", return_attention_mask=True
        )
        values, mask = features["input_values"], features["attention_mask"]
        # Whether this recording's mask is all ones, decided here on the CPU: a call of one recording then passes no
        # mask (`_forward`). Batched calls (`batch_size`) collate the masks, and the padded rows keep theirs.
        return {"input_values": values, "attention_mask": mask, "unpadded": padding_mask(mask) is None}

    def _forward(self, model_inputs, chunk_seconds=None, precision="auto"):
        # Long recordings are embedded in bounded windows (config.chunk_seconds unless `chunk_seconds=` is given).
        resolved = self.resolved_precision(precision)
        model = self.model.for_precision(resolved)  # int8: the model's int8 twin (`quantization.py`)
        unpadded = model_inputs.pop("unpadded", False)  # a list of flags once batched: the mask then stays
        if unpadded is True:
            model_inputs["attention_mask"] = None  # nothing padded: nothing to read back from the device
        with resolved.autocast():
            return {"embeddings": model.embed(**model_inputs, chunk_seconds=chunk_seconds)}

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
    threshold defaults to the model's `config.verification_threshold`; pass `threshold=` (a finite number; NaN or
    infinity is a ValueError) to override it.
    A calibrated model (`config.calibration = {"scale", "offset"}`, set by `wavlmrawnet calibrate`) also returns
    `llr` (natural-log likelihood ratio, `scale * score + offset`) and `probability`, the posterior of the same
    speaker at the prior `config.p_target`.
    """

    def __call__(self, pairs, threshold: float | None = None, **kwargs):
        single = isinstance(pairs, tuple) or (
            isinstance(pairs, list) and len(pairs) == 2 and not self._is_pair(pairs[0])
        )
        pairs = [pairs] if single else list(pairs)
        if not pairs:
            raise ValueError("no pairs given: pass (recording, recording) or a list of such pairs")
        for index, pair in enumerate(pairs):
            if not self._is_pair(pair):
                raise ValueError(f"speaker verification takes pairs of recordings; item {index} is not a pair")
        threshold = self._check_threshold(threshold)  # before any recording is embedded
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

    def _check_threshold(self, threshold) -> float:
        """`threshold=` (or, if None, the config's `verification_threshold`) as a float, if it is a finite number;
        else a ValueError that names it: a NaN threshold made every pair "not the same speaker", silently. Any
        finite value is a decision (above 1, no pair is the same speaker; below -1, every pair is)."""
        given = threshold is not None
        value = threshold if given else self.model.config.verification_threshold
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(value, bool) or not math.isfinite(number):
            where = "threshold" if given else "the model's config.verification_threshold"
            raise ValueError(f"{where} must be a finite number (a cosine score), got {value!r:.40}")
        return number

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
    "SpeakerEmbeddingPipeline",
    "SpeakerVerificationPipeline",
    "silence_remover",
]
