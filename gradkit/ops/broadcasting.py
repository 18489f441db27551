"""Gradient plumbing shared by every op family: undo broadcasting, name reduced axes.

Defined in :mod:`gradkit.ops.shape` (they are built from its ops: sum_to, astype), so
the shape family does not import this module back; the names stay here. A reduction's
gradient goes back to its input's shape through the reduce family's ``sum_backward``
and ``mean_backward`` ops.
"""
from gradkit.ops.shape import keepdims_shape, normalize_axes, unbroadcast

__all__ = ["keepdims_shape", "normalize_axes", "unbroadcast"]
