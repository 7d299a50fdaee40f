"""`diarize(audio, model=...)`: who spoke when, as a list of `Segment(start, end, speaker)`.

The steps: the recording is read at the model's rate (`windows.read_recording`); silero-vad finds the speech
(`windows.recording_regions`); windows of `window` seconds every `hop` seconds cover it (`windows.sliding_windows`);
they are embedded a batch at a time (the model's own length groups and precision "auto"); the embeddings are
clustered (`clustering.CLUSTERINGS`); each frame takes the speaker most of its windows voted for, and short turns are
merged (`segments`). With a speaker database, each cluster is named after the closest enrolled speaker above the
threshold, or "unknown".

The model is ours (a folder, a Hub-style id, or a loaded `WavLMRawNetForXVector`, also through remote code) or any
model whose forward takes `input_values` and `attention_mask` and returns `.embeddings`, such as transformers'
`WavLMForXVector`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..precision import Precision, resolve_precision
from .clustering import CLUSTERINGS, SpeakerCount, cluster_embeddings
from .segments import Segment, frame_labels, labels_to_segments, merge_short_turns
from .windows import DiarizationInputError, read_recording, recording_regions, sliding_windows, too_short_reason

__all__ = ["DiarizationResult", "Diarizer", "WindowEmbedder", "check_settings", "diarize"]

UNKNOWN = "unknown"


class WindowEmbedder:
    """Normalised embeddings of equal-length windows, a batch at a time, in the precision "auto" resolves to.

    `model` is a model folder or Hub id (loaded as `WavLMRawNetForXVector`), or a loaded model: ours (its own feature
    extractor) or another x-vector model (transformers' `WavLMForXVector`: a `Wav2Vec2FeatureExtractor` that
    normalises each window, unless `feature_extractor` is given).
    """

    def __init__(self, model: Any, feature_extractor=None, precision: str | Precision = "auto", device=None):
        if isinstance(model, (str, os.PathLike)):
            model, folder_extractor = _load_model(model)
            feature_extractor = feature_extractor or folder_extractor
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a model folder, a Hub id or a torch model, got {type(model).__name__}")
        if device is not None:
            model = model.to(device)
        self.model = model.eval()
        if feature_extractor is None:
            if hasattr(model, "default_feature_extractor"):
                feature_extractor = model.default_feature_extractor()
            else:
                from transformers import Wav2Vec2FeatureExtractor

                feature_extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
        self.feature_extractor = feature_extractor
        self.sampling_rate = int(feature_extractor.sampling_rate)
        self.device = next(model.parameters()).device
        self.precision = precision if isinstance(precision, Precision) else resolve_precision(precision, self.device)
        self.threshold = getattr(model.config, "verification_threshold", None)

    def __call__(self, waveforms: list[np.ndarray]) -> np.ndarray:
        from ..feature_extraction_wavlmrawnet import padding_mask

        inputs = self.feature_extractor(
            waveforms, sampling_rate=self.sampling_rate, padding=True, return_tensors="pt", return_attention_mask=True
        )
        mask = padding_mask(inputs["attention_mask"])  # windows of one length: no mask, nothing read back
        with torch.inference_mode(), self.precision.autocast():
            output = self.model(
                input_values=inputs["input_values"].to(self.device),
                attention_mask=None if mask is None else mask.to(self.device),
            )
        return torch.nn.functional.normalize(output.embeddings.float(), dim=1).cpu().numpy()


def check_settings(
    window: float,
    hop: float,
    min_turn: float,
    min_gap: float = 0.0,
    threshold: float | None = None,
    batch_size: int = 1,
    option=lambda name: name,
) -> None:
    """Raises a ValueError naming the setting (as `option(name)` spells it: the command passes "--window") that is
    not a finite number in its range: window > 0, 0 < hop <= window, min_turn >= 0, min_gap >= 0, threshold (a
    cosine) in [-1, 1], batch_size >= 1. Checked before any model is loaded or recording read, so a bad setting is
    not reported later as a fault of each recording."""
    for name, value, low, text in (
        ("window", window, 0.0, "above 0"),
        ("hop", hop, 0.0, "above 0"),
        ("min_turn", min_turn, None, "0 or more"),
        ("min_gap", min_gap, None, "0 or more"),
    ):
        bad = isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value)
        if bad or (value <= low if low is not None else value < 0):
            raise ValueError(f"{option(name)} must be a finite number of seconds, {text}, got {value!r}")
    if hop > window:
        raise ValueError(
            f"{option('hop')} ({hop:g} s) must be at most {option('window')} ({window:g} s), or the windows would "
            f"leave gaps: give a {option('hop')} of at most {window:g} s"
        )
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)) or not -1 <= threshold <= 1
    ):
        raise ValueError(f"{option('threshold')} is a cosine score: a number from -1 to 1, got {threshold!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{option('batch_size')} must be a whole number of at least 1, got {batch_size!r}")


def _load_model(name: str | os.PathLike):
    from ..feature_extraction_wavlmrawnet import WavLMRawNetFeatureExtractor
    from ..modeling_wavlmrawnet import WavLMRawNetForXVector
    from ..recognition.hub_ids import resolve_model

    folder = resolve_model(os.fspath(name))
    model = WavLMRawNetForXVector.from_pretrained(folder)
    extractor = None
    if (folder / "preprocessor_config.json").is_file():
        extractor = WavLMRawNetFeatureExtractor.from_pretrained(folder)
    return model, extractor


@dataclass
class DiarizationResult:
    """The turns, and what produced them: the recording's length, its speech, the windows, the speaker count."""

    segments: list[Segment]
    duration: float
    speech_seconds: float
    num_windows: int
    num_speakers: int
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per step: read, vad, embed, cluster

    @property
    def speakers(self) -> list[str]:
        return list(dict.fromkeys(segment.speaker for segment in self.segments))


