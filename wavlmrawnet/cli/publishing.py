"""`export-onnx`, `card` and `push`: a trained model folder out to ONNX, a model card and the Hub."""

from __future__ import annotations

import argparse


def cmd_export_onnx(args) -> int:
    from ..extras import require

    require("onnx", "wavlmrawnet export-onnx")
    from ..onnx_export import export_onnx
    from .common import check_writable

    if not str(args.out).endswith(".onnx"):
        raise ValueError(f"--out must end in .onnx, got {args.out}")
    check_writable(args.out)  # before minutes of export
    path = export_onnx(args.model, args.out, opset=args.opset)
    print(f"exported {args.model} -> {path}")
    return 0


def cmd_card(args) -> int:
    from ..model_card import write_model_card

    path = write_model_card(args.model, results_paths=args.results, license=args.license, repo_id=args.repo_id)
    print(f"wrote {path}")
    return 0


def cmd_push(args) -> int:
    from ..hub import push_to_hub

    files = push_to_hub(args.model, args.repo_id, private=args.private, dry_run=args.dry_run)
    action = "would upload" if args.dry_run else "uploaded"
    print(f"{action} {len(files)} file(s) to {args.repo_id}:")
    for name in files:
        print(f"  {name}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
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
