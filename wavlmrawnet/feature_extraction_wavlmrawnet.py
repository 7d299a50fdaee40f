"""Transform + Segment: raw audio in any common form -> mono 16 kHz float32 `input_values` and `attention_mask`.

Audio is read and resampled by `audio_io` (soundfile and soxr; PyAV only where it is installed and needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import logging

from .audio_io import check_audio_limits, check_sampling_rate, decode_input, resample, to_mono

logger = logging.get_logger(__name__)


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

    Each input can be a path, the bytes of an encoded file, a 1-D array `(samples,)`, a 2-D **channels-first** array
    `(channels, samples)`, a torch tensor, a `{"array" or "raw": ..., "sampling_rate": ...}` dict, or a `datasets`
    `Audio` entry, decoded (a torchcodec `AudioDecoder`) or not (`Audio(decode=False)`: `{"path", "bytes"}`);
    int16/int32/uint8 PCM is scaled to [-1, 1]. A list of any of these is a batch.

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
        """One input, in any of `audio_io.ACCEPTED_FORMS`, -> validated mono float32 array at `self.sampling_rate`.

        Paths and encoded bytes are read with `audio_io.load_audio`; another form raises a `TypeError` that lists the
        accepted ones.
        """
        waveform, rate, name = decode_input(audio, sampling_rate, self.sampling_rate, name)
        if waveform.ndim == 0 or waveform.size == 0:
            raise ValueError(f"{self._label(name)}is empty (no samples)")
        channels = waveform.shape[0] if waveform.ndim == 2 else 1
        waveform = to_mono(waveform)
        if rate is None:
            logger.warning_once(
                f"No sampling_rate was given for array input; assuming {self.sampling_rate} Hz. Pass "
                "`sampling_rate=` to avoid silent errors."
            )
            rate = self.sampling_rate
        rate = check_sampling_rate(rate)
        check_audio_limits(name or "audio", rate, channels, waveform.shape[-1])  # the decode limits, as for files
        waveform = resample(waveform, rate, self.sampling_rate)
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
            raw_speech: one input in any accepted form (see the class docstring), or a list of them.
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
        one_input = (str, bytes, bytearray, memoryview, dict, np.ndarray)
        if isinstance(raw_speech, one_input) or any(hasattr(raw_speech, a) for a in ("detach", "get_all_samples")):
            return False  # a path, bytes, a dict, an array or tensor, a torchcodec AudioDecoder
        if not isinstance(raw_speech, Sequence):  # e.g. a `datasets` column: iterable, with a length
            return hasattr(raw_speech, "__iter__") and hasattr(raw_speech, "__len__")
        return not (len(raw_speech) and isinstance(raw_speech[0], (int, float, np.number)))  # list[float] is one clip


WavLMRawNetFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")


def padding_mask(attention_mask):
    """`attention_mask` where some row is padded, else None. An unpadded batch needs no mask, and the model then takes
    that from the shapes instead of reading the mask back from the device (`WavLMRawNetForXVector.forward`): call it
    on the mask this extractor returned, before moving it to a GPU."""
    return None if attention_mask is None or bool(attention_mask.all()) else attention_mask


__all__ = ["WavLMRawNetFeatureExtractor", "crop", "padding_mask"]
