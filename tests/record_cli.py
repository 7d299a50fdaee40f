"""`python -m wavlmrawnet` for the multi-process tests, plus what each process held when the command returned.

`torchrun --nproc_per_node 2 tests/record_cli.py COMMAND ARGS...` runs the command and then prints, per rank,
`rank R left the process group up: BOOL`: a rank that exits with gloo's group still up can abort at shutdown.
"""

import os
import sys

import torch.distributed as dist

from wavlmrawnet.cli import main

if __name__ == "__main__":
    code = main(sys.argv[1:])
    print(f"rank {os.environ.get('RANK', '0')} left the process group up: {dist.is_initialized()}", flush=True)
    sys.exit(code)
