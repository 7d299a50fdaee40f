"""Training data, one job per module:

* `sources`: speaker-labelled `datasets.Dataset`s (VoxCeleb folder, CSV/JSONL manifest, any `datasets` source from
  the config's `data.dataset`), chosen by one registry (`TRAINING_SOURCES`), their labels and the speaker-disjoint
  validation split;
* `audio_checks`: the bad-audio scan run before training, and its report;
* `torch_dataset`: the DataLoader side, `SpeakerAudioDataset` (read, crop, augment) and `SpeakerCollator`;
* `streaming`: `StreamingSpeakerDataset` for `data.dataset.streaming` (seeded shuffle buffer, rows split across
  ranks, resumable, bad audio skipped and listed on the fly).

Audio is never decoded through `datasets` (it would need torchcodec / FFmpeg): audio columns are read as
`Audio(decode=False)` and the DataLoader workers decode paths or bytes with soundfile (`wavlmrawnet.audio_io`, PyAV
for m4a/AAC).
"""

from .audio_checks import BAD_AUDIO_FILENAME, BadAudio, BadAudioError, check_dataset_audio, scan_audio
from .sources import (
    TRAINING_SOURCES,
    dataset_from_hf,
    dataset_from_manifest,
    dataset_from_source,
    dataset_from_voxceleb,
    label_maps,
    load_hf_source,
    relabel,
    speaker_disjoint_split,
    training_dataset,
)
from .torch_dataset import SpeakerAudioDataset, SpeakerCollator

__all__ = [
    "BAD_AUDIO_FILENAME",
    "TRAINING_SOURCES",
    "dataset_from_source",
    "load_hf_source",
    "training_dataset",
    "BadAudio",
    "BadAudioError",
    "SpeakerAudioDataset",
    "SpeakerCollator",
    "check_dataset_audio",
    "dataset_from_hf",
    "dataset_from_manifest",
    "dataset_from_voxceleb",
    "label_maps",
    "relabel",
    "scan_audio",
    "speaker_disjoint_split",
]
