"""train.py for the streaming resume test: `python tests/record_streaming.py CONFIG [--resume]` trains like train.py
and appends each batch's step and file names to `<output_dir>/stream_batches.rank<R>.jsonl`."""

import json
import logging
import os
import sys
from pathlib import Path

from wavlmrawnet.training.config import TrainConfig
from wavlmrawnet.training.trainer import TrainingCallback, train


class Recorder(TrainingCallback):
    def __init__(self, output_dir: Path, rank: int):
        output_dir.mkdir(parents=True, exist_ok=True)
        self.batches = output_dir / f"stream_batches.rank{rank}.jsonl"

    def on_batch(self, step: int, paths: list[str]) -> None:
        with self.batches.open("a") as handle:
            handle.write(json.dumps({"step": step, "paths": paths}) + "\n")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = TrainConfig.from_yaml(sys.argv[1])
    recorder = Recorder(Path(config.training.output_dir), int(os.environ.get("RANK", 0)))
    train(config, resume="--resume" in sys.argv[2:], callbacks=[recorder])
