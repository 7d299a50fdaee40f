"""benchmarks/ablation.py: every variant is a valid config that changes only what its name says; the table math."""

from __future__ import annotations

import argparse

import pytest
import torch

from benchmarks import ablation
from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector
from wavlmrawnet.training.config import TrainConfig


def default_args(tmp_path, **changes) -> argparse.Namespace:
    args = argparse.Namespace(
        corpus=str(tmp_path / "corpus"),
        preset="tiny",
        steps=10,
        batch_size=4,
        segment_seconds=1.0,
        learning_rate=2e-3,
        mixed_precision="no",
        validation_speakers=2,
        jobs=1,
        threads=1,
        seeds=[0, 1],
    )
    for key, value in changes.items():
        setattr(args, key, value)
    return args


def test_variants_cover_the_issue_and_change_one_thing(tmp_path):
    assert len(ablation.VARIANTS) == 8  # (a)-(g) from the issue, (h) the combination the presets use
    baseline = WavLMRawNetConfig.from_preset("tiny", **ablation.BASELINE).to_dict()
    for variant, (_, overrides) in ablation.VARIANTS.items():
        config = TrainConfig.from_dict(ablation.run_config(default_args(tmp_path), variant, 0, tmp_path / variant))
        model_config = WavLMRawNetConfig.from_preset(config.model.preset, **config.model.overrides)
        changed = {k for k, v in model_config.to_dict().items() if k != "wavlm_config" and baseline.get(k) != v}
        assert changed == set(overrides), variant
        model = WavLMRawNetForXVector(model_config).eval()
        with torch.inference_mode():
            embeddings = model(torch.randn(2, 16000)).embeddings
        assert embeddings.shape == (2, model_config.embedding_dim) and torch.isfinite(embeddings).all()


def test_table_reports_mean_and_std_over_seeds(tmp_path):
    def record(seed, eer):
        result = {"eer_percent": eer, "min_dcf_0.01": eer / 100, "num_trials": 10}
        results = {name: result for name in ablation.EVALUATIONS}
        return {"variant": "fused", "seed": seed, "results": results, "train_seconds": 60.0}

    text = ablation.table([record(0, 10.0), record(1, 20.0)], default_args(tmp_path))
    row = next(line for line in text.splitlines() if line.startswith("| (a)"))
    assert "15.00 ± 7.07" in row and "0.150 ± 0.071" in row
    with pytest.raises(KeyError):
        ablation.table([{**record(0, 1.0), "variant": "unknown"}], default_args(tmp_path))
