"""The synthetic demo corpus is not trivially separable: an untrained model is near chance on it."""

import torch

from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector
from wavlmrawnet.evaluation.runner import evaluate_trial_list
from wavlmrawnet.synthetic.corpus import generate_corpus


def test_untrained_model_scores_above_25_percent_eer(tmp_path):
    generate_corpus(
        tmp_path,
        num_train_speakers=1,
        num_test_speakers=8,
        utterances_per_speaker=6,
        videos_per_speaker=2,
        min_seconds=2.0,
        max_seconds=3.0,
        num_trials=80,
        seed=1,
    )
    torch.manual_seed(0)
    model = WavLMRawNetForXVector(WavLMRawNetConfig.from_preset("tiny")).eval()
    results = evaluate_trial_list(
        model,
        model.default_feature_extractor(),
        tmp_path / "test" / "veri_test2.txt",
        root=tmp_path / "test" / "wav",
        progress=False,
    )
    assert results["num_trials"] == 80
    assert results["eer_percent"] > 25.0, results["eer_percent"]
