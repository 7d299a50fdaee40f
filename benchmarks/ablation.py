"""Which parts of WavLMRawNet matter? Trains each variant on the Debian voice corpus and evaluates it.

    python -m benchmarks.corpora.debian_voices --out ~/.cache/wavlmrawnet/debian_voices     # once, about 10 min
    python -m benchmarks.ablation --corpus ~/.cache/wavlmrawnet/debian_voices               # the whole table

Every variant trains under the same budget (preset, steps, batch, crop length, learning rates) on the MBROLA
training voices (`in_domain/train`), once per seed, and is evaluated on the held-out MBROLA voices (in-domain)
and on the RHVoice voices (cross-synthesiser), each with all trials and with same-language trials only.
Each run is its own process (`--jobs` at a time, `--threads` each) and writes `<work-dir>/<variant>/seed<k>/
result.json`; finished runs are reused, so an interrupted ablation continues where it stopped. The table
(mean +- std over seeds) goes to `--table` (default `benchmarks/results/ablation.md`). `--mixed-precision auto` (the
default, as train.py) trains in bf16 only where the CPU runs it natively, else fp32; the table says which.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import (
    CPU_PRECISIONS,
    child_env,
    machine_caption,
    markdown_table,
    module_command,
    precision_label,
)
from wavlmrawnet.precision import resolve_precision

REPO = Path(__file__).resolve().parents[1]

COMBINED = {"wavlm_pooling": "weighted", "fusion_activation": "none"}
# The baseline's own settings, stated explicitly so that the table does not move when a preset changes.
BASELINE = {"wavlm_pooling": "last", "fusion_activation": "relu", "loss": "amsoftmax", "loss_margin": 0.3}

# Each variant (a)-(g) changes one thing of the "fused" baseline (the tiny preset: both branches, RawNet max-pooling,
# last-layer WavLM features, fusion ReLU, AM-Softmax m=0.3 s=30).
VARIANTS: dict[str, tuple[str, dict]] = {
    "fused": ("(a) both branches (baseline)", {}),
    "wavlm_only": ("(b) WavLM branch only", {"use_rawnet_branch": False}),
    "rawnet_only": ("(c) RawNet branch only", {"use_wavlm_branch": False}),
    "rawnet_no_pooling": (
        "(d) RawNet without max-pooling (`reference` setting)",
        {"sinc_pool_size": 1, "rawnet_block_pool_size": 1},
    ),
    "wavlm_weighted": ('(e) "weighted" WavLM layer pooling', {"wavlm_pooling": "weighted"}),
    "fusion_linear": ("(f) no ReLU after the fusion layer", {"fusion_activation": "none"}),
    "aamsoftmax": ("(g) AAM-Softmax m=0.2 s=30", {"loss": "aamsoftmax", "loss_margin": 0.2}),
    # The single changes that helped, together: what the presets now use.
    "combined": ('(h) both branches, "weighted" pooling, no fusion ReLU', COMBINED),
}

EVALUATIONS = {  # name -> (split folder, trial list)
    "in_domain": ("in_domain/test", "trials.txt"),
    "in_domain_same_language": ("in_domain/test", "trials_same_language.txt"),
    "cross_synth": ("cross_synth/test", "trials.txt"),
    "cross_synth_same_language": ("cross_synth/test", "trials_same_language.txt"),
}


def run_config(args, variant: str, seed: int, run_dir: Path) -> dict:
    """The training config of one run, as train.py reads it."""
    corpus = Path(args.corpus)
    return {
        "model": {
            "preset": args.preset,
            "overrides": {"wavlm_config": {"mask_time_prob": 0.0}, **BASELINE, **VARIANTS[variant][1]},
        },
        "data": {
            "train_dir": str(corpus / "in_domain/train"),
            "validation_speakers": args.validation_speakers,
            "validation_trials": 600,
            "segment_seconds": args.segment_seconds,
            "num_workers": 0,
            "full_audio_check": False,
        },
        "training": {
            "output_dir": str(run_dir / "train"),
            "seed": seed,
            "max_steps": args.steps,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "wavlm_learning_rate": args.learning_rate,  # the tiny WavLM is trained from scratch too
            "scheduler": "cosine",
            "warmup_steps": max(1, args.steps // 20),
            "freeze_feature_encoder": False,
            "mixed_precision": args.mixed_precision,
            "cpu": True,
            "checkpoint_every": args.steps,
            "keep_checkpoints": 1,
            "eval_every": args.steps,  # one validation, at the end: the final weights are the ones evaluated
            "log_every": 25,
            "eval_batch_size": 16,
        },
    }


def training_precision(requested: str) -> str:
    """What train.py resolves `mixed_precision` to on this CPU, e.g. "auto → fp32"."""
    return precision_label(resolve_precision(requested, "cpu", training=True))


def run_one(config_path: Path, threads: int) -> None:
    """Child process: train one variant/seed, then evaluate it on every trial list."""
    import torch

    torch.set_num_threads(threads)
    from wavlmrawnet import WavLMRawNetForXVector
    from wavlmrawnet.evaluation.runner import evaluate_trial_list
    from wavlmrawnet.training.config import TrainConfig
    from wavlmrawnet.training.trainer import train

    spec = json.loads(config_path.read_text())
    overrides = spec["config"]["model"]["overrides"]
    for key, value in BASELINE.items():  # run files written before BASELINE existed
        overrides.setdefault(key, value)
    run_dir = config_path.parent
    started = time.time()
    summary = train(TrainConfig.from_dict(spec["config"]))
    train_seconds = time.time() - started
    model = WavLMRawNetForXVector.from_pretrained(summary["final_model"]).eval()
    feature_extractor = model.default_feature_extractor()
    results = {}
    for name, (split, trials) in EVALUATIONS.items():
        folder = Path(spec["corpus"]) / split
        out = evaluate_trial_list(
            model,
            feature_extractor,
            folder / trials,
            root=folder / "wav",
            output_dir=run_dir / "eval",
            batch_size=16,
            cache_dir=run_dir / "embedding_cache",
            name=name,
            progress=False,
        )
        results[name] = {
            "eer_percent": out["eer_percent"],
            "min_dcf_0.01": out["min_dcf"]["0.01"],
            "num_trials": out["num_trials"],
        }
    record = {
        "variant": spec["variant"],
        "seed": spec["seed"],
        "results": results,
        "validation_eer_percent": summary["best_validation_eer"],
        "parameters": model.num_parameters(),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.time() - started, 1),
        "threads": threads,
        "precision": training_precision(spec["config"]["training"]["mixed_precision"]),
    }
    (run_dir / "result.json").write_text(json.dumps(record, indent=2))


def launch(args, variant: str, seed: int) -> dict:
    run_dir = Path(args.work_dir) / variant / f"seed{seed}"
    result_file = run_dir / "result.json"
    if result_file.exists() and not args.overwrite:
        return json.loads(result_file.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "run.json"
    config_path.write_text(
        json.dumps(
            {
                "variant": variant,
                "seed": seed,
                "corpus": str(Path(args.corpus).resolve()),
                "config": run_config(args, variant, seed, run_dir),
            },
            indent=2,
        )
    )
    env = child_env(dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads)))
    print(f"start {variant} seed {seed}", flush=True)
    with open(run_dir / "log.txt", "w") as log:
        code = subprocess.call(
            module_command(__spec__.name, "--run-one", str(config_path), "--threads", str(args.threads)),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    if code != 0 or not result_file.exists():
        raise RuntimeError(f"{variant} seed {seed} failed (exit {code}); see {run_dir / 'log.txt'}")
    record = json.loads(result_file.read_text())
    scores = ", ".join(f"{name} {r['eer_percent']:.2f}%" for name, r in record["results"].items())
    print(f"done  {variant} seed {seed}: {scores} ({record['total_seconds']:.0f} s)", flush=True)
    return record


def mean_std(values: list[float], digits: int) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(records: list[dict], args) -> str:
    by_variant: dict[str, list[dict]] = {}
    for record in records:
        by_variant.setdefault(record["variant"], []).append(record)
    header = ["variant"]
    for name in EVALUATIONS:
        header += [f"{name} EER %", f"{name} minDCF0.01"]
    rows = []
    for variant, runs in by_variant.items():
        cells = [VARIANTS[variant][0]]
        for name in EVALUATIONS:
            cells.append(mean_std([r["results"][name]["eer_percent"] for r in runs], 2))
            cells.append(mean_std([r["results"][name]["min_dcf_0.01"] for r in runs], 3))
        cells.append(f"{statistics.mean(r['train_seconds'] for r in runs):.0f}")
        rows.append(cells)
    trials = {name: records[0]["results"][name]["num_trials"] for name in EVALUATIONS}
    seeds = sorted({r["seed"] for r in records})
    # Runs record what they trained in; older result files do not, so those say what the request means here.
    precisions = ", ".join(dict.fromkeys(r.get("precision") or training_precision(args.mixed_precision)
                                         for r in records))  # fmt: skip
    return "\n".join(
        [
            "# Ablation on the Debian voice corpus",
            "",
            f"Machine: {machine_caption(args.threads)} per run, CPU only; {args.jobs} run(s) at a time.",
            f"Budget per run: preset `{args.preset}`, {args.steps} steps, batch {args.batch_size} x "
            f"{args.segment_seconds} s crops, learning rate {args.learning_rate} (cosine, 5% warm-up), "
            f"precision {precisions}; {args.validation_speakers} of the training voices held out for validation. "
            f"Seeds: {', '.join(map(str, seeds))}; cells are mean ± std over seeds.",
            "Trials: " + ", ".join(f"{name} {count}" for name, count in trials.items()) + ".",
            "",
            f"Command: `python -m benchmarks.ablation --corpus CORPUS --steps {args.steps} "
            f"--batch-size {args.batch_size} "
            f"--segment-seconds {args.segment_seconds} --mixed-precision {args.mixed_precision} "
            f"--seeds {' '.join(map(str, args.seeds))} --jobs {args.jobs} --threads {args.threads}`",
            "",
            markdown_table([*header, "train s"], rows),
            "",
        ]
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", help="output folder of benchmarks/corpora/debian_voices.py")
    parser.add_argument("--work-dir", default="runs/ablation", help="run folders (reused: finished runs are kept)")
    parser.add_argument("--table", default=str(REPO / "benchmarks/results/ablation.md"), help="markdown output")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--segment-seconds", type=float, default=2.0)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument(
        "--mixed-precision",
        choices=[*CPU_PRECISIONS, "no"],
        default="auto",
        help="auto: bf16 where the CPU runs it natively, else fp32 (no = fp32)",
    )
    parser.add_argument("--validation-speakers", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--overwrite", action="store_true", help="rerun finished runs")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one:
        run_one(Path(args.run_one), args.threads)
        return
    if not args.corpus:
        parser.error("--corpus is required")
    for split, trials in EVALUATIONS.values():
        if not (Path(args.corpus) / split / trials).is_file():
            parser.error(f"{Path(args.corpus) / split / trials} not found: build the corpus first")
    jobs = [(variant, seed) for seed in args.seeds for variant in args.variants]
    with ThreadPoolExecutor(args.jobs) as pool:
        records = list(pool.map(lambda job: launch(args, *job), jobs))
    text = table(records, args)
    Path(args.table).parent.mkdir(parents=True, exist_ok=True)
    Path(args.table).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
