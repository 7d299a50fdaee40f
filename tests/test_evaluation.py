"""Tests for wavlmrawnet.evaluation: metrics, the results JSON, trial lists, scoring, plots, evaluate metric."""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from wavlmrawnet.evaluation import (
    EvaluationResults,
    MissingEmbeddingError,
    MissingTrialFilesError,
    Trial,
    as_norm_scores,
    compute_eer,
    compute_metrics,
    compute_min_dcf,
    cosine_scores,
    det_curve,
    plot_det_curve,
    plot_score_histograms,
    read_trials,
    score_trials,
    unique_paths,
    write_results_json,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def random_trials(n, seed=0, separation=1.5):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = rng.normal(size=n) + separation * labels
    return scores, labels


# --------------------------------------------------------------------------- metrics


def test_det_curve_matches_sklearn_operating_points():
    scores, labels = random_trials(2000, seed=1)
    scores = np.round(scores, 1)  # many ties
    fpr, fnr, thresholds = det_curve(scores, labels)
    sk_fpr, sk_tpr, sk_thr = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(fnr, 1 - sk_tpr)
    np.testing.assert_allclose(thresholds[1:], sk_thr[1:])
    assert thresholds[0] > scores.max()  # first point rejects every trial


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eer_agrees_with_sklearn_crossing(seed):
    scores, labels = random_trials(20000, seed=seed)
    sk_fpr, sk_tpr, sk_thr = roc_curve(labels, scores)
    sk_fnr = 1 - sk_tpr
    i = np.nanargmin(np.abs(sk_fnr - sk_fpr))
    sk_eer = (sk_fpr[i] + sk_fnr[i]) / 2
    eer, threshold = compute_eer(scores, labels)
    assert abs(eer - sk_eer) < 1e-3
    assert 0.1 < eer < 0.5  # overlapping classes: a real, non-trivial EER
    # At the EER threshold, the empirical FAR and FRR are both close to the EER.
    far = np.mean(scores[labels == 0] >= threshold)
    frr = np.mean(scores[labels == 1] < threshold)
    assert abs(far - eer) < 2e-3 and abs(frr - eer) < 2e-3


def test_perfect_separation_gives_zero_errors():
    scores = [0.9, 0.8, 0.7, 0.2, 0.1]
    labels = [1, 1, 1, 0, 0]
    eer, threshold = compute_eer(scores, labels)
    assert eer == 0.0 and 0.2 < threshold <= 0.7
    for p in (0.01, 0.05, 0.5):
        assert compute_min_dcf(scores, labels, p_target=p)[0] == 0.0


def test_fully_inverted_system_has_eer_one():
    eer, _ = compute_eer([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0])
    assert eer == pytest.approx(1.0)


def test_four_trial_case_worked_by_hand():
    # Sorted by score: 0.9 T, 0.8 N, 0.7 T, 0.3 T  (3 targets, 1 non-target).
    # Operating points (threshold: FAR, FRR):
    #   reject all: 0, 1 | 0.9: 0, 2/3 | 0.8: 1, 2/3 | 0.7: 1, 1/3 | 0.3: 1, 0
    # FRR - FAR goes 2/3 -> -1/3 between 0.9 and 0.8: alpha = (2/3) / 1 = 2/3,
    # EER = 0 + 2/3 * (1 - 0) = 2/3, threshold = 0.9 + 2/3 * (0.8 - 0.9) = 0.8333.
    # minDCF, p=0.01: best raw cost 0.01 * 2/3 at threshold 0.9; / min(0.01, 0.99) = 2/3.
    # minDCF, p=0.9: accept-all costs 0.1 * 1 = 0.1 (best); / min(0.9, 0.1) = 1.0.
    scores = [0.9, 0.8, 0.7, 0.3]
    labels = [1, 0, 1, 1]
    eer, threshold = compute_eer(scores, labels)
    assert eer == pytest.approx(2 / 3)
    assert threshold == pytest.approx(0.9 - 2 / 3 * 0.1)
    assert compute_min_dcf(scores, labels, p_target=0.01) == pytest.approx((2 / 3, 0.9))
    assert compute_min_dcf(scores, labels, p_target=0.9) == pytest.approx((1.0, 0.3))


def test_min_dcf_is_normalised():
    # A system with one constant score can only accept all or reject all:
    # its normalised cost is exactly 1 for every prior.
    labels = np.array([1] * 10 + [0] * 990)
    for p in (0.01, 0.05, 0.5, 0.9):
        value, _ = compute_min_dcf(np.zeros(labels.size), labels, p_target=p)
        assert value == 1.0
    # Costs scale the normaliser too: c_miss = 10 with p = 0.01 -> normaliser 0.1.
    value, _ = compute_min_dcf(np.zeros(labels.size), labels, p_target=0.01, c_miss=10)
    assert value == 1.0


def test_min_dcf_matches_brute_force():
    scores, labels = random_trials(300, seed=4, separation=2.0)
    scores = np.round(scores, 1)
    p, c_miss, c_fa = 0.05, 1.0, 1.0
    costs = []
    for t in np.r_[np.unique(scores), np.inf]:
        p_miss = np.mean(scores[labels == 1] < t)
        p_fa = np.mean(scores[labels == 0] >= t)
        costs.append(c_miss * p_miss * p + c_fa * p_fa * (1 - p))
    expected = min(costs) / min(c_miss * p, c_fa * (1 - p))
    value, threshold = compute_min_dcf(scores, labels, p_target=p)
    assert value == pytest.approx(expected)
    assert 0 < value < 1
    # The returned threshold achieves that cost.
    p_miss = np.mean(scores[labels == 1] < threshold)
    p_fa = np.mean(scores[labels == 0] >= threshold)
    assert (p_miss * p + p_fa * (1 - p)) / p == pytest.approx(expected)


def test_tied_scores_form_one_operating_point():
    # Targets 0.9, 0.5; non-targets 0.5, 0.1. The tied 0.5 pair is accepted together:
    # points (FAR, FRR): (0,1) (0,.5) (.5,0) (1,0) -> crossing halfway: EER 0.25.
    for scores, labels in (([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0]), ([0.9, 0.5, 0.5, 0.1], [1, 0, 1, 0])):
        eer, threshold = compute_eer(scores, labels)
        assert eer == pytest.approx(0.25)
        assert threshold == pytest.approx(0.7)
    # All scores tied: no information, EER 0.5 whatever the order.
    assert compute_eer([0.3] * 4, [1, 0, 0, 1])[0] == pytest.approx(0.5)
    assert compute_eer([0.3] * 4, [0, 1, 1, 0])[0] == pytest.approx(0.5)


def test_compute_metrics_keys_and_counts():
    scores, labels = random_trials(1000, seed=5)
    result = compute_metrics(scores, labels, p_targets=(0.01, 0.05))
    eer, eer_threshold = compute_eer(scores, labels)
    assert result["eer"] == eer and result["eer_threshold"] == eer_threshold
    assert result["eer_percent"] == pytest.approx(100 * eer)
    assert set(result["min_dcf"]) == {"0.01", "0.05"} == set(result["min_dcf_thresholds"])
    assert result["min_dcf"]["0.05"] == compute_min_dcf(scores, labels, p_target=0.05)[0]
    assert result["num_trials"] == 1000
    assert result["num_target"] == int(labels.sum())
    assert result["num_nontarget"] == 1000 - int(labels.sum())


@pytest.mark.parametrize(
    "scores, labels, message",
    [
        ([], [], "empty"),
        ([0.1, 0.2], [1], "length mismatch"),
        ([0.1, np.nan, 0.3], [1, 0, 1], "NaN or infinite"),
        ([0.1, np.inf, 0.3], [1, 0, 1], "NaN or infinite"),
        ([0.1, 0.2, 0.3], [1, 0, 2], "labels must be 0"),
        ([0.1, 0.2], [-1, 1], "labels must be 0"),
        ([0.1, 0.2], [0, 0], "no target trials"),
        ([0.1, 0.2], [1, 1], "no non-target trials"),
    ],
)
def test_invalid_inputs_raise(scores, labels, message):
    for fn in (compute_eer, compute_min_dcf, det_curve, compute_metrics):
        with pytest.raises(ValueError, match=message):
            fn(scores, labels)


def test_min_dcf_rejects_bad_prior():
    with pytest.raises(ValueError, match="p_target"):
        compute_min_dcf([0.1, 0.9], [0, 1], p_target=1.0)


def test_write_results_json(tmp_path):
    scores, labels = random_trials(200, seed=6)
    metrics = compute_metrics(scores, labels)
    out = write_results_json(
        tmp_path / "sub" / "results.json",
        metrics,
        trial_list="veri_test2.txt",
        score_norm="as-norm",
        top_n=np.int64(300),
        mean_score=np.float32(0.25),
        model_path=tmp_path / "model",
    )
    data = json.loads(out.read_text())
    assert data["eer"] == pytest.approx(metrics["eer"])
    assert data["min_dcf"] == pytest.approx(metrics["min_dcf"])
    assert data["top_n"] == 300 and data["mean_score"] == 0.25
    assert data["model_path"] == str(tmp_path / "model")
    with pytest.raises(ValueError, match="overwrite"):
        write_results_json(tmp_path / "r.json", metrics, eer=0.5)
    with pytest.raises(ValueError, match="JSON cannot represent"):
        write_results_json(tmp_path / "r.json", {"eer": float("nan")})


def test_evaluation_results_round_trip_through_json(tmp_path):
    scores, labels = random_trials(200, seed=7)
    values = {
        **compute_metrics(scores, labels),
        "trial_list": "test",
        "num_files": 40,
        "files_embedded_this_run": 0,
        "score_normalization": "none (cosine)",
        "dtype": "fp32",
        "precision_reason": "asked for",
        "date": "2026-11-25",
        "hardware": "cpu",
        "dataset_name": "VoxCeleb1-O",
        "seed": 3,
        "results_json": str(tmp_path / "test_results.json"),
    }
    results = EvaluationResults.from_dict(values)
    assert results.extra == {"seed": 3} and results.dataset_name == "VoxCeleb1-O"
    written = json.loads(results.write(tmp_path / "test_results.json").read_text())
    assert written == values
    assert list(written)[-3:] == ["dataset_name", "seed", "results_json"]  # extra keys before the paths
    again = EvaluationResults.read(tmp_path / "test_results.json")
    assert again == results and again.source == tmp_path / "test_results.json"
    minimal = {"eer": 0.25, "min_dcf": {"0.01": 0.5}, "num_trials": 4, "trial_list": "t"}
    assert EvaluationResults.from_dict(minimal).to_dict() == {**minimal, "eer_percent": 25.0}
    with pytest.raises(ValueError, match="overwrite"):
        EvaluationResults(eer=0.1, min_dcf={"0.01": 0.5}, num_trials=4, trial_list="t", extra={"eer": 0.2})


# --------------------------------------------------------------------------- trial lists


def write_wavs(root, names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF")  # only existence is checked


def test_read_trials_resolves_paths(tmp_path):
    audio = tmp_path / "wav"
    write_wavs(audio, ["id1/a/1.wav", "id1/b/2.wav", "id2/c/3.wav"])
    trial_file = tmp_path / "veri_test2.txt"
    trial_file.write_text("1 id1/a/1.wav id1/b/2.wav\n\n  0\tid1/a/1.wav   id2/c/3.wav  \n\n")
    trials = read_trials(trial_file, root=audio)
    assert trials == [
        Trial(1, str(audio / "id1/a/1.wav"), str(audio / "id1/b/2.wav")),
        Trial(0, str(audio / "id1/a/1.wav"), str(audio / "id2/c/3.wav")),
    ]
    assert all(os.path.isabs(p) for p in unique_paths(trials))
    assert unique_paths(trials) == [str(audio / n) for n in ("id1/a/1.wav", "id1/b/2.wav", "id2/c/3.wav")]


def test_read_trials_without_root_keeps_paths(tmp_path, monkeypatch):
    write_wavs(tmp_path, ["a.wav", "b.wav"])
    (tmp_path / "trials.txt").write_text("0 a.wav b.wav\n")
    monkeypatch.chdir(tmp_path)
    assert read_trials("trials.txt") == [Trial(0, "a.wav", "b.wav")]


def test_read_trials_reports_every_missing_file(tmp_path):
    write_wavs(tmp_path, ["present.wav"])
    lines = [f"{i % 2} present.wav spk{i}/missing.wav" for i in range(25)]
    lines.append("1 present.wav spk0/missing.wav")  # repeated missing file counted once
    trial_file = tmp_path / "list_test_hard2.txt"
    trial_file.write_text("\n".join(lines) + "\n")

    with pytest.raises(MissingTrialFilesError) as info:
        read_trials(trial_file, root=tmp_path)
    error = info.value
    assert isinstance(error, FileNotFoundError)
    assert error.missing == [str(tmp_path / f"spk{i}/missing.wav") for i in range(25)]
    message = str(error)
    assert message.startswith(f"25 audio files referenced by {trial_file}")
    assert "spk19/missing.wav" in message and "spk20/missing.wav" not in message
    assert "and 5 more" in message
    # Without the check the list is returned whole, nothing dropped.
    assert len(read_trials(trial_file, root=tmp_path, check_exists=False)) == 26


@pytest.mark.parametrize(
    "content, message",
    [
        ("1 a.wav b.wav\n1 a.wav\n", r"trials.txt:2: expected 'label enroll test'"),
        ("1 a.wav b.wav c.wav\n", r"trials.txt:1: expected"),
        ("\n2 a.wav b.wav\n", r"trials.txt:2: label must be 0 or 1, got '2'"),
        ("yes a.wav b.wav\n", r"trials.txt:1: label must be 0 or 1"),
        ("\n\n", r"contains no trials"),
    ],
)
def test_read_trials_rejects_malformed_lines(tmp_path, content, message):
    trial_file = tmp_path / "trials.txt"
    trial_file.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_trials(trial_file, check_exists=False)


# --------------------------------------------------------------------------- scoring


def test_cosine_scores_by_hand():
    embeddings = {"a": np.array([1.0, 0.0]), "b": np.array([1.0, 1.0]), "c": np.array([0.0, -2.0])}
    trials = [Trial(1, "a", "b"), Trial(0, "a", "c"), Trial(0, "b", "c"), Trial(1, "c", "c")]
    expected = [1 / np.sqrt(2), 0.0, -1 / np.sqrt(2), 1.0]
    np.testing.assert_allclose(cosine_scores(trials, embeddings), expected, atol=1e-12)
    np.testing.assert_allclose(score_trials(trials, embeddings), expected, atol=1e-12)


def test_missing_embedding_lists_all_paths():
    embeddings = {"a": np.ones(4)}
    trials = [Trial(1, "a", "x"), Trial(0, "y", "a"), Trial(0, "x", "z")]
    with pytest.raises(MissingEmbeddingError) as info:
        cosine_scores(trials, embeddings)
    assert isinstance(info.value, KeyError)
    assert info.value.missing == ["x", "y", "z"]
    assert str(info.value) == "3 trial files have no embedding: x, y, z"


@pytest.mark.parametrize(
    "bad, message",
    [(np.zeros(3), "zero norm"), (np.array([1.0, np.nan, 0.0]), "NaN"), (np.ones(4), "same size")],
)
def test_bad_embeddings_raise(bad, message):
    embeddings = {"a": np.ones(3), "b": bad}
    with pytest.raises(ValueError, match=message):
        cosine_scores([Trial(1, "a", "b")], embeddings)


def slow_as_norm(trials, embeddings, cohort, top_n):
    """Reference AS-Norm: one trial at a time, straight from the definition."""

    def cos(u, v):
        return float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))

    def stats(x):
        top = sorted((cos(x, c) for c in cohort), reverse=True)[:top_n]
        return np.mean(top), np.std(top)

    out = []
    for t in trials:
        e, x = embeddings[t.enroll], embeddings[t.test]
        s = cos(e, x)
        (mu_e, sd_e), (mu_t, sd_t) = stats(e), stats(x)
        out.append(0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t))
    return np.array(out)


