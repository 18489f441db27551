"""Fails when a gradkit module reads another module's private names.

A name that starts with one underscore belongs to the module that defines it (assigns
``self._x`` / ``obj._x``, defines ``def _x`` or ``class _x``, or binds ``_x`` at
module level). Any other module that reaches ``something._x`` is reported, with one
exception: the core modules (dispatch, tape, grad mode, Tensor) share the Tensor's
fast-path fields below, which are read on every op and so stay plain slots.

    python ci/check_private_names.py [package_dir]    # default: gradkit
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

CORE_MODULES = {"registry.py", "autodiff.py", "grad_mode.py", "tensor.py"}
TENSOR_CORE_FIELDS = {"_requires_grad", "_grad", "_version"}
OUTSIDE_GRADKIT = {"_core", "_read_array_header", "_exit"}  # NumPy's; os._exit (documented)


def defined_names(tree: ast.AST) -> set[str]:
    """The private names a module defines: attributes it assigns, functions, classes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries, setattr(obj, "_x", ...)
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def foreign_reads(path: Path) -> list[str]:
    """``file:line: obj._name`` for each private name this module reads but does not own."""
    tree = ast.parse(path.read_text(), str(path))
    own = defined_names(tree)
    if path.name in CORE_MODULES:
        own |= TENSOR_CORE_FIELDS
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__") and node.attr not in own
                and node.attr not in OUTSIDE_GRADKIT):
            found.append(f"{path}:{node.lineno}: .{node.attr}")
    return found


def main(package_dir: str = "gradkit") -> int:
    problems = [line for path in sorted(Path(package_dir).rglob("*.py"))
                for line in foreign_reads(path)]
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} read(s) of another module's private names")
        return 1
    print(f"no module of {package_dir} reads another's private names")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
