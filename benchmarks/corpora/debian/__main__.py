"""`python -m benchmarks.corpora.debian`: the same command as `python benchmarks/corpora/debian_voices.py`."""

from .cli import main

raise SystemExit(main())
