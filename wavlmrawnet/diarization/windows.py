"""A recording for diarization: read whole at the model's rate, its speech regions, and sliding windows over them.

A recording is held once as mono float32 at 16 kHz (230 MB for an hour) and read block by block, so no decoded copy
at the file's own rate exists; windows are views into it, embedded a batch at a time.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from ..audio_io import AudioDecodingError, AudioLimitError, check_audio_limits, load_audio, to_float32, to_mono
from ..speech_check import NoSpeechError, check_speech

__all__ = [
    "MAX_RECORDING_SECONDS",
    "DiarizationInputError",
    "read_recording",
    "recording_regions",
    "sliding_windows",
    "too_short_reason",
]

MAX_RECORDING_SECONDS = 4 * 3600.0  # a 4-hour recording is 920 MB at 16 kHz
_BLOCK_FRAMES = 1 << 18


class DiarizationInputError(ValueError):
    """A recording that cannot be diarized as asked (shorter than a window, fewer windows than speakers asked
    for); the message says why and what would work. `reason` is the message without the recording's name."""

    def __init__(self, where: str, reason: str):
        self.where, self.reason = where, reason
        super().__init__(f"{where}: {reason}")


def _read_file(path: str, sampling_rate: int, max_seconds: float) -> np.ndarray:
    """A file as mono float32 at `sampling_rate`, decoded and resampled block by block (soundfile + soxr's stream);
    formats libsndfile does not read go through `audio_io.load_audio` (PyAV)."""
    import soundfile as sf
    import soxr

    try:
        audio_file = sf.SoundFile(path)
    except Exception:  # not a libsndfile format (or not audio): audio_io names the reason, or reads it with PyAV
        return load_audio(path, sampling_rate, max_seconds=max_seconds)
    with audio_file:
        rate, channels, frames = int(audio_file.samplerate), int(audio_file.channels), int(audio_file.frames)
        check_audio_limits(path, rate, channels)
        if frames / rate > max_seconds:
            raise AudioLimitError(path, f"it is {frames / rate:.1f} s long; the limit is {max_seconds:.1f} s")
        total = int(np.ceil(frames * sampling_rate / rate)) + 16
        waveform = np.empty(total, dtype=np.float32)
        stream = soxr.ResampleStream(rate, sampling_rate, 1, dtype="float32") if rate != sampling_rate else None
        filled = 0
        try:
            while True:
                block = audio_file.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
                last = len(block) < _BLOCK_FRAMES
                mono = block.mean(axis=1, dtype=np.float32) if channels > 1 else block[:, 0]
                if stream is not None:
                    mono = stream.resample_chunk(mono, last=last)
                if filled + len(mono) > len(waveform):  # a header that undercounts its frames: grow, lose nothing
                    waveform = np.concatenate([waveform[:filled], np.empty(max(len(mono), filled), np.float32)])
                waveform[filled : filled + len(mono)] = mono
                filled += len(mono)
                if last:
                    break
        except AudioDecodingError:
            raise
        except Exception as error:  # a truncated or damaged file: libsndfile's reason
            raise AudioDecodingError(path, f"the audio data is damaged ({error})") from None
    if filled == 0:
        raise AudioDecodingError(path, "the file holds no audio samples")
    return waveform[:filled]


def read_recording(
    audio: Any, sampling_rate: int = 16000, audio_rate: int | None = None, max_seconds: float = MAX_RECORDING_SECONDS
) -> np.ndarray:
    """Mono float32 at `sampling_rate` from a path, or an array / tensor (with `audio_rate`, its rate, default
    `sampling_rate`), or a `{"array" | "raw", "sampling_rate"}` dict. Empty, non-finite, unreadable or corrupt input
    raises a ValueError (`AudioDecodingError` for files) that names the problem."""
    if isinstance(audio, (str, os.PathLike)):
        path = os.fspath(audio)
        if not os.path.isfile(path):
            raise AudioDecodingError(path, "no such file")
        waveform = _read_file(path, sampling_rate, max_seconds)
        where = path
    else:
        if isinstance(audio, dict):
            audio_rate = audio.get("sampling_rate", audio_rate)
            audio = audio.get("array", audio.get("raw"))
            if audio is None:
                raise ValueError('an audio dict needs an "array" (or "raw") and its "sampling_rate"')
        waveform = to_float32(audio)
        if waveform.ndim == 2:
            waveform = to_mono(waveform if waveform.shape[0] <= waveform.shape[1] else waveform.T)
        if waveform.ndim != 1:
            raise ValueError(f"audio must be mono (samples,) or (channels, samples), got shape {waveform.shape}")
        audio_rate = int(audio_rate or sampling_rate)
        if audio_rate != sampling_rate:
            import soxr

            waveform = soxr.resample(waveform, audio_rate, sampling_rate).astype(np.float32)
        where = "audio"
    if waveform.size == 0:
        raise ValueError(f"{where}: the audio is empty (no samples)")
    if not np.isfinite(waveform).all():
        raise ValueError(f"{where}: the audio holds NaN or infinite samples")
    return waveform


