"""The synthetic speaker corpus for the CPU demo and the tests: source-filter voices written in VoxCeleb layout.

`corpus.generate_corpus` writes train/test speakers and a trial list, so the demo and the tests run the same code path
as VoxCeleb. Its parts: `voice` (speakers, sessions, phone plans), `speech` (source-filter synthesis) and `channel`
(the recording channel of each utterance). Real training data is read by `wavlmrawnet.training.data`.
"""
