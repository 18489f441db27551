"""Saving and loading state dicts (name -> NumPy array), never with pickle.

The file suffix picks the format: ``.safetensors`` (the ``safetensors`` package,
``pip install safetensors``) or ``.npz`` (NumPy's zip of ``.npy`` files, read
and written with ``allow_pickle=False``). Saving writes a temporary file in the
same directory and renames it over the target, so an interrupted save leaves the
previous file intact. Loading checks the file and raises
:class:`SerializationError` naming the path and the problem; it never runs code
from the file.

>>> import os, tempfile
>>> import gradkit as gk
>>> model = gk.nn.Linear(3, 2, seed=0)
>>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
>>> gk.save(model.state_dict(), path)
>>> sorted(gk.load(path))
['bias', 'weight']
"""
from __future__ import annotations

import os
import secrets
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from gradkit.errors import GradkitError

# Array kinds a state dict may hold: bool, signed and unsigned ints, floats.
_NUMERIC_KINDS = "biuf"
_NPY_SUFFIX = ".npy"


class SerializationError(GradkitError, ValueError):
    """A file that is not a valid state dict, or a state dict that cannot be saved."""


class MissingDependencyError(GradkitError, ImportError):
    """An optional package a feature needs is not installed."""


# -- checking what is saved and loaded ----------------------------------------------

def _host_arrays(state_dict: Mapping[str, Any], path: Path) -> dict[str, np.ndarray]:
    """``state_dict`` as C-contiguous numeric NumPy arrays, or a SerializationError."""
    from gradkit.tensor import Tensor
    if not isinstance(state_dict, Mapping):
        raise SerializationError(f"save {path}: expected a dict of arrays, got "
                                 f"{type(state_dict).__name__}")
    arrays = {}
    for key, value in state_dict.items():
        if not isinstance(key, str) or not key:
            raise SerializationError(f"save {path}: keys must be non-empty strings, got {key!r}")
        if isinstance(value, Tensor):
            value = value.numpy()
        if isinstance(value, np.generic):
            value = np.asarray(value)
        if not isinstance(value, np.ndarray):
            raise SerializationError(f"save {path}: {key!r} must be a NumPy array or Tensor, "
                                     f"got {type(value).__name__}")
        if value.dtype.kind not in _NUMERIC_KINDS:
            raise SerializationError(f"save {path}: {key!r} has dtype {value.dtype}; only "
                                     "bool, integer and float arrays can be saved")
        arrays[key] = value if value.flags.c_contiguous else value.copy(order="C")
    return arrays


def _checked_loaded(key: str, array: Any, path: Path) -> np.ndarray:
    if not isinstance(array, np.ndarray) or array.dtype.kind not in _NUMERIC_KINDS:
        raise SerializationError(f"load {path}: entry {key!r} is not a numeric array "
                                 f"(got {getattr(array, 'dtype', type(array).__name__)})")
    return array


# -- .npz -------------------------------------------------------------------------------

def _write_npz(arrays: dict[str, np.ndarray], file: Any) -> None:
    """NumPy's .npz layout (a zip of ``<key>.npy``), written without pickle."""
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, array in arrays.items():
            with archive.open(key + _NPY_SUFFIX, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        archive = zipfile.ZipFile(path)
    except Exception as exc:  # BadZipFile, or odd bytes that confuse the zip reader
        raise SerializationError(f"load {path}: not an .npz archive (a zip of .npy "
                                 f"files): {exc}") from None
    out: dict[str, np.ndarray] = {}
    with archive:
        for name in archive.namelist():
            if not name.endswith(_NPY_SUFFIX):
                raise SerializationError(f"load {path}: member {name!r} is not an .npy array")
            key = name[:-len(_NPY_SUFFIX)]
            try:
                with archive.open(name) as member:
                    array = np.lib.format.read_array(member, allow_pickle=False)
            except Exception as exc:  # truncated, corrupt, or pickled (object) data
                raise SerializationError(f"load {path}: entry {key!r} cannot be read: "
                                         f"{type(exc).__name__}: {exc}") from None
            if key in out:
                raise SerializationError(f"load {path}: entry {key!r} appears twice")
            out[key] = _checked_loaded(key, array, path)
    return out


# -- .safetensors ---------------------------------------------------------------------

def _safetensors_numpy(path: Path) -> Any:
    try:
        import safetensors.numpy
    except ImportError:
        raise MissingDependencyError(
            f"{path}: the .safetensors format needs the safetensors package: "
            'pip install safetensors (or pip install "gradkit[safetensors]"); '
            "or save to a .npz file instead") from None
    return safetensors.numpy


def _write_safetensors(arrays: dict[str, np.ndarray], file: Any, path: Path) -> None:
    file.write(_safetensors_numpy(path).save(arrays))


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    library = _safetensors_numpy(path)
    try:
        loaded = library.load(path.read_bytes())
    except Exception as exc:  # SafetensorError: bad header, truncated data, ...
        raise SerializationError(f"load {path}: not a valid .safetensors file: "
                                 f"{type(exc).__name__}: {exc}") from None
    return {key: _checked_loaded(key, array, path) for key, array in loaded.items()}


# -- the public functions --------------------------------------------------------------

FORMATS = (".safetensors", ".npz")


def _suffix(path: Path, action: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise SerializationError(f"{action} {path}: unknown file suffix {path.suffix!r}; "
                                 f"use one of {FORMATS}")
    return suffix


def _write_atomically(path: Path, write: Callable[[Any], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``."""
    if not path.parent.is_dir():
        raise FileNotFoundError(f"save {path}: the directory {path.parent} does not exist")
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def save(state_dict: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write ``state_dict`` (name -> NumPy array or Tensor) to ``path``, atomically.

    The suffix picks the format: ``.safetensors`` or ``.npz``. Only bool,
    integer and float arrays are saved; nothing is pickled.

    >>> import os, tempfile
    >>> import numpy as np
    >>> import gradkit as gk
    >>> path = os.path.join(tempfile.mkdtemp(), "weights.safetensors")
    >>> gk.save({"w": np.ones((2, 2), dtype=np.float32)}, path)
    >>> gk.load(path)["w"].dtype
    dtype('float32')
    """
    path = Path(path)
    suffix = _suffix(path, "save")
    arrays = _host_arrays(state_dict, path)
    if suffix == ".npz":
        _write_atomically(path, lambda file: _write_npz(arrays, file))
    else:
        _safetensors_numpy(path)  # fail before creating any file
        _write_atomically(path, lambda file: _write_safetensors(arrays, file, path))


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a state dict written by :func:`save` (or any plain .npz / .safetensors file).

    Raises :class:`SerializationError` naming the path for a corrupt, truncated
    or foreign file (a pickle, an .npz with object arrays, a text file...).

    >>> import os, tempfile
    >>> import numpy as np
    >>> import gradkit as gk
    >>> path = os.path.join(tempfile.mkdtemp(), "state.npz")
    >>> gk.save({"step": np.array(3)}, path)
    >>> int(gk.load(path)["step"])
    3
    """
    path = Path(path)
    suffix = _suffix(path, "load")
    if not path.is_file():
        raise FileNotFoundError(f"load {path}: no such file")
    return _read_npz(path) if suffix == ".npz" else _read_safetensors(path)
