"""Speaker recognition: enrolled-speaker databases and identification, score calibration, models by Hub id."""

from .calibration import calibrated_threshold, fit_calibration, llr_to_probability
from .database import (
    UNKNOWN_SPEAKER,
    ModelMismatchError,
    SpeakerDatabase,
    check_speaker_name,
    check_threshold,
    model_identity,
)
from .hub_ids import parse_model_id, resolve_model

__all__ = [
    "UNKNOWN_SPEAKER",
    "ModelMismatchError",
    "SpeakerDatabase",
    "calibrated_threshold",
    "check_speaker_name",
    "check_threshold",
    "fit_calibration",
    "llr_to_probability",
    "model_identity",
    "parse_model_id",
    "resolve_model",
]
