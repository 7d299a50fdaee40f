"""Training data, one job per module:

* `sources`: speaker-labelled `datasets.Dataset`s (VoxCeleb folder, CSV/JSONL manifest, any `datasets.Dataset`), their
  labels and the speaker-disjoint validation split;
* `audio_checks`: the bad-audio scan run before training, and its report;
* `torch_dataset`: the DataLoader side, `SpeakerAudioDataset` (read, crop, augment) and `SpeakerCollator`.

Audio is never decoded through `datasets` (it would need torchcodec / FFmpeg): only paths are stored and
`SpeakerAudioDataset` reads them with soundfile (`load_audio`) inside the DataLoader workers.
"""

from .audio_checks import BAD_AUDIO_FILENAME, BadAudio, BadAudioError, check_dataset_audio, scan_audio
from .sources import (
    dataset_from_hf,
    dataset_from_manifest,
    dataset_from_voxceleb,
    label_maps,
    relabel,
    speaker_disjoint_split,
)
from .torch_dataset import SpeakerAudioDataset, SpeakerCollator

__all__ = [
    "BAD_AUDIO_FILENAME",
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
