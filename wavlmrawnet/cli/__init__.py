"""`wavlmrawnet` command line: embed, verify, score, enroll, identify, calibrate, diarize, export-onnx, card, push,
convert, train.

Every command takes `--model DIR` (a folder written by `save_pretrained` or by training's `final/`) or a Hub id
`--model user/repo[@revision]`.
Run `wavlmrawnet COMMAND --help` for the details of each.
"""

from __future__ import annotations

import argparse
import sys

from safetensors import SafetensorError

from ..extras import MissingExtraError
from . import convert, diarization, embedding, publishing, recognition
from .common import EXIT_FAILED_INPUTS

# Each module adds its subcommands with `register(commands)`, in the order `--help` lists them.
COMMAND_MODULES = (embedding, recognition, diarization, publishing, convert)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wavlmrawnet", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(commands)
    # `train` keeps its own parser (wavlmrawnet/train.py, also `python -m wavlmrawnet.train`): listed here for --help.
    commands.add_parser("train", help="train a model from a YAML config (the train extra)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:
        from ..train import main as train_main

        return train_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except MissingExtraError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED_INPUTS
    except (OSError, ValueError, RuntimeError) as error:  # OSError: a file that cannot be read or written
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED_INPUTS
    except SafetensorError as error:  # a damaged .safetensors file
        print(f"error: a .safetensors file could not be read or written: {error}", file=sys.stderr)
        return EXIT_FAILED_INPUTS
    finally:
        if "torch" in sys.modules:  # without torch there is no process group (and `card` stays light)
            from ..evaluation.embedding import end_distributed

            end_distributed()  # under torchrun / accelerate launch: each rank leaves the process group before exit


if __name__ == "__main__":
    sys.exit(main())
