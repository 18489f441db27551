"""Gradient plumbing shared by every op family: undo broadcasting, restore reduced axes.

Defined in :mod:`gradkit.ops.shape` (they are built from its ops: sum_to, broadcast_to,
reshape), so the shape family does not import this module back; the names stay here.
"""
from gradkit.ops.shape import expand_reduced, keepdims_shape, normalize_axes, unbroadcast

__all__ = ["expand_reduced", "keepdims_shape", "normalize_axes", "unbroadcast"]
