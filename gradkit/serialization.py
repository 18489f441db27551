"""Saving and loading state dicts (name -> NumPy array), never with pickle.

The file suffix picks the format: ``.safetensors`` (the ``safetensors`` package,
``pip install safetensors``) or ``.npz`` (NumPy's zip of ``.npy`` files, read
and written with ``allow_pickle=False``). Saving writes a temporary file in the
same directory and renames it over the target, so an interrupted save leaves the
previous file intact; a failed one says why (permission denied, no space left...).
Loading checks the file and raises :class:`SerializationError` naming the path and
the problem; it never runs code from the file, and it checks the sizes a file
declares before allocating them (:func:`load_limit`).

>>> import os, tempfile
>>> import gradkit as gk
>>> model = gk.nn.Linear(3, 2, seed=0)
>>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
>>> gk.save(model.state_dict(), path)
>>> sorted(gk.load(path))
['bias', 'weight']
"""
from __future__ import annotations

import errno
import math
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

# How much memory a load may allocate (see :func:`load_limit`).
LOAD_LIMIT_ENV = "GRADKIT_LOAD_MAX_BYTES"
LOAD_LIMIT_RATIO = 100
LOAD_LIMIT_FLOOR = 64 * 2**20


class SerializationError(GradkitError, ValueError):
    """A file that is not a valid state dict, or a state dict that cannot be saved."""


class MissingDependencyError(GradkitError, ImportError):
    """An optional package a feature needs is not installed."""


class LoadLimitError(SerializationError):
    """A file that would make :func:`load` allocate more than :func:`load_limit` allows."""


# -- file system errors, said in the user's terms ----------------------------------------

_OS_REASONS = {
    errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
    errno.EISDIR: "it is a directory", errno.ENOTDIR: "a part of the path is not a directory",
    errno.ENOENT: "no such file or directory", errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system",
    errno.EFBIG: "file too large",
}


def os_error(exc: OSError, message: str) -> OSError:
    """An OSError of ``exc``'s kind and errno whose text is ``message: reason``.

    >>> import errno
    >>> str(os_error(OSError(errno.ENOSPC, "No space left"), "save model.npz"))
    'save model.npz: no space left on the device'
    """
    reason = _OS_REASONS.get(exc.errno) or exc.strerror or str(exc)
    error = type(OSError(exc.errno, ""))(f"{message}: {reason}")
    error.errno = exc.errno
    return error


def open_for_reading(path: Path, where: str) -> Any:
    """``path`` opened in binary mode; a directory, a missing, special or unreadable file
    is an OSError saying so, prefixed with ``where``.

    >>> open_for_reading(Path("/"), "load /")
    Traceback (most recent call last):
    IsADirectoryError: load /: is a directory, not a file
    """
    if path.is_dir():
        raise IsADirectoryError(f"{where}: is a directory, not a file")
    if not path.exists():
        raise FileNotFoundError(f"{where}: no such file")
    if not path.is_file():  # a FIFO or a device: reading it could block or never end
        raise OSError(f"{where}: not a regular file")
    try:
        return open(path, "rb")
    except OSError as exc:
        raise os_error(exc, f"{where}: cannot read it") from None


def describe_content(head: bytes) -> str:
    """What the first bytes of a file look like, for an error message.

    >>> describe_content(b"x,y\\n1,2")
    'it looks like a text file'
    """
    if not head:
        return "the file is empty"
    if head.startswith(b"\x93NUMPY"):
        return "it holds a single array (an .npy file)"
    if head[:1] == b"\x80":
        return "it looks like a Python pickle"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "it starts with unknown binary data"
    if all(c.isprintable() or c.isspace() for c in text):
        return "it looks like a text file"
    return "it starts with unknown binary data"


# -- bounding what a load allocates -------------------------------------------------------

