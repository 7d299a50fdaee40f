"""Reading audio, the one place for it: the feature extractor, training, `convert` and the command line all call
`load_audio` / `audio_duration` from here. soundfile first, PyAV for what libsndfile cannot read.

libsndfile reads WAV, FLAC, OGG/Vorbis, Opus and MP3 but not AAC in MP4/M4A containers, the format VoxCeleb2 is
distributed in. Those are decoded with PyAV (`pip install "wavlmrawnet[m4a]"`; its wheels bundle FFmpeg), imported
only when needed, so this module travels with the remote code and a model from the Hub needs no PyAV.

Sources are a path, or the `bytes` of an encoded file (a `datasets` `Audio(decode=False)` entry holds either).

Decode limits, the one place they are stated (every entry point reads through here: the feature extractor and so
the pipelines, the command line, training, the Inference Endpoints handler and the Space):

- `MAX_SAMPLE_RATE` / `MIN_SAMPLE_RATE`: the sampling rate, in Hz;
- `MAX_CHANNELS`: the channel count;
- `MAX_DECODED_VALUES`: samples x channels, what decoding costs (10 minutes of 48 kHz stereo);
- and, where the caller gives one, `max_seconds`.

They are checked on the header (libsndfile's `info`, or PyAV's stream) before anything is decoded, and again while
decoding block by block, so a file whose header understates its length is stopped at the limit. A file over a
limit raises `AudioLimitError`, which names the limit. Decoding keeps one block of all channels at a time and mixes
it down as it goes (`mono=True`), so a multi-channel file never sits in memory whole.

A WAV or AIFF that holds fewer samples than its header declares (a cut download or copy) is refused as truncated:
libsndfile would read the part that is there without a word. FLAC, OGG and MP3 are not held to a count (a cut FLAC
fails to decode; OGG's and MP3's counts are estimates).

`decode_input` turns every input form the feature extractor, the pipelines and `embed_files` accept
(`ACCEPTED_FORMS`) into samples, reading paths and bytes with `load_audio`.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
from typing import Any

import numpy as np
import soundfile as sf
import soxr

MAX_SAMPLE_RATE = 192_000  # Hz: the highest rate of common studio audio; libsndfile accepts up to 655,350
MIN_SAMPLE_RATE = 1_000  # Hz
MAX_CHANNELS = 8  # 7.1 surround
MAX_DECODED_VALUES = 600 * 48_000 * 2  # samples x channels: 10 min of 48 kHz stereo, 230 MB as float32
DECODE_BLOCK_FRAMES = 1 << 16  # frames read per block

_INT_SCALES = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0, np.dtype(np.int8): 128.0}


class AudioDecodingError(ValueError):
    """An audio file could not be read (missing, unreadable, corrupt or not audio)."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read audio file {self.path!r}: {reason}")


