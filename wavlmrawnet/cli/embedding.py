"""`embed`, `verify` and `score`: audio files in, embeddings, decisions and error rates out."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import (
    EXIT_FAILED_INPUTS,
    add_runtime_options,
    check_writable,
    collect_audio,
    embed_inputs,
    finite_float,
    load,
    report_failures,
)


def cmd_embed(args) -> int:
    import numpy as np
    from safetensors.numpy import save_file

    out = Path(args.out)
    if out.suffix not in (".safetensors", ".npy"):
        raise SystemExit("error: --out must end in .safetensors or .npy")
    # Before any work: an output that cannot be written stops the run now, not after the embedding.
    check_writable(out)
    if out.suffix == ".npy":
        check_writable(str(out) + ".paths.txt")
    if args.errors:
        check_writable(args.errors)
    if args.cache_dir:
        check_writable(args.cache_dir, folder=True)
    files, failures = collect_audio(args.inputs)
    model, extractor, precision = load(args)
    result = embed_inputs(
        args,
        files,
        model,
        extractor,
        precision,
        progress=not args.quiet,
        cache_dir=args.cache_dir,
        flush_seconds=args.cache_flush_seconds,
    )
    failures.update(result.failures)
    if not result.is_main_process:  # another rank of torchrun / accelerate launch: rank 0 writes the output
        return EXIT_FAILED_INPUTS if failures else 0
    done = [p for p in files if p in result.embeddings]
    if done:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".safetensors":
            save_file({p: result.embeddings[p] for p in done}, str(out), metadata={"model": str(args.model)})
        else:
            np.save(out, np.stack([result.embeddings[p] for p in done]))
            Path(str(out) + ".paths.txt").write_text("".join(f"{p}\n" for p in done))
    cached = len(done) - result.computed
    target = out if done else "(nothing written)"
    print(f"embedded {len(done)} file(s) ({result.computed} computed, {cached} from the cache) -> {target}")
    report_failures(failures, args.errors)
    return EXIT_FAILED_INPUTS if failures else 0


def cmd_verify(args) -> int:
    for recording in (args.enroll, args.test):
        if Path(recording).is_dir():
            raise SystemExit(f"error: verify compares two recordings; {recording} is a folder (embed it with `embed`)")
    files, failures = collect_audio([args.enroll, args.test])
    model, extractor, precision = load(args)
    result = embed_inputs(args, files, model, extractor, precision)
    failures.update(result.failures)
    if failures:
        report_failures(failures)
        return EXIT_FAILED_INPUTS
    first, second = result.embeddings[str(Path(args.enroll))], result.embeddings[str(Path(args.test))]
    score = float(first @ second)
    threshold = model.config.verification_threshold if args.threshold is None else args.threshold
    decision = {"score": score, "threshold": threshold, "same_speaker": score >= threshold}
    calibrated = calibrated_outputs(model.config, score)  # llr and probability, as the pipeline returns them
    decision.update(calibrated)
    if args.json:
        print(json.dumps(decision))
    else:
        verdict = "same speaker" if decision["same_speaker"] else "different speakers"
        extra = "".join(f"  {key} {value:.4f}" for key, value in calibrated.items())
        print(f"score {score:.4f}  threshold {threshold:.4f}{extra}  ->  {verdict}")
    return 0


def calibrated_outputs(config, score: float) -> dict:
    """`{"llr", "probability"}` for a calibrated model (`config.calibration`), else `{}`."""
    from ..recognition.calibration import llr_to_probability

    calibration = getattr(config, "calibration", None)
    if not calibration:
        return {}
    llr = calibration["scale"] * score + calibration["offset"]
    return {"llr": float(llr), "probability": float(llr_to_probability(llr, getattr(config, "p_target", 0.01)))}


def cmd_score(args) -> int:
    from ..extras import import_module
    from .common import check_writable

    # Every output is probed first: a read-only folder fails now, not after the whole trial list is embedded.
    if args.scores_out:
        check_writable(args.scores_out)
    for folder in (args.output_dir, args.cache_dir):
        if folder:
            check_writable(folder, folder=True)
    import_module("matplotlib", "eval", "wavlmrawnet score (DET plots)")
    from ..evaluation.runner import evaluate_trial_list

    cohort, failures = collect_audio(args.cohort) if args.cohort else ([], {})
    if failures:
        report_failures(failures)
        return EXIT_FAILED_INPUTS
    model, extractor, precision = load(args)
    results = evaluate_trial_list(
        model,
        extractor,
        args.trials,
        root=args.root,
        output_dir=args.output_dir,
        cohort_paths=cohort,
        top_n=args.top_n,
        batch_size=args.batch_size,
        chunk_seconds=args.chunk_seconds,
        precision=precision,
        cache_dir=args.cache_dir,
        name=args.name,
        extra={"dataset_name": args.dataset_name} if args.dataset_name else None,
        scores_out=args.scores_out,
        vad=args.vad,
        conditions=args.conditions,
        condition_seed=args.condition_seed,
        require_speech=True,  # as every embedding command: a trial or cohort file without speech fails the run
    )
    if not results:  # another rank of torchrun / accelerate launch: rank 0 scores and writes the outputs
        return 0
    dcf = results["min_dcf"]
    print(
        f"{results['trial_list']}: EER {results['eer_percent']:.3f} %  minDCF(0.01) {dcf['0.01']:.4f}  "
        f"minDCF(0.05) {dcf['0.05']:.4f}  trials {results['num_trials']}  ({results['score_normalization']})"
    )
    calibrated = f"Cllr {results['cllr']:.4f}  " if "cllr" in results else ""
    act = results["act_dcf"]
    print(
        f"actual DCF(0.01) {act['0.01']:.4f}  actual DCF(0.05) {act['0.05']:.4f}  {calibrated}"
        f"minCllr {results['min_cllr']:.4f}  ({'calibrated llrs' if calibrated else 'at the model threshold'})"
    )
    if "conditions" in results:
        from ..evaluation.robustness import format_condition_table

        print(f"\ntest side altered per condition (enrolment clean; seed {results['condition_seed']}):")
        print(format_condition_table(results["conditions"]))
    if args.scores_out:
        print(f"per-trial scores (enrol, test, label, score) in {args.scores_out}")
    if args.output_dir:
        print(f"results, DET curve and score histograms in {args.output_dir}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    embed = commands.add_parser(
        "embed",
        help="embed audio files into L2-normalised speaker embeddings",
        description="Embed files (folders are searched recursively) in length-sorted batches. Every input gets an "
        "embedding or a line in the error report; the exit code is 1 if any input failed. Runs unchanged under "
        "`torchrun --nproc_per_node N` or `accelerate launch --num_processes N`: each process embeds a "
        "length-balanced shard, rank 0 writes the output.",
    )
    embed.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR")
    embed.add_argument(
        "--out",
        required=True,
        help="embeddings.safetensors (keyed by path) or embeddings.npy "
        "(rows in the order of the .npy.paths.txt written beside it)",
    )
    embed.add_argument("--errors", help="also write failed inputs and reasons to this TSV file")
    embed.add_argument("--quiet", action="store_true", help="no progress bar")
    embed.add_argument("--cache-dir", help="reuse embeddings cached here (by file and model); a killed run resumes")
    embed.add_argument(
        "--cache-flush-seconds",
        type=float,
        default=60.0,
        help="with --cache-dir, save new embeddings this often while embedding (default 60; 0: after every batch)",
    )
    add_runtime_options(embed)
    embed.set_defaults(run=cmd_embed)

    verify = commands.add_parser(
        "verify",
        help="same speaker? score two recordings",
        description="Cosine score of two recordings against the model's threshold (config.verification_threshold).",
    )
    verify.add_argument("enroll", help="first recording")
    verify.add_argument("test", help="second recording")
    verify.add_argument("--threshold", type=finite_float, help="override the model's decision threshold")
    verify.add_argument(
        "--json",
        action="store_true",
        help='print {"score", "threshold", "same_speaker"} as JSON (+ "llr", "probability" when calibrated)',
    )
    add_runtime_options(verify)
    verify.set_defaults(run=cmd_verify)

    score = commands.add_parser(
        "score",
        help="EER and minDCF on a VoxCeleb-style trial list",
        description="Embeds every file of the trial list once, scores by cosine (or AS-Norm with --cohort), and "
        "reports EER and normalised minDCF (p_target 0.01 and 0.05). Missing files, and trial or cohort files that "
        "cannot be embedded (unreadable, truncated, too short, no speech: silence, hum, a tone), are an error that "
        "lists them; no trial is skipped.",
    )
    score.add_argument("--trials", required=True, help="trial list: 'label path1 path2' per line (veri_test2.txt)")
    score.add_argument("--root", help="folder the trial paths are relative to (e.g. voxceleb1/test/wav)")
    score.add_argument("--output-dir", help="write <name>_results.json, a DET curve and score histograms here")
    score.add_argument("--cohort", nargs="+", help="cohort files/folders (training speakers) for AS-Norm")
    score.add_argument("--top-n", type=int, default=200, help="AS-Norm: top cohort scores per side")
    score.add_argument("--cache-dir", help="reuse embeddings cached here (keyed by file and model)")
    score.add_argument("--name", help="name for the outputs (default: the trial list's file name)")
    score.add_argument("--scores-out", help="write one line per trial to this TSV: enrol, test, label, score")
    score.add_argument(
        "--conditions",
        help="also evaluate with the test side altered, one row per condition: comma-separated names from clean, "
        "durN (N-second crop), noiseN (N dB SNR), reverb, tel8k, opusN, mp3-N (N kbit/s); e.g. clean,dur2,noise5",
    )
    score.add_argument(
        "--condition-seed", type=int, default=0, help="seed of the altered audio and the noise bank (default 0)"
    )
    score.add_argument("--dataset-name", help='e.g. "VoxCeleb1-O (cleaned)": recorded in the results for the card')
    add_runtime_options(score)
    score.set_defaults(run=cmd_score)
