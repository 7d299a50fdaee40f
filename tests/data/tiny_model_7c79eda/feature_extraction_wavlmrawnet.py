"""Transform + Segment: raw audio in any common form -> mono 16 kHz float32 `input_values` and `attention_mask`.

Audio is read with `soundfile` and resampled with `soxr` (no torchaudio, no FFmpeg).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import soundfile as sf
import soxr
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import logging

logger = logging.get_logger(__name__)

_INT_SCALES = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0, np.dtype(np.int8): 128.0}


class AudioDecodingError(ValueError):
    """An audio file could not be read (missing, unreadable, corrupt or not audio)."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read audio file {self.path!r}: {reason}")


def to_float32(audio: Any) -> np.ndarray:
    """Converts a numpy array or torch tensor (int or float PCM) to a float32 numpy array in [-1, 1]."""
    if hasattr(audio, "detach"):  # torch.Tensor, without importing torch here
        audio = audio.detach().cpu().float().numpy()
    audio = np.asarray(audio)
    if audio.dtype in _INT_SCALES:
        return audio.astype(np.float32) / _INT_SCALES[audio.dtype]
    if audio.dtype == np.uint8:  # 8-bit PCM is unsigned
        return (audio.astype(np.float32) - 128.0) / 128.0
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"audio must be an integer PCM or floating point array, got dtype {audio.dtype}")
    return audio.astype(np.float32, copy=False)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Averages the channels of a channels-first `(channels, samples)` array; 1-D input is returned as is."""
    if audio.ndim == 1:
        return audio
    if audio.ndim != 2:
        raise ValueError(
            f"audio must be 1-D (samples,) or 2-D channels-first (channels, samples), got {audio.ndim} dimensions "
            f"with shape {tuple(audio.shape)}"
        )
    channels, samples = audio.shape
    if channels > samples:
        raise ValueError(
            f"2-D audio must be channels-first (channels, samples), got shape {tuple(audio.shape)}, which looks "
            "channels-last; pass `audio.T`"
        )
    return audio.mean(axis=0)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """High-quality resampling with soxr; a no-op when the rates match."""
    check_sampling_rate(orig_sr)
    if orig_sr == target_sr:
        return audio
    return soxr.resample(audio, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def check_sampling_rate(sampling_rate: Any) -> int:
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be a positive integer in Hz, got {sampling_rate!r}")
    return int(sampling_rate)


def load_audio(path: str | os.PathLike, sampling_rate: int = 16000) -> np.ndarray:
    """Reads an audio file with soundfile, makes it mono and resamples it to `sampling_rate`.

    Raises:
        AudioDecodingError: the file is missing, unreadable, empty or not decodable audio.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioDecodingError(path, "no such file")
    try:
        audio, file_sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises LibsndfileError, RuntimeError or TypeError
        raise AudioDecodingError(path, f"not a readable audio file ({error})") from error
    if audio.shape[0] == 0:
        raise AudioDecodingError(path, "the file holds no audio samples")
    return resample(to_mono(audio.T), file_sr, sampling_rate)


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds from the file header, without decoding the samples."""
    try:
        info = sf.info(os.fspath(path))
    except Exception as error:
        raise AudioDecodingError(os.fspath(path), f"not a readable audio file ({error})") from error
    return info.frames / info.samplerate


def crop(audio: np.ndarray, num_samples: int, random: bool, rng: np.random.Generator | None = None) -> np.ndarray:
    """A `num_samples` segment: random start (training) or centred (evaluation); shorter audio is returned whole."""
    excess = audio.shape[-1] - num_samples
    if excess <= 0:
        return audio
    if random:
        start = int((rng or np.random.default_rng()).integers(0, excess + 1))
    else:
        start = excess // 2
    return audio[..., start : start + num_samples]


class WavLMRawNetFeatureExtractor(SequenceFeatureExtractor):
    r"""
    The Transform + Segment step of WavLMRawNet: any audio -> mono, 16 kHz, float32 `input_values` with an
    `attention_mask` (1 for real samples, 0 for padding).

    Each input can be a path, a 1-D array `(samples,)`, a 2-D **channels-first** array `(channels, samples)`, a torch
    tensor, or a `{"array": ..., "sampling_rate": ...}` dict (the `datasets` audio format); int16/int32/uint8 PCM is
    scaled to [-1, 1]. A list of any of these is a batch.

    Args:
        feature_size (`int`, *optional*, defaults to 1):
            Feature dimension of the input (1 for a raw waveform).
        sampling_rate (`int`, *optional*, defaults to 16000):
            Rate the model expects. Other rates are resampled with soxr.
        padding_value (`float`, *optional*, defaults to 0.0):
            Value used for padding.
        do_normalize (`bool`, *optional*, defaults to `True`):
            Zero mean and unit variance per utterance, over the unpadded samples only.
        return_attention_mask (`bool`, *optional*, defaults to `True`):
            Whether `__call__` returns the `attention_mask`.
        min_seconds (`float`, *optional*, defaults to 0.5):
            Shortest accepted audio, after resampling. Shorter audio raises a `ValueError`.
        segment_seconds (`float`, *optional*):
            If set, audio longer than this is cropped to this length (see `random_segment`).
        random_segment (`bool`, *optional*, defaults to `False`):
            Random crop (training) instead of a deterministic centred crop (evaluation).
    """

    model_input_names = ["input_values", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 1,
        sampling_rate: int = 16000,
        padding_value: float = 0.0,
        do_normalize: bool = True,
        return_attention_mask: bool = True,
        min_seconds: float = 0.5,
        segment_seconds: float | None = None,
        random_segment: bool = False,
        **kwargs,
    ):
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        self.do_normalize = do_normalize
        self.min_seconds = min_seconds
        self.segment_seconds = segment_seconds
        self.random_segment = random_segment

    # ------------------------------------------------------------------ single inputs
    def prepare_one(self, audio: Any, sampling_rate: int | None = None, name: str | None = None) -> np.ndarray:
        """One input (path, array, tensor or dict) -> validated mono float32 array at `self.sampling_rate`."""
        if isinstance(audio, dict):
            if "array" not in audio:
                raise ValueError(f"an audio dict needs an 'array' key, got keys {sorted(audio)}")
            sampling_rate = audio.get("sampling_rate", sampling_rate)
            name = name or audio.get("path")
            audio = audio["array"]
        if isinstance(audio, (str, os.PathLike)):
            name = os.fspath(audio)
            waveform = load_audio(audio, self.sampling_rate)
        else:
            waveform = to_float32(audio)
            if waveform.ndim == 0 or waveform.size == 0:
                raise ValueError(f"{self._label(name)}is empty (no samples)")
            waveform = to_mono(waveform)
            if sampling_rate is None:
                logger.warning_once(
                    f"No sampling_rate was given for array input; assuming {self.sampling_rate} Hz. Pass "
                    "`sampling_rate=` to avoid silent errors."
                )
                sampling_rate = self.sampling_rate
            waveform = resample(waveform, check_sampling_rate(sampling_rate), self.sampling_rate)
        self.validate(waveform, name)
        return waveform

    def validate(self, waveform: np.ndarray, name: str | None = None) -> None:
        """Raises a ValueError that names the problem for empty, non-finite or too-short audio."""
        label = self._label(name)
        if waveform.size == 0:
            raise ValueError(f"{label}is empty (no samples)")
        if not np.isfinite(waveform).all():
            raise ValueError(f"{label}contains NaN or Inf samples")
        seconds = waveform.shape[-1] / self.sampling_rate
        if seconds < self.min_seconds:
            raise ValueError(
                f"{label}is too short: {seconds:.3f} s, the minimum is {self.min_seconds:.3f} s "
                f"({int(round(self.min_seconds * self.sampling_rate))} samples at {self.sampling_rate} Hz)"
            )

    @staticmethod
    def _label(name: str | None) -> str:
        return f"audio {name!r} " if name else "audio "

    # ------------------------------------------------------------------ batches
    def __call__(
        self,
        raw_speech: Any,
        sampling_rate: int | None = None,
        padding: bool | str = True,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        segment_seconds: float | None = None,
        random_segment: bool | None = None,
        rng: np.random.Generator | None = None,
        **kwargs,
    ) -> BatchFeature:
        """
        Prepares one input or a batch (a list) for the model.

        Args:
            raw_speech: a path, array, tensor or `{"array", "sampling_rate"}` dict, or a list of them.
            sampling_rate (`int`, *optional*): rate of array inputs; they are resampled to `self.sampling_rate`.
            padding, max_length, truncation, pad_to_multiple_of: as in `SequenceFeatureExtractor.pad`
                (`max_length` and truncation count samples at the model's rate).
            return_attention_mask (`bool`, *optional*): defaults to `self.return_attention_mask`.
            return_tensors (`str`, *optional*): `"pt"` or `"np"`.
            segment_seconds / random_segment: override the instance's cropping for this call.
            rng (`np.random.Generator`, *optional*): source of random crops.
        """
        batch = list(raw_speech) if self._is_batch(raw_speech) else [raw_speech]
        if not batch:
            raise ValueError("no audio was given (empty batch)")
        waveforms = [self.prepare_one(item, sampling_rate) for item in batch]

        segment_seconds = self.segment_seconds if segment_seconds is None else segment_seconds
        random_segment = self.random_segment if random_segment is None else random_segment
        if segment_seconds:
            num_samples = int(round(segment_seconds * self.sampling_rate))
            waveforms = [crop(w, num_samples, random_segment, rng) for w in waveforms]

        return_attention_mask = self.return_attention_mask if return_attention_mask is None else return_attention_mask
        padded = self.pad(
            BatchFeature({"input_values": waveforms}),
            padding=padding,
            max_length=max_length,
            truncation=truncation,
            pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=True,
        )
        values, mask = padded["input_values"], padded["attention_mask"]
        if isinstance(values, np.ndarray) and values.ndim == 3:  # (batch, samples, feature_size=1)
            values = values[..., 0]
        values = [np.asarray(v, dtype=np.float32) for v in values]
        mask = [np.asarray(m, dtype=np.int32) for m in mask]
        if self.do_normalize:
            values = [self.normalize(v, m) for v, m in zip(values, mask)]

        features = {"input_values": values}
        if return_attention_mask:
            features["attention_mask"] = mask
        return BatchFeature(features, tensor_type=return_tensors)

    def normalize(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Zero mean, unit variance over the unpadded samples; padding stays at `padding_value`."""
        valid = mask.astype(bool)
        real = values[valid].astype(np.float64)
        out = np.full_like(values, self.padding_value)
        out[valid] = ((real - real.mean()) / np.sqrt(real.var() + 1e-7)).astype(np.float32)
        return out

    @staticmethod
    def _is_batch(raw_speech: Any) -> bool:
        if not isinstance(raw_speech, Sequence) or isinstance(raw_speech, (str, bytes)):
            return False
        return not (len(raw_speech) and isinstance(raw_speech[0], (int, float, np.number)))  # list[float] is one clip


WavLMRawNetFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

__all__ = [
    "AudioDecodingError",
    "WavLMRawNetFeatureExtractor",
    "audio_duration",
    "crop",
    "load_audio",
    "resample",
    "to_float32",
    "to_mono",
]
