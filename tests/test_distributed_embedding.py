"""`wavlmrawnet embed` and `score` on two real CPU processes (torchrun, gloo): the same output as one process, each
rank a disjoint length-balanced shard, and a run killed mid-way that resumes from the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_wav
from safetensors.numpy import load_file

from wavlmrawnet.evaluation.embedding import KILL_AFTER_PARTS_ENV, balanced_shards, cache_parts

REPO = Path(__file__).resolve().parents[1]


def test_balanced_shards_split_the_audio_evenly_and_disjointly():
    seconds = [9.0, 1.0, 5.0, 4.0, 3.0, 3.0, 2.0, 2.0]
    shards = balanced_shards(list(range(8)), seconds, 2)
    assert sorted(shards[0] + shards[1]) == list(range(8))
    loads = [sum(seconds[i] for i in shard) for shard in shards]
    assert abs(loads[0] - loads[1]) <= 1.0, loads  # 15 and 14 s, where a round-robin by count gives 19 and 10


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> tuple[Path, list[str], Path]:
    root = tmp_path_factory.mktemp("multi")
    files = [write_wav(root / f"s{i % 4}_{i:02d}.wav", 0.8 + 0.15 * (i % 7), 16000, seed=i) for i in range(14)]
    trials = root / "trials.txt"
    lines = [f"{int(i % 4 == j % 4)} {Path(files[i]).name} {Path(files[j]).name}" for i in range(14) for j in range(i)]
    trials.write_text("\n".join(lines) + "\n")
    return root, files, trials


def cli(*args: str, nproc: int = 1, env: dict | None = None) -> subprocess.CompletedProcess:
    """`wavlmrawnet ARGS` in 1 process, or in `nproc` under torchrun through record_cli.py (which reports, per rank,
    whether the command left its process group up)."""
    if nproc == 1:
        command = [sys.executable, "-m", "wavlmrawnet", *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
        command += [str(REPO / "tests" / "record_cli.py"), *args]
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=environment, timeout=600)


@pytest.mark.slow
def test_two_process_embed_and_score_match_one_process(saved_tiny_model, audio, tmp_path):
    root, files, trials = audio
    common = ["--model", saved_tiny_model, "--dtype", "fp32", "--batch-size", "3", "--quiet"]
    one = cli("embed", str(root), "--out", str(tmp_path / "one.safetensors"), *common)
    assert one.returncode == 0, one.stderr
    two = cli(
        "embed", str(root), "--out", str(tmp_path / "two.safetensors"), "--cache-dir", str(tmp_path / "cache"),
        *common, nproc=2,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("embedded 14 file(s) (14 computed, 0 from the cache)") == 1, "rank 0 alone reports"
    # A rank that exits with gloo's group still up aborted about 1 run in 10 ("terminate called without an active
    # exception"); every command destroys it first.
    for rank in (0, 1):
        assert f"rank {rank} left the process group up: False" in two.stdout, two.stdout
    first, second = load_file(tmp_path / "one.safetensors"), load_file(tmp_path / "two.safetensors")
    assert sorted(first) == sorted(second) == sorted(files)
    for path in files:
        np.testing.assert_allclose(second[path], first[path], atol=1e-5)

    outputs = {}
    for nproc in (1, 2):
        out_dir = tmp_path / f"score{nproc}"
        completed = cli(
            "score", "--trials", str(trials), "--root", str(root), "--output-dir", str(out_dir),
            "--scores-out", str(out_dir / "scores.tsv"), *common[:-1], nproc=nproc,
        )  # fmt: skip
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout.count("EER") == 1, "one rank prints and writes the results"
        if nproc == 2:
            assert completed.stdout.count("left the process group up: False") == 2, completed.stdout
        outputs[nproc] = (json.loads((out_dir / "trials_results.json").read_text()), out_dir / "scores.tsv")
    (one_results, one_scores), (two_results, two_scores) = outputs[1], outputs[2]
    assert one_results["num_trials"] == two_results["num_trials"] == 91
    assert abs(one_results["eer_percent"] - two_results["eer_percent"]) < 1e-9
    read = [np.loadtxt(p, delimiter="\t", skiprows=1, usecols=3) for p in (one_scores, two_scores)]
    np.testing.assert_allclose(read[1], read[0], atol=1e-5)


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_from_the_cache(saved_tiny_model, audio, tmp_path):
    root, files, _ = audio
    cache = tmp_path / "cache"
    common = ["--model", saved_tiny_model, "--dtype", "fp32", "--batch-size", "2", "--quiet"]
    common += ["--cache-dir", str(cache)]
    out = str(tmp_path / "emb.safetensors")
    # Each rank writes its new embeddings to the cache after every batch; a rank SIGKILLs itself after its second.
    killed = cli("embed", str(root), "--out", out, *common, "--cache-flush-seconds", "0", nproc=2,
                 env={KILL_AFTER_PARTS_ENV: "2"})  # fmt: skip
    assert killed.returncode != 0 and not Path(out).exists()
    saved = sum(len(load_file(part)) for part in cache.glob("*.part-*.safetensors"))
    assert 4 <= saved < 14, f"{saved} embeddings reached the cache before the kill"

    resumed = cli("embed", str(root), "--out", out, *common, nproc=2)
    assert resumed.returncode == 0, resumed.stderr
    assert f"embedded 14 file(s) ({14 - saved} computed, {saved} from the cache)" in resumed.stdout
    main_cache = next(cache.glob("*.safetensors"))
    assert not cache_parts(main_cache) and len(load_file(main_cache)) == 14, "parts are merged into one cache file"

    reference = cli("embed", str(root), "--out", str(tmp_path / "ref.safetensors"), "--model", saved_tiny_model,
                    "--dtype", "fp32", "--quiet")  # fmt: skip
    assert reference.returncode == 0, reference.stderr
    resumed_embeddings, expected = load_file(out), load_file(tmp_path / "ref.safetensors")
    for path in files:
        np.testing.assert_allclose(resumed_embeddings[path], expected[path], atol=1e-5)
