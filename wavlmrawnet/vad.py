"""Silence removal before embedding: keep only the speech regions that silero-vad finds.

Optional (`pip install "wavlmrawnet[vad]"`): silero-vad ships its model in its wheel and runs it with torch (no
torchaudio). Used by `embed_files(..., vad=True)`, the pipelines' `vad=True` and the CLI's `--vad`.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
import torch

from . import speech_check

__all__ = ["VAD_RATE", "NoSpeechError", "remove_silence", "speech_regions"]

VAD_RATE = 16000  # silero-vad runs at 16 kHz; other rates are resampled for detection only
_LOCK = threading.Lock()  # the model keeps state between windows: one detection at a time


class NoSpeechError(speech_check.NoSpeechError):
    """The VAD found no speech in a recording (it is never replaced by empty audio or by the whole clip); a kind of
    `speech_check.NoSpeechError`, so one `except` catches both."""

    def __init__(self, where: str = "audio"):
        self.where = where
        self.reason = "no speech found by the VAD (silence or noise only); run without --vad / vad=False to embed it"
        ValueError.__init__(self, f"{where}: {self.reason}")


@functools.cache
def _silero():
    try:
        threads = torch.get_num_threads()
        try:
            from silero_vad import get_speech_timestamps, load_silero_vad
        finally:
            torch.set_num_threads(threads)  # importing silero_vad sets torch to 1 thread for the whole process
    except ImportError:
        raise ImportError('silence removal (vad) needs silero-vad: pip install "wavlmrawnet[vad]"') from None
    return load_silero_vad(), get_speech_timestamps


def speech_regions(
    waveform: np.ndarray,
    sampling_rate: int,
    threshold: float = 0.5,
    min_speech_ms: int = 250,
    min_silence_ms: int = 100,
    pad_ms: int = 30,
) -> list[tuple[int, int]]:
    """Speech regions of a mono waveform as (start, end) sample indices at `sampling_rate`, in order.

    `threshold` is silero-vad's speech probability threshold; regions shorter than `min_speech_ms` are dropped, gaps
    shorter than `min_silence_ms` are bridged, and each region is widened by `pad_ms` on both sides.
    """
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1:
        raise ValueError(f"speech_regions takes a mono waveform (1-D), got shape {waveform.shape}")
    if not np.isfinite(waveform).all():
        raise ValueError("the waveform holds NaN or infinite values")
    detect = waveform
    if sampling_rate != VAD_RATE:
        import soxr

        detect = soxr.resample(waveform, sampling_rate, VAD_RATE).astype(np.float32)
    model, get_speech_timestamps = _silero()
    with _LOCK, torch.inference_mode():
        stamps = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(detect)),
            model,
            threshold=threshold,
            sampling_rate=VAD_RATE,
            min_speech_duration_ms=min_speech_ms,
            min_silence_duration_ms=min_silence_ms,
            speech_pad_ms=pad_ms,
        )
    ratio = sampling_rate / VAD_RATE
    regions = [(int(s["start"] * ratio), min(len(waveform), int(round(s["end"] * ratio)))) for s in stamps]
    return [(start, end) for start, end in regions if end > start]


def remove_silence(waveform: np.ndarray, sampling_rate: int, where: str = "audio", **options) -> np.ndarray:
    """The waveform's speech regions (`speech_regions`), joined. No speech at all raises `NoSpeechError`.

    The result may be shorter than the model's minimum input: callers validate it as any other audio.
    """
    regions = speech_regions(waveform, sampling_rate, **options)
    if not regions:
        raise NoSpeechError(where)
    return np.concatenate([np.asarray(waveform, dtype=np.float32)[start:end] for start, end in regions])
