"""Free native heap memory back to the OS (docs/runtime.md, "Soak").

glibc keeps memory that was allocated and freed (ONNX Runtime's intermediates, the windows'
arrays, in several per-thread heaps) for reuse, so a long run's RSS steps up now and then and
stays there. ``malloc_trim(0)`` gives the free pages back; the pipeline calls it every
``PipelineConfig.trim_every_s``. It takes ~10 ms when there are 100 MB to give back and
~0.02 ms when there is nothing. Without glibc (macOS, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import sys


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library this interpreter runs on
    except (OSError, AttributeError):
        return None  # a C library without malloc_trim (musl)
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Ask glibc to return its free heap pages to the OS; False where there is no glibc."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
