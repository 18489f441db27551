"""Every op, grouped by family; importing this package fills the registry.

The public names exported here (and re-exported as ``gk.<name>``) are the
registered ops' functions under their registry names, plus the few public
functions that are not ops themselves (``split``, ``permute``, ``unbroadcast``).
"""
from gradkit.ops import (activation, elementwise, fused, linalg, loss, optim_update,  # noqa: F401
                         reduce, shape, transfer)
from gradkit.ops.broadcasting import unbroadcast
from gradkit.ops.shape import permute, split
from gradkit.registry import OPS as _OPS

for _name, _entry in _OPS.items():
    globals()[_name] = _entry.function
neg = negative = _OPS["negative"].function  # noqa: F821  (NumPy's name and the short one)

__all__ = sorted(_OPS) + ["neg", "permute", "split", "unbroadcast"]
