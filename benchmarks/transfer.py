"""Does what `make demo` teaches transfer to voices it has never heard? EER on the Debian voice benchmark.

    python -m benchmarks.corpora.debian_voices --out ~/.cache/wavlmrawnet/debian_voices     # once, about 10 min
    python -m benchmarks.transfer --demo-model demo_output/run/final --train-in-domain

Rows, all the tiny preset:
- untrained: the demo model's architecture with random weights, one row per initialisation seed (mean +- std);
- demo-trained: `demo_output/run/final`, trained by `make demo` on the synthetic corpus only;
- in-domain-trained (for scale): the same recipe (`configs/demo.yaml`, same steps, crops and learning rates) trained
  on the MBROLA training voices of the benchmark (`--train-in-domain` trains it through train.py; or pass
  `--in-domain-model DIR`).
Columns: EER and minDCF@0.01 on the RHVoice trials (cross-synthesiser: voices, languages and synthesiser all unseen)
and on the held-out MBROLA trials. Scores are plain cosine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import machine_caption, markdown_table, publish
from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector
from wavlmrawnet.cpu_malloc import keep_freed_memory
from wavlmrawnet.evaluation.runner import evaluate_trial_list

REPO = Path(__file__).resolve().parents[1]

EVALUATIONS = {  # column -> (split folder, trial list)
    "RHVoice (cross-synthesiser)": ("cross_synth/test", "trials.txt"),
    "MBROLA held-out (in-domain)": ("in_domain/test", "trials.txt"),
}


def evaluate(model, corpus: Path, precision: str) -> dict:
    results = {}
    for column, (split, trials) in EVALUATIONS.items():
        folder = corpus / split
        out = evaluate_trial_list(
            model,
            model.default_feature_extractor(),
            folder / trials,
            root=folder / "wav",
            batch_size=16,
            precision=precision,
            progress=False,
        )
        results[column] = {"eer": out["eer_percent"], "min_dcf": out["min_dcf"]["0.01"], "trials": out["num_trials"],
                           "precision": out["dtype"]}  # fmt: skip
    return results


def train_in_domain(corpus: Path, out: Path, extra: list[str]) -> Path:
    """The demo recipe, trained on the benchmark's MBROLA training voices through train.py."""
    command = [
        sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs" / "demo.yaml"),
        "--set", f"data.train_dir={corpus / 'in_domain' / 'train'}", "--set", "data.synthetic=false",
        "--set", f"data.test_trials={corpus / 'cross_synth' / 'test' / 'trials.txt'}",
        "--set", f"data.test_root={corpus / 'cross_synth' / 'test' / 'wav'}",
        "--set", "data.validation_speakers=8", "--output-dir", str(out), *extra,
    ]  # fmt: skip
    print("training the in-domain model:", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=REPO)
    return out / "final"


def summarise(rows: list[tuple[str, dict]]) -> list[list[str]]:
    """Groups rows of the same name (seeds) into mean +- std."""
    grouped: dict[str, list[dict]] = {}
    for name, result in rows:
        grouped.setdefault(name, []).append(result)
    table = []
    for name, results in grouped.items():
        cells = [name if len(results) == 1 else f"{name} ({len(results)} seeds)"]
        for column in EVALUATIONS:
            for key, fmt in (("eer", "{:.2f}"), ("min_dcf", "{:.3f}")):
                values = [r[column][key] for r in results]
                text = fmt.format(statistics.mean(values))
                cells.append(text + (f" ± {fmt.format(statistics.stdev(values))}" if len(values) > 1 else ""))
        table.append(cells)
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=str(Path.home() / ".cache/wavlmrawnet/debian_voices"))
    parser.add_argument("--demo-model", default=str(REPO / "demo_output/run/final"))
    parser.add_argument("--in-domain-model", help="a model folder trained on in_domain/train")
    parser.add_argument("--train-in-domain", action="store_true", help="train it first (the demo recipe)")
    parser.add_argument("--in-domain-dir", default=str(REPO / "demo_output/transfer_in_domain"))
    parser.add_argument("--untrained-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--precision", default="fp32", help="evaluation precision (fp32: the same scores anywhere)")
    parser.add_argument(
        "--train-set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="extra overrides for --train-in-domain",
    )
    parser.add_argument("--json-out", help="also write every row as JSON here")
    parser.add_argument("--markdown-out", help="also write the table here")
    args = parser.parse_args(argv)
    corpus = Path(args.corpus).expanduser()
    missing = [str(corpus / s / t) for s, t in EVALUATIONS.values() if not (corpus / s / t).is_file()]
    if missing:
        raise SystemExit(
            f"error: the benchmark corpus is incomplete ({', '.join(missing)}); build it with "
            "python -m benchmarks.corpora.debian_voices --out " + str(corpus)
        )

    in_domain = args.in_domain_model
    if args.train_in_domain:
        extra = [arg for item in args.train_set for arg in ("--set", item)]
        in_domain = str(train_in_domain(corpus, Path(args.in_domain_dir), extra))

    keep_freed_memory()  # as the CLI does for CPU inference
    demo = WavLMRawNetForXVector.from_pretrained(args.demo_model).eval()
    rows = []
    started = time.time()
    for seed in args.untrained_seeds:
        torch.manual_seed(seed)
        untrained = WavLMRawNetForXVector(WavLMRawNetConfig.from_dict(demo.config.to_dict())).eval()
        rows.append(("untrained", evaluate(untrained, corpus, args.precision)))
    rows.append((f"demo-trained (`{args.demo_model}`)", evaluate(demo, corpus, args.precision)))
    if in_domain:
        model = WavLMRawNetForXVector.from_pretrained(in_domain).eval()
        rows.append((f"in-domain-trained, same recipe (`{in_domain}`)", evaluate(model, corpus, args.precision)))

    header = ["model (tiny preset)"]
    for column, (split, trials) in EVALUATIONS.items():
        count = rows[0][1][column]["trials"]
        header += [f"{column} EER % ({count} trials)", "minDCF@0.01"]
    text = (
        f"{machine_caption()}; evaluation {rows[0][1][next(iter(EVALUATIONS))]['precision']}, cosine scores, "
        f"{time.time() - started:.0f} s of evaluation\n\n" + markdown_table(header, summarise(rows))
    )
    publish(text + "\n", args.markdown_out)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps([{"model": n, **r} for n, r in rows], indent=2))


if __name__ == "__main__":
    main()
