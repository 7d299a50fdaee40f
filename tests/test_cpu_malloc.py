"""keep_freed_memory: large freed tensors are reused from the heap instead of faulting in fresh pages."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import resource, sys, torch
    from wavlmrawnet.cpu_malloc import keep_freed_memory
    if sys.argv[1] == "tuned":
        assert keep_freed_memory()
    for _ in range(2):
        torch.ones(16 << 20).sum()  # 64 MB tensors first, so that a tuned heap already holds the memory
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        torch.ones(16 << 20).sum()  # 64 MB allocated and freed each time
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
    """
)


def page_faults_per_allocation(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
@pytest.mark.slow
def test_freed_memory_is_reused_without_page_faults():
    default = page_faults_per_allocation("default")
    tuned = page_faults_per_allocation("tuned")
    assert default > 10_000  # 64 MB = 16,384 pages of 4 KiB, faulted in again after every mmap
    assert tuned < 0.1 * default, (default, tuned)
