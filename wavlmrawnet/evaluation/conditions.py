"""Evaluation conditions: what happens to the **test side** of each trial before it is embedded (the enrolment side
stays clean, as in the papers' condition tables).

A condition's name is a table key plus, for most, a number: `dur3` is `CONDITIONS["dur"]` with 3 seconds, `mp3-32`
is `CONDITIONS["mp3-"]` at 32 kbit/s, `tel8k` and `reverb` take no number. Every condition is a function
`(waveform, sampling_rate, rng, value, context) -> waveform` of float32 mono audio; its randomness comes from `rng`,
seeded by the evaluation's seed, the condition's name and the file's key (`noise_bank.seeded_rng`), so every model
sees the same audio and a rerun reproduces it exactly.

- `clean`: unchanged;
- `durN`: a random N-second crop (a file of N s or less is kept whole);
- `noiseN`: noise from the seeded `NoiseBank` (babble of other corpus speakers, music-like tones, channel noises)
  added at N dB SNR, the powers taken over the whole file;
- `reverb`: convolved with a generated room impulse response (`audio_effects.room_impulse_response`), RT60 drawn
  uniformly from `REVERB_RT60_S`, the direct-to-reverberant ratio from `REVERB_DRR_DB`;
- `tel8k`: resampled to 8 kHz, band-limited to 300-3,400 Hz, resampled back;
- `opusN`, `mp3-N`: a real encode and decode at N kbit/s (Opus in Ogg, MP3) by PyAV's FFmpeg (libopus,
  libmp3lame; the `m4a` extra).

Adding a condition: write its function, add one `Condition` entry to `CONDITIONS`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soxr

from ..audio_effects import fft_size, mix_at_snr, reverberate, room_impulse_response
from .noise_bank import NoiseBank, seeded_rng

__all__ = [
    "CODECS",
    "CONDITIONS",
    "REVERB_DRR_DB",
    "REVERB_RT60_S",
    "TELEPHONE_BAND_HZ",
    "Condition",
    "ConditionContext",
    "ParsedCondition",
    "codec_round_trip",
    "parse_condition",
    "parse_conditions",
]

REVERB_RT60_S = (0.3, 0.9)
REVERB_DRR_DB = (-3.0, 6.0)
TELEPHONE_RATE = 8000
TELEPHONE_BAND_HZ = (300.0, 3400.0)
_TELEPHONE_SKIRT_HZ = (50.0, 200.0)  # raised-cosine transitions below 300 Hz and above 3,400 Hz
# codec family -> (PyAV encoder, container)
CODECS = {"opus": ("libopus", "ogg"), "mp3": ("libmp3lame", "mp3")}


@dataclass(frozen=True)
class ConditionContext:
    """What a condition may need beyond the audio: the noise bank and the test file's speaker (babble excludes it)."""

    noise_bank: NoiseBank | None = None
    speaker: str | None = None


# ----------------------------------------------------------------------------------------------- the conditions
def unchanged(waveform, sampling_rate, rng, value, context):
    return waveform


def random_crop(waveform, sampling_rate, rng, seconds, context):
    """A random `seconds`-long window; a file of that length or shorter is kept whole."""
    length = int(round(seconds * sampling_rate))
    if waveform.shape[-1] <= length:
        return waveform
    start = int(rng.integers(0, waveform.shape[-1] - length + 1))
    return waveform[start : start + length]


def add_noise(waveform, sampling_rate, rng, snr_db, context):
    """Noise drawn from the bank (a family, a clip, a window), mixed at `snr_db` (`audio_effects.mix_at_snr`)."""
    if context.noise_bank is None:
        raise ValueError("the noise conditions draw from a NoiseBank: pass ConditionContext(noise_bank=...)")
    noise, _ = context.noise_bank.draw(waveform.shape[-1], context.speaker, rng)
    return mix_at_snr(waveform, noise, snr_db)


def add_reverb(waveform, sampling_rate, rng, value, context):
    """Convolution with a generated room impulse response, RT60 and direct-to-reverberant ratio drawn uniformly."""
    rir = room_impulse_response(
        float(rng.uniform(*REVERB_RT60_S)), sampling_rate, rng, float(rng.uniform(*REVERB_DRR_DB))
    )
    return reverberate(waveform, rir)


def telephone_gain(freqs: np.ndarray) -> np.ndarray:
    """Magnitude response of the telephone band: 1 inside 300-3,400 Hz, raised-cosine skirts to 0 outside."""
    (low, high), (low_skirt, high_skirt) = TELEPHONE_BAND_HZ, _TELEPHONE_SKIRT_HZ
    gain = np.ones_like(freqs)
    below = np.clip((freqs - (low - low_skirt)) / low_skirt, 0.0, 1.0)
    above = np.clip(((high + high_skirt) - freqs) / high_skirt, 0.0, 1.0)
    gain *= 0.5 - 0.5 * np.cos(np.pi * below)
    gain *= 0.5 - 0.5 * np.cos(np.pi * above)
    return gain


