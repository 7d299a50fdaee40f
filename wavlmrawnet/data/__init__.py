"""Data utilities for wavlmrawnet (corpora, loaders).

``wavlmrawnet.data.synthetic`` writes a deterministic synthetic speaker corpus in
VoxCeleb layout, so the CPU demo and the tests use the same code path as real
VoxCeleb. Submodules are imported explicitly; nothing heavy is imported here.
"""
