"""`wavlmrawnet` command line: embed, verify, score, export-onnx, card, push.

Every command takes `--model DIR` (a folder written by `save_pretrained` or by training's `final/`).
Run `wavlmrawnet COMMAND --help` for the details of each.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au")
EXIT_FAILED_INPUTS = 1
EXIT_USAGE = 2


# ----------------------------------------------------------------------------------------------- shared
def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder (config.json, model.safetensors, ...)")
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="where to run (auto: cuda if available, else cpu)",
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16", "float32", "bfloat16"],
        help="auto (default): bf16 autocast where the hardware runs it natively (AMX or AVX512-BF16 "
        "CPUs, GPUs with bf16), else fp32; the choice and its reason are printed to stderr",
    )
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--batch-size", type=int, default=8, help="files per batch (sorted by length)")
    parser.add_argument(
        "--chunk-seconds",
        type=float,
        help="window for long files; default: the model's config.chunk_seconds; 0 = no chunking",
    )


def load(args):
    import torch

    from .cpu_malloc import keep_freed_memory
    from .feature_extraction_wavlmrawnet import WavLMRawNetFeatureExtractor
    from .modeling_wavlmrawnet import WavLMRawNetForXVector, resolve_precision

    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        raise SystemExit(f"error: {model_dir} is not a model folder (no config.json)")
    device = (
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda was asked for, but torch sees no CUDA device")
    precision = resolve_precision(args.dtype, device)
    print(precision, file=sys.stderr)
    if device == "cpu":
        keep_freed_memory()  # large activations reuse the heap instead of faulting in fresh pages per forward
    model = WavLMRawNetForXVector.from_pretrained(model_dir).to(device).eval()
    if (model_dir / "preprocessor_config.json").is_file():
        extractor = WavLMRawNetFeatureExtractor.from_pretrained(model_dir)
    else:
        extractor = model.default_feature_extractor()
    return model, extractor, precision


def collect_audio(inputs: list[str]) -> tuple[list[str], dict[str, str]]:
    """Files as given, folders searched recursively for audio; inputs that do not exist are failures."""
    files, failures = [], {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            if not found:
                failures[item] = "folder holds no audio files"
            files.extend(found)
        elif path.exists():
            files.append(str(path))
        else:
            failures[item] = "no such file or folder"
    return list(dict.fromkeys(files)), failures


def report_failures(failures: dict[str, str], report_path: str | None = None) -> None:
    if not failures:
        return
    print(f"{len(failures)} input(s) failed:", file=sys.stderr)
    for path, reason in failures.items():
        print(f"  {path}: {reason}", file=sys.stderr)
    if report_path:
        Path(report_path).write_text("path\treason\n" + "".join(f"{p}\t{r}\n" for p, r in failures.items()))


# ----------------------------------------------------------------------------------------------- commands
def cmd_embed(args) -> int:
    import numpy as np
    from safetensors.numpy import save_file

    from .evaluation.embedding import embed_files

    out = Path(args.out)
    if out.suffix not in (".safetensors", ".npy"):
        raise SystemExit("error: --out must end in .safetensors or .npy")
    files, failures = collect_audio(args.inputs)
    model, extractor, precision = load(args)
    result = embed_files(
        model,
        extractor,
        files,
        batch_size=args.batch_size,
        chunk_seconds=args.chunk_seconds,
        precision=precision,
        progress=not args.quiet,
    )
    failures.update(result.failures)
    done = [p for p in files if p in result.embeddings]
    if done:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".safetensors":
            save_file({p: result.embeddings[p] for p in done}, str(out), metadata={"model": str(args.model)})
        else:
            np.save(out, np.stack([result.embeddings[p] for p in done]))
            Path(str(out) + ".paths.txt").write_text("".join(f"{p}\n" for p in done))
    print(f"embedded {len(done)} file(s) -> {out if done else '(nothing written)'}")
    report_failures(failures, args.errors)
    return EXIT_FAILED_INPUTS if failures else 0


def cmd_verify(args) -> int:
    from .evaluation.embedding import embed_files

    files, failures = collect_audio([args.enroll, args.test])
    model, extractor, precision = load(args)
    result = embed_files(
        model, extractor, files, chunk_seconds=args.chunk_seconds, precision=precision, progress=False
    )
    failures.update(result.failures)
    if failures:
        report_failures(failures)
        return EXIT_FAILED_INPUTS
    first, second = result.embeddings[str(Path(args.enroll))], result.embeddings[str(Path(args.test))]
    score = float(first @ second)
    threshold = model.config.verification_threshold if args.threshold is None else args.threshold
    decision = {"score": score, "threshold": threshold, "same_speaker": score >= threshold}
    if args.json:
        print(json.dumps(decision))
    else:
        verdict = "same speaker" if decision["same_speaker"] else "different speakers"
        print(f"score {score:.4f}  threshold {threshold:.4f}  ->  {verdict}")
    return 0


def cmd_score(args) -> int:
    from .evaluation.runner import evaluate_trial_list

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
    )
    dcf = results["min_dcf"]
    print(
        f"{results['trial_list']}: EER {results['eer_percent']:.3f} %  minDCF(0.01) {dcf['0.01']:.4f}  "
        f"minDCF(0.05) {dcf['0.05']:.4f}  trials {results['num_trials']}  ({results['score_normalization']})"
    )
    if args.output_dir:
        print(f"results, DET curve and score histograms in {args.output_dir}")
    return 0


def cmd_export_onnx(args) -> int:
    from .onnx_export import export_onnx

    path = export_onnx(args.model, args.out, opset=args.opset)
    print(f"exported {args.model} -> {path}")
    return 0


def cmd_card(args) -> int:
    from .model_card import write_model_card

    path = write_model_card(args.model, results_paths=args.results, license=args.license, repo_id=args.repo_id)
    print(f"wrote {path}")
    return 0


def cmd_push(args) -> int:
    from .hub import push_to_hub

    files = push_to_hub(args.model, args.repo_id, private=args.private, dry_run=args.dry_run)
    action = "would upload" if args.dry_run else "uploaded"
    print(f"{action} {len(files)} file(s) to {args.repo_id}:")
    for name in files:
        print(f"  {name}")
    return 0


# ----------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wavlmrawnet", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    embed = commands.add_parser(
        "embed",
        help="embed audio files into L2-normalised speaker embeddings",
        description="Embed files (folders are searched recursively) in length-sorted batches. Every input gets an "
        "embedding or a line in the error report; the exit code is 1 if any input failed.",
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
    add_runtime_options(embed)
    embed.set_defaults(run=cmd_embed)

    verify = commands.add_parser(
        "verify",
        help="same speaker? score two recordings",
        description="Cosine score of two recordings against the model's threshold (config.verification_threshold).",
    )
    verify.add_argument("enroll", help="first recording")
    verify.add_argument("test", help="second recording")
    verify.add_argument("--threshold", type=float, help="override the model's decision threshold")
    verify.add_argument("--json", action="store_true", help='print {"score", "threshold", "same_speaker"} as JSON')
    add_runtime_options(verify)
    verify.set_defaults(run=cmd_verify)

    score = commands.add_parser(
        "score",
        help="EER and minDCF on a VoxCeleb-style trial list",
        description="Embeds every file of the trial list once, scores by cosine (or AS-Norm with --cohort), and "
        "reports EER and normalised minDCF (p_target 0.01 and 0.05). Missing files are an error.",
    )
    score.add_argument("--trials", required=True, help="trial list: 'label path1 path2' per line (veri_test2.txt)")
    score.add_argument("--root", help="folder the trial paths are relative to (e.g. voxceleb1/test/wav)")
    score.add_argument("--output-dir", help="write <name>_results.json, a DET curve and score histograms here")
    score.add_argument("--cohort", nargs="+", help="cohort files/folders (training speakers) for AS-Norm")
    score.add_argument("--top-n", type=int, default=200, help="AS-Norm: top cohort scores per side")
    score.add_argument("--cache-dir", help="reuse embeddings cached here (keyed by file and model)")
    score.add_argument("--name", help="name for the outputs (default: the trial list's file name)")
    score.add_argument("--dataset-name", help='e.g. "VoxCeleb1-O (cleaned)": recorded in the results for the card')
    add_runtime_options(score)
    score.set_defaults(run=cmd_score)

    export = commands.add_parser(
        "export-onnx",
        help="export to ONNX with dynamic batch and length",
        description="Exports (input_values, attention_mask) -> embeddings (un-normalised) to ONNX.",
    )
    export.add_argument("--model", required=True, help="model folder")
    export.add_argument("--out", required=True, help="output .onnx file")
    export.add_argument("--opset", type=int, default=18, help="ONNX opset version (the exporter needs >= 18)")
    export.set_defaults(run=cmd_export_onnx)

    card = commands.add_parser(
        "card",
        help="write the model card (README.md) into a model folder",
        description="Writes DIR/README.md: Hub metadata with a model-index, architecture, usage, training data and "
        "an evaluation table from the given results JSON files.",
    )
    card.add_argument("--model", required=True, help="model folder")
    card.add_argument("--results", action="append", default=[], help="results JSON (repeatable)")
    card.add_argument("--license", default="apache-2.0")
    card.add_argument("--repo-id", help="Hub repo the usage snippets load from (default: the folder's path)")
    card.set_defaults(run=cmd_card)

    push = commands.add_parser(
        "push",
        help="publish a model folder on the Hugging Face Hub",
        description="Creates the repo and uploads weights, configs, remote code, card and plots in one commit.",
    )
    push.add_argument("--model", required=True, help="model folder")
    push.add_argument("--repo-id", required=True, help="user/name on the Hub")
    push.add_argument("--private", action="store_true", help="create a private repository")
    push.add_argument("--dry-run", action="store_true", help="list what would be uploaded; no network")
    push.set_defaults(run=cmd_push)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED_INPUTS


if __name__ == "__main__":
    sys.exit(main())