def load_limit(file_size: int, max_bytes: int | None = None) -> int:
    """The most bytes loading a file of ``file_size`` bytes may allocate.

    ``max_bytes`` when given, else the environment variable ``GRADKIT_LOAD_MAX_BYTES``
    (a number of bytes) when set, else ``max(100 * file_size, 64 MiB)``: a compressed
    archive may not expand to more than 100 times its size (small files may always
    use 64 MiB).

    >>> load_limit(10**9), load_limit(10**9, max_bytes=2**40)
    (100000000000, 1099511627776)
    """
    if max_bytes is not None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes: expected a whole number of bytes >= 0, got "
                             f"{max_bytes!r}")
        return max_bytes
    text = os.environ.get(LOAD_LIMIT_ENV, "").strip()
    if not text:
        return max(LOAD_LIMIT_RATIO * file_size, LOAD_LIMIT_FLOOR)
    try:
        limit = float(text)
    except ValueError:
        limit = -1.0
    if not (math.isfinite(limit) and limit >= 0):
        raise ValueError(f"{LOAD_LIMIT_ENV}={text!r}: expected a number of bytes, like 8e9")
    return int(limit)


def check_load_size(where: str, what: str, needed: int, limit: int,
                    error: type[Exception] = LoadLimitError) -> None:
    """Raise ``error`` when ``what`` needs more than ``limit`` bytes, saying how to allow it."""
    if needed > limit:
        raise error(f"{where}: {what} would need {needed} bytes, more than the {limit} bytes "
                    f"a load may allocate (by default {LOAD_LIMIT_RATIO}x the file's size, at "
                    f"least {LOAD_LIMIT_FLOOR // 2**20} MiB); to allow it, pass max_bytes= or "
                    f"set {LOAD_LIMIT_ENV}")


def _npy_header(member: Any) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype an .npy stream declares, read without reading its data."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    else:  # format 3.0 (utf-8 field names): NumPy has no public reader for its header
        shape, _, dtype = np.lib.format._read_array_header(member, version)
    return shape, dtype


def check_npz_members(archive: zipfile.ZipFile, names: list[str], where: str, limit: int,
                      error: type[Exception], limit_error: type[Exception]) -> None:
    """Before reading ``names`` from ``archive``: their uncompressed sizes fit ``limit``
    (else ``limit_error``) and each .npy header declares no more data than its member
    holds (else ``error``)."""
    infos = [archive.getinfo(name) for name in names]
    check_load_size(where, f"reading {', '.join(repr(n) for n in names)} (uncompressed)",
                    sum(info.file_size for info in infos), limit, limit_error)
    for info in infos:
        try:
            with archive.open(info) as member:
                shape, dtype = _npy_header(member)
        except Exception as exc:  # not .npy, bad header, damaged zip data
            raise error(f"{where}: member {info.filename!r} has no valid .npy header: "
                        f"{type(exc).__name__}: {exc}") from None
        declared = math.prod(shape) * dtype.itemsize
        if declared > info.file_size:
            raise error(f"{where}: member {info.filename!r} declares a {dtype} array of shape "
                        f"{shape} ({declared} bytes) but holds only {info.file_size} bytes")


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


def _read_npz(path: Path, max_bytes: int | None) -> dict[str, np.ndarray]:
    where = f"load {path}"
    with open_for_reading(path, where) as file:
        head = file.read(64)
        file.seek(0)
        try:
            archive = zipfile.ZipFile(file)
        except OSError as exc:
            raise os_error(exc, f"{where}: cannot read it") from None
        except Exception as exc:  # BadZipFile, or odd bytes that confuse the zip reader
            raise SerializationError(f"{where}: not an .npz archive (a zip of .npy files): "
                                     f"{describe_content(head)} ({exc})") from None
        with archive:
            return _read_npz_members(archive, path, load_limit(os.fstat(file.fileno()).st_size,
                                                               max_bytes))


def _read_npz_members(archive: zipfile.ZipFile, path: Path, limit: int) -> dict[str, np.ndarray]:
    names = archive.namelist()
    for name in names:
        if not name.endswith(_NPY_SUFFIX):
            raise SerializationError(f"load {path}: member {name!r} is not an .npy array")
    check_npz_members(archive, names, f"load {path}", limit, SerializationError, LoadLimitError)
    out: dict[str, np.ndarray] = {}
    for name in names:
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


