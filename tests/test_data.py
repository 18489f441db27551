"""gk.data: the built-in data sets, the .npz and IDX loaders, and DataLoader."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

import gradkit as gk
from gradkit.data import DataLoader, DatasetError, load_dataset, load_idx, load_npz


# -- built-in data sets -----------------------------------------------------------------
def test_spiral_has_the_cs231n_shape_dtypes_and_classes():
    X, y = gk.data.spiral()
    assert X.shape == (300, 2) and X.dtype == np.float32
    assert y.shape == (300,) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [100, 100, 100]
    radius = np.hypot(X[:, 0], X[:, 1])
    assert np.allclose(radius[:100], np.linspace(0, 1, 100), atol=1e-6)


def test_spiral_follows_the_formula_with_the_seeded_noise():
    X, _ = gk.data.spiral(n_per_class=5, classes=2, seed=3)
    rng = np.random.default_rng(3)
    r = np.linspace(0, 1, 5)
    t0 = np.linspace(0, 4, 5) + rng.normal(0, 0.2, 5)
    t1 = np.linspace(4, 8, 5) + rng.normal(0, 0.2, 5)
    expected = np.r_[np.c_[r * np.sin(t0), r * np.cos(t0)], np.c_[r * np.sin(t1), r * np.cos(t1)]]
    np.testing.assert_allclose(X, expected, rtol=1e-6, atol=1e-7)


def test_spiral_is_deterministic_per_seed():
    a, b, c = gk.data.spiral(seed=1), gk.data.spiral(seed=1), gk.data.spiral(seed=2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_spiral_rejects_empty_sizes():
    with pytest.raises(ValueError, match="positive"):
        gk.data.spiral(n_per_class=0)


def test_digits_are_the_1797_scaled_8x8_images():
    X, y = gk.data.digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert X.min() == 0.0 and X.max() == 1.0
    assert y.dtype == np.int64 and sorted(set(y.tolist())) == list(range(10))
    assert np.bincount(y).min() >= 170
    assert np.allclose(X * 16, np.round(X * 16), atol=1e-5)  # integer pixels 0..16


def test_load_dataset_by_name():
    assert load_dataset("spiral")[0].shape == (300, 2)
    assert load_dataset("digits")[0].shape == (1797, 64)


def test_load_dataset_unknown_name_lists_the_choices():
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'.*spiral, digits"):
        load_dataset("mnist")


# -- .npz -------------------------------------------------------------------------------
def test_npz_default_keys_flatten_images_and_scale_uint8(tmp_path):
    images = np.arange(24, dtype=np.uint8).reshape(3, 2, 4) * 10
    np.savez(tmp_path / "d.npz", images=images, labels=np.array([2, 0, 1], dtype=np.uint8))
    X, y = load_npz(tmp_path / "d.npz")
    assert X.shape == (3, 8) and X.dtype == np.float32
    np.testing.assert_allclose(X, images.reshape(3, 8) / 255.0, rtol=1e-6)
    assert y.dtype == np.int64 and y.tolist() == [2, 0, 1]


@pytest.mark.parametrize("x_name,y_name", [("x", "y"), ("X", "targets"), ("data", "labels")])
def test_npz_finds_each_default_key(tmp_path, x_name, y_name):
    np.savez(tmp_path / "d.npz", **{x_name: np.ones((2, 3)), y_name: np.array([0, 1])})
    X, y = load_npz(tmp_path / "d.npz")
    assert X.shape == (2, 3) and X.dtype == np.float32 and y.tolist() == [0, 1]


def test_npz_explicit_keys_and_integral_float_labels(tmp_path):
    np.savez(tmp_path / "d.npz", feats=np.full((2, 2), 0.5), cls=np.array([[1.0], [3.0]]))
    X, y = load_npz(tmp_path / "d.npz", x_key="feats", y_key="cls")
    assert X.tolist() == [[0.5, 0.5], [0.5, 0.5]] and y.tolist() == [1, 3]


def test_load_dataset_reads_an_npz_path(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2)), y=np.arange(4))
    X, y = load_dataset(str(tmp_path / "d.npz"))
    assert X.shape == (4, 2) and y.tolist() == [0, 1, 2, 3]


def _npz(tmp_path: Path, **arrays) -> Path:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


def test_npz_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz: no such file"):
        load_npz(tmp_path / "nothing.npz")


def test_npz_without_matching_keys_lists_the_keys_present(tmp_path):
    path = _npz(tmp_path, a=np.zeros((2, 2)), b=np.zeros(2))
    with pytest.raises(DatasetError, match=r"no array for the features.*holds \['a', 'b'\]"):
        load_npz(path)
    with pytest.raises(DatasetError, match=r"no array named 'z' for the labels.*\['a', 'b'\]"):
        load_npz(path, x_key="a", y_key="z")


def test_npz_length_mismatch(tmp_path):
    path = _npz(tmp_path, x=np.zeros((3, 2)), y=np.zeros(2, dtype=int))
    with pytest.raises(DatasetError, match="3 samples but 2 labels"):
        load_npz(path)


@pytest.mark.parametrize("labels,message", [
    (np.array([0.5, 1.0]), "must be integer class indices, got dtype float64"),
    (np.array(["a", "b"]), "must be integer class indices, got dtype <U1"),
    (np.array([0, -1]), "non-negative"),
    (np.zeros((2, 3), dtype=int), r"shape \(N,\)"),
])
def test_npz_bad_labels(tmp_path, labels, message):
    path = _npz(tmp_path, x=np.zeros((2, 2)), y=labels)
    with pytest.raises(DatasetError, match=message):
        load_npz(path)


def test_npz_bad_features(tmp_path):
    with pytest.raises(DatasetError, match="not numbers"):
        load_npz(_npz(tmp_path, x=np.array([["a"], ["b"]]), y=np.array([0, 1])))
    with pytest.raises(DatasetError, match="NaN"):
        load_npz(_npz(tmp_path, x=np.array([[np.nan], [1.0]]), y=np.array([0, 1])))
    with pytest.raises(DatasetError, match="no samples"):
        load_npz(_npz(tmp_path, x=np.zeros((0, 2)), y=np.zeros(0, dtype=int)))


def test_npz_refuses_object_arrays(tmp_path):
    path = _npz(tmp_path, x=np.array([np.zeros(2), np.zeros(3)], dtype=object), y=np.array([0, 1]))
    with pytest.raises(DatasetError, match="object arrays are refused"):
        load_npz(path)


def test_npz_that_is_not_an_archive(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(DatasetError, match="junk.npz: not a readable .npz archive"):
        load_npz(tmp_path / "junk.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    with pytest.raises(DatasetError, match="single array"):
        load_npz(tmp_path / "single.npz")



def test_a_text_file_named_npz_is_said_to_be_text(tmp_path):
    (tmp_path / "table.npz").write_text("1,2,0\n3,4,1\n")
    with pytest.raises(DatasetError, match="table.npz: not a readable .npz archive.*looks like "
                                           "a text file") as info:
        load_npz(tmp_path / "table.npz")
    assert "allow_pickle" not in str(info.value)


def test_npz_arrays_larger_than_max_bytes_are_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "images.npz"
    np.savez_compressed(path, x=np.zeros((1024, 1024), np.uint8), y=np.zeros(1024, np.int64))
    assert load_npz(path)[0].shape == (1024, 1024)
    with pytest.raises(DatasetError, match="images.npz: reading 'x.npy', 'y.npy' .* would need "
                                           r"\d+ bytes, more than the 524288 bytes.*max_bytes="):
        load_npz(path, max_bytes=2**19)
    monkeypatch.setenv("GRADKIT_LOAD_MAX_BYTES", str(2**19))
    with pytest.raises(DatasetError, match="GRADKIT_LOAD_MAX_BYTES"):
        load_dataset(path)
    assert load_dataset(path, max_bytes=2**21)[0].shape == (1024, 1024)


# -- IDX ----------------------------------------------------------------------------------
def _idx(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + payload


def _write_mnist(directory: Path, count: int = 3, gz: bool = False,
                 stem: str = "train") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(count, 4, 5), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count, dtype=np.uint8)
    suffix = ".gz" if gz else ""
    pack = gzip.compress if gz else bytes
    (directory / f"{stem}-images-idx3-ubyte{suffix}").write_bytes(
        pack(_idx(0x803, (count, 4, 5), images.tobytes())))
    (directory / f"{stem}-labels-idx1-ubyte{suffix}").write_bytes(
        pack(_idx(0x801, (count,), labels.tobytes())))
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_idx_reads_mnist_files_plain_and_gzipped(tmp_path, gz):
    images, labels = _write_mnist(tmp_path, gz=gz)
    suffix = ".gz" if gz else ""
    X, y = load_idx(tmp_path / f"train-images-idx3-ubyte{suffix}",
                    tmp_path / f"train-labels-idx1-ubyte{suffix}")
    assert X.shape == (3, 20) and X.dtype == np.float32 and 0.0 <= X.min() <= X.max() <= 1.0
    np.testing.assert_allclose(X, images.reshape(3, 20) / 255.0, rtol=1e-6)
    assert y.dtype == np.int64 and y.tolist() == labels.tolist()


@pytest.mark.parametrize("gz", [False, True])
def test_load_dataset_reads_a_directory_of_idx_files(tmp_path, gz):
    _, labels = _write_mnist(tmp_path, count=4, gz=gz)
    X, y = load_dataset(tmp_path)
    assert X.shape == (4, 20) and y.tolist() == labels.tolist()


def test_load_dataset_directory_without_idx_files(tmp_path):
    with pytest.raises(DatasetError, match="no train-images-idx3-ubyte or .*gz file"):
        load_dataset(tmp_path)
    _write_mnist(tmp_path, stem="t10k")
    with pytest.raises(DatasetError, match="no train-images-idx3-ubyte"):
        load_dataset(tmp_path)


def test_load_dataset_file_of_unknown_type(tmp_path):
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(DatasetError, match=r"data.csv: unknown data file type '.csv'"):
        load_dataset(tmp_path / "data.csv")


def _idx_error(tmp_path: Path, images: bytes, labels: bytes, message: str) -> None:
    (tmp_path / "img").write_bytes(images)
    (tmp_path / "lab").write_bytes(labels)
    with pytest.raises(DatasetError, match=message):
        load_idx(tmp_path / "img", tmp_path / "lab")


GOOD_IMAGES = _idx(0x803, (2, 2, 2), bytes(8))
GOOD_LABELS = _idx(0x801, (2,), bytes([1, 2]))


def test_idx_wrong_magic_names_the_file_and_both_numbers(tmp_path):
    _idx_error(tmp_path, GOOD_LABELS, GOOD_LABELS,
               r"img: magic number 0x00000801, expected 0x00000803")
    _idx_error(tmp_path, GOOD_IMAGES, GOOD_IMAGES,
               r"lab: magic number 0x00000803, expected 0x00000801")
    _idx_error(tmp_path, _idx(0x80D, (2, 2, 2), bytes(32)), GOOD_LABELS, "0x0000080d")


def test_idx_sizes_must_match_the_file_length(tmp_path):
    _idx_error(tmp_path, GOOD_IMAGES[:-1], GOOD_LABELS,
               r"img: header says images of shape \(2, 2, 2\) \(24 bytes\) but the file holds 23")
    _idx_error(tmp_path, GOOD_IMAGES + b"\0", GOOD_LABELS, "holds 25 bytes")
    _idx_error(tmp_path, GOOD_IMAGES[:10], GOOD_LABELS, "truncated header")
    _idx_error(tmp_path, b"\0\0", GOOD_LABELS, "too short for an IDX images file")
    _idx_error(tmp_path, _idx(0x803, (0, 2, 2), b""), GOOD_LABELS, "holds no images")


def test_idx_counts_must_agree(tmp_path):
    _idx_error(tmp_path, GOOD_IMAGES, _idx(0x801, (3,), bytes(3)),
               "holds 2 images but .*lab holds 3 labels")


def test_idx_damaged_gzip_and_missing_file(tmp_path):
    _idx_error(tmp_path, gzip.compress(GOOD_IMAGES)[:-6], GOOD_LABELS, "img: damaged gzip data")
    with pytest.raises(FileNotFoundError, match="missing: no such file"):
        load_idx(tmp_path / "missing", tmp_path / "lab")



def test_a_gzipped_idx_file_may_not_expand_past_the_limit(tmp_path):
    count = 100  # 100 images of 1024 x 1024 zeros: 100 MiB, about 100 KB gzipped
    with gzip.GzipFile(tmp_path / "img.gz", "wb") as stream:
        stream.write(_idx(0x803, (count, 1024, 1024), b""))
        for _ in range(count):
            stream.write(bytes(2**20))
    (tmp_path / "lab").write_bytes(_idx(0x801, (count,), bytes(count)))
    with pytest.raises(DatasetError, match=r"img.gz: the header's images of shape "
                                           r"\(100, 1024, 1024\) would need 104857600 bytes"):
        load_idx(tmp_path / "img.gz", tmp_path / "lab")


# -- DataLoader -----------------------------------------------------------------------
def _data(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(2 * n, dtype=np.float32).reshape(n, 2), np.arange(n)


def _epoch(loader: DataLoader) -> list[int]:
    return [int(v) for _, yb in loader for v in yb.numpy()]


def test_batches_are_tensors_on_the_current_backend(backend):
    X, y = _data()
    batches = list(DataLoader(X, y, batch_size=4, shuffle=False))
    assert [xb.shape for xb, _ in batches] == [(4, 2), (4, 2), (2, 2)]
    for xb, yb in batches:
        assert isinstance(xb, gk.Tensor) and xb.backend == backend.name == yb.backend
        assert xb.dtype == np.float32 and yb.dtype == np.int64
        np.testing.assert_array_equal(xb.numpy(), X[yb.numpy()])


def test_len_counts_batches_with_and_without_the_last_partial_one():
    X, y = _data(10)
    assert len(DataLoader(X, y, batch_size=4)) == 3
    assert len(DataLoader(X, y, batch_size=4, drop_last=True)) == 2
    assert len(DataLoader(X, y, batch_size=5, drop_last=True)) == 2
    assert len(DataLoader(X, y, batch_size=32)) == 1
    dropped = DataLoader(X, y, batch_size=4, drop_last=True)
    assert [len(yb) for _, yb in dropped] == [4, 4]


def test_shuffle_covers_every_sample_once_and_differs_per_epoch():
    X, y = _data(20)
    loader = DataLoader(X, y, batch_size=6, seed=7)
    first, second = _epoch(loader), _epoch(loader)
    assert sorted(first) == sorted(second) == list(range(20))
    assert first != second and first != list(range(20))


def test_shuffle_is_reproducible_from_the_seed():
    X, y = _data(20)
    a, b = DataLoader(X, y, batch_size=6, seed=7), DataLoader(X, y, batch_size=6, seed=7)
    assert [_epoch(a) for _ in range(3)] == [_epoch(b) for _ in range(3)]
    other_seed = DataLoader(X, y, batch_size=6, seed=8)
    assert _epoch(other_seed) != _epoch(DataLoader(X, y, batch_size=6, seed=7))


def test_no_shuffle_keeps_the_order():
    X, y = _data(7)
    loader = DataLoader(X, y, batch_size=3, shuffle=False)
    assert _epoch(loader) == _epoch(loader) == list(range(7))


def test_explicit_backend_wins_over_the_current_one(backend):
    X, y = _data(4)
    with gk.use_backend("numpy"):
        loader = DataLoader(X, y, batch_size=4, backend=backend.name)
        xb, yb = next(iter(loader))
    assert xb.backend == yb.backend == backend.name


@pytest.mark.parametrize("kwargs,message", [
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"batch_size": 2.5}, "batch_size must be a positive integer"),
    ({"seed": -1}, "seed must be a non-negative integer"),
])
def test_loader_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DataLoader(*_data(4), **kwargs)


def test_loader_rejects_bad_arrays_and_backends():
    with pytest.raises(ValueError, match="X has 3 samples but y has 2"):
        DataLoader(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="no samples"):
        DataLoader(np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(ValueError, match="need a sample axis"):
        DataLoader(np.float32(1.0), np.zeros(1))
    with pytest.raises(ValueError, match="must hold numbers"):
        DataLoader(np.zeros((2, 1)), np.array(["a", "b"]))
    with pytest.raises(gk.BackendError, match="unknown backend 'nope'"):
        DataLoader(*_data(4), backend="nope")