def test_as_norm_matches_slow_reference():
    rng = np.random.default_rng(7)
    names = [f"utt{i}.wav" for i in range(12)]
    embeddings = {n: rng.normal(size=16) for n in names}
    trials = [Trial(int(rng.integers(0, 2)), *rng.choice(names, 2, replace=False)) for _ in range(40)]
    cohort = rng.normal(size=(50, 16)) * rng.uniform(0.5, 3, size=(50, 1))  # unnormalised rows
    expected = slow_as_norm(trials, embeddings, cohort, top_n=10)
    np.testing.assert_allclose(as_norm_scores(trials, embeddings, cohort, top_n=10), expected, rtol=1e-9)
    np.testing.assert_allclose(score_trials(trials, embeddings, cohort=cohort, top_n=10), expected, rtol=1e-9)
    # Not just a rescaled cosine: AS-Norm changes the scores.
    assert not np.allclose(expected, cosine_scores(trials, embeddings))


def test_as_norm_validates_cohort_and_top_n():
    rng = np.random.default_rng(8)
    embeddings = {"a": rng.normal(size=8), "b": rng.normal(size=8)}
    trials = [Trial(1, "a", "b")]
    cohort = rng.normal(size=(5, 8))
    with pytest.raises(ValueError, match="top_n"):
        as_norm_scores(trials, embeddings, cohort, top_n=6)
    with pytest.raises(ValueError, match="top_n"):
        as_norm_scores(trials, embeddings, cohort, top_n=0)
    with pytest.raises(ValueError, match="cohort must have shape"):
        as_norm_scores(trials, embeddings, rng.normal(size=(5, 7)), top_n=2)
    with pytest.raises(ValueError, match="std 0"):
        as_norm_scores(trials, embeddings, cohort, top_n=1)
    cohort[2] = 0.0
    with pytest.raises(ValueError, match="cohort embeddings have zero norm"):
        as_norm_scores(trials, embeddings, cohort, top_n=2)


