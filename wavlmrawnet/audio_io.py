"""Reading audio for training, `convert` and the command line: soundfile first, PyAV for what libsndfile cannot read.

libsndfile reads WAV, FLAC, OGG/Vorbis, Opus and MP3 but not AAC in MP4/M4A containers, the format VoxCeleb2 is
distributed in. Those are decoded with PyAV (`pip install "wavlmrawnet[m4a]"`; its wheels bundle FFmpeg). The remote
code (`feature_extraction_wavlmrawnet.py`) never imports this module, so a model from the Hub needs no PyAV.

Sources are a path, or the `bytes` of an encoded file (a `datasets` `Audio(decode=False)` entry holds either).
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any

import numpy as np
import soundfile as sf

from .feature_extraction_wavlmrawnet import AudioDecodingError, resample, to_mono

PYAV_HINT = 'install PyAV to read it: pip install "wavlmrawnet[m4a]" (or: pip install av)'

AudioSource = str | os.PathLike | bytes


def _name(source: AudioSource, name: str | None) -> str:
    if name:
        return name
    return "<bytes>" if isinstance(source, (bytes, bytearray)) else os.fspath(source)


def _file_input(source: AudioSource):
    """What soundfile and PyAV open: a path, or a file object over the bytes."""
    return io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else os.fspath(source)


def _require_file(source: AudioSource, name: str) -> None:
    if not isinstance(source, (bytes, bytearray)) and not os.path.isfile(source):
        raise AudioDecodingError(name, "no such file")


def _import_av(name: str, soundfile_error: Exception):
    try:
        import av
    except ImportError:
        raise AudioDecodingError(
            name, f"not a readable audio file for libsndfile ({soundfile_error}) and PyAV is missing; {PYAV_HINT}"
        ) from None
    return av


@contextlib.contextmanager
def _pyav_audio_stream(source: AudioSource, name: str, soundfile_error: Exception):
    """(PyAV, the open container, its first audio stream); any FFmpeg error in the block is an AudioDecodingError."""
    av = _import_av(name, soundfile_error)
    try:
        with av.open(_file_input(source)) as container:
            if not container.streams.audio:
                raise AudioDecodingError(name, "the file holds no audio stream")
            yield av, container, container.streams.audio[0]
    except AudioDecodingError:
        raise
    except Exception as error:  # av.error.FFmpegError and friends
        raise AudioDecodingError(
            name, f"not a readable audio file (libsndfile: {soundfile_error}; PyAV: {error})"
        ) from error


def _pyav_decode(source: AudioSource, name: str, soundfile_error: Exception) -> tuple[np.ndarray, int]:
    """(channels-first float32 samples, sampling rate) decoded with PyAV (FFmpeg)."""
    with _pyav_audio_stream(source, name, soundfile_error) as (av, container, stream):
        rate = stream.codec_context.sample_rate or stream.rate
        # Planar float output: (channels, samples) per frame, whatever the codec's sample format.
        resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=rate)
        chunks = []
        for frame in container.decode(stream):
            for converted in resampler.resample(frame):
                chunks.append(converted.to_ndarray())
        for converted in resampler.resample(None):  # flush
            chunks.append(converted.to_ndarray())
    if not chunks:
        raise AudioDecodingError(name, "the file holds no audio samples")
    return np.concatenate(chunks, axis=1).astype(np.float32, copy=False), int(rate)


def read_audio(source: AudioSource, name: str | None = None) -> tuple[np.ndarray, int]:
    """The samples as a channels-first float32 array in [-1, 1] and the file's sampling rate.

    soundfile first; PyAV (FFmpeg) only when libsndfile cannot read the format (m4a/AAC, ...).

    Raises:
        AudioDecodingError: missing file, unreadable / corrupt data, no samples, or PyAV needed but not installed.
    """
    name = _name(source, name)
    _require_file(source, name)
    if isinstance(source, (bytes, bytearray)) and not source:
        raise AudioDecodingError(name, "the audio entry holds zero bytes")
    try:
        audio, rate = sf.read(_file_input(source), dtype="float32", always_2d=True)
        audio = audio.T
    except Exception as error:  # LibsndfileError, RuntimeError, TypeError
        audio, rate = _pyav_decode(source, name, error)
    if audio.shape[-1] == 0:
        raise AudioDecodingError(name, "the file holds no audio samples")
    return audio, int(rate)


def load_audio(source: AudioSource, sampling_rate: int = 16000, name: str | None = None) -> np.ndarray:
    """Mono float32 samples at `sampling_rate` (soxr), from a path or encoded bytes; see `read_audio`."""
    audio, rate = read_audio(source, name)
    return resample(to_mono(audio), rate, sampling_rate)


def audio_duration(source: AudioSource, name: str | None = None) -> float:
    """Seconds, from the header (soundfile) or the container (PyAV), without decoding where the format allows."""
    name = _name(source, name)
    _require_file(source, name)
    try:
        info = sf.info(_file_input(source))
        return info.frames / info.samplerate
    except Exception as error:
        soundfile_error = error
    with _pyav_audio_stream(source, name, soundfile_error) as (av, container, stream):
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / av.time_base
    audio, rate = _pyav_decode(source, name, soundfile_error)  # no duration in the container: decode
    return audio.shape[-1] / rate


def write_aac(path: str | os.PathLike, audio: Any, sampling_rate: int, bit_rate: int = 64000) -> str:
    """Writes mono or channels-first float audio as AAC in an MP4/M4A container with PyAV (tests, examples)."""
    av = _import_av(os.fspath(path), RuntimeError("writing AAC"))
    audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    layout = "mono" if audio.shape[0] == 1 else "stereo"
    with av.open(os.fspath(path), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=sampling_rate, layout=layout)
        stream.bit_rate = bit_rate
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio), format="fltp", layout=layout)
        frame.sample_rate = sampling_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return os.fspath(path)
