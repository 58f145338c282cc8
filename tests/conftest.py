"""Shared test set-up.

One intra-op thread per test process: pytest-xdist runs two workers on two cores, and two torch
processes with two threads each run 15-30x slower than one thread each (see docs/DEVELOPMENT.md).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a hard dependency; keeps collection errors readable
    pass