# --------------------------------------------------------------------------- plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0  # something was drawn


def test_plots_write_png(tmp_path):
    scores, labels = random_trials(2000, seed=9)
    det = plot_det_curve(scores, labels, tmp_path / "plots" / "det.png", title="test DET")
    assert det == tmp_path / "plots" / "det.png"
    assert_png(det)
    hist = plot_score_histograms(scores, labels, tmp_path / "hist.png", threshold=compute_eer(scores, labels)[1])
    assert_png(hist)
    # A perfect system (error rates of exactly 0) still plots.
    assert_png(plot_det_curve([0.9, 0.8, 0.1], [1, 1, 0], tmp_path / "perfect.png"))


def test_plots_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        plot_det_curve([0.1, np.nan], [0, 1], tmp_path / "x.png")
    with pytest.raises(ValueError, match="no target"):
        plot_score_histograms([0.1, 0.2], [0, 0], tmp_path / "y.png")
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()


def test_probit_matches_standard_normal():
    from wavlmrawnet.evaluation.plots import _probit

    ps = np.array([0.001, 0.05, 0.5, 0.9])
    expected = [statistics.NormalDist().inv_cdf(p) for p in ps]
    np.testing.assert_allclose(_probit(ps), expected, rtol=1e-9)


# --------------------------------------------------------------------------- evaluate metric


