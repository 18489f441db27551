"""Every op, grouped by family; importing this package fills the registry.

The public names exported here (and re-exported as ``gk.<name>``) are the
registered ops' functions under their registry names, plus the few public
functions that are not ops themselves (``split``, ``permute``, ``unbroadcast``)
and the Array API standard's (and NumPy's) other spellings of existing ops
(``pow`` for ``power``, ``concat`` for ``concatenate``, ``arcsin`` for ``asin``...).
Ops registered as ``linalg.<name>`` are exported by ``gradkit.linalg`` only.
"""
import sys as _sys

from gradkit.ops import (activation, elementwise, fused, linalg, loss, math,  # noqa: F401
                         optim_update, reduce, search, shape, transfer)
from gradkit.ops.broadcasting import unbroadcast
from gradkit.ops.shape import permute, split
from gradkit.registry import OPS as _OPS
from gradkit.tensor import bind_ops as _bind_ops

_TOP_LEVEL = sorted(name for name in _OPS if "." not in name)
for _name in _TOP_LEVEL:
    globals()[_name] = _OPS[_name].function

# Other names for the same functions: the standard's, then NumPy's.
ALIASES = {
    "neg": "negative", "pow": "power", "concat": "concatenate", "permute_dims": "transpose",
    "arcsin": "asin", "arccos": "acos", "arctan": "atan", "arctan2": "atan2",
    "arcsinh": "asinh", "arccosh": "acosh", "arctanh": "atanh", "invert": "bitwise_invert",
    "left_shift": "bitwise_left_shift", "right_shift": "bitwise_right_shift",
    "mod": "remainder",
}
for _alias, _name in ALIASES.items():
    globals()[_alias] = _OPS[_name].function

__all__ = _TOP_LEVEL + sorted(ALIASES) + ["permute", "split", "unbroadcast"]

# Tensor's operators and methods (x + y, x.sum(), ...) call the ops through this module,
# bound here: gradkit.tensor sits below the ops and does not import them.
_bind_ops(_sys.modules[__name__])