@dataclass
class WindowedRecording:
    """A recording ready to cluster: its speech regions, windows (seconds, (n, 2)) and their embeddings (n, d)."""

    where: str
    duration: float
    regions: np.ndarray
    windows: np.ndarray
    embeddings: np.ndarray
    seconds: dict[str, float]


class Diarizer:
    """A loaded embedder and the diarization settings; call it on each recording (`diarize` does both at once).

    `window`/`hop`: seconds per window and between window starts. `clustering`: a name in `CLUSTERINGS`
    ("spectral": Google's spectralcluster with its eigengap count estimate, or on long recordings over-clustering
    and merging the cluster centroids at `threshold`; "agglomerative": scikit-learn, average linkage cut at
    `threshold`; `threshold` defaults to the model's `verification_threshold`). `min_turn`: turns shorter than this
    (seconds) go to a neighbour. `database`: a `SpeakerDatabase` that names the clusters. `vad=False` treats the whole
    recording as speech. A setting out of range (`check_settings`; or a window shorter than the model's shortest
    input) raises a ValueError naming it, before any recording is read.
    """

    def __init__(
        self,
        model: Any,
        feature_extractor=None,
        window: float = 1.5,
        hop: float = 0.75,
        clustering: str = "spectral",
        threshold: float | None = None,
        min_turn: float = 0.5,
        min_gap: float = 0.0,
        vad: bool = True,
        batch_size: int = 32,
        precision: str | Precision = "auto",
        database=None,
        progress: bool = False,
        device=None,
    ):
        if clustering not in CLUSTERINGS:
            raise ValueError(f"unknown clustering {clustering!r}; choose one of {sorted(CLUSTERINGS)}")
        check_settings(window, hop, min_turn, min_gap, threshold, batch_size)
        self.embedder = WindowEmbedder(model, feature_extractor, precision, device)
        shortest = getattr(self.embedder.feature_extractor, "min_seconds", None)  # ours: every branch gets a frame
        if shortest is not None and window < shortest:
            raise ValueError(
                f"the window ({window:g} s) is shorter than the shortest input this model embeds ({shortest:g} s): "
                f"give a window (--window) of at least {shortest:g} s"
            )
        self.window, self.hop, self.clustering = float(window), float(hop), clustering
        self.threshold = threshold if threshold is not None else self.embedder.threshold
        self.min_turn, self.min_gap, self.vad = float(min_turn), float(min_gap), vad
        self.batch_size, self.database, self.progress = batch_size, database, progress
        if database is not None and database.dim != getattr(self.embedder.model.config, "embedding_dim", database.dim):
            raise ValueError(f"the speaker database holds {database.dim}-d embeddings, the model gives another size")

    def embed_windows(self, waveform: np.ndarray, windows: np.ndarray) -> np.ndarray:
        """(n, d) normalised embeddings of the windows, `batch_size` windows per forward (a tqdm bar over windows on
        stderr with `progress`)."""
        from tqdm.auto import tqdm

        rate = self.embedder.sampling_rate
        starts = np.round(windows[:, 0] * rate).astype(np.int64)  # every window the same number of samples
        spans = np.stack([starts, np.minimum(starts + int(round(self.window * rate)), len(waveform))], axis=1)
        embeddings = None
        with tqdm(total=len(spans), desc="windows", unit="window", disable=not self.progress) as bar:
            for first in range(0, len(spans), self.batch_size):
                batch = [waveform[start:end] for start, end in spans[first : first + self.batch_size]]
                block = self.embedder(batch)
                if embeddings is None:
                    embeddings = np.empty((len(spans), block.shape[1]), dtype=np.float32)
                embeddings[first : first + len(block)] = block
                bar.update(len(block))
        return embeddings

    def __call__(
        self,
        audio: Any,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        sampling_rate: int | None = None,
        name: str | None = None,
    ) -> DiarizationResult:
        """Diarizes one recording (a path, an array with `sampling_rate`, or a `{"array", "sampling_rate"}` dict).

        Raises a ValueError naming the problem for unreadable or corrupt audio (`AudioDecodingError`), a recording
        without speech (`NoSpeechError`), one shorter than a window or with fewer windows than speakers asked for
        (`DiarizationInputError`); never returns an empty result.
        """
        count = SpeakerCount.of(num_speakers, min_speakers, max_speakers)
        return self.assign(self.analyse(audio, sampling_rate, name, count), count)

    def analyse(
        self, audio: Any, sampling_rate: int | None = None, name: str | None = None, count: SpeakerCount | None = None
    ) -> WindowedRecording:
        """The steps before clustering: read, find the speech, cut and embed the windows (`count` is checked against
        the windows before they are embedded). `assign` finishes; the benchmark clusters one analysis several ways."""
        where = name or (os.fspath(audio) if isinstance(audio, (str, os.PathLike)) else "audio")
        seconds, started = {}, time.perf_counter()
        rate = self.embedder.sampling_rate
        waveform = read_recording(audio, rate, audio_rate=sampling_rate)
        duration = len(waveform) / rate
        seconds["read"] = time.perf_counter() - started
        if duration < self.window:
            raise DiarizationInputError(where, too_short_reason(duration, self.window))
        regions = recording_regions(waveform, rate, vad=self.vad, where=where)
        seconds["vad"] = time.perf_counter() - started - seconds["read"]
        windows = sliding_windows(regions, duration, self.window, self.hop)
        if count is not None:
            count.check_windows(len(windows), self.window, where)
        mark = time.perf_counter()
        embeddings = self.embed_windows(waveform, windows)
        seconds["embed"] = time.perf_counter() - mark
        return WindowedRecording(where, duration, regions, windows, embeddings, seconds)

    def assign(self, recording: WindowedRecording, count: SpeakerCount, clustering: str | None = None):
        """Clusters an analysed recording's windows (`clustering` overrides the diarizer's) and returns its turns."""
        count.check_windows(len(recording.windows), self.window, recording.where)
        mark = time.perf_counter()
        labels = cluster_embeddings(
            recording.embeddings, clustering or self.clustering, count, threshold=self.threshold
        )
        labels = _in_order_of_appearance(labels)
        num_labels = int(labels.max()) + 1
        frames = frame_labels(recording.windows, labels, recording.regions, recording.duration, num_labels)
        frames = merge_short_turns(frames, self.min_turn, self.min_gap)
        segments = labels_to_segments(frames, self._names(recording.embeddings, labels, num_labels))
        seconds = {**recording.seconds, "cluster": time.perf_counter() - mark}
        if not segments:  # cannot happen with speech regions, but an empty answer is never returned as success
            raise DiarizationInputError(recording.where, "no speaker turn was found")
        regions = recording.regions
        return DiarizationResult(
            segments=segments,
            duration=recording.duration,
            speech_seconds=float((regions[:, 1] - regions[:, 0]).sum()),
            num_windows=len(recording.windows),
            num_speakers=len({s.speaker for s in segments}),
            seconds=seconds,
        )

    def _names(self, embeddings: np.ndarray, labels: np.ndarray, num_labels: int) -> list[str]:
        """SPEAKER_00, SPEAKER_01, ... in order of first appearance; with a database, the enrolled speaker closest to
        each cluster's mean embedding when it scores above the threshold, else "unknown" (numbered when several)."""
        if self.database is None or len(self.database) == 0:
            return [f"SPEAKER_{label:02d}" for label in range(num_labels)]
        centroids = np.stack([embeddings[labels == label].mean(axis=0) for label in range(num_labels)])
        answers = self.database.identify(centroids, top_k=1)
        unknown = [label for label, answer in enumerate(answers) if answer["speaker"] == UNKNOWN]
        names = [answer["speaker"] for answer in answers]
        for number, label in enumerate(unknown, 1):
            names[label] = UNKNOWN if len(unknown) == 1 else f"{UNKNOWN}_{number}"
        return names


def _in_order_of_appearance(labels: np.ndarray) -> np.ndarray:
    """Relabels clusters 0, 1, ... in the order their first window appears."""
    _, first = np.unique(labels, return_index=True)
    order = np.asarray(labels)[np.sort(first)]
    mapping = np.empty(int(labels.max()) + 1, dtype=np.int64)
    mapping[order] = np.arange(len(order))
    return mapping[labels]


def diarize(
    audio: Any,
    model: Any,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    sampling_rate: int | None = None,
    **options,
) -> list[Segment]:
    """Who spoke when in `audio`: `[Segment(start, end, speaker), ...]` in time order (see `Diarizer` for `options`:
    window, hop, clustering, threshold, min_turn, vad, batch_size, precision, database, progress).

    The speaker count is `num_speakers` when known, else estimated within `min_speakers`..`max_speakers`.
    """
    diarizer = Diarizer(model, **options)
    return diarizer(audio, num_speakers, min_speakers, max_speakers, sampling_rate=sampling_rate).segments


__all__ += ["DiarizationInputError", "UNKNOWN"]
