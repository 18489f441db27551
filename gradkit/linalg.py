"""``gk.linalg``: the Array API standard's linalg extension (and NumPy's ``np.linalg``
names), every function differentiable where the math is.

Matrix functions take stacks of matrices (the last two axes). What is here:
``inv solve det slogdet cholesky matrix_norm vector_norm norm diagonal trace cross
matrix_power`` plus ``matmul matrix_transpose outer tensordot vecdot`` (also at the
top level of ``gk``). Not here (they need an eigen- or singular value decomposition):
``eigh eigvalsh svd svdvals qr pinv matrix_rank``.

>>> import gradkit as gk
>>> A = gk.tensor([[3.0, 1.0], [1.0, 2.0]], dtype="float64", requires_grad=True)
>>> gk.linalg.det(A).backward()          # d det / dA = det * inv(A)^T
>>> A.grad.numpy().round(12).tolist()
[[2.0, -1.0], [-1.0, 3.0]]
"""
from __future__ import annotations

from gradkit.ops.linalg import (SlogdetResult, cholesky, cross, det, diagonal, inv,  # noqa: F401
                                logabsdet, matmul, matrix_norm, matrix_power, norm, outer,
                                slogdet, slogdet_sign, solve, tensordot, trace, vecdot,
                                vector_norm)
from gradkit.ops.shape import matrix_transpose  # noqa: F401

__all__ = ["SlogdetResult", "cholesky", "cross", "det", "diagonal", "inv", "logabsdet",
           "matmul", "matrix_norm", "matrix_power", "matrix_transpose", "norm", "outer",
           "slogdet", "slogdet_sign", "solve", "tensordot", "trace", "vecdot", "vector_norm"]
