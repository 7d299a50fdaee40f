"""What the benchmark scripts share: the machine caption, precision labels, Markdown tables and reports, subprocess
workers, process memory, timing and FLOP counting.

The scripts run as modules of the `benchmarks` package from the repository root (`python -m benchmarks.<script>`) and
import this one as `benchmarks.common`.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from datetime import date
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from wavlmrawnet import WavLMRawNetConfig
from wavlmrawnet.precision import PRECISION_ALIASES, Precision, describe_cpu, resolve_precision

WORKER_FLAG = "--worker-job"
RESULT_PREFIX = "RESULT "
CPU_PRECISIONS = ["auto", "fp32", "bf16"]  # what --precision options accept on a CPU
PRECISIONS = list(PRECISION_ALIASES)  # everything resolve_precision accepts (fp16 only on CUDA)
SAMPLING_RATE = 16000
BASELINE = "WavLMForXVector-Large"  # transformers' own x-vector model with WavLM-Large, the speed baseline
REPO_ROOT = Path(__file__).resolve().parents[1]  # the folder that holds the `benchmarks` package

# WavLM passes a bool padding mask with a float position bias to multi_head_attention_forward; harmless here.
warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask and attn_mask")


def baseline_wavlm_config():
    """The WavLM-Large config of the baseline: the reference preset's `wavlm_config`."""
    return WavLMRawNetConfig.from_preset("reference").wavlm_config


# The environment variables that make an x86 CPU run like an older one: torch's own kernels, oneDNN's, and MKL's.
ISA_CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


# ----------------------------------------------------------------------------------------------- captions and reports
def machine_caption(threads: int | None = None, device: str | torch.device = "cpu") -> str:
    """Date, CPU (model, cores, AVX2/AVX-512/AVX512-BF16/AMX, torch kernel level), torch version and threads; the GPU
    and CUDA version where `device` is a CUDA device."""
    threads = torch.get_num_threads() if threads is None else threads
    caption = f"{date.today()}, {describe_cpu()}, torch {torch.__version__}, {threads} torch threads"
    caption += isa_caps_note()
    device = torch.device(device)
    if device.type == "cuda":
        caption += f", GPU {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return caption


def isa_caps_note() -> str:
    """The instruction-set caps in force, if any. MKL, which torch's fp32 `F.linear` calls, obeys only
    `MKL_ENABLE_INSTRUCTIONS`: with torch's and oneDNN's kernels capped at AVX2 and MKL not, an AVX-512 CPU is only
    partly an AVX2 one (on a 2-core AMX Xeon, MKL's fp32 linear ran at 190 GFLOP/s uncapped, 108 capped)."""
    caps = {name: os.environ[name] for name in ISA_CAPS if os.environ.get(name)}
    if not caps:
        return ""
    note = ", ISA caps " + " ".join(f"{name}={value}" for name, value in caps.items())
    if "MKL_ENABLE_INSTRUCTIONS" not in caps:
        note += " (MKL not capped)"
    return note


def load_note(before: float) -> str:
    """The 1-min load average `before` the measurements and now."""
    return f"1-min load average {before:.1f} before / {os.getloadavg()[0]:.1f} after"


def precision_label(precision: Precision) -> str:
    """ "fp32", or "auto → fp32" where the request was resolved to something else."""
    return precision.name if precision.requested == precision.name else f"{precision.requested} → {precision.name}"


def precision_note(precision: Precision) -> str:
    """ "auto → fp32 (why)", without the CPU description the caption already gives."""
    return f"{precision_label(precision)} ({precision.reason.removesuffix(': ' + describe_cpu())})"


def resolve_all(requested: list[str], device: str = "cpu", training: bool = False) -> dict[str, Precision]:
    """Each distinct request (in order) resolved on this machine."""
    return {name: resolve_precision(name, device, training=training) for name in dict.fromkeys(requested)}


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows])


