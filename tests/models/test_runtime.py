"""Start-up tuning and device resolution."""

from __future__ import annotations

import pytest
import torch

from comicid.errors import ConfigError
from comicid.runtime import configure_threads, resolve_device, tune_allocator


def test_tune_allocator_is_idempotent() -> None:
    assert tune_allocator() == tune_allocator()


def test_configure_threads() -> None:
    try:
        assert configure_threads(2) == 2 and torch.get_num_threads() == 2
    finally:
        configure_threads(1)
    with pytest.raises(ConfigError):
        configure_threads(0)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_cuda_without_cuda_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")
