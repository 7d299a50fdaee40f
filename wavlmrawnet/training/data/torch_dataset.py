"""The DataLoader side: a torch dataset that reads, crops and augments utterances in the workers (soundfile, no
torchcodec/FFmpeg), and the collator that pads them into a batch with the feature extractor."""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from datasets import Dataset

from ...audio_io import load_audio
from ...feature_extraction_wavlmrawnet import WavLMRawNetFeatureExtractor, crop
from ..augment import Augmenter
from .sources import _require_columns


class SpeakerAudioDataset(torch.utils.data.Dataset):
    """Reads, crops and augments the utterances of a speaker dataset, in the DataLoader workers.

    Args:
        hf_dataset: a `datasets.Dataset` with `path` and `label` columns (from the builders in `sources`).
        segment_seconds: crop length; None keeps whole utterances. Shorter utterances are returned whole (the
            collator zero-pads them and masks the padding).
        sampling_rate: rate the audio is loaded at (soxr resampling when the file differs).
        random_crop: random crops (training) or centred crops (evaluation).
        augmenter: optional `Augmenter`; speed perturbation runs before the crop, reverberation and noise after it.
        seed: base seed. Item `i` in epoch `e` uses `np.random.default_rng([seed, e, i])`, so crops and augmentation
            do not depend on the number of workers. Call `set_epoch` before each epoch (workers copy the dataset when
            they start, so with `persistent_workers=True` the epoch stays at its first value).
        min_seconds: speed perturbation never shortens an utterance below this (match the feature extractor's
            `min_seconds`, which rejects shorter clips).

    Items are dicts: `waveform` (float32 np.ndarray), `label` (int), `path` (str), `sampling_rate` (int).
    """

    def __init__(
        self,
        hf_dataset: Dataset,
        segment_seconds: float | None = 3.0,
        sampling_rate: int = 16000,
        random_crop: bool = True,
        augmenter: Augmenter | None = None,
        seed: int = 0,
        min_seconds: float = 0.5,
    ):
        _require_columns(hf_dataset, ("path", "label"))
        if segment_seconds is not None and not segment_seconds > 0:
            raise ValueError(f"segment_seconds must be positive or None, got {segment_seconds}")
        if augmenter is not None and augmenter.sampling_rate != sampling_rate:
            raise ValueError(
                f"the augmenter works at {augmenter.sampling_rate} Hz but the dataset loads audio at "
                f"{sampling_rate} Hz"
            )
        self.paths = list(hf_dataset["path"])
        self.labels = [int(label) for label in hf_dataset["label"]]
        self.sampling_rate = sampling_rate
        self.num_samples = int(round(segment_seconds * sampling_rate)) if segment_seconds is not None else None
        self.random_crop = random_crop
        self.augmenter = augmenter
        self.seed = int(seed)
        self.min_samples = int(math.ceil(min_seconds * sampling_rate))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch's random crops / augmentation. Call it before each epoch (e.g. from a
        `TrainerCallback.on_epoch_begin`): accelerate's DataLoader skips the dataset's `set_epoch` when its sampler
        has one. Workers copy the dataset when they start, so it must be set before iterating."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.paths)

    def item_rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = operator.index(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} items")
        rng = self.item_rng(index)
        path = self.paths[index]
        waveform = load_audio(path, self.sampling_rate)
        if self.augmenter is not None:
            waveform = self.augmenter.perturb_speed(waveform, rng, min_samples=self.min_samples)
        if self.num_samples is not None:
            waveform = crop(waveform, self.num_samples, self.random_crop, rng)
        if self.augmenter is not None:
            waveform = self.augmenter.add_reverb_and_noise(waveform, rng)
        return {
            "waveform": np.ascontiguousarray(waveform, dtype=np.float32),
            "label": self.labels[index],
            "path": path,
            "sampling_rate": self.sampling_rate,
        }


class SpeakerCollator:
    """Batches `SpeakerAudioDataset` items with the feature extractor (validation, zero-padding, normalisation).

    Returns `input_values` (B, T) float32, `attention_mask` (B, T) int64 (1 = real sample) and `labels` (B,) int64;
    with `return_paths=True` also `paths` (a list; leave it off for `Trainer`, which passes every key to the model).
    Invalid audio (empty, NaN/Inf, shorter than `feature_extractor.min_seconds`) raises a ValueError naming the file.
    """

    def __init__(self, feature_extractor: WavLMRawNetFeatureExtractor, return_paths: bool = False):
        self.feature_extractor = feature_extractor
        self.return_paths = return_paths

    def __call__(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not items:
            raise ValueError("cannot collate an empty batch")
        audio = [
            {
                "array": item["waveform"],
                "sampling_rate": item.get("sampling_rate", self.feature_extractor.sampling_rate),
                "path": item.get("path"),
            }
            for item in items
        ]
        features = self.feature_extractor(audio, return_tensors="pt")
        batch = {
            "input_values": features["input_values"].to(torch.float32),
            "attention_mask": features["attention_mask"].to(torch.long),
            "labels": torch.tensor([int(item["label"]) for item in items], dtype=torch.long),
        }
        if self.return_paths:
            batch["paths"] = [item.get("path") for item in items]
        if "stream" in items[0]:  # streaming: (worker, epoch, position) of each item, for resuming
            batch["stream"] = [tuple(item["stream"]) for item in items]
        return batch