# safetensors dtype names NumPy has (BF16 is converted, see _bf16_to_float32).
_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16,
                       "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
                       "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8,
                       "BOOL": np.bool_}


def _bf16_to_float32(data: bytes) -> np.ndarray:
    """bfloat16 values as float32, exactly: a bfloat16 is the upper 16 bits of a float32."""
    upper = np.frombuffer(data, dtype="<u2").astype(np.uint32)
    return (upper << 16).view(np.float32)


def _read_safetensors(path: Path, max_bytes: int | None) -> dict[str, np.ndarray]:
    _safetensors_numpy(path)
    import safetensors
    where = f"load {path}"
    with open_for_reading(path, where) as file:
        size = os.fstat(file.fileno()).st_size
        limit = load_limit(size, max_bytes)
        check_load_size(where, f"reading the file ({size} bytes)", size, limit)
        try:
            data = file.read()
        except OSError as exc:
            raise os_error(exc, f"{where}: cannot read it") from None
    try:
        tensors = safetensors.deserialize(data)
    except Exception as exc:  # SafetensorError: bad header, truncated data, ...
        raise SerializationError(f"{where}: not a valid .safetensors file: "
                                 f"{type(exc).__name__}: {exc}") from None
    unsupported = [f"{key!r} is {info['dtype']}" for key, info in sorted(tensors)
                   if info["dtype"] not in _SAFETENSORS_DTYPES and info["dtype"] != "BF16"]
    if unsupported:
        raise SerializationError(f"{where}: unsupported tensor dtypes: {', '.join(unsupported)}"
                                 f" (supported: {', '.join(_SAFETENSORS_DTYPES)}, and BF16, "
                                 "read as float32)")
    out = {}
    for key, info in tensors:
        if info["dtype"] == "BF16":
            array = _bf16_to_float32(info["data"])
        else:
            array = np.frombuffer(info["data"], dtype=_SAFETENSORS_DTYPES[info["dtype"]])
        out[key] = _checked_loaded(key, array.reshape(info["shape"]), path)
    return out


# -- the public functions --------------------------------------------------------------

FORMATS = (".safetensors", ".npz")


def _suffix(path: Path, action: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise SerializationError(f"{action} {path}: unknown file suffix {path.suffix!r}; "
                                 f"use one of {FORMATS}")
    return suffix


def write_atomically(path: Path, write: Callable[[Any], None], action: str = "save") -> None:
    """Call ``write(file)`` on a temporary binary file beside ``path``, then rename it over
    ``path``: readers see the old file or the new one, never a part. A failure is an
    OSError naming ``path`` (never the temporary file) and the reason."""
    where = f"{action} {path}"
    if path.is_dir():
        raise IsADirectoryError(f"{where}: cannot write it: it is a directory")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{where}: the directory {path.parent} does not exist")
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise os_error(exc, f"{where}: cannot write in {path.parent}") from None
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        try:
            temporary.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise os_error(exc, f"{where}: cannot write it") from None
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
        write_atomically(path, lambda file: _write_npz(arrays, file))
    else:
        _safetensors_numpy(path)  # fail before creating any file
        write_atomically(path, lambda file: _write_safetensors(arrays, file, path))


def load(path: str | os.PathLike, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Read a state dict written by :func:`save` (or any plain .npz / .safetensors file).

    Raises :class:`SerializationError` naming the path for a corrupt, truncated
    or foreign file (a pickle, an .npz with object arrays, a text file...), an
    OSError saying why a file cannot be read, and :class:`LoadLimitError` before
    allocating more than ``max_bytes`` (default: see :func:`load_limit`, at most
    100 times the file's size, at least 64 MiB; or ``GRADKIT_LOAD_MAX_BYTES``).
    safetensors BF16 tensors are read as float32 (exactly).

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
    read = _read_npz if suffix == ".npz" else _read_safetensors
    return read(path, max_bytes)