@pytest.mark.slow
def test_evaluate_metric_loads_offline_and_matches(tmp_path):
    scores, labels = random_trials(3000, seed=10)
    np.save(tmp_path / "scores.npy", scores)
    np.save(tmp_path / "labels.npy", labels)
    metric_dir = REPO_ROOT / "metrics" / "speaker_verification"
    script = f"""
import json, numpy as np, evaluate
metric = evaluate.load({str(metric_dir)!r})
result = metric.compute(
    predictions=np.load({str(tmp_path / "scores.npy")!r}).tolist(),
    references=np.load({str(tmp_path / "labels.npy")!r}).tolist(),
    p_targets=(0.01, 0.05),
)
print(json.dumps(result))
"""
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_EVALUATE_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf_home"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    # The metric declares float32 predictions, so compare against float32 scores.
    expected = compute_metrics(scores.astype(np.float32), labels, p_targets=(0.01, 0.05))
    assert result["eer"] == pytest.approx(expected["eer"], abs=1e-7)
    assert result["eer_percent"] == pytest.approx(expected["eer_percent"], abs=1e-5)
    assert result["min_dcf"] == pytest.approx(expected["min_dcf"], abs=1e-7)
    assert result["num_trials"] == 3000 and result["num_target"] == expected["num_target"]
    assert 0.1 < result["eer"] < 0.5