def publish(report: str, markdown_out: str | None) -> None:
    """Prints the report and, with `--markdown-out`, writes it there too."""
    print("\n" + report)
    if markdown_out:
        with open(markdown_out, "w", encoding="utf-8") as f:
            f.write(report)


# ----------------------------------------------------------------------------------------------- subprocess workers
def module_command(module: str, *args: str) -> list[str]:
    """`python -m module args...` with this interpreter: how a script starts itself in a fresh process. A script
    passes its own `__spec__.name` ("benchmarks.bench_train"), which, unlike `__name__`, is not "__main__" when it
    runs with `-m`."""
    return [sys.executable, "-m", module, *args]


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's environment) with the repository root first on PYTHONPATH, so that a child
    started by `module_command` imports the same `benchmarks` package as its parent from any working directory."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def run_job(job: dict, module: str, label: str | None = None) -> dict:
    """Runs `python -m module WORKER_FLAG <job as JSON>` (the script's worker) in a fresh Python process and returns
    the JSON of its `RESULT_PREFIX` line; raises with its stderr if it fails. `module` is the script's
    `__spec__.name` (see `module_command`); `label` names the job in the error."""
    command = module_command(module, WORKER_FLAG, json.dumps(job))
    completed = subprocess.run(command, capture_output=True, text=True, env=child_env())
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


# ----------------------------------------------------------------------------------------------- memory
def _proc_kib(path: str, field: str) -> int | None:
    """A `field:  N kB` line of a /proc file, in KiB; None where there is no such file (not Linux)."""
    try:
        with open(path, encoding="ascii") as lines:
            for line in lines:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def current_rss_bytes() -> int:
    """Resident set size of this process now."""
    kib = _proc_kib("/proc/self/status", "VmRSS")
    if kib is not None:
        return 1024 * kib
    import psutil  # not Linux: psutil is the portable way; fail loudly rather than report nothing

    return psutil.Process().memory_info().rss


def reset_peak_rss() -> bool:
    """Resets the peak-RSS high-water mark to the current RSS (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak RSS since the last `reset_peak_rss()` (or since the process started, where reset is not possible)."""
    kib = _proc_kib("/proc/self/status", "VmHWM")
    if kib is not None:
        return 1024 * kib
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def release_freed_memory() -> None:
    """Collects garbage and hands freed heap pages back to the OS (glibc), so RSS reflects live memory."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (psutil elsewhere)."""
    kib = _proc_kib("/proc/meminfo", "MemAvailable")
    if kib is not None:
        return 1024 * kib
    import psutil

    return psutil.virtual_memory().available


# ----------------------------------------------------------------------------------------------- time and FLOPs
def synchronize() -> None:
    """Waits for queued CUDA work (nothing to wait for on a CPU, or before CUDA is first used)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed_seconds(fn) -> float:
    """Wall seconds of `fn()`, including the GPU work it queues."""
    synchronize()
    start = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - start


def count_flops(model: torch.nn.Module, inputs: dict, submodules: tuple[str, ...] = ()) -> dict[str, float]:
    """FLOPs of one forward (`FlopCounterMode`: matmul, convolution, attention; a multiply-add is 2): "total", and
    each named child module (e.g. "wavlm") on its own. A fused model is counted with its fast paths off: their oneDNN
    kernels are invisible to the counter, and do the same arithmetic except the last WavLM layer's second feed-forward
    product, which they apply after the pooling (`RunningLayerSum`), and the positional convolution, which they
    compute by FFT (`WavLMFastPositionalConvEmbedding`)."""
    fast_paths = getattr(model, "fast_paths", False)
    if fast_paths:
        model.set_fast_paths(False)
    try:
        # no_grad, not inference_mode: FlopCounterMode's module tracker fails on WavLM's weight-norm under the latter.
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(**inputs)
    finally:
        if fast_paths:
            model.set_fast_paths(True)
    counts, root = counter.get_flop_counts(), type(model).__name__
    flops = {"total": float(counter.get_total_flops())}
    return flops | {name: float(sum(counts.get(f"{root}.{name}", {}).values())) for name in submodules}
