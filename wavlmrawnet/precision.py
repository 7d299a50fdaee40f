"""The compute precision, chosen from what the hardware does: bf16 where it runs natively, else fp32; int8 (CPU
inference, `quantization.py`) only where asked for, as it changes results.

Used by the pipelines, the command line, training and the benchmarks; it imports only torch, so validating a precision
name never imports the network. `str(precision)` is the line every tool logs beside its figures.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import warnings
from dataclasses import dataclass

import torch

PRECISION_ALIASES = {
    "auto": "auto", "fp32": "fp32", "float32": "fp32", "no": "fp32",
    "bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16",
}  # fmt: skip
# Inference also takes int8: dynamic int8 linears on a CPU (`quantization.py`). Never chosen by `auto`, never trained.
INFERENCE_PRECISION_ALIASES = {**PRECISION_ALIASES, "int8": "int8", "qint8": "int8"}
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.qint8}


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags /proc/cpuinfo lists for the first CPU (empty where it cannot be read)."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            line = next((line for line in handle if line.startswith(("flags", "Features"))), "")
            return frozenset(line.split(":", 1)[1].split()) if ":" in line else frozenset()
    return frozenset()


@functools.cache
def int8_products_may_saturate() -> bool:
    """Whether this CPU's int8 products can saturate: on x86 without int8 dot-product instructions (VNNI, in its
    AVX-512 or AVX form, or AMX), int8 kernels add pairs of u8 x s8 products in int16 (`vpmaddubsw`), which overflows
    where two large activations meet two large weights; VNNI, AMX and Arm's kernels sum in int32."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    if getattr(torch.cpu, "_is_vnni_supported", lambda: False)() or torch.cpu._is_amx_tile_supported():
        return False
    return not cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"}


@functools.cache
def describe_cpu() -> str:
    """The CPU model, core count and the instruction sets that decide precision, e.g.
    `"AMD EPYC, 2 cores: avx2 avx512 avx512_bf16 vnni, no amx; torch kernels AVX512"` (vnni: int8 dot products,
    `int8_products_may_saturate`)."""
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            name = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), name)
    probes = {"avx2": "_is_avx2_supported", "avx512": "_is_avx512_supported",
              "avx512_bf16": "_is_avx512_bf16_supported", "amx": "_is_amx_tile_supported"}  # fmt: skip
    have = {flag: bool(getattr(torch.cpu, probe, lambda: False)()) for flag, probe in probes.items()}
    if platform.machine().lower() in ("x86_64", "amd64"):
        have["vnni"] = not int8_products_may_saturate()
    present = " ".join(flag for flag, ok in have.items() if ok) or "none of avx2/avx512"
    absent = " ".join(f"no {flag}" for flag in ("avx512_bf16", "amx", "vnni") if flag in have and not have[flag])
    flags = f"{present}, {absent}" if absent else present
    return f"{name}, {os.cpu_count()} cores: {flags}; torch kernels {torch.backends.cpu.get_cpu_capability()}"


@functools.cache
def cpu_native_bf16() -> tuple[bool, str]:
    """Whether this CPU runs bf16 natively (AMX or AVX512-BF16, and torch's and oneDNN's kernels use it), and why.

    Without native support torch still computes bf16, by emulation: on an AVX2-only CPU a bf16 matmul is over 100x
    slower than fp32. The ISA caps `ATEN_CPU_CAPABILITY` and `ONEDNN_MAX_CPU_ISA` are honoured.
    """
    cpu = describe_cpu()
    if platform.machine().lower() in ("arm64", "aarch64"):
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        return native, f"{'Arm CPU with' if native else 'Arm CPU without'} bf16 instructions: {cpu}"
    hardware = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    if not hardware:
        return False, f"CPU has no native bf16: {cpu}"
    if torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AMX"):
        return False, f"CPU has bf16, but torch's kernels are capped below AVX-512 (ATEN_CPU_CAPABILITY): {cpu}"
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False, f"CPU has bf16, but oneDNN does not use it (ONEDNN_MAX_CPU_ISA?): {cpu}"
    return True, f"CPU has native bf16 ({'AMX' if torch.cpu._is_amx_tile_supported() else 'AVX512-BF16'}): {cpu}"


# torch's int8 engines, in the order `int8_engine` prefers them. Both x86 engines quantise alike and sum int8 products
# in int32 (embeddings equal up to rounding); oneDNN's dynamic linear is the faster of the two where measured
# (docs/performance.md, `benchmarks/bench_int8.py --int8-engines`), and oneDNN has AMX int8 kernels. "x86" (fbgemm
# for these linears) is the fallback where a build has no oneDNN; qnnpack is Arm's.
INT8_ENGINES = ("onednn", "x86", "fbgemm", "qnnpack")


def int8_engine() -> str:
    """torch's quantised-kernel engine for int8 on this CPU: the first of `INT8_ENGINES` this build supports ("onednn"
    on x86 builds, "qnnpack" on Arm); a clear error where it has none."""
    engines = torch.backends.quantized.supported_engines
    arm = platform.machine().lower() in ("arm64", "aarch64")
    for engine in ("qnnpack",) if arm else INT8_ENGINES:
        if engine in engines:
            return engine
    raise RuntimeError(f"this torch build has no int8 CPU engine (supported: {engines}); use precision fp32")