def test_make_trials_balanced_cross_session_and_written(tmp_path):
    from wavlmrawnet.evaluation.trials import make_trials, write_trials

    paths = [f"/d/{s}/{v}/{u}.wav" for s in ("a", "b", "c") for v in ("v1", "v2") for u in range(3)]
    speakers = [p.split("/")[2] for p in paths]
    sessions = [p.split("/")[3] for p in paths]
    trials = make_trials(paths, speakers, 40, seed=3, sessions=sessions)
    assert len(trials) == 40 and sum(t.label for t in trials) == 20
    for t in trials:
        same = t.enroll.split("/")[2] == t.test.split("/")[2]
        assert same == bool(t.label) and t.enroll != t.test
        if t.label:
            assert t.enroll.split("/")[3] != t.test.split("/")[3], "targets pair different sessions"
    assert make_trials(paths, speakers, 40, seed=3, sessions=sessions) == trials
    written = write_trials(trials, tmp_path / "t.txt")
    assert read_trials(written, check_exists=False) == trials


def test_make_trials_all_pairs_balanced_unique_and_cross_video():
    from wavlmrawnet.evaluation.trials import make_trials

    speaker_ids, video_ids = ("id10001", "id10002", "id10003"), ("vid00", "vid01")
    paths = [f"{s}/{v}/{n:05d}.wav" for s in speaker_ids for v in video_ids for n in (1, 2)]
    speakers = [p.split("/")[0] for p in paths]
    videos = [p.split("/")[1] for p in paths]
    trials = make_trials(paths, speakers, 24, np.random.default_rng(0), sessions=videos, all_pairs=True)
    assert len(trials) == 24 and sum(t.label for t in trials) == 12
    assert len({frozenset((t.enroll, t.test)) for t in trials}) == 24
    for t in trials:
        assert t.label == int(t.enroll[:7] == t.test[:7])
        if t.label:
            assert t.enroll.split("/")[1] != t.test.split("/")[1]
    # 3 speakers x 4 cross-video pairs = 12 targets at most.
    with pytest.raises(ValueError, match="needs 13 target pairs but the test set only has 12"):
        make_trials(paths, speakers, 26, np.random.default_rng(0), sessions=videos, all_pairs=True)
    with pytest.raises(ValueError, match="even"):
        make_trials(paths, speakers, 7, np.random.default_rng(0), sessions=videos, all_pairs=True)
    # at_most: as many as the smaller pool allows, still balanced; none when a pool is empty.
    fewer = make_trials(paths, speakers, 40, 1, sessions=videos, all_pairs=True, at_most=True)
    assert len(fewer) == 24 and sum(t.label for t in fewer) == 12
    assert make_trials(paths[:4], speakers[:4], 10, 1, sessions=videos[:4], all_pairs=True, at_most=True) == []
