"""Calibration (cosine -> llr by prior-weighted logistic regression), actual DCF, Cllr and minCllr: hand-worked
values, scikit-learn's LogisticRegression and IsotonicRegression, held-out trials, and the pipeline's outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import cli_in_process, voice_like
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from transformers import pipeline

from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector
from wavlmrawnet.evaluation.error_rates import (
    bayes_threshold,
    compute_actual_dcf,
    compute_calibration_metrics,
    compute_cllr,
    compute_min_cllr,
    compute_min_dcf,
    pav,
)
from wavlmrawnet.evaluation.results import EvaluationResults, read_scores_tsv, write_scores_tsv
from wavlmrawnet.recognition import calibrated_threshold, fit_calibration, llr_to_probability


def gaussian_trials(seed: int, num_target=2000, num_nontarget=20000, mean=0.6, spread=0.1):
    """Cosine-like scores: targets N(mean, spread), non-targets N(0, spread)."""
    rng = np.random.default_rng(seed)
    scores = np.r_[rng.normal(mean, spread, num_target), rng.normal(0.0, spread, num_nontarget)]
    labels = np.r_[np.ones(num_target, int), np.zeros(num_nontarget, int)]
    return scores, labels


# ----------------------------------------------------------------------------------------------- hand-worked
def test_bayes_threshold_by_hand():
    assert bayes_threshold(0.5) == 0.0
    assert bayes_threshold(0.01) == pytest.approx(math.log(99))
    assert bayes_threshold(0.1, c_miss=9) == pytest.approx(0.0)  # 0.1 * 9 = 0.9 * 1


def test_actual_dcf_by_hand():
    scores = [0.9, 0.8, 0.3, 0.7, 0.2, 0.1, 0.05, 0.6]
    labels = [1, 1, 1, 0, 0, 0, 0, 0]
    # threshold 0.5: misses 1 of 3 targets, accepts 2 of 5 non-targets.
    # p=0.5: (0.5 * 1/3 + 0.5 * 2/5) / 0.5 = 1/3 + 2/5
    assert compute_actual_dcf(scores, labels, 0.5, p_target=0.5) == pytest.approx(1 / 3 + 2 / 5)
    # p=0.01: (0.01/3 + 0.99 * 0.4) / 0.01
    assert compute_actual_dcf(scores, labels, 0.5, p_target=0.01) == pytest.approx((0.01 / 3 + 0.99 * 0.4) / 0.01)
    # The best threshold cannot cost more than any fixed one.
    assert compute_min_dcf(scores, labels, 0.5)[0] <= compute_actual_dcf(scores, labels, 0.5, 0.5)


def test_cllr_by_hand():
    labels = [1, 1, 0, 0]
    assert compute_cllr([0.0, 0.0, 0.0, 0.0], labels) == pytest.approx(1.0)  # "I don't know" costs 1 bit
    # llr +-log(3): each term is log2(1 + 1/3) = log2(4/3)
    assert compute_cllr([math.log(3)] * 2 + [-math.log(3)] * 2, labels) == pytest.approx(math.log2(4 / 3))
    assert compute_cllr([50.0, 40.0, -40.0, -50.0], labels) < 1e-15
    assert compute_cllr([-5.0, -5.0, 5.0, 5.0], labels) > 7  # confidently wrong costs more than 1 bit


def test_min_cllr_by_hand():
    assert compute_min_cllr([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == pytest.approx(0.0)  # separable: perfect
    assert compute_min_cllr([0.5, 0.5, 0.5, 0.5], [1, 1, 0, 0]) == pytest.approx(1.0)  # all tied: no information
    # Scores 1 2 3 4 with labels 0 1 0 1: PAV pools (2, 3) -> posteriors 0, .5, .5, 1 -> llrs -inf, 0, 0, +inf
    # (prior odds 1): each class pays log2(2) on one of its two trials -> Cllr = (0.5 + 0.5) / 2.
    assert compute_min_cllr([1, 2, 3, 4], [0, 1, 0, 1]) == pytest.approx(0.5)


def test_pav_matches_scikit_learn():
    rng = np.random.default_rng(3)
    values, weights = rng.normal(size=200), rng.uniform(0.1, 3.0, 200)
    expected = IsotonicRegression().fit_transform(np.arange(200), values, sample_weight=weights)
    assert np.abs(pav(values, weights) - expected).max() < 1e-12


def test_min_cllr_lower_bounds_cllr_of_any_calibration():
    scores, labels = gaussian_trials(0)
    minimum = compute_min_cllr(scores, labels)
    calibration = fit_calibration(scores, labels, p_target=0.5)
    fitted = compute_cllr(calibration["scale"] * scores + calibration["offset"], labels)
    assert minimum <= fitted < minimum + 0.02
    for scale in (10.0, 60.0, 120.0):
        assert compute_cllr(scale * (scores - 0.3), labels) >= minimum


# ----------------------------------------------------------------------------------------------- the fit
@pytest.mark.parametrize("p_target", [0.01, 0.05, 0.5])
def test_fit_matches_scikit_learn_weighted_logistic_regression(p_target):
    scores, labels = gaussian_trials(1, num_target=300, num_nontarget=3000)
    ours = fit_calibration(scores, labels, p_target=p_target)
    num_target = labels.sum()
    weights = np.where(labels == 1, p_target / num_target, (1 - p_target) / (labels.size - num_target))
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000)
    reference.fit(scores[:, None], labels, sample_weight=weights * labels.size)
    # sklearn's logit is llr + logit(p_target)
    assert ours["scale"] == pytest.approx(reference.coef_[0, 0], rel=1e-4)
    assert ours["offset"] == pytest.approx(reference.intercept_[0] - math.log(p_target / (1 - p_target)), abs=1e-3)


def test_fit_recovers_the_true_llr_of_gaussian_scores():
    # Equal-variance Gaussians: llr(s) = (mu / var) * s - mu^2 / (2 var) = 20 s - 2 for mean 0.2, spread 0.1.
    scores, labels = gaussian_trials(2, num_target=20000, num_nontarget=20000, mean=0.2)
    calibration = fit_calibration(scores, labels, p_target=0.5)
    assert calibration["scale"] == pytest.approx(20.0, rel=0.03)
    assert calibration["offset"] == pytest.approx(-2.0, rel=0.05)


def test_calibrated_actual_dcf_is_close_to_min_dcf_on_held_out_trials():
    dev_scores, dev_labels = gaussian_trials(4, mean=0.45, spread=0.12)
    test_scores, test_labels = gaussian_trials(5, mean=0.45, spread=0.12)
    calibration = fit_calibration(dev_scores, dev_labels, p_target=0.01)
    metrics = compute_calibration_metrics(test_scores, test_labels, p_targets=(0.01,), calibration=calibration)
    min_dcf, _ = compute_min_dcf(test_scores, test_labels, p_target=0.01)
    assert metrics["act_dcf"]["0.01"] <= min_dcf + 0.05
    assert metrics["cllr"] <= metrics["min_cllr"] + 0.02
    # The uncalibrated cosine at an arbitrary threshold (0.5) is far from minDCF; the Bayes threshold is not.
    assert compute_actual_dcf(test_scores, test_labels, 0.5, 0.01) > min_dcf + 0.2
    threshold = calibrated_threshold(calibration, 0.01)
    assert compute_actual_dcf(test_scores, test_labels, threshold, 0.01) == pytest.approx(metrics["act_dcf"]["0.01"])


def test_posterior_probability():
    assert llr_to_probability(0.0, 0.5) == pytest.approx(0.5)
    assert llr_to_probability(math.log(99), 0.01) == pytest.approx(0.5)  # the Bayes threshold: even odds
    assert llr_to_probability(math.log(9), 0.1) == pytest.approx(0.5)


def test_fit_refuses_what_it_cannot_fit():
    with pytest.raises(ValueError, match="separate"):
        fit_calibration([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0])
    with pytest.raises(ValueError, match="at least 2"):
        fit_calibration([0.9, 0.2, 0.1], [1, 0, 0])
    with pytest.raises(ValueError, match="p_target"):
        fit_calibration([0.9, 0.3, 0.4, 0.1], [1, 1, 0, 0], p_target=1.0)
    with pytest.raises(ValueError, match="NaN"):
        fit_calibration([0.9, np.nan, 0.4, 0.1], [1, 1, 0, 0])
    with pytest.raises(ValueError, match="higher scores do not mean"):
        fit_calibration([0.1, 0.2, 0.3, 0.9, 0.8, 0.25], [1, 1, 1, 0, 0, 0])


# ----------------------------------------------------------------------------------------------- files and config
def test_scores_tsv_round_trip_and_errors(tmp_path):
    path = write_scores_tsv(tmp_path / "s.tsv", ["a.wav", "c.wav"], ["b.wav", "d.wav"], [1, 0], [0.25, -0.125])
    lines = path.read_text().splitlines()
    assert lines == ["enrol\ttest\tlabel\tscore", "a.wav\tb.wav\t1\t0.25", "c.wav\td.wav\t0\t-0.125"]
    enrol, test, labels, scores = read_scores_tsv(path)
    assert enrol == ["a.wav", "c.wav"] and test == ["b.wav", "d.wav"]
    assert labels.tolist() == [1, 0] and scores.tolist() == [0.25, -0.125]
    path.write_text(path.read_text() + "e.wav\tf.wav\t2\t0.5\n")
    with pytest.raises(ValueError, match=r"s.tsv:4"):
        read_scores_tsv(path)
    path.write_text("a\tb\t1\t0.5\n")
    with pytest.raises(ValueError, match="header"):
        read_scores_tsv(path)
    path.write_text("enrol\ttest\tlabel\tscore\na\tb\t1\tnan\n")
    with pytest.raises(ValueError, match=":2"):
        read_scores_tsv(path)


def test_config_validates_calibration():
    config = WavLMRawNetConfig.from_preset("tiny", calibration={"scale": 10, "offset": -3}, p_target=0.05)
    assert config.calibration == {"scale": 10.0, "offset": -3.0} and config.p_target == 0.05
    assert WavLMRawNetConfig.from_preset("tiny").calibration is None
    for bad in ({"scale": 1}, {"scale": -1, "offset": 0}, {"scale": float("nan"), "offset": 0}, [1, 2]):
        with pytest.raises(ValueError, match="calibration"):
            WavLMRawNetConfig.from_preset("tiny", calibration=bad)
    with pytest.raises(ValueError, match="p_target"):
        WavLMRawNetConfig.from_preset("tiny", p_target=0.0)


def test_results_carry_actual_dcf_and_cllr():
    values = {"eer": 0.1, "min_dcf": {"0.01": 0.5}, "num_trials": 10, "trial_list": "t"}
    values.update(act_dcf={"0.01": 0.6}, cllr=0.4, min_cllr=0.3, calibration={"scale": 2.0, "offset": -1.0})
    results = EvaluationResults.from_dict(values)
    assert results.act_dcf == {"0.01": 0.6} and results.cllr == 0.4 and results.min_cllr == 0.3
    assert results.to_dict()["calibration"] == {"scale": 2.0, "offset": -1.0}
    with pytest.raises(ValueError, match="cllr"):
        EvaluationResults.from_dict({**values, "cllr": float("nan")})


# ----------------------------------------------------------------------------------------------- pipeline
def test_pipeline_adds_llr_and_probability_only_when_calibrated(tmp_path, tiny_model, wav_files):
    pair = (wav_files["mono_16k"], wav_files["mono_8k"])
    plain = pipeline(
        "speaker-verification", model=tiny_model, feature_extractor=tiny_model.default_feature_extractor()
    )
    uncalibrated = plain(pair)
    assert set(uncalibrated) == {"score", "same_speaker", "threshold"}

    config = WavLMRawNetConfig.from_dict(tiny_model.config.to_dict())
    config.calibration, config.p_target = {"scale": 12.0, "offset": -5.0}, 0.05
    config.verification_threshold = calibrated_threshold(config.calibration, config.p_target)
    calibrated_model = WavLMRawNetForXVector(config)
    calibrated_model.load_state_dict(tiny_model.state_dict())
    calibrated_model.save_pretrained(tmp_path / "calibrated")
    verify = pipeline("speaker-verification", model=str(tmp_path / "calibrated"), trust_remote_code=True)
    result = verify(pair)
    assert set(result) == {"score", "same_speaker", "threshold", "llr", "probability"}
    assert result["score"] == pytest.approx(uncalibrated["score"], abs=1e-5)
    assert result["llr"] == pytest.approx(12.0 * result["score"] - 5.0)
    assert result["probability"] == pytest.approx(float(llr_to_probability(result["llr"], 0.05)))
    # Deciding at the calibrated threshold is deciding at posterior 1/2.
    assert result["same_speaker"] == (result["probability"] >= 0.5)


# ----------------------------------------------------------------------------------------------- command line
cli = cli_in_process  # each command's own main, in this process (the CLI's process behaviour: test_cli.py)


@pytest.mark.slow
def test_score_tsv_then_calibrate_then_calibrated_scoring(tmp_path, saved_tiny_model):
    root = tmp_path / "wav"
    paths = []
    for speaker in range(6):
        (root / f"s{speaker}").mkdir(parents=True)
        voice = voice_like(1.0, 16000, seed=speaker)
        for take in range(3):
            # A speaker's takes share a voice, under their own noise: the random tiny model scores them a little
            # higher than other speakers' (a weak, overlapping signal, as calibration needs).
            noise = 0.05 * np.random.default_rng(1000 + 10 * speaker + take).standard_normal(voice.size)
            sf.write(root / f"s{speaker}" / f"{take}.wav", voice + noise, 16000, subtype="FLOAT")
            paths.append(f"s{speaker}/{take}.wav")
    pairs = [(a, b) for i, a in enumerate(paths) for b in paths[i + 1 :]]
    trials = tmp_path / "trials.txt"
    trials.write_text("".join(f"{int(a.split('/')[0] == b.split('/')[0])} {a} {b}\n" for a, b in pairs))
    runtime = ["--model", saved_tiny_model, "--dtype", "fp32", "--trials", str(trials), "--root", str(root)]

    scored = cli("score", *runtime, "--scores-out", str(tmp_path / "dev.tsv"))
    assert scored.returncode == 0, scored.stderr
    assert "actual DCF(0.01)" in scored.stdout and "minCllr" in scored.stdout and " Cllr " not in scored.stdout
    enrol, test, labels, scores = read_scores_tsv(tmp_path / "dev.tsv")
    assert len(scores) == len(pairs) == 153 and labels.sum() == 18
    assert (enrol[0], test[0]) == (str(root / paths[0]), str(root / paths[1]))

    calibrated = tmp_path / "calibrated"
    fitted = cli(
        "calibrate", "--model", saved_tiny_model, "--scores", str(tmp_path / "dev.tsv"), "--out", str(calibrated)
    )
    assert fitted.returncode == 0, fitted.stderr
    config = json.loads((calibrated / "config.json").read_text())
    expected = fit_calibration(scores, labels, p_target=0.01)
    assert config["calibration"] == pytest.approx(expected) and config["p_target"] == 0.01
    assert config["verification_threshold"] == pytest.approx(calibrated_threshold(expected, 0.01))
    assert json.loads((Path(saved_tiny_model) / "config.json").read_text()).get("calibration") is None

    rescored = cli("score", *runtime[:1], str(calibrated), *runtime[2:], "--output-dir", str(tmp_path / "out"))
    assert rescored.returncode == 0, rescored.stderr
    assert " Cllr " in rescored.stdout and "calibrated llrs" in rescored.stdout
    results = json.loads((tmp_path / "out" / "trials_results.json").read_text())
    llrs = expected["scale"] * scores + expected["offset"]
    assert results["cllr"] == pytest.approx(compute_cllr(llrs, labels), rel=1e-4)
    assert results["min_cllr"] == pytest.approx(compute_min_cllr(scores, labels), rel=1e-4)
    assert results["act_dcf"]["0.01"] == pytest.approx(
        compute_actual_dcf(llrs, labels, bayes_threshold(0.01), 0.01), abs=1e-9
    )

    hub_id = cli("calibrate", "--model", "org/not-a-folder", "--scores", str(tmp_path / "dev.tsv"))
    assert hub_id.returncode != 0


def test_model_card_states_the_calibration_and_the_actual_dcf(tmp_path, tiny_model):
    from wavlmrawnet.model_card import render_model_card

    config = WavLMRawNetConfig.from_dict(tiny_model.config.to_dict())
    config.calibration, config.p_target, config.verification_threshold = {"scale": 12.5, "offset": -5.25}, 0.05, 0.6
    model = WavLMRawNetForXVector(config)
    model.load_state_dict(tiny_model.state_dict())
    model.save_pretrained(tmp_path / "model")
    results = EvaluationResults.from_dict(
        {"eer": 0.1, "min_dcf": {"0.01": 0.5, "0.05": 0.4}, "num_trials": 10, "trial_list": "dev"}
        | {"act_dcf": {"0.01": 0.625, "0.05": 0.4375}, "cllr": 0.3125, "min_cllr": 0.25}
    )
    card = render_model_card(tmp_path / "model", [results.write(tmp_path / "model" / "dev_results.json")])
    assert "`llr = 12.5000 * s -5.2500`" in card and "prior of 0.05" in card
    assert "actual DCF 0.6250 (p_target 0.01), 0.4375 (p_target 0.05); Cllr 0.3125; minCllr 0.2500." in card
    tiny_model.save_pretrained(tmp_path / "plain")
    assert "The scores are calibrated" not in render_model_card(
        tmp_path / "plain", [tmp_path / "model" / "dev_results.json"]
    )


def test_verify_prints_llr_and_probability_of_a_calibrated_model(tmp_path, tiny_model, wav_files, capsys):
    """`wavlmrawnet verify` on a calibrated model prints what the pipeline returns: llr and probability."""
    from wavlmrawnet.cli import main

    folder = tmp_path / "calibrated"
    config = tiny_model.config
    before = config.calibration, config.p_target
    config.calibration, config.p_target = {"scale": 8.0, "offset": -4.0}, 0.05
    try:
        tiny_model.save_pretrained(folder)
    finally:
        config.calibration, config.p_target = before
    first, second = wav_files["mono_16k"], wav_files["mono_8k"]
    assert main(["verify", "--model", str(folder), first, second, "--json", "--dtype", "fp32"]) == 0
    decision = json.loads(capsys.readouterr().out)
    verifier = pipeline("speaker-verification", model=str(folder), trust_remote_code=True, precision="fp32")
    expected = verifier((first, second))
    assert decision["llr"] == pytest.approx(8.0 * decision["score"] - 4.0)
    assert decision["llr"] == pytest.approx(expected["llr"], abs=1e-4)
    assert decision["probability"] == pytest.approx(expected["probability"], abs=1e-4)
    assert main(["verify", "--model", str(folder), first, second, "--dtype", "fp32"]) == 0
    line = capsys.readouterr().out
    assert f"llr {decision['llr']:.4f}" in line and f"probability {decision['probability']:.4f}" in line
