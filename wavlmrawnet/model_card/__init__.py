"""Model card (the Hub's README.md) for a saved WavLMRawNet folder: metadata with a `model-index`, architecture from
the folder's config, copy-paste usage, training settings from `train_config.yaml` and the evaluation results JSON(s).

    from wavlmrawnet.model_card import write_model_card
    write_model_card("runs/wavlmrawnet/final")          # finds <name>_results.json files in the folder
"""

from .generator import SYNTHETIC_WARNING, render_model_card, write_model_card

__all__ = ["SYNTHETIC_WARNING", "render_model_card", "write_model_card"]
