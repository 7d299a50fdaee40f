"""`python -m benchmarks.corpora.debian`: the same command as `python -m benchmarks.corpora.debian_voices`."""

from .cli import main

raise SystemExit(main())
