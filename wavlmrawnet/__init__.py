"""wavlmrawnet: WavLM-Large + RawNet2.5 fused speaker verification for the Hugging Face ecosystem.

Data flow: audio (`audio_io`) -> `feature_extraction_wavlmrawnet` -> `modeling_wavlmrawnet` (layers in `layers`, the
faster twins in `fast_*`) -> `training` / `evaluation` -> `recognition` -> `model_card` and `hub`.
`pipeline_wavlmrawnet` runs the model, in the precision the hardware suits (`precision`).
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioXVector
from transformers.pipelines import PIPELINE_REGISTRY

from .audio_io import AudioDecodingError, AudioLimitError, audio_duration, load_audio
from .configuration_wavlmrawnet import PRESETS, WavLMRawNetConfig
from .feature_extraction_wavlmrawnet import WavLMRawNetFeatureExtractor
from .modeling_wavlmrawnet import WavLMRawNetForXVector, WavLMRawNetPreTrainedModel
from .pipeline_wavlmrawnet import SpeakerEmbeddingPipeline, SpeakerVerificationPipeline
from .precision import Precision, describe_cpu, resolve_precision
from .recognition import ModelMismatchError, SpeakerDatabase, fit_calibration, model_identity, resolve_model
from .speech_check import NoSpeechError

__version__ = "0.1.0"

# Local use without remote code: the Auto classes and the speaker-verification task know this model.
AutoConfig.register(WavLMRawNetConfig.model_type, WavLMRawNetConfig, exist_ok=True)
AutoModel.register(WavLMRawNetConfig, WavLMRawNetForXVector, exist_ok=True)
AutoModelForAudioXVector.register(WavLMRawNetConfig, WavLMRawNetForXVector, exist_ok=True)
AutoFeatureExtractor.register(WavLMRawNetConfig, WavLMRawNetFeatureExtractor, exist_ok=True)
if "speaker-verification" not in PIPELINE_REGISTRY.get_supported_tasks():
    PIPELINE_REGISTRY.register_pipeline(
        "speaker-verification", pipeline_class=SpeakerVerificationPipeline, pt_model=AutoModel, type="audio"
    )

__all__ = [
    "PRESETS",
    "AudioDecodingError",
    "AudioLimitError",
    "NoSpeechError",
    "ModelMismatchError",
    "Precision",
    "SpeakerDatabase",
    "SpeakerEmbeddingPipeline",
    "SpeakerVerificationPipeline",
    "WavLMRawNetConfig",
    "WavLMRawNetFeatureExtractor",
    "WavLMRawNetForXVector",
    "WavLMRawNetPreTrainedModel",
    "describe_cpu",
    "fit_calibration",
    "audio_duration",
    "load_audio",
    "model_identity",
    "resolve_model",
    "resolve_precision",
]
