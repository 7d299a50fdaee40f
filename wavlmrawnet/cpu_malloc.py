"""CPU training spends much of its time in page faults unless glibc keeps freed tensor memory for reuse."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

# mallopt parameters, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_BYTES = 1 << 30  # only blocks above 1 GiB get their own mmap
TRIM_THRESHOLD_BYTES = (1 << 31) - 1
TOP_PAD_BYTES = 256 << 20


def keep_freed_memory() -> bool:
    """Makes glibc serve large blocks from its heap and keep freed memory, instead of mmap/munmap per allocation.

    By default every tensor above 32 MB (and, after glibc's adaptive threshold, above a few MB) is a fresh `mmap`
    whose pages fault in one by one; a training step allocates and frees many such tensors, so a third to half of
    a CPU step can be kernel time. Same as `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` /
    `MALLOC_TOP_PAD_` in the environment. The price: the process keeps its peak heap instead of returning it.
    Returns False (and changes nothing) where the C library has no `mallopt` (not glibc).
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = all(
        mallopt(option, value) == 1
        for option, value in (
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
            (M_TOP_PAD, TOP_PAD_BYTES),
        )
    )
    logger.info("glibc malloc keeps freed memory (mmap threshold %d MB): %s", MMAP_THRESHOLD_BYTES >> 20, done)
    return done
