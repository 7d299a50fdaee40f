"""The synthetic speaker corpus for the CPU demo and the tests: source-filter voices written in VoxCeleb layout.

`wavlmrawnet.synthetic.corpus.generate_corpus` writes train/test speakers and a trial list, so the demo and the tests
run the same code path as VoxCeleb. Real training data is read by `wavlmrawnet.training.data`.
"""
