"""Training utilities for wavlmrawnet.

``wavlmrawnet.training.trainer`` holds the loop (`train`), ``wavlmrawnet.training.config`` its typed YAML config;
``wavlmrawnet.training.data`` builds speaker-labelled datasets, checks their audio and feeds them to a DataLoader;
``wavlmrawnet.training.augment`` holds the noise / reverberation / speed augmentations. Submodules are imported
explicitly; nothing heavy is imported here.
"""
