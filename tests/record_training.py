"""train.py for the DDP test: the same training, plus a callback recording what each process saw and ended with.

`torchrun --nproc_per_node 2 tests/record_training.py CONFIG` writes, per rank R, into the run's output folder:
`seen_batches.rankR.jsonl` (the step and file paths of every batch), `param_digest.rankR.txt` (a hash of the
final trainable parameters) and `inference_caches.rankR.txt` (how many modules still hold inference caches).
"""

import hashlib
import json
import logging
import os
import sys
from pathlib import Path

import torch

from wavlmrawnet.training.config import TrainConfig
from wavlmrawnet.training.trainer import TrainingCallback, train


def parameter_digest(model: torch.nn.Module) -> str:
    """Hash of the trainable parameters (buffers such as BN statistics are re-broadcast by DDP each forward)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class Recorder(TrainingCallback):
    def __init__(self, output_dir: Path, rank: int):
        self.batches = output_dir / f"seen_batches.rank{rank}.jsonl"
        self.digest = output_dir / f"param_digest.rank{rank}.txt"
        self.caches = output_dir / f"inference_caches.rank{rank}.txt"

    def on_batch(self, step: int, paths: list[str]) -> None:
        with self.batches.open("a") as handle:
            handle.write(json.dumps({"step": step, "paths": paths}) + "\n")

    def on_train_end(self, model: torch.nn.Module) -> None:
        self.digest.write_text(parameter_digest(model))
        # modules still holding tensors that validation derived from the weights (`inference_cache`)
        self.caches.write_text(str(sum(bool(m.__dict__.get("_inference_cache")) for m in model.modules())))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = TrainConfig.from_yaml(sys.argv[1])
    train(config, callbacks=[Recorder(Path(config.training.output_dir), int(os.environ.get("RANK", 0)))])
