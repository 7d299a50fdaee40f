"""`wavlmrawnet train`: train WavLMRawNet from a YAML config (needs the `train` extra).

The same command, however it is started:

    wavlmrawnet train --config configs/demo.yaml                 # one process
    python train.py --config configs/demo.yaml                   # the repository's thin wrapper
    accelerate launch -m wavlmrawnet.train --config CONFIG       # Accelerate: GPUs, DDP, several machines
    accelerate launch --multi_gpu --num_processes 4 -m wavlmrawnet.train --config CONFIG
    torchrun --nproc_per_node 2 -m wavlmrawnet.train --config CONFIG   # two CPU processes (gloo)

The loop lives in `wavlmrawnet.training.trainer`; the config sections are in `wavlmrawnet.training.config`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .extras import MissingExtraError, require


def build_parser(prog: str = "wavlmrawnet train") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="YAML file with model/data/training sections (see configs/)")
    parser.add_argument("--output-dir", help="overrides training.output_dir")
    parser.add_argument("--max-steps", type=int, help="overrides training.max_steps")
    parser.add_argument(
        "--mixed-precision",
        choices=["auto", "no", "fp32", "bf16", "fp16"],
        help="overrides training.mixed_precision (auto: bf16 where the hardware runs it natively, else fp32 on CPUs "
        "and fp16 on GPUs without bf16; no = fp32)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run in output_dir (its checkpoints, best/ and final/ models and metrics are "
        "removed); without it (or --resume), an earlier run there is refused",
    )
    parser.add_argument(
        "--skip-bad-audio",
        action="store_true",
        help="drop unreadable/empty/too-short files (listed in output_dir/bad_audio.tsv) instead of refusing to start",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override any config value, e.g. --set training.batch_size=16 (repeatable)",
    )
    return parser


def parse_args(argv: list[str] | None = None, prog: str = "wavlmrawnet train") -> argparse.Namespace:
    return build_parser(prog).parse_args(argv)


def main(argv: list[str] | None = None, prog: str = "wavlmrawnet train") -> int:
    """Parses the arguments, checks the config, trains; prints the summary. Returns the exit code."""
    args = parse_args(argv, prog)
    try:
        require("train", prog)
    except MissingExtraError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from .training.config import ConfigError, TrainConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = list(args.overrides)
    for flag, key in (
        ("output_dir", "training.output_dir"),
        ("max_steps", "training.max_steps"),
        ("mixed_precision", "training.mixed_precision"),
    ):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    if args.skip_bad_audio:
        overrides.append("data.skip_bad_audio=true")
    try:
        config = TrainConfig.from_yaml(args.config, overrides)
    except (ConfigError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from safetensors import SafetensorError

    from .training.checkpoints import CheckpointError
    from .training.trainer import train  # imported after the config is known to be valid: it is slow

    try:
        summary = train(config, resume=args.resume, overwrite=args.overwrite)
    except (OSError, ValueError, CheckpointError, SafetensorError) as error:
        # The input's fault, named in the message: a missing data folder or trial list, an output_dir that cannot be
        # written or holds an earlier run, too few speakers or files, unusable audio, a damaged checkpoint.
        print(f"error: {error}", file=sys.stderr)
        return 1
    if summary.get("final_model"):
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m wavlmrawnet.train"))