def _check_speech_in_blocks(waveform: np.ndarray, sampling_rate: int, where: str, block_seconds: float = 60.0) -> None:
    """`check_speech` a minute at a time (its float64 copy of an hour would be 460 MB): one block with speech is
    enough; when none has any, the first block's reason is raised."""
    block = int(block_seconds * sampling_rate)
    first_error = None
    for start in range(0, len(waveform), block):
        piece = waveform[start : start + block]
        if start and len(piece) < sampling_rate:
            piece = waveform[max(0, len(waveform) - block) :]  # a short tail is checked with what precedes it
        try:
            check_speech(piece, sampling_rate, where)
            return
        except NoSpeechError as error:
            first_error = first_error or error
    raise first_error


def recording_regions(waveform: np.ndarray, sampling_rate: int, vad: bool = True, where: str = "audio") -> np.ndarray:
    """The speech regions as (start, end) seconds, (m, 2). With `vad`, silero-vad's (`wavlmrawnet.vad`, the `[vad]`
    extra); without, the whole recording. A recording with no speech raises `NoSpeechError` either way: the cheap
    check (`speech_check`) refuses silence, hum or a steady tone before the VAD runs."""
    _check_speech_in_blocks(waveform, sampling_rate, where)
    if not vad:
        return np.array([[0.0, len(waveform) / sampling_rate]])
    from ..vad import NoSpeechError as VadNoSpeechError
    from ..vad import speech_regions

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # silero runs 32 ms at a time: a second thread costs more than it gives (10x on 2 cores)
    try:
        regions = speech_regions(waveform, sampling_rate)
    finally:
        torch.set_num_threads(threads)
    if not regions:
        raise VadNoSpeechError(where)
    return np.asarray(regions, dtype=np.float64) / sampling_rate


def too_short_reason(duration: float, window: float) -> str:
    """Why a recording of `duration` seconds has no `window`-second window, with as many decimals as it takes to
    show the shortfall (1.4993 s is "1.499 s", not "1.50 s", beside a 1.5 s window)."""
    for decimals in range(2, 10):
        shown = f"{duration:.{decimals}f}"
        if float(shown) < window:
            break
    window_shown = f"{window:g}" if float(f"{window:g}") > float(shown) else repr(float(window))
    return (
        f"the recording is {shown} s long, shorter than one window ({window_shown} s): diarization needs at least "
        "one window of audio (a shorter window, --window, would fit)"
    )


def sliding_windows(regions: np.ndarray, duration: float, window: float, hop: float) -> np.ndarray:
    """(start, end) seconds of the windows, (n, 2): every `hop` seconds through each speech region, the last one
    ending at the region's end, each `window` seconds long. A region shorter than a window gets one window centred
    on it (widened into the silence around it, within the recording), so no speech goes without a window."""
    if not 0 < hop <= window:
        raise ValueError(f"the hop ({hop:g} s) must be above 0 and at most the window ({window:g} s)")
    if duration < window:
        raise DiarizationInputError("audio", too_short_reason(duration, window))
    spans = []
    for start, end in regions:
        if end - start <= window:
            first = min(max(0.0, (start + end - window) / 2), duration - window)
            spans.append((first, first + window))
            continue
        count = int(np.ceil((end - start - window) / hop)) + 1
        firsts = np.minimum(start + hop * np.arange(count), end - window)
        spans.extend((first, first + window) for first in firsts)
    return np.unique(np.round(np.asarray(spans, dtype=np.float64), 4), axis=0)


# NoSpeechError is re-exported: `except DiarizationInputError, NoSpeechError` covers every refused recording.
__all__ += ["NoSpeechError"]
