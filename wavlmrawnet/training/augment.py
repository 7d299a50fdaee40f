"""Training-time augmentation for speaker embeddings: additive noise, reverberation, speed perturbation, and the
telephone band and lossy codecs of the evaluation conditions (`evaluation.conditions`).

Every augmentation is off unless configured. All randomness comes from the `np.random.Generator` passed in, so the
augmentation of an item is reproducible from the item's seed (see `SpeakerAudioDataset` in `training.data`).

Order, as in Kaldi / WeSpeaker recipes: speed perturbation on the whole utterance (it changes the length, so it runs
before cropping), then reverberation, then additive noise on the cropped segment (both keep the length); then the
transmission, as a recording goes through it after the room: the telephone band, then a codec round trip. The signal
effects themselves (`reverberate`, `mix_at_snr`) live in `wavlmrawnet.audio_effects`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import soundfile as sf
import soxr
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, field_validator

from ..audio_effects import fit_length, mix_at_snr, reverberate
from ..audio_io import AudioDecodingError, audio_duration, check_sampling_rate, load_audio, to_mono
from ..evaluation.conditions import CODECS, parse_condition, telephone_band
from ..extras import import_module

__all__ = [
    "AUDIO_EXTENSIONS",
    "AugmentConfig",
    "Augmenter",
    "fit_length",
    "list_audio_files",
    "read_noise_segment",
    "speed_perturb",
]

AUDIO_EXTENSIONS = (".wav", ".flac")

# How many problem files an error message names.
_MAX_LISTED = 20


# ---------------------------------------------------------------------------------------------------- files
def list_audio_files(folder: str | os.PathLike, extensions: Sequence[str] = AUDIO_EXTENSIONS) -> list[str]:
    """Absolute paths of the audio files under `folder` (recursive), sorted.

    Raises:
        FileNotFoundError: `folder` is not an existing directory.
        ValueError: it holds no file with one of `extensions`.
    """
    folder = Path(os.path.abspath(folder))
    if not folder.is_dir():
        raise FileNotFoundError(f"audio folder {str(folder)!r} does not exist or is not a directory")
    suffixes = {ext.lower() for ext in extensions}
    files = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
    if not files:
        raise ValueError(
            f"audio folder {str(folder)!r} holds no audio files ({', '.join(sorted(suffixes))}, searched recursively)"
        )
    return files


def _checked_audio_files(folder: str | os.PathLike, option: str) -> list[str]:
    """The audio files of a configured folder, after a header check (fails at start-up, not mid-training)."""
    try:
        files = list_audio_files(folder)
    except (FileNotFoundError, ValueError) as error:
        raise type(error)(f"{option}: {error}") from error
    problems = []
    for path in files:
        try:
            if audio_duration(path) <= 0:
                problems.append(f"{path}: the file holds no audio samples")
        except AudioDecodingError as error:
            problems.append(f"{path}: {error.reason}")
    if problems:
        shown = "\n  ".join(problems[:_MAX_LISTED])
        more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise ValueError(f"{option}: {len(problems)} of {len(files)} audio files are unusable:\n  {shown}{more}")
    return files


# ---------------------------------------------------------------------------------------------------- noise
def read_noise_segment(path: str, num_samples: int, sampling_rate: int, rng: np.random.Generator) -> np.ndarray:
    """`num_samples` of the noise file `path` at `sampling_rate` (see `fit_length`).

    A file already at `sampling_rate` and longer than needed is read only in the drawn window (long MUSAN music files
    are not decoded whole for a 3 s segment); anything else goes through `load_audio` (resampled) and `fit_length`.
    """
    try:
        info = sf.info(path)
    except Exception as error:
        raise AudioDecodingError(path, f"not a readable audio file ({error})") from error
    if info.samplerate == sampling_rate and info.frames > num_samples:
        start = int(rng.integers(0, info.frames - num_samples + 1))
        try:
            window, _ = sf.read(path, start=start, frames=num_samples, dtype="float32", always_2d=True)
        except Exception as error:
            raise AudioDecodingError(path, f"not a readable audio file ({error})") from error
        if window.shape[0] == 0:
            raise AudioDecodingError(path, f"no samples at frame {start} although the header says {info.frames}")
        return fit_length(to_mono(window.T), num_samples, rng)  # exact unless the header over-counts frames
    return fit_length(load_audio(path, sampling_rate), num_samples, rng)


# ---------------------------------------------------------------------------------------------------- speed
def speed_perturb(waveform: np.ndarray, factor: float, sampling_rate: int) -> np.ndarray:
    """Kaldi / sox-style `speed`: plays the audio `factor` times faster, changing tempo and pitch.

    The output has `round(len / factor)` samples (soxr resampling from `factor * sampling_rate` to `sampling_rate`);
    a factor of 1 returns the input unchanged.
    """
    if not np.isfinite(factor) or factor <= 0:
        raise ValueError(f"speed factor must be a positive number, got {factor}")
    if factor == 1.0:
        return waveform
    return soxr.resample(waveform, sampling_rate * factor, sampling_rate, quality="HQ").astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------------- config
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class AugmentConfig(BaseModel):
    """Augmentation settings (the `data.augment` section of a training config). Each augmentation is off unless its
    folder / factors are set; values are validated on construction (unknown keys, probabilities outside [0, 1]...).

    Attributes:
        noise_dir: folder of noise recordings (MUSAN-style; *.wav / *.flac, searched recursively).
        snr_db: (low, high) range of the signal-to-noise ratio, drawn uniformly per item, in dB.
        noise_prob: chance that an item gets noise.
        rir_dir: folder of room impulse responses (e.g. RIRS_NOISES simulated_rirs), searched recursively.
        rir_prob: chance that an item is reverberated.
        speed_factors: speed factors to draw from, e.g. [0.9, 1.0, 1.1] (include 1.0 to keep some items as they are).
        speed_prob: chance that a factor is drawn at all (otherwise the speed is left unchanged).
        telephone_prob: chance that an item goes through the telephone band (the `tel8k` evaluation condition).
        codecs: codec conditions to draw from, e.g. [opus8, opus16, mp3-32] (encode and decode at N kbit/s; needs
            PyAV, the `m4a` extra).
        codec_prob: chance that an item goes through one of `codecs`.
        sampling_rate: rate of the audio being augmented, in Hz.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    noise_dir: str | None = None
    snr_db: tuple[FiniteFloat, FiniteFloat] = (0.0, 15.0)
    noise_prob: Probability = 0.5
    rir_dir: str | None = None
    rir_prob: Probability = 0.5
    speed_factors: tuple[Annotated[FiniteFloat, Field(gt=0)], ...] | None = None
    speed_prob: Probability = 1.0
    telephone_prob: Probability = 0.0
    codecs: tuple[str, ...] | None = None
    codec_prob: Probability = 0.5
    sampling_rate: Annotated[int, Field(gt=0)] = 16000

    @field_validator("codecs")
    @classmethod
    def _codec_conditions(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for name in value or ():
            if parse_condition(name).key.rstrip("-") not in CODECS:
                raise ValueError(f"codecs: {name!r} is not a codec condition (opusN or mp3-N, N in kbit/s)")
        return value

    @field_validator("snr_db")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(f"snr_db must be a (low, high) pair with low <= high, got {value}")
        return value

    @classmethod
    def from_dict(cls, values: Mapping) -> AugmentConfig:
        """Builds a config from a mapping (e.g. a YAML section); unknown keys or bad values raise a ValueError."""
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            raise ValueError(f"unknown augmentation option(s) {unknown}; known options are {sorted(cls.model_fields)}")
        return cls(**dict(values))

    def to_dict(self) -> dict:
        return self.model_dump()


class Augmenter:
    """Applies the configured augmentations with a caller-supplied `np.random.Generator`.

    Args:
        noise_dir: folder of noise files; additive noise is off when None.
        snr_db: (low, high) SNR range in dB, drawn uniformly.
        noise_prob: chance of adding noise to an item.
        rir_dir: folder of room impulse responses; reverberation is off when None.
        rir_prob: chance of reverberating an item.
        speed_factors: factors to draw from (Kaldi-style speed perturbation); off when None or empty.
        speed_prob: chance of drawing a speed factor for an item.
        sampling_rate: rate of the audio, in Hz (noise and RIR files at other rates are resampled).

    Configured folders are listed and their headers checked here, so a missing, empty or broken folder fails at
    start-up with an error naming it. The object holds only file lists, so it pickles into DataLoader workers.
    """

    def __init__(
        self,
        noise_dir: str | os.PathLike | None = None,
        snr_db: Sequence[float] = (0.0, 15.0),
        noise_prob: float = 0.5,
        rir_dir: str | os.PathLike | None = None,
        rir_prob: float = 0.5,
        speed_factors: Sequence[float] | None = None,
        speed_prob: float = 1.0,
        telephone_prob: float = 0.0,
        codecs: Sequence[str] | None = None,
        codec_prob: float = 0.5,
        sampling_rate: int = 16000,
    ):
        settings = AugmentConfig(
            noise_dir=None if noise_dir is None else os.fspath(noise_dir),
            snr_db=tuple(snr_db),
            noise_prob=noise_prob,
            rir_dir=None if rir_dir is None else os.fspath(rir_dir),
            rir_prob=rir_prob,
            speed_factors=None if speed_factors is None else tuple(speed_factors),
            speed_prob=speed_prob,
            telephone_prob=telephone_prob,
            codecs=None if codecs is None else tuple(codecs),
            codec_prob=codec_prob,
            sampling_rate=sampling_rate,
        )  # raises a ValueError naming any bad setting
        self.sampling_rate = check_sampling_rate(settings.sampling_rate)
        self.snr_db = settings.snr_db
        self.noise_prob, self.rir_prob, self.speed_prob = settings.noise_prob, settings.rir_prob, settings.speed_prob
        self.speed_factors = settings.speed_factors or ()
        self.telephone_prob, self.codec_prob = settings.telephone_prob, settings.codec_prob
        self.codecs = [parse_condition(name) for name in settings.codecs or ()]
        if self.codecs:
            import_module("av", "m4a", "codec augmentation (data.augment.codecs)")
        self.noise_dir = os.path.abspath(noise_dir) if noise_dir is not None else None
        self.rir_dir = os.path.abspath(rir_dir) if rir_dir is not None else None
        self.noise_files = _checked_audio_files(noise_dir, "noise_dir") if noise_dir is not None else []
        self.rir_files = _checked_audio_files(rir_dir, "rir_dir") if rir_dir is not None else []

    @classmethod
    def from_config(cls, config: AugmentConfig | Mapping) -> Augmenter:
        """Builds an Augmenter from an `AugmentConfig` or a mapping with the same keys (YAML lists are accepted)."""
        if isinstance(config, Mapping):
            config = AugmentConfig.from_dict(config)
        if not isinstance(config, AugmentConfig):
            raise TypeError(f"config must be an AugmentConfig or a mapping, got {type(config).__name__}")
        return cls(**config.to_dict())

    @property
    def enabled(self) -> bool:
        """Whether any augmentation is configured."""
        return bool(self.noise_files or self.rir_files or self.speed_factors or self.telephone_prob or self.codecs)

    # ------------------------------------------------------------------ stages
    def perturb_speed(self, waveform: np.ndarray, rng: np.random.Generator, min_samples: int = 0) -> np.ndarray:
        """Speed perturbation of the whole utterance (before cropping). A drawn factor that would leave fewer than
        `min_samples` samples is not applied (the feature extractor rejects clips below its `min_seconds`)."""
        if not self.speed_factors or rng.random() >= self.speed_prob:
            return waveform
        factor = float(self.speed_factors[int(rng.integers(len(self.speed_factors)))])
        if round(waveform.shape[-1] / factor) < min_samples:
            return waveform
        return speed_perturb(waveform, factor, self.sampling_rate)

    def add_reverb_and_noise(self, waveform: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Reverberation, then additive noise, then the transmission (`transmit`), each with its probability; the
        length is kept."""
        if self.rir_files and rng.random() < self.rir_prob:
            rir_path = self.rir_files[int(rng.integers(len(self.rir_files)))]
            waveform = reverberate(waveform, load_audio(rir_path, self.sampling_rate))
        if self.noise_files and rng.random() < self.noise_prob:
            noise_path = self.noise_files[int(rng.integers(len(self.noise_files)))]
            snr_db = float(rng.uniform(*self.snr_db))
            noise = read_noise_segment(noise_path, waveform.shape[-1], self.sampling_rate, rng)
            waveform = mix_at_snr(waveform, noise, snr_db)
        return self.transmit(waveform, rng)

    def transmit(self, waveform: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The telephone band and a codec round trip, each with its probability (`evaluation.conditions`' own
        functions, so training sees what the `tel8k`, `opusN` and `mp3-N` conditions test); the length is kept."""
        if self.telephone_prob and rng.random() < self.telephone_prob:
            waveform = telephone_band(waveform, self.sampling_rate, rng, None, None)
        if self.codecs and rng.random() < self.codec_prob:
            codec = self.codecs[int(rng.integers(len(self.codecs)))]
            waveform = codec.condition.apply(waveform, self.sampling_rate, rng, codec.value, None)
        return waveform

    def __call__(self, waveform: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """All configured augmentations: speed (may change the length), reverberation, noise, telephone band, codec."""
        return self.add_reverb_and_noise(self.perturb_speed(waveform, rng), rng)

    def __repr__(self) -> str:
        parts = []
        if self.noise_files:
            parts.append(f"noise={len(self.noise_files)} files, snr_db={self.snr_db}, p={self.noise_prob}")
        if self.rir_files:
            parts.append(f"rir={len(self.rir_files)} files, p={self.rir_prob}")
        if self.speed_factors:
            parts.append(f"speed={list(self.speed_factors)}, p={self.speed_prob}")
        if self.telephone_prob:
            parts.append(f"telephone band p={self.telephone_prob}")
        if self.codecs:
            parts.append(f"codecs={[c.name for c in self.codecs]}, p={self.codec_prob}")
        return f"Augmenter({'; '.join(parts) or 'off'})"
