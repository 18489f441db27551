"""Built-in data sets: the cs231n spiral and the 8x8 digits; ``load_dataset`` by name or path."""
from __future__ import annotations

import gzip
from importlib import resources
from pathlib import Path

import numpy as np

from gradkit.data.files import DatasetError, load_idx, load_npz

DATASETS = ("spiral", "digits")

# What a directory of MNIST-style IDX files holds: the official names and the
# dotted variant some mirrors use, each maybe gzipped.
_IDX_IMAGES = ("train-images-idx3-ubyte", "train-images.idx3-ubyte")
_IDX_LABELS = ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte")


def spiral(n_per_class: int = 100, classes: int = 3,
           seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The spiral of the cs231n neural-network case study: ``classes`` arms, not linearly separable.

    For class ``j``: radius ``r = linspace(0, 1, n)``, angle
    ``t = linspace(4j, 4(j+1), n) + normal(0, 0.2)`` (from
    ``numpy.random.default_rng(seed)``), point ``(r sin t, r cos t)``.
    Returns ``X`` float32 ``(n_per_class * classes, 2)`` and ``y`` int64.

    >>> X, y = spiral(n_per_class=100, classes=3)
    >>> X.shape, X.dtype, y.shape, y.dtype
    ((300, 2), dtype('float32'), (300,), dtype('int64'))
    >>> np.bincount(y).tolist()
    [100, 100, 100]
    """
    if n_per_class < 1 or classes < 1:
        raise ValueError(f"spiral: n_per_class and classes must be positive, got "
                         f"{n_per_class} and {classes}")
    rng = np.random.default_rng(seed)
    X = np.zeros((n_per_class * classes, 2), dtype=np.float32)
    y = np.zeros(n_per_class * classes, dtype=np.int64)
    for j in range(classes):
        rows = slice(n_per_class * j, n_per_class * (j + 1))
        r = np.linspace(0.0, 1.0, n_per_class)
        t = np.linspace(4.0 * j, 4.0 * (j + 1), n_per_class) + rng.normal(0.0, 0.2, n_per_class)
        X[rows] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[rows] = j
    return X, y


def digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 8x8 handwritten digits (UCI, CC BY 4.0, as shipped by scikit-learn).

    Returns ``X`` float32 ``(1797, 64)``, pixels scaled from 0..16 to [0, 1], and
    ``y`` int64 in 0..9. The file ships inside gradkit (see DIGITS_LICENSE.txt).

    >>> X, y = digits()
    >>> X.shape, float(X.min()), float(X.max()), sorted(set(y.tolist()))[:3]
    ((1797, 64), 0.0, 1.0, [0, 1, 2])
    """
    with resources.files("gradkit.data").joinpath("digits.csv.gz").open("rb") as raw:
        with gzip.open(raw, "rt") as text:
            table = np.loadtxt(text, delimiter=",", dtype=np.float64)
    X = (table[:, :64] / 16.0).astype(np.float32)
    return X, table[:, 64].astype(np.int64)


def load_dataset(name_or_path: str | Path,
                 max_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` from a built-in name (``"spiral"``, ``"digits"``), a ``.npz`` file, or a
    directory holding MNIST IDX files (``train-images-idx3-ubyte[.gz]`` and
    ``train-labels-idx1-ubyte[.gz]``). ``max_bytes`` bounds what reading a file may
    allocate (see :func:`gradkit.data.load_npz`).

    >>> X, y = load_dataset("spiral")
    >>> X.shape
    (300, 2)
    """
    name = str(name_or_path)
    if name == "spiral":
        return spiral()
    if name == "digits":
        return digits()
    path = Path(name_or_path)
    if path.is_dir():
        return load_idx(*_idx_files(path), max_bytes=max_bytes)
    if path.suffix == ".npz" or path.is_file():
        if path.suffix != ".npz":
            raise DatasetError(f"{path}: unknown data file type {path.suffix!r}; give a .npz "
                               "file or a directory of MNIST IDX files")
        return load_npz(path, max_bytes=max_bytes)
    raise DatasetError(f"unknown dataset {name!r}: not one of {', '.join(DATASETS)}, and no "
                       "such file or directory")


def _idx_files(directory: Path) -> tuple[Path, Path]:
    """The training images and labels files in ``directory``."""
    found = []
    for stems in (_IDX_IMAGES, _IDX_LABELS):
        candidates = [directory / (stem + gz) for stem in stems for gz in ("", ".gz")]
        existing = [p for p in candidates if p.is_file()]
        if not existing:
            raise DatasetError(f"{directory}: no {stems[0]} or {stems[0]}.gz file in this "
                               "directory (expected MNIST IDX files)")
        found.append(existing[0])
    return found[0], found[1]
