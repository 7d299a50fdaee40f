"""`python -m wavlmrawnet` runs the command line (see `wavlmrawnet --help`)."""

import sys

from .cli import main

sys.exit(main())
