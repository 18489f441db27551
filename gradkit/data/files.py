"""Reading your own data: NumPy ``.npz`` archives and MNIST-style IDX files.

Both return ``(X, y)``: ``X`` float32 ``(N, features)`` (images are flattened),
``y`` int64 ``(N,)`` class labels. Every error names the file and what is wrong.
"""
from __future__ import annotations

import gzip
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from gradkit.errors import GradkitError
from gradkit.serialization import (check_load_size, check_npz_members, describe_content,
                                   load_limit, open_for_reading)

X_KEYS = ("x", "X", "data", "images", "x_train")
Y_KEYS = ("y", "Y", "labels", "targets", "y_train")

IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (count, rows, columns)
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (count)


class DatasetError(GradkitError, ValueError):
    """A data file or array that cannot be used as a data set (says which and why)."""


def load_npz(path: str | os.PathLike, x_key: str | None = None, y_key: str | None = None,
             max_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels from a NumPy ``.npz`` archive (never unpickles anything).

    ``x_key``/``y_key`` name the arrays; by default the first of ``x, X, data,
    images, x_train`` and of ``y, Y, labels, targets, y_train`` that is present.
    Features are flattened to ``(N, features)`` float32 (uint8 images are scaled
    to [0, 1]); labels must be non-negative integers (integral floats are fine).
    Before reading, the two arrays' sizes are checked against ``max_bytes``
    (default: ``gk.serialization.load_limit``, 100 times the file's size, at least
    64 MiB, or the environment variable ``GRADKIT_LOAD_MAX_BYTES``).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "toy.npz"
    >>> np.savez(path, images=np.zeros((4, 2, 2), np.uint8), labels=[0, 1, 1, 0])
    >>> X, y = load_npz(path)
    >>> X.shape, X.dtype, y.tolist()
    ((4, 4), dtype('float32'), [0, 1, 1, 0])
    """
    path = Path(path)
    with open_for_reading(path, str(path)) as file, _open_npz(path, file) as archive:
        x_name = _pick_key(path, archive.files, x_key, X_KEYS, "features")
        y_name = _pick_key(path, archive.files, y_key, Y_KEYS, "labels")
        members = [_member_name(archive, key) for key in dict.fromkeys((x_name, y_name))]
        check_npz_members(archive.zip, members, str(path),
                          load_limit(os.fstat(file.fileno()).st_size, max_bytes), DatasetError,
                          DatasetError)
        X, y = _read_array(path, archive, x_name), _read_array(path, archive, y_name)
    return _as_features(path, x_name, X), _as_labels(path, y_name, y, len(X))


def load_idx(images_path: str | os.PathLike, labels_path: str | os.PathLike,
             max_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-format IDX images and labels (plain or ``.gz``) as ``(X, y)``.

    Checks the magic numbers (``0x00000803`` for images, ``0x00000801`` for
    labels), the sizes against the file lengths and that both hold as many items.
    ``X`` is float32 ``(N, rows * columns)`` scaled to [0, 1]; ``y`` is int64.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "img").write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2,
    ...                                     0, 255, 51, 0]))
    >>> _ = (d / "lab").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 1, 7]))
    >>> X, y = load_idx(d / "img", d / "lab")
    >>> X.tolist(), y.tolist()
    ([[0.0, 1.0, 0.20000000298023224, 0.0]], [7])
    """
    images = _read_idx(Path(images_path), IDX_IMAGES_MAGIC, "images", max_bytes)
    labels = _read_idx(Path(labels_path), IDX_LABELS_MAGIC, "labels", max_bytes)
    if len(images) != len(labels):
        raise DatasetError(f"{images_path} holds {len(images)} images but {labels_path} "
                           f"holds {len(labels)} labels")
    X = images.reshape(len(images), -1).astype(np.float32) / np.float32(255.0)
    return X, labels.astype(np.int64)


# -- .npz ---------------------------------------------------------------------------
def _open_npz(path: Path, file: BinaryIO) -> np.lib.npyio.NpzFile:
    head = file.read(64)
    file.seek(0)
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # not a zip archive
        hint = (" (save with np.savez(path, x=..., y=...))"
                if head.startswith(b"\x93NUMPY") else "")
        raise DatasetError(f"{path}: not a readable .npz archive (a zip of named .npy arrays): "
                           f"{describe_content(head)}{hint}")
    try:
        return np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable .npz archive ({exc})") from None


def _member_name(archive: np.lib.npyio.NpzFile, key: str) -> str:
    """The zip member that holds ``archive[key]``."""
    return key + ".npy" if key + ".npy" in archive.zip.namelist() else key


def _pick_key(path: Path, present: list[str], chosen: str | None,
              defaults: tuple[str, ...], what: str) -> str:
    if chosen is not None:
        if chosen not in present:
            raise DatasetError(f"{path}: no array named {chosen!r} for the {what}; "
                               f"the archive holds {sorted(present)}")
        return chosen
    for key in defaults:
        if key in present:
            return key
    raise DatasetError(f"{path}: no array for the {what} (looked for {', '.join(defaults)}); "
                       f"the archive holds {sorted(present)}; name it with "
                       f"{'x_key' if what == 'features' else 'y_key'}")


def _read_array(path: Path, archive: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as exc:  # object arrays need pickle, which is refused
        raise DatasetError(f"{path}: array {key!r} cannot be loaded without unpickling "
                           f"(object arrays are refused): {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: array {key!r} is damaged ({exc})") from None


def _as_features(path: Path, key: str, X: np.ndarray) -> np.ndarray:
    if X.ndim == 0 or len(X) == 0:
        raise DatasetError(f"{path}: array {key!r} of shape {X.shape} holds no samples")
    if X.dtype.kind not in "biuf":
        raise DatasetError(f"{path}: array {key!r} has dtype {X.dtype}, not numbers")
    features = X.reshape(len(X), -1).astype(np.float32)
    if X.dtype == np.uint8:
        features /= np.float32(255.0)
    if not np.isfinite(features).all():
        raise DatasetError(f"{path}: array {key!r} holds NaN or infinite values")
    return features


def _as_labels(path: Path, key: str, y: np.ndarray, count: int) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DatasetError(f"{path}: labels {key!r} must be one class index per sample "
                           f"(shape (N,)), got shape {y.shape}")
    if len(y) != count:
        raise DatasetError(f"{path}: {count} samples but {len(y)} labels in {key!r}")
    return _integral_labels(f"{path}: labels {key!r}", y)


def _integral_labels(where: str, y: np.ndarray) -> np.ndarray:
    if y.dtype.kind not in "biuf" or (y.dtype.kind == "f" and not
                                      (np.isfinite(y).all() and (y == np.round(y)).all())):
        raise DatasetError(f"{where} must be integer class indices, got dtype {y.dtype}"
                           + (f" with values like {y[:3].tolist()}" if y.dtype.kind == "f" else ""))
    labels = y.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise DatasetError(f"{where} must be non-negative class indices, found {labels.min()}")
    return labels


# -- IDX ------------------------------------------------------------------------------
def _read_idx(path: Path, magic: int, what: str, max_bytes: int | None) -> np.ndarray:
    """The array in one IDX file (plain or gzip, by its content, whatever its name), every
    header field checked against ``magic``, the length and the load limit."""
    with open_for_reading(path, str(path)) as file:
        size = os.fstat(file.fileno()).st_size
        gzipped = file.read(2) == b"\x1f\x8b"
        file.seek(0)
        if not gzipped:
            return _parse_idx(path, file, magic, what, load_limit(size, max_bytes), size)
        try:
            with gzip.GzipFile(fileobj=file, mode="rb") as stream:
                return _parse_idx(path, stream, magic, what, load_limit(size, max_bytes), None)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(f"{path}: damaged gzip data ({exc})") from None


def _parse_idx(path: Path, stream: BinaryIO, magic: int, what: str, limit: int,
               size: int | None) -> np.ndarray:
    """Read an IDX array from ``stream`` (``size``: its length when known, else None)."""
    start = stream.read(4)
    if len(start) < 4:
        raise DatasetError(f"{path}: {len(start)} bytes, too short for an IDX {what} file")
    found = int.from_bytes(start, "big")
    if found != magic:
        raise DatasetError(f"{path}: magic number 0x{found:08x}, expected 0x{magic:08x} "
                           f"for IDX {what} (is this the right file?)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DatasetError(f"{path}: truncated header ({4 + len(raw_dims)} bytes, {what} "
                           f"need {header})")
    dims = tuple(int.from_bytes(raw_dims[4 * i: 4 * i + 4], "big") for i in range(ndim))
    payload = math.prod(dims)
    expected = header + payload
    if size is None or size == expected:
        check_load_size(str(path), f"the header's {what} of shape {dims}", payload, limit,
                        DatasetError)
        data = stream.read(payload + 1)  # one byte more than declared, to see if there is more
        size = header + len(data) + (len(data) > payload and _length(stream))
    if size != expected:
        raise DatasetError(f"{path}: header says {what} of shape {dims} ({expected} bytes) "
                           f"but the file holds {size} bytes")
    if dims[0] == 0:
        raise DatasetError(f"{path}: holds no {what}")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _length(stream: BinaryIO, chunk: int = 2**20) -> int:
    """How many bytes are left in ``stream``, read a chunk at a time."""
    total = 0
    while block := stream.read(chunk):
        total += len(block)
    return total
