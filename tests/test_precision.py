"""Precision chosen by the hardware: `auto` means bf16 only where it runs natively, and the choice says why."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest
import torch

from wavlmrawnet.precision import Precision, describe_cpu, resolve_precision

# Caps torch's and oneDNN's kernels at AVX2: on any x86 CPU this behaves like an AVX2-only machine (bf16 emulated).
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
x86_only = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 ISA caps")


def resolve_in_subprocess(requested: str, env: dict) -> tuple[dict, str]:
    script = (
        "import json; from wavlmrawnet.precision import resolve_precision;"
        f"p = resolve_precision({requested!r}, 'cpu'); print(json.dumps(p.to_dict()))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], env=dict(os.environ, **env), capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1]), completed.stderr


@x86_only
@pytest.mark.slow
def test_auto_is_fp32_on_a_cpu_without_native_bf16_and_says_why():
    resolved, _ = resolve_in_subprocess("auto", AVX2_ONLY)
    assert resolved["precision"] == "fp32"
    assert "bf16" in resolved["reason"] and "cores" in resolved["reason"], resolved["reason"]
    assert any(word in resolved["reason"] for word in ("no native bf16", "capped below AVX-512")), resolved["reason"]


@x86_only
@pytest.mark.slow
def test_explicit_bf16_without_native_support_runs_with_a_warning():
    resolved, stderr = resolve_in_subprocess("bf16", AVX2_ONLY)
    assert resolved["precision"] == "bf16" and "emulated" in resolved["reason"]
    assert "several times slower" in stderr


def test_names_and_aliases():
    for name in ("no", "fp32", "float32"):
        assert resolve_precision(name, "cpu").name == "fp32"
    assert resolve_precision("bfloat16", "cpu").name == "bf16"
    assert resolve_precision("NO", "cpu").accelerate_mixed_precision == "no"
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", "cpu")
    with pytest.raises(ValueError, match="fp16 is for CUDA"):
        resolve_precision("fp16", "cpu")


def test_auto_on_cuda_follows_the_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Some GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "cuda", training=True).name == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", "cuda", training=True).name == "fp16"  # Accelerate adds the grad scaler
    assert resolve_precision("auto", "cuda", training=False).name == "fp32"
    with pytest.warns(UserWarning, match="does not support it"):
        resolve_precision("bf16", "cuda")


def test_autocast_matches_the_precision():
    with Precision("fp32", "cpu", "test").autocast():
        assert not torch.is_autocast_enabled("cpu")
    with Precision("bf16", "cpu", "test").autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_cpu_description_names_the_deciding_flags():
    text = describe_cpu()
    assert f"{os.cpu_count()} cores" in text and "torch kernels" in text
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert "avx512_bf16" in text and "amx" in text and "vnni" in text  # present or "no ...": either way named
