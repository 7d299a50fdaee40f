"""Train WavLMRawNet: the same as `wavlmrawnet train` (see `wavlmrawnet/train.py`); kept for `python train.py` and
`accelerate launch train.py --config configs/<name>.yaml`."""

import sys

from wavlmrawnet.train import main, parse_args  # noqa: F401 (parse_args: the tests' entry point)

if __name__ == "__main__":
    sys.exit(main(prog="train.py"))
