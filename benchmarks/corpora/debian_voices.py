"""Builds the Debian voice corpus (see README.md): `python benchmarks/corpora/debian_voices.py --out DIR`.

The code is the package `benchmarks/corpora/debian/`; `python -m benchmarks.corpora.debian` runs the same command.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, where `benchmarks` is
from benchmarks.corpora.debian.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