def telephone_band(waveform, sampling_rate, rng, value, context):
    """Resampled to 8 kHz (soxr), band-limited to 300-3,400 Hz (zero-phase, in the frequency domain), resampled
    back to `sampling_rate`; the length is kept."""
    narrow = soxr.resample(waveform.astype(np.float32), sampling_rate, TELEPHONE_RATE, quality="HQ")
    size = fft_size(narrow.shape[-1] + TELEPHONE_RATE // 10)  # padding: the filter's ringing does not wrap round
    gain = telephone_gain(np.fft.rfftfreq(size, 1.0 / TELEPHONE_RATE))
    narrow = np.fft.irfft(np.fft.rfft(narrow, size) * gain, size)[: narrow.shape[-1]]
    wide = soxr.resample(narrow.astype(np.float32), TELEPHONE_RATE, sampling_rate, quality="HQ")
    return _fit(wide, waveform.shape[-1])


def _fit(signal: np.ndarray, length: int) -> np.ndarray:
    """`signal` cut or zero-padded at its end to `length` samples."""
    if signal.shape[-1] >= length:
        return signal[:length]
    return np.pad(signal, (0, length - signal.shape[-1]))


def codec_round_trip(waveform: np.ndarray, sampling_rate: int, codec: str, kbps: float) -> tuple[np.ndarray, int]:
    """(decoded audio at `sampling_rate` and the input's length, size of the encoded file in bytes): `waveform`
    encoded by a real encoder at `kbps` kbit/s (constant target bit rate), in its usual container, then decoded.

    `codec` is a key of `CODECS`. Encoding runs at `sampling_rate` where the encoder supports it, else at its nearest
    higher rate (Opus: 8/12/16/24/48 kHz). Audio whose peak exceeds 1 is scaled down for the encoder and back up.
    Needs PyAV (the `m4a` extra); an FFmpeg build without the encoder is a `RuntimeError` naming it.
    """
    from ..extras import import_module

    av = import_module("av", "m4a", f"the {codec} evaluation conditions (PyAV encodes and decodes)")
    encoder, container = CODECS[codec]
    try:
        codec_info = av.codec.Codec(encoder, "w")
    except Exception as error:  # av.codec.codec.UnknownCodecError
        raise RuntimeError(
            f"this PyAV's FFmpeg has no {encoder} encoder, needed by the {codec} conditions ({error})"
        ) from None
    rates = sorted(codec_info.audio_rates or [sampling_rate])
    rate = sampling_rate if sampling_rate in rates else next((r for r in rates if r > sampling_rate), rates[-1])
    peak = float(np.max(np.abs(waveform))) if waveform.size else 0.0
    scale = 0.99 / peak if peak > 0.99 else 1.0
    frame = av.AudioFrame.from_ndarray((waveform * scale).astype(np.float32)[None, :], format="flt", layout="mono")
    frame.sample_rate = sampling_rate
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as output:
        stream = output.add_stream(encoder, rate=rate, layout="mono")
        stream.bit_rate = int(kbps * 1000)
        to_encoder = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=rate)
        for resampled in to_encoder.resample(frame) + to_encoder.resample(None):
            output.mux(stream.encode(resampled))
        output.mux(stream.encode(None))
    encoded = buffer.getvalue()
    pieces = []
    with av.open(io.BytesIO(encoded), "r") as source:
        to_float = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
        for decoded in source.decode(audio=0):
            pieces += [piece.to_ndarray()[0] for piece in to_float.resample(decoded)]
        pieces += [piece.to_ndarray()[0] for piece in to_float.resample(None)]
    if not pieces:
        raise RuntimeError(f"{encoder} at {kbps:g} kbit/s decoded to no audio")
    decoded = np.concatenate(pieces).astype(np.float32) / scale
    return _fit(decoded, waveform.shape[-1]), len(encoded)


def opus(waveform, sampling_rate, rng, kbps, context):
    return codec_round_trip(waveform, sampling_rate, "opus", kbps)[0]


def mp3(waveform, sampling_rate, rng, kbps, context):
    return codec_round_trip(waveform, sampling_rate, "mp3", kbps)[0]


