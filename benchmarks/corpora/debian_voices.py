"""Builds the Debian voice corpus (see README.md): `python -m benchmarks.corpora.debian_voices --out DIR`, from the
repository root.

The code is the package `benchmarks/corpora/debian/`; `python -m benchmarks.corpora.debian` runs the same command.
"""

from .debian.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