def int8_description(engine: str | None = None) -> str:
    """What int8 means here (`quantization.py`), for the precision line and the results (`engine`: default
    `int8_engine()`)."""
    return (
        f"torch.ao dynamic int8, {engine or int8_engine()} engine: WavLM's linears, its encoder's convolutions after "
        "the first, and the fusion; the rest fp32"
    )


@dataclass(frozen=True)
class Precision:
    """A resolved compute precision: `name` is "fp32", "bf16" or "fp16" (the last two run under autocast; weights stay
    fp32), or "int8" (the model's int8 twin runs, `quantization.model_for_precision`; activations outside its
    linears stay fp32), `reason` says why it was chosen. `str(precision)` is the line to log."""

    name: str
    device_type: str
    reason: str
    requested: str = "auto"

    @property
    def dtype(self) -> torch.dtype:
        return PRECISION_DTYPES[self.name]

    @property
    def accelerate_mixed_precision(self) -> str:
        """The matching `Accelerator(mixed_precision=...)` value."""
        if self.name == "int8":
            raise ValueError("int8 is for inference; train in fp32 or bf16")
        return "no" if self.name == "fp32" else self.name

    def autocast(self):
        """Autocast for bf16/fp16, nothing for fp32 and int8."""
        if self.name in ("fp32", "int8"):
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def to_dict(self) -> dict:
        return {"precision": self.name, "requested": self.requested, "device": self.device_type, "reason": self.reason}

    def __str__(self) -> str:
        return f"precision: {self.name} ({self.reason})"


def resolve_precision(requested: str | None = "auto", device: str | torch.device = "cpu", training: bool = False):
    """Turns a requested precision ("auto", "fp32"/"no", "bf16", "fp16" or their torch names, or "int8" for CPU
    inference) into a [`Precision`].

    `auto` on CUDA: bf16 where the GPU supports it, else fp16 for training (Accelerate adds the grad scaler) and fp32
    for inference. `auto` on a CPU: bf16 only where it runs natively ([`cpu_native_bf16`]), else fp32. An explicit
    bf16 on a CPU without native bf16 runs, with a warning; fp16 on a CPU is refused. int8 is never chosen by `auto`:
    asked for, it runs dynamic int8 linears on a CPU (`quantization.py`); for training or on a GPU it is refused.
    """
    key = "auto" if requested is None else str(requested).lower()
    if key not in INFERENCE_PRECISION_ALIASES:
        raise ValueError(f"unknown precision {requested!r}; choose one of {sorted(INFERENCE_PRECISION_ALIASES)}")
    name = INFERENCE_PRECISION_ALIASES[key]
    device_type = torch.device(device).type
    if name == "int8":
        if training:
            raise ValueError("int8 is for inference; train in fp32 or bf16")
        if device_type != "cpu":
            raise ValueError(f"int8 runs on the CPU, not {device_type}: use --device cpu, or bf16/fp32 on a GPU")
        return Precision("int8", "cpu", f"asked for: {int8_description()}; {describe_cpu()}", key)
    if device_type == "cuda":
        bf16_ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
        if name == "auto":
            if bf16_ok:
                return Precision("bf16", "cuda", f"GPU supports bf16: {gpu}", key)
            fallback = "fp16" if training else "fp32"
            purpose = "training" if training else "inference"
            return Precision(fallback, "cuda", f"GPU has no bf16, {fallback} for {purpose}: {gpu}", key)
        if name == "bf16" and not bf16_ok:
            warnings.warn(
                f"bf16 was asked for, but this GPU does not support it ({gpu}); expect errors or slow emulation"
            )
        return Precision(name, "cuda", f"asked for: {gpu}", key)
    if device_type != "cpu":
        return Precision("fp32" if name == "auto" else name, device_type, f"asked for on {device_type}", key)
    native, why = cpu_native_bf16()
    if name == "auto":
        return Precision("bf16" if native else "fp32", "cpu", why, key)
    if name == "fp16":
        raise ValueError(
            "fp16 is for CUDA GPUs; on a CPU use bf16 (fast where the CPU has AMX or AVX512-BF16) or fp32"
        )
    if name == "bf16" and not native:
        warnings.warn(
            f"bf16 was asked for on a CPU without native bf16 ({why}): it runs, several times slower than fp32"
        )
        return Precision("bf16", "cpu", f"asked for, emulated: {why}", key)
    return Precision(name, "cpu", f"asked for; {why}", key)


__all__ = [
    "INFERENCE_PRECISION_ALIASES",
    "INT8_ENGINES",
    "PRECISION_ALIASES",
    "PRECISION_DTYPES",
    "Precision",
    "cpu_flags",
    "cpu_native_bf16",
    "describe_cpu",
    "int8_description",
    "int8_engine",
    "int8_products_may_saturate",
    "resolve_precision",
]
