"""DLPack with PyTorch (skipped where PyTorch is not installed, as in CI)."""
from __future__ import annotations

import numpy as np
import pytest

import gradkit as gk


def test_from_dlpack_shares_memory_with_pytorch(backend):
    torch = pytest.importorskip("torch")
    if backend.name not in ("numpy", "numba"):
        pytest.skip("PyTorch CPU tensors share memory with host backends only")
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    x = gk.from_dlpack(t)
    assert x.backend == backend.name and x.shape == (2, 3) and x.dtype == np.float32
    t[0, 0] = 42.0
    assert x.numpy()[0, 0] == 42.0  # zero-copy
    back = torch.from_dlpack(gk.tensor(np.arange(4.0)))
    assert back.tolist() == [0.0, 1.0, 2.0, 3.0]