# ----------------------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Condition:
    """One table entry. `apply(waveform, sampling_rate, rng, value, context)` returns the altered waveform;
    `parameter` says what the number after the name means ("seconds", "dB SNR", "kbit/s"), None when the name takes
    none; `meaning` is one line for tables and docs, with `{value}` standing for the number."""

    apply: Callable
    parameter: str | None
    meaning: str
    example: str  # a valid full name, for error messages
    value_range: tuple[float, float] | None = None  # the numbers it accepts (inclusive), when limited


# Name (prefix) -> condition. Adding one: write its function above and add an entry here.
CONDITIONS: dict[str, Condition] = {
    "clean": Condition(unchanged, None, "the test audio unchanged", "clean"),
    "dur": Condition(random_crop, "seconds", "a random {value}-second crop of the test audio", "dur3", (0.1, 3600)),
    "noise": Condition(add_noise, "dB SNR", "noise from the seeded bank at {value} dB SNR", "noise5"),
    "reverb": Condition(
        add_reverb,
        None,
        f"a generated room impulse response, RT60 {REVERB_RT60_S[0]:g}-{REVERB_RT60_S[1]:g} s",
        "reverb",
    ),
    "tel8k": Condition(telephone_band, None, "telephone band: 300-3,400 Hz through 8 kHz", "tel8k"),
    "opus": Condition(opus, "kbit/s", "Opus encode and decode at {value} kbit/s", "opus8", (6, 510)),
    # MPEG-2 layer III, which LAME uses at 16 kHz, has 8-160 kbit/s
    "mp3-": Condition(mp3, "kbit/s", "MP3 encode and decode at {value} kbit/s", "mp3-32", (8, 160)),
}

_NUMBER = re.compile(r"\d+(\.\d+)?")


@dataclass(frozen=True)
class ParsedCondition:
    """A condition as named on the command line: `name` ("noise5"), its table `key` ("noise") and `value` (5.0)."""

    name: str
    key: str
    value: float | None
    condition: Condition

    @property
    def meaning(self) -> str:
        return self.condition.meaning.format(value=format(self.value, "g") if self.value is not None else "")

    @property
    def is_clean(self) -> bool:
        return self.condition.apply is unchanged

    def apply(self, waveform: np.ndarray, sampling_rate: int, seed: int, key: str, context=None) -> np.ndarray:
        """The altered `waveform`: `rng` seeded from (`seed`, this name, the file's `key`). A result that is empty or
        not finite is a `ValueError` naming the condition and the file."""
        rng = seeded_rng(seed, self.name, key)
        altered = self.condition.apply(waveform, sampling_rate, rng, self.value, context or ConditionContext())
        altered = np.asarray(altered, dtype=np.float32)
        if altered.ndim != 1 or altered.size == 0 or not np.isfinite(altered).all():
            raise ValueError(f"condition {self.name!r} turned {key} into empty or non-finite audio")
        return altered


def _known() -> str:
    return ", ".join(
        f"{key}{'N' if c.parameter else ''} ({c.parameter or 'no number'}, e.g. {c.example})"
        for key, c in CONDITIONS.items()
    )


def parse_condition(name: str) -> ParsedCondition:
    """`ParsedCondition` of a name such as `noise5`, `dur2.5`, `mp3-32` or `tel8k`; an unknown name, a missing or
    extra number is a `ValueError` that lists the known conditions."""
    name = name.strip()
    keys = sorted((k for k in CONDITIONS if name.startswith(k)), key=len, reverse=True)
    for key in keys:
        condition, rest = CONDITIONS[key], name[len(key) :]
        if condition.parameter is None and rest == "":
            return ParsedCondition(name, key, None, condition)
        if condition.parameter is not None and _NUMBER.fullmatch(rest):
            low, high = condition.value_range or (-np.inf, np.inf)
            if not low <= float(rest) <= high:
                raise ValueError(f"condition {name!r}: {key!r} takes {low:g} to {high:g} {condition.parameter}")
            return ParsedCondition(name, key, float(rest), condition)
    if keys:
        condition = CONDITIONS[keys[0]]
        wanted = f"a number ({condition.parameter}) after {keys[0]!r}" if condition.parameter else "no number"
        raise ValueError(f"condition {name!r}: {keys[0]!r} takes {wanted}, e.g. {condition.example}")
    raise ValueError(f"unknown condition {name!r}; known: {_known()}")


def parse_conditions(names: str | list[str]) -> list[ParsedCondition]:
    """Conditions from a comma-separated string or a list; empty or repeated names are a `ValueError`."""
    if isinstance(names, str):
        names = names.split(",")
    names = [n.strip() for n in names]
    if not names or any(not n for n in names):
        raise ValueError(f"conditions must be a comma-separated list of names, got {','.join(names)!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"condition(s) listed twice: {repeated}")
    return [parse_condition(n) for n in names]
