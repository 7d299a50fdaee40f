"""What the benchmark scripts share: the machine caption, precision labels, Markdown tables and subprocess workers.

Scripts run as `python benchmarks/<script>.py` find this module because their own folder is first on `sys.path`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date

import torch

from wavlmrawnet.modeling_wavlmrawnet import PRECISION_ALIASES, Precision, describe_cpu, resolve_precision


WORKER_FLAG = "--worker-job"
RESULT_PREFIX = "RESULT "
CPU_PRECISIONS = ["auto", "fp32", "bf16"]  # what --precision options accept on a CPU
PRECISIONS = list(PRECISION_ALIASES)  # everything resolve_precision accepts (fp16 only on CUDA)


def machine_caption(threads: int | None = None) -> str:
    """Date, CPU (model, cores, AVX2/AVX-512/AVX512-BF16/AMX, torch kernel level), torch version and threads."""
    threads = torch.get_num_threads() if threads is None else threads
    return f"{date.today()}, {describe_cpu()}, torch {torch.__version__}, {threads} torch threads"


def precision_label(precision: Precision) -> str:
    """"fp32", or "auto → fp32" where the request was resolved to something else."""
    return precision.name if precision.requested == precision.name else f"{precision.requested} → {precision.name}"


def precision_note(precision: Precision) -> str:
    """"auto → fp32 (why)", without the CPU description the caption already gives."""
    return f"{precision_label(precision)} ({precision.reason.removesuffix(': ' + describe_cpu())})"


def resolve_all(requested: list[str], device: str = "cpu", training: bool = False) -> dict[str, Precision]:
    """Each distinct request (in order) resolved on this machine."""
    return {name: resolve_precision(name, device, training=training) for name in dict.fromkeys(requested)}


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows])


# ----------------------------------------------------------------------------------------------- subprocess workers
def run_job(job: dict, script: str, label: str | None = None) -> dict:
    """Runs `script WORKER_FLAG <job as JSON>` (its worker) in a fresh Python process and returns the JSON of its
    `RESULT_PREFIX` line; raises with its stderr if it fails. `label` names the job in the error."""
    command = [sys.executable, os.path.abspath(script), WORKER_FLAG, json.dumps(job)]
    completed = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        code = completed.returncode
        how = f"killed by signal {-code} (out of memory?)" if code < 0 else f"exit status {code}"
        raise RuntimeError(f"{label or job} failed ({how}):\n{completed.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def serve_worker(worker) -> bool:
    """In a process started by `run_job`: prints `worker(job)` as the result line and returns True; else False."""
    if len(sys.argv) != 3 or sys.argv[1] != WORKER_FLAG:
        return False
    print(RESULT_PREFIX + json.dumps(worker(json.loads(sys.argv[2]))), flush=True)
    return True