class AudioLimitError(AudioDecodingError):
    """Audio outside a decode limit (sampling rate, channels, decoded size, duration): refused before it is decoded
    whole. The message names the limit."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        ValueError.__init__(self, f"{self.path} is refused: {reason}")


def check_audio_limits(
    name: str,
    sampling_rate: int,
    channels: int,
    frames: int | None = None,
    max_seconds: float | None = None,
    max_values: int | None = None,
) -> None:
    """Raises `AudioLimitError` when the sampling rate, the channel count, the decoded size (`frames` x `channels`)
    or the duration is outside the limits stated at the top of this module; `frames` None skips the last two."""
    if not MIN_SAMPLE_RATE <= sampling_rate <= MAX_SAMPLE_RATE:
        raise AudioLimitError(
            name,
            f"its sampling rate is {sampling_rate:,} Hz; accepted rates are {MIN_SAMPLE_RATE:,} to {MAX_SAMPLE_RATE:,}"
            " Hz (MAX_SAMPLE_RATE)",
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioLimitError(name, f"it has {channels} channels; at most {MAX_CHANNELS} are accepted (MAX_CHANNELS)")
    if frames is None:
        return
    max_values = MAX_DECODED_VALUES if max_values is None else max_values
    seconds = frames / sampling_rate
    if max_seconds is not None and seconds > max_seconds:
        raise AudioLimitError(name, f"it is {_seconds(seconds)} long; the limit is {_seconds(max_seconds)}")
    if frames * channels > max_values:
        raise AudioLimitError(
            name,
            f"it decodes to {frames * channels:,} samples x channels ({_seconds(seconds)} at {sampling_rate:,} Hz, "
            f"{channels} channel(s)); the limit is {max_values:,} (MAX_DECODED_VALUES, 10 min of 48 kHz stereo)",
        )


def _seconds(seconds: float) -> str:
    return f"{seconds:.1f} s"  # "601.0 s" against "600.0 s": minutes would round both to "10 min"


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
    """A sampling rate as an int, within `MIN_SAMPLE_RATE`..`MAX_SAMPLE_RATE`, else a ValueError."""
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be a positive integer in Hz, got {sampling_rate!r}")
    if not MIN_SAMPLE_RATE <= sampling_rate <= MAX_SAMPLE_RATE:
        raise ValueError(
            f"sampling_rate {int(sampling_rate):,} Hz is outside the accepted {MIN_SAMPLE_RATE:,} to "
            f"{MAX_SAMPLE_RATE:,} Hz (MAX_SAMPLE_RATE)"
        )
    return int(sampling_rate)


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
        if os.path.isdir(source):
            raise AudioDecodingError(name, "a folder, not an audio file (give its files, or a list of them)")
        raise AudioDecodingError(name, "no such file" if not os.path.islink(source) else "a link to a missing file")


def _import_av(name: str, soundfile_error: Exception):
    try:
        import av
    except ImportError:
        raise AudioDecodingError(
            name,
            f"not a readable audio file for libsndfile ({_reason(soundfile_error)}) and PyAV is missing; {PYAV_HINT}",
        ) from None
    return av


def _reason(error: Exception) -> str:
    """A library's error as a person reads it: libsndfile's and FFmpeg's own words, without the object reprs and
    temporary paths they put in front ("Error opening <_io.BytesIO object at 0x...>: Format not recognised.")."""
    text = getattr(error, "error_string", None) or getattr(error, "strerror", None) or str(error)
    text = re.sub(r"<[^<>]* object at 0x[0-9a-fA-F]+>", "the data", str(text))
    return text.strip().rstrip(".") or type(error).__name__


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
            name, f"not a readable audio file (libsndfile: {_reason(soundfile_error)}; PyAV: {_reason(error)})"
        ) from error


class _Blocks:
    """Collects decoded blocks (frames, channels) and counts them against the limits: mixed down to mono as they
    come when `mono`, else kept channels-first. With the length from the header (`expected`), blocks are written into
    one array allocated up front, so the samples are never held twice (as a list of blocks and their concatenation);
    a stream longer than its header said continues in a list, still counted against the limits."""

    def __init__(self, name: str, rate: int, channels: int, mono: bool, max_seconds: float | None, expected=None):
        self.name, self.rate, self.channels, self.mono, self.max_seconds = name, rate, channels, mono, max_seconds
        self.frames, self.parts = 0, []
        self.buffer = np.empty((1 if mono else channels, expected), np.float32) if expected else None

    def add(self, block: np.ndarray) -> None:  # block: (frames, channels) float32
        start, self.frames = self.frames, self.frames + len(block)
        check_audio_limits(self.name, self.rate, self.channels, self.frames, self.max_seconds)
        if self.buffer is not None and self.frames <= self.buffer.shape[1]:
            if self.mono:
                np.mean(block, axis=1, out=self.buffer[0, start : self.frames])
            else:
                self.buffer[:, start : self.frames] = block.T
            return
        if self.buffer is not None:  # longer than the header said: keep what is there, go on in a list
            self.parts, self.buffer = [self.buffer[:, :start]], None
        self.parts.append(block.mean(axis=1)[None] if self.mono else np.ascontiguousarray(block.T))

    def audio(self) -> np.ndarray:
        if self.frames == 0:
            raise AudioDecodingError(self.name, "the file holds no audio samples")
        if self.buffer is not None:
            return self.buffer[:, : self.frames]
        return np.concatenate(self.parts, axis=-1).astype(np.float32, copy=False)


def _pyav_decode(
    source: AudioSource, name: str, soundfile_error: Exception, mono: bool = False, max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """(channels-first float32 samples, sampling rate) decoded with PyAV (FFmpeg), frame by frame within the limits."""
    with _pyav_audio_stream(source, name, soundfile_error) as (av, container, stream):
        rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        channels = int(stream.codec_context.channels or len(stream.layout.channels) or 0)
        frames = None
        if stream.duration is not None and stream.time_base is not None:
            frames = int(stream.duration * stream.time_base * rate)
        check_audio_limits(name, rate, channels, frames, max_seconds)
        blocks = _Blocks(name, rate, channels, mono, max_seconds)
        # Planar float output: (channels, samples) per frame, whatever the codec's sample format.
        resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=rate)
        for frame in container.decode(stream):
            for converted in resampler.resample(frame):
                blocks.add(converted.to_ndarray().T)
        for converted in resampler.resample(None):  # flush
            blocks.add(converted.to_ndarray().T)
    return blocks.audio(), rate


# WAV format tags whose data chunk holds whole frames of `block align` bytes: PCM, float, A-law, mu-law, extensible.
_WAV_FRAME_FORMATS = (0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE)
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # a streamed WAV's data size: "to the end of the file"


def _declared_frames(source: AudioSource) -> int | None:
    """The frame count a WAV or AIFF header declares, or None where it declares none (a streamed WAV, RF64, a
    compressed WAV codec) or is not WAV/AIFF. libsndfile clamps its own count to the bytes present, so a truncated
    file reads "cleanly" at a fraction of its length; the header's count is what tells (`_soundfile_decode`).
    FLAC, OGG and MP3 are not asked: a cut FLAC fails to decode, and OGG's and MP3's counts are estimates."""
    try:
        with open(source, "rb") if not isinstance(source, (bytes, bytearray)) else io.BytesIO(source) as handle:
            head = handle.read(12)
            if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
                return _wav_declared_frames(handle, "<" if head[:4] == b"RIFF" else ">")
            if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
                return _aiff_declared_frames(handle)
    except (OSError, struct.error):
        return None
    return None


def _chunks(handle, endian: str):
    """(chunk id, size, offset of its data) of each RIFF/IFF chunk from the handle's position; chunks are padded to
    an even size."""
    while True:
        head = handle.read(8)
        if len(head) < 8:
            return
        chunk, size = head[:4], struct.unpack(f"{endian}I", head[4:])[0]
        start = handle.tell()
        yield chunk, size, start
        handle.seek(start + size + (size & 1))


def _wav_declared_frames(handle, endian: str) -> int | None:
    block_align = None
    for chunk, size, start in _chunks(handle, endian):
        if chunk == b"fmt ":
            fmt = handle.read(min(size, 16))
            tag, _, _, _, block_align = struct.unpack(f"{endian}HHIIH", fmt[:14])
            if tag not in _WAV_FRAME_FORMATS or not block_align:
                return None
        elif chunk == b"data":
            if block_align is None or size in _UNKNOWN_SIZES:
                return None
            return size // block_align
    return None


def _aiff_declared_frames(handle) -> int | None:
    for chunk, _, _ in _chunks(handle, ">"):
        if chunk == b"COMM":
            return struct.unpack(">hI", handle.read(6))[1]  # channels, then the sample frame count
    return None


def _soundfile_decode(source: AudioSource, name: str, mono: bool, max_seconds: float | None):
    """libsndfile: the header is checked against the limits, then the samples are read block by block. A WAV or
    AIFF that holds fewer frames than its header declares (a cut download or copy) is refused as truncated."""
    with sf.SoundFile(_file_input(source)) as audio_file:
        rate, channels = int(audio_file.samplerate), int(audio_file.channels)
        frames = audio_file.frames if 0 < audio_file.frames < (1 << 62) else None  # unknown length: counted
        check_audio_limits(name, rate, channels, frames, max_seconds)
        blocks = _Blocks(name, rate, channels, mono, max_seconds, expected=frames)
        while True:
            block = audio_file.read(DECODE_BLOCK_FRAMES, dtype="float32", always_2d=True)
            if not len(block):
                break
            blocks.add(block)
        declared = _declared_frames(source) if audio_file.format in ("WAV", "WAVEX", "AIFF") else None
    if declared is not None and blocks.frames < declared:
        raise AudioDecodingError(
            name,
            f"truncated: the header says {declared:,} samples, the file holds {blocks.frames:,} "
            f"({blocks.frames / rate:.2f} of {declared / rate:.2f} s); copy or export it again",
        )
    return blocks.audio(), rate


def read_audio(
    source: AudioSource, name: str | None = None, mono: bool = False, max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """The samples as a channels-first float32 array in [-1, 1] (one channel with `mono=True`, the channels' mean)
    and the file's sampling rate, within the decode limits (module docstring) and `max_seconds`.

    soundfile first; PyAV (FFmpeg) only when libsndfile cannot read the format (m4a/AAC, ...).

    Raises:
        AudioLimitError: a sampling rate, channel count, decoded size or duration over its limit.
        AudioDecodingError: missing file, unreadable / corrupt data, no samples, or PyAV needed but not installed.
    """
    name = _name(source, name)
    _require_file(source, name)
    if isinstance(source, (bytes, bytearray)) and not source:
        raise AudioDecodingError(name, "the audio entry holds zero bytes")
    try:
        audio, rate = _soundfile_decode(source, name, mono, max_seconds)
    except AudioDecodingError:
        raise
    except Exception as error:  # LibsndfileError, RuntimeError, TypeError: not a format libsndfile reads
        audio, rate = _pyav_decode(source, name, error, mono, max_seconds)
    if audio.shape[-1] == 0:
        raise AudioDecodingError(name, "the file holds no audio samples")
    return audio, int(rate)


def load_audio(
    source: AudioSource, sampling_rate: int = 16000, name: str | None = None, max_seconds: float | None = None
) -> np.ndarray:
    """Mono float32 samples at `sampling_rate` (soxr), from a path or encoded bytes, within the decode limits and
    `max_seconds`; see `read_audio`."""
    audio, rate = read_audio(source, name, mono=True, max_seconds=max_seconds)
    return resample(audio[0], rate, sampling_rate)


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
    audio, rate = _pyav_decode(source, name, soundfile_error, mono=True)  # no duration in the container: decode
    return audio.shape[-1] / rate


ACCEPTED_FORMS = (
    "a path (str or os.PathLike)",
    "the bytes of an encoded audio file",
    'a dict {"array" or "raw": samples, "sampling_rate": Hz}',
    "a numpy array or torch tensor of samples, 1-D or channels-first (pass sampling_rate=)",
    'a datasets Audio entry: decoded (a torchcodec AudioDecoder) or Audio(decode=False) {"path", "bytes"}',
)


class UnsupportedAudioInput(TypeError):
    """An input that is none of the accepted forms; the message lists them."""

    def __init__(self, audio: Any, detail: str = ""):
        forms = "; ".join(ACCEPTED_FORMS)
        super().__init__(f"unsupported audio input {type(audio).__name__}{detail}; accepted forms: {forms}")


def decode_input(
    audio: Any, sampling_rate: int | None = None, target_rate: int = 16000, name: str | None = None
) -> tuple[np.ndarray, int | None, str | None]:
    """(float32 samples, their rate, a name for messages) for any of the `ACCEPTED_FORMS`.

    Paths and bytes (also inside a `{"path", "bytes"}` dict) are read with `load_audio`, so they come back mono at
    `target_rate`; arrays come back as they are (1-D or channels-first) with the dict's or the call's
    `sampling_rate`, or None when neither says (the caller decides what that means).
    """
    if hasattr(audio, "get_all_samples"):  # a torchcodec AudioDecoder: what datasets' Audio() decodes to
        samples = audio.get_all_samples()
        return to_float32(samples.data), int(samples.sample_rate), name
    if isinstance(audio, dict):
        for key in ("array", "raw"):
            if key in audio and audio[key] is not None:
                rate = audio.get("sampling_rate", sampling_rate)
                return to_float32(audio[key]), rate, name or audio.get("path")
        source = audio.get("bytes") or audio.get("path")
        if source is None:
            raise UnsupportedAudioInput(audio, f" with keys {sorted(audio)}")
        label = name or audio.get("path") or "<bytes>"
        return load_audio(source, target_rate, name=label), target_rate, label
    if isinstance(audio, (str, os.PathLike)):
        return load_audio(audio, target_rate), target_rate, name or os.fspath(audio)
    if isinstance(audio, (bytes, bytearray, memoryview)):
        return load_audio(bytes(audio), target_rate, name=name), target_rate, name or "<bytes>"
    if hasattr(audio, "detach") or isinstance(audio, (np.ndarray, list, tuple)):
        try:
            return to_float32(audio), sampling_rate, name
        except (TypeError, ValueError) as error:
            raise UnsupportedAudioInput(audio, f" ({error})") from None
    raise UnsupportedAudioInput(audio)


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
