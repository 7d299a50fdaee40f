"""Checkpoints and the output folder of a training run: atomic saves, resume from the last finished checkpoint (a
damaged one named, with what to do), and one run per output folder (an earlier run is continued, replaced or
refused, never mixed with a new one)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from accelerate import Accelerator

CHECKPOINT_PREFIX = "step-"
STATE_FILE = "trainer_state.json"


def completed_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Finished checkpoints, oldest first (a crash mid-save leaves only a `.tmp-` folder, which is ignored)."""
    if not checkpoint_dir.is_dir():
        return []
    done = [p for p in checkpoint_dir.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and (p / STATE_FILE).exists()]
    return sorted(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def save_checkpoint(accelerator: Accelerator, checkpoint_dir: Path, state: dict, keep: int) -> Path:
    """`accelerator.save_state` into a temporary folder, then an atomic rename: a kill never leaves half a
    checkpoint."""
    final = checkpoint_dir / f"{CHECKPOINT_PREFIX}{state['step']:08d}"
    temporary = checkpoint_dir / f".tmp-{final.name}"
    if accelerator.is_main_process:
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)  # every rank writes its random state into it
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (temporary / STATE_FILE).write_text(json.dumps(state, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(temporary, final)
        for old in completed_checkpoints(checkpoint_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be restored: the message names it and what to do."""


# What an earlier run leaves in output_dir: training into it again without --resume would mix two runs.
RUN_OUTPUTS = ("final", "best", "checkpoints", "metrics.jsonl")


def check_output_dir(output_dir: Path, resume: bool, overwrite: bool) -> list[Path]:
    """Before anything is written: an earlier run in `output_dir` is continued (`resume`), replaced (`overwrite`: its
    outputs are returned for removal) or refused, never silently mixed with this one (its checkpoints, best and final
    models replaced and its metrics interleaved). A file where the folder should be, or a folder that cannot be
    written, is refused too."""
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"training.output_dir {output_dir} is a file, not a folder")
    for parent in output_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"training.output_dir {output_dir}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK) and not output_dir.exists():
                raise PermissionError(f"training.output_dir {output_dir} cannot be created in {parent}")
            break
    if output_dir.is_dir() and not os.access(output_dir, os.W_OK):
        raise PermissionError(f"training.output_dir {output_dir} cannot be written")
    earlier = [output_dir / name for name in RUN_OUTPUTS if (output_dir / name).exists()]
    if earlier and not resume and not overwrite:
        raise FileExistsError(
            f"training.output_dir {output_dir} holds an earlier run ({', '.join(p.name for p in earlier)}): pass "
            "--resume to continue it, --overwrite to replace it, or choose another output_dir; nothing was changed"
        )
    return earlier if overwrite and not resume else []


def load_last_checkpoint(accelerator: Accelerator, checkpoint_dir: Path, state: dict) -> dict:
    """Restores the last finished checkpoint (weights, optimizer, scheduler, random states); returns its state."""
    found = completed_checkpoints(checkpoint_dir)
    if not found:
        accelerator.print(f"--resume: no checkpoint in {checkpoint_dir}; starting from scratch")
        return state
    try:
        accelerator.load_state(str(found[-1]))
        state = json.loads((found[-1] / STATE_FILE).read_text())
    except Exception as error:  # a truncated weights file, a garbled state, an empty optimizer file
        raise CheckpointError(
            f"cannot resume from {found[-1]}, which is damaged ({type(error).__name__}: {error}); remove that folder "
            "to resume from the checkpoint before it"
        ) from error
    accelerator.print(f"resumed from {found[-1]} (step {state['step']})")
    return state
