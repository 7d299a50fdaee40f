"""keep_freed_memory: large freed tensors are reused from the heap instead of faulting in fresh pages."""

import json
import subprocess
import sys
import textwrap

import pytest

# One fresh process measures glibc's default heap, then the tuned one (the tuning applies from the call on).
SCRIPT = textwrap.dedent(
    """
    import json, resource, torch
    from wavlmrawnet.cpu_malloc import keep_freed_memory

    def faults_per_allocation():
        for _ in range(2):
            torch.ones(16 << 20).sum()  # 64 MB tensors first, so that a tuned heap already holds the memory
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(10):
            torch.ones(16 << 20).sum()  # 64 MB allocated and freed each time
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10

    default = faults_per_allocation()
    assert keep_freed_memory()
    print(json.dumps([default, faults_per_allocation()]))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
@pytest.mark.slow
def test_freed_memory_is_reused_without_page_faults():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    default, tuned = json.loads(out.stdout.strip().splitlines()[-1])
    assert default > 10_000  # 64 MB = 16,384 pages of 4 KiB, faulted in again after every mmap
    assert tuned < 0.1 * default, (default, tuned)
