"""Benchmark scripts and the corpora they use, one package: each script runs as a module from the repository root
(`python -m benchmarks.<script> --help`) and imports its siblings as `benchmarks.*`, as the tests do."""
