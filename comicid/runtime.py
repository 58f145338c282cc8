"""Start-up tuning for CPU inference and training, and device resolution.

Two platform traps cost more than any model choice (measured on 2-core machines):

* glibc's malloc returns freed memory to the kernel after every batch, and the next batch faults it
  back in: embedding runs about 2x slower. :func:`tune_allocator` raises the mmap/trim thresholds
  through ``mallopt`` (the same as the ``MALLOC_*_`` environment variables, but without needing a
  wrapper script).
* Oversubscription: several torch processes each running as many threads as there are cores run
  15-30x slower, not 2x. Worker processes (DataLoader, pytest-xdist) must use one intra-op thread;
  :func:`configure_threads` sets that.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

import torch

from comicid.errors import ConfigError

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 1 << 30  # 1 GiB: batches of activations stay on the heap, reused
_TRIM_THRESHOLD = (1 << 31) - 1  # mallopt takes an int: the largest, i.e. almost never trim
_TOP_PAD = 256 << 20

_allocator_tuned = False


def tune_allocator() -> bool:
    """Keep freed memory in the process on glibc; returns whether anything was changed.

    A no-op (``False``) on other C libraries (musl, macOS, Windows). Safe to call more than once.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = ((_M_MMAP_THRESHOLD, _MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD),
                (_M_TOP_PAD, _TOP_PAD))
    _allocator_tuned = all(mallopt(parameter, value) == 1 for parameter, value in settings)
    return _allocator_tuned


def available_cpus() -> int:
    """CPU cores this process may run on (respects affinity masks and container cpusets)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def configure_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to ``n`` (default: all available cores); returns the count.

    Call with ``n=1`` in every worker process; keep the total number of busy threads at the number
    of cores.
    """
    count = available_cpus() if n is None else int(n)
    if count < 1:
        raise ConfigError(f"thread count must be at least 1, got {count}")
    torch.set_num_threads(count)
    return count


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when present, else CPU).

    Raises:
        ConfigError: an unknown device string, or CUDA requested on a machine without it.
    """
    text = str(device).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(text)
    except RuntimeError:
        raise ConfigError(f"unknown device '{device}'; use cpu, cuda, cuda:N or auto") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{device}' requested but CUDA is not available on this "
                              f"machine; use --device cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(f"device '{device}' does not exist; this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)")
    elif resolved.type != "cpu":
        raise ConfigError(f"unsupported device '{device}'; use cpu, cuda, cuda:N or auto")
    return resolved
