"""Speaker diarization ("who spoke when") on top of the speaker embeddings: `diarize(audio, model=...)`.

Importable without the optional extras; clustering (spectralcluster, scikit-learn), silence removal (silero-vad) and
scoring (pyannote.metrics) are imported where they run and need `pip install "wavlmrawnet[diarize]"`.
"""

from .clustering import CLUSTERINGS, SpeakerCount, cluster_embeddings, merge_clusters
from .pipeline import UNKNOWN, DiarizationResult, Diarizer, WindowEmbedder, diarize
from .scoring import score_diarization
from .segments import Segment, read_rttm, segments_to_json, write_rttm
from .windows import DiarizationInputError, NoSpeechError, read_recording

__all__ = [
    "CLUSTERINGS",
    "DiarizationInputError",
    "DiarizationResult",
    "Diarizer",
    "NoSpeechError",
    "Segment",
    "SpeakerCount",
    "UNKNOWN",
    "WindowEmbedder",
    "cluster_embeddings",
    "diarize",
    "merge_clusters",
    "read_recording",
    "read_rttm",
    "score_diarization",
    "segments_to_json",
    "write_rttm",
]
