"""The main job (`make demo`): synthetic corpus -> train the tiny preset on CPU -> evaluate -> model folder -> verify.

1. generates the synthetic multi-speaker corpus in VoxCeleb layout (40 training + 10 held-out test speakers);
2. trains `configs/demo.yaml` (the same `train.py` code path as VoxCeleb);
3. evaluates the untrained and the trained model on the held-out trial list (EER, normalised minDCF);
4. writes the model folder, results JSON and DET / score PNG plots to demo_output/run/final;
5. runs the speaker-verification pipeline (remote code, fresh process) on a same- and a different-speaker pair.

The corpus is synthetic: these numbers say the pipeline learns, not how the model does on real speech.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from wavlmrawnet.evaluation.trials import read_trials
from wavlmrawnet.precision import resolve_precision
from wavlmrawnet.synthetic.corpus import generate_corpus
from wavlmrawnet.training.config import TrainConfig
from wavlmrawnet.training.trainer import train, training_device

CONFIG = Path("configs/demo.yaml")


def main() -> None:
    config = TrainConfig.from_yaml(CONFIG, ["training.test_before_training=true"])
    corpus = Path(config.data.train_dir).parent
    started = time.time()
    if not (corpus / "test" / "veri_test2.txt").exists():
        print(f"[1/5] generating the synthetic corpus in {corpus} ...", flush=True)
        generate_corpus(corpus, num_train_speakers=40, num_test_speakers=10, num_workers=2, overwrite=True)
    else:
        print(f"[1/5] reusing the synthetic corpus in {corpus}", flush=True)

    device = training_device(config.training)
    precision = resolve_precision(config.training.mixed_precision, device, training=True)
    print(f"[2/5] training {CONFIG} on {device} ({config.training.max_steps} steps), {precision} ...", flush=True)
    train_started = time.time()
    summary = train(config, overwrite=True)  # `make demo` again trains afresh
    train_minutes = (time.time() - train_started) / 60

    before, after = summary["untrained_test"], summary["test"]
    print("[3/5] held-out test speakers, synthetic corpus:")
    print(f"  {'model':<10} {'EER %':>7} {'minDCF@0.01':>12} {'minDCF@0.05':>12} {'trials':>7}")
    for name, result in (("untrained", before), ("trained", after)):
        dcf = result["min_dcf"]
        print(
            f"  {name:<10} {result['eer_percent']:7.2f} {dcf['0.01']:12.3f} {dcf['0.05']:12.3f} "
            f"{result['num_trials']:7d}"
        )
    print(f"  training took {train_minutes:.1f} min")

    final = Path(summary["final_model"])
    print(f"[4/5] model folder: {final}")
    for name in sorted(p.name for p in final.iterdir()):
        print(f"    {name}")

    trials = read_trials(config.data.test_trials, root=config.data.test_root)
    same = next(t for t in trials if t.label == 1)
    different = next(t for t in trials if t.label == 0)
    script = textwrap.dedent(
        f"""
        import json
        from transformers import pipeline
        verify = pipeline("speaker-verification", model={str(final)!r}, trust_remote_code=True)
        for name, pair in (("same speaker", ({same.enroll!r}, {same.test!r})),
                           ("different speakers", ({different.enroll!r}, {different.test!r}))):
            print(f"    {{name:<19}} {{json.dumps(verify(pair))}}")
        """
    )
    print("[5/5] speaker-verification pipeline (remote code, fresh process):", flush=True)
    subprocess.run([sys.executable, "-c", script], check=True)
    (final.parent / "demo_summary.json").write_text(
        json.dumps(
            {
                **summary,
                "train_minutes": round(train_minutes, 2),
                "total_minutes": round((time.time() - started) / 60, 2),
            },
            indent=2,
        )
    )
    print(f"done in {(time.time() - started) / 60:.1f} min; summary in {final.parent / 'demo_summary.json'}")


if __name__ == "__main__":
    main()
