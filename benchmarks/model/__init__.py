"""The code of `python -m benchmarks.bench_model` (the fused model against WavLMForXVector-Large), one module per
section of the run, so that each reads on its own; `bench_model.py` keeps the command line and the order of the run.

- `paired`: paired timing (models alternating round by round, ratios of the same rounds) and the targets.
- `rows`: the main table's rows: building a fused row and its baseline, counting and timing them, the table.
- `profiling`: the per-stage profile (forward hooks and the `Fast*` classes' time-major entry points).
- `roofline`: FLOP counting of the fast paths' kernels, the GEMM probe, the paired floor and the roofline tables.
- `sections`: the padded batch (CPU length groups), bf16, CUDA throughput and the engines, and their report.
- `rawnet`: `--rawnet-breakdown`, the RawNet branch alone stage by stage and the sinc bank by FFT.
"""
