"""Reading your own data: NumPy ``.npz`` archives and MNIST-style IDX files.

Both return ``(X, y)``: ``X`` float32 ``(N, features)`` (images are flattened),
``y`` int64 ``(N,)`` class labels. Every error names the file and what is wrong.
"""
from __future__ import annotations

import gzip
import os
import zipfile
from pathlib import Path

import numpy as np

from gradkit.errors import GradkitError

X_KEYS = ("x", "X", "data", "images", "x_train")
Y_KEYS = ("y", "Y", "labels", "targets", "y_train")

IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (count, rows, columns)
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (count)


class DatasetError(GradkitError, ValueError):
    """A data file or array that cannot be used as a data set (says which and why)."""


def load_npz(path: str | os.PathLike, x_key: str | None = None,
             y_key: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels from a NumPy ``.npz`` archive (never unpickles anything).

    ``x_key``/``y_key`` name the arrays; by default the first of ``x, X, data,
    images, x_train`` and of ``y, Y, labels, targets, y_train`` that is present.
    Features are flattened to ``(N, features)`` float32 (uint8 images are scaled
    to [0, 1]); labels must be non-negative integers (integral floats are fine).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "toy.npz"
    >>> np.savez(path, images=np.zeros((4, 2, 2), np.uint8), labels=[0, 1, 1, 0])
    >>> X, y = load_npz(path)
    >>> X.shape, X.dtype, y.tolist()
    ((4, 4), dtype('float32'), [0, 1, 1, 0])
    """
    path = Path(path)
    with _open_npz(path) as archive:
        x_name = _pick_key(path, archive.files, x_key, X_KEYS, "features")
        y_name = _pick_key(path, archive.files, y_key, Y_KEYS, "labels")
        X, y = _read_array(path, archive, x_name), _read_array(path, archive, y_name)
    return _as_features(path, x_name, X), _as_labels(path, y_name, y, len(X))


def load_idx(images_path: str | os.PathLike,
             labels_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
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
    images = _read_idx(Path(images_path), IDX_IMAGES_MAGIC, "images")
    labels = _read_idx(Path(labels_path), IDX_LABELS_MAGIC, "labels")
    if len(images) != len(labels):
        raise DatasetError(f"{images_path} holds {len(images)} images but {labels_path} "
                           f"holds {len(labels)} labels")
    X = images.reshape(len(images), -1).astype(np.float32) / np.float32(255.0)
    return X, labels.astype(np.int64)


# -- .npz ---------------------------------------------------------------------------
def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable .npz archive ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DatasetError(f"{path}: holds a single array, not a .npz archive of named "
                           "arrays (save with np.savez(path, x=..., y=...))")
    return archive


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
def _read_idx(path: Path, magic: int, what: str) -> np.ndarray:
    """The array in one IDX file, every header field checked against ``magic`` and the length."""
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DatasetError(f"{path}: {len(raw)} bytes, too short for an IDX {what} file")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DatasetError(f"{path}: magic number 0x{found:08x}, expected 0x{magic:08x} "
                           f"for IDX {what} (is this the right file?)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated header ({len(raw)} bytes, {what} need {header})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DatasetError(f"{path}: header says {what} of shape {dims} ({expected} bytes) "
                           f"but the file holds {len(raw)} bytes")
    if dims[0] == 0:
        raise DatasetError(f"{path}: holds no {what}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it is gzip (by its content, whatever its name)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: damaged gzip data ({exc})") from None
