"""gk.save / gk.load: both formats, atomic writes, and files that are not what they claim."""
from __future__ import annotations

import errno
import json
import os
import pickle
import struct
import sys
import zipfile

import numpy as np
import pytest

import gradkit as gk
from gradkit.serialization import LoadLimitError, MissingDependencyError, SerializationError

try:
    import safetensors  # noqa: F401
    SAFETENSORS = None
except ImportError as exc:  # a GPU machine without the test extra
    SAFETENSORS = f"safetensors is not installed ({exc})"
FORMATS = [".npz", pytest.param(".safetensors", marks=pytest.mark.skipif(
    SAFETENSORS is not None, reason=str(SAFETENSORS)))]


def _state():
    rng = np.random.default_rng(0)
    return {"layers.0.weight": rng.standard_normal((3, 4)).astype(np.float32),
            "layers.0.bias": np.zeros(4, np.float32),
            "double": rng.standard_normal((2, 2)),
            "count": np.array(7, np.int64),
            "mask": np.array([True, False]),
            "transposed": rng.standard_normal((3, 2)).T}  # not C-contiguous


@pytest.mark.parametrize("suffix", FORMATS)
def test_round_trip_keeps_values_dtypes_and_shapes(tmp_path, suffix):
    state = _state()
    gk.save(state, tmp_path / f"state{suffix}")
    loaded = gk.load(str(tmp_path / f"state{suffix}"))
    assert sorted(loaded) == sorted(state)
    for key, value in state.items():
        assert type(loaded[key]) is np.ndarray
        assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape
        np.testing.assert_array_equal(loaded[key], value)


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_model_round_trips_through_a_file(tmp_path, suffix):
    source, target = gk.nn.MLP([2, 8, 3], seed=1), gk.nn.MLP([2, 8, 3], seed=2)
    gk.save(source.state_dict(), tmp_path / f"model{suffix}")
    target.load_state_dict(gk.load(tmp_path / f"model{suffix}"))
    x = gk.tensor(np.random.default_rng(0).standard_normal((4, 2)))
    np.testing.assert_array_equal(target(x).numpy(), source(x).numpy())


@pytest.mark.parametrize("suffix", FORMATS)
def test_tensors_can_be_saved_directly(tmp_path, suffix):
    layer = gk.nn.Linear(2, 3, seed=0)
    gk.save(dict(layer.named_parameters()), tmp_path / f"layer{suffix}")
    np.testing.assert_array_equal(gk.load(tmp_path / f"layer{suffix}")["weight"],
                                  layer.weight.numpy())


def test_npz_files_written_by_numpy_load(tmp_path):
    np.savez(tmp_path / "numpy.npz", a=np.arange(3), b=np.ones((2, 2), np.float32))
    loaded = gk.load(tmp_path / "numpy.npz")
    assert loaded["a"].tolist() == [0, 1, 2] and loaded["b"].dtype == np.float32


# -- what cannot be saved -------------------------------------------------------------

@pytest.mark.parametrize("state,message", [
    ({"a": np.array([object()], dtype=object)}, "'a' has dtype object"),
    ({"a": np.array(["text"])}, "'a' has dtype <U4"),
    ({"a": [1.0, 2.0]}, "'a' must be a NumPy array or Tensor, got list"),
    ({1: np.ones(1)}, "keys must be non-empty strings"),
    ([("a", np.ones(1))], "expected a dict of arrays")])
def test_unsavable_state_is_refused_before_any_file_appears(tmp_path, state, message):
    with pytest.raises(SerializationError, match=message):
        gk.save(state, tmp_path / "state.npz")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("action", ["save", "load"])
def test_an_unknown_suffix_lists_the_formats(tmp_path, action):
    path = tmp_path / "model.pt"
    path.write_bytes(b"")
    with pytest.raises(SerializationError,
                       match=r"unknown file suffix '.pt'.*\.safetensors.*\.npz"):
        gk.save({"a": np.ones(1)}, path) if action == "save" else gk.load(path)


def test_loading_a_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        gk.load(tmp_path / "nothing.npz")


# -- atomic writes --------------------------------------------------------------------

def _fail_midway(monkeypatch, suffix):
    if suffix == ".npz":
        real = np.lib.format.write_array
        calls = []

        def write_then_fail(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt  # as if the process were interrupted mid-save
            return real(*args, **kwargs)
        monkeypatch.setattr(np.lib.format, "write_array", write_then_fail)
    else:
        import safetensors.numpy

        def fail(*args, **kwargs):
            raise KeyboardInterrupt
        monkeypatch.setattr(safetensors.numpy, "save", fail)


@pytest.mark.parametrize("suffix", FORMATS)
def test_an_interrupted_save_leaves_the_previous_file_intact(tmp_path, monkeypatch, suffix):
    path = tmp_path / f"model{suffix}"
    gk.save({"w": np.ones(3, np.float32)}, path)
    _fail_midway(monkeypatch, suffix)
    with pytest.raises(KeyboardInterrupt):
        gk.save({"w": np.zeros(3, np.float32), "b": np.zeros(2, np.float32)}, path)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    assert gk.load(path)["w"].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("suffix", FORMATS)
def test_saving_over_an_existing_file_replaces_it(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    gk.save({"w": np.ones(3)}, path)
    gk.save({"v": np.zeros(2)}, path)
    assert list(gk.load(path)) == ["v"]
    assert list(tmp_path.iterdir()) == [path]


# -- files that are not state dicts ----------------------------------------------------

class _Exploit:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _corrupt_files(tmp_path):
    """(path, what the message should say) for each kind of bad file."""
    marker = str(tmp_path / "code-ran")
    cases = []
    text = "this is not a model\n" * 10

    def write(name, data, expected):
        path = tmp_path / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        cases.append((path, expected))

    write("text.npz", text, "not an .npz archive")
    write("text.safetensors", text, "not a valid .safetensors file")
    write("empty.safetensors", b"", "not a valid .safetensors file")
    write("pickle.npz", pickle.dumps({"w": _Exploit(marker)}), "not an .npz archive")
    write("pickle.safetensors", pickle.dumps(_Exploit(marker)), "not a valid .safetensors file")

    np.savez(tmp_path / "objects.npz", w=np.array([_Exploit(marker)], dtype=object))
    cases.append((tmp_path / "objects.npz", "entry 'w' cannot be read.*allow_pickle"))

    np.save(tmp_path / "array.npy", np.ones(3))
    os.replace(tmp_path / "array.npy", tmp_path / "array.npz")
    cases.append((tmp_path / "array.npz", "not an .npz archive"))

    with zipfile.ZipFile(tmp_path / "foreign.npz", "w") as archive:
        archive.writestr("readme.txt", "hello")
    cases.append((tmp_path / "foreign.npz", "member 'readme.txt' is not an .npy array"))

    for suffix in [".npz"] + [".safetensors"] * (SAFETENSORS is None):
        gk.save({"w": np.random.default_rng(0).standard_normal((50, 50))}, tmp_path / f"ok{suffix}")
        data = (tmp_path / f"ok{suffix}").read_bytes()
        write(f"truncated{suffix}", data[:len(data) // 2],
              "not an .npz archive" if suffix == ".npz" else "not a valid .safetensors file")
        write(f"cut-tail{suffix}", data[:-10],
              "not an .npz archive" if suffix == ".npz" else "not a valid .safetensors file")
    data = bytearray((tmp_path / "ok.npz").read_bytes())
    data[200:260] = b"\xff" * 60  # damage an array's bytes inside an intact zip
    write("damaged.npz", bytes(data), "entry 'w' cannot be read")
    return cases, marker


def test_corrupt_and_foreign_files_raise_naming_the_path_and_never_run_code(tmp_path):
    cases, marker = _corrupt_files(tmp_path)
    if SAFETENSORS is not None:  # those cases say that the package is missing instead
        cases = [(path, expected) for path, expected in cases if path.suffix != ".safetensors"]
    for path, expected in cases:
        with pytest.raises(SerializationError, match=expected) as info:
            gk.load(path)
        assert str(path) in str(info.value), path
        assert isinstance(info.value, gk.GradkitError) and isinstance(info.value, ValueError)
    assert not os.path.exists(marker)


def test_safetensors_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(MissingDependencyError, match="pip install safetensors"):
        gk.save({"w": np.ones(1)}, tmp_path / "model.safetensors")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ImportError, match=r"gradkit\[safetensors\]"):
        gk.load(tmp_path / "model.safetensors")


def test_saving_into_a_missing_directory_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="directory .*absent does not exist"):
        gk.save({"w": np.ones(1)}, tmp_path / "absent" / "model.npz")


# -- why a save or a load fails ------------------------------------------------------------

def _fail_with(monkeypatch, name, code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(os, name, fail)


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("failing,code,kind,reason", [
    ("open", errno.EACCES, PermissionError, "permission denied"),
    ("open", errno.EROFS, OSError, "read-only file system"),
    ("fsync", errno.ENOSPC, OSError, "no space left on the device"),
])
def test_save_failures_name_the_users_path_and_the_reason(tmp_path, monkeypatch, suffix,
                                                          failing, code, kind, reason):
    path = tmp_path / f"model{suffix}"
    gk.save({"w": np.ones(3, np.float32)}, path)
    _fail_with(monkeypatch, failing, code)
    with pytest.raises(kind, match=reason) as info:
        gk.save({"w": np.zeros(3, np.float32)}, path)
    monkeypatch.undo()
    message = str(info.value)
    assert message.startswith(f"save {path}: ") and ".tmp" not in message, message
    assert info.value.errno == code
    assert list(tmp_path.iterdir()) == [path]
    assert gk.load(path)["w"].tolist() == [1.0, 1.0, 1.0]


def test_saving_onto_a_directory_says_it_is_one(tmp_path):
    (tmp_path / "model.npz").mkdir()
    with pytest.raises(IsADirectoryError, match=f"save {tmp_path / 'model.npz'}: .*is a directory"):
        gk.save({"w": np.ones(1)}, tmp_path / "model.npz")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="file permissions do not bind the superuser")
def test_permission_problems_are_said_as_such(tmp_path):
    path = tmp_path / "model.npz"
    gk.save({"w": np.ones(1)}, path)
    path.chmod(0)
    with pytest.raises(PermissionError, match=f"load {path}: cannot read it: permission denied"):
        gk.load(path)
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="permission denied"):
            gk.save({"w": np.ones(1)}, tmp_path / "other.npz")
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.parametrize("suffix", FORMATS)
def test_an_unreadable_file_is_not_called_foreign(tmp_path, monkeypatch, suffix):
    path = tmp_path / f"model{suffix}"
    gk.save({"w": np.ones(1)}, path)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(PermissionError, match=f"load {path}: cannot read it: permission denied"):
        gk.load(path)


@pytest.mark.parametrize("suffix", FORMATS)
def test_loading_a_directory_says_it_is_one(tmp_path, suffix):
    (tmp_path / f"x{suffix}").mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory, not a file"):
        gk.load(tmp_path / f"x{suffix}")


def test_a_text_file_named_npz_is_said_to_look_like_text(tmp_path):
    (tmp_path / "notes.npz").write_text("x,y\n1,2\n")
    with pytest.raises(SerializationError, match="not an .npz archive.*looks like a text file"):
        gk.load(tmp_path / "notes.npz")


# -- safetensors dtypes NumPy lacks --------------------------------------------------------

def _safetensors_bytes(tensors):
    """A .safetensors file of ``name -> (dtype name, shape, raw bytes)``."""
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data),
                                                                          len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


@pytest.mark.skipif(SAFETENSORS is not None, reason=str(SAFETENSORS))
def test_bf16_tensors_load_as_the_same_float32_values(tmp_path):
    values = np.array([[1.0, -2.5], [3.140625, np.inf]], np.float32)  # exact in bfloat16
    bf16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    path = tmp_path / "model.safetensors"
    path.write_bytes(_safetensors_bytes({"w": ("BF16", [2, 2], bf16),
                                         "b": ("F32", [1], np.ones(1, np.float32).tobytes())}))
    loaded = gk.load(path)
    assert loaded["w"].dtype == np.float32 and loaded["w"].shape == (2, 2)
    assert loaded["w"].tolist() == values.tolist() and loaded["b"].tolist() == [1.0]


@pytest.mark.skipif(SAFETENSORS is not None, reason=str(SAFETENSORS))
def test_unsupported_safetensors_dtypes_name_each_tensor(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(_safetensors_bytes({"a": ("F8_E4M3", [2], b"ab"),
                                         "b": ("F8_E5M2", [1], b"c")}))
    with pytest.raises(SerializationError, match="'a' is F8_E4M3, 'b' is F8_E5M2"):
        gk.load(path)


# -- bounded allocation -------------------------------------------------------------------

def _deflated_npz(path, megabytes):
    """An .npz whose one float64 array of zeros is ``megabytes`` MiB, deflated (~1000x)."""
    count = megabytes * 2**20 // 8
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("w.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "<f8", "fortran_order": False, "shape": (count,)})
            block = bytes(2**20)
            for _ in range(megabytes):
                member.write(block)
    return path


def test_a_deflated_npz_may_not_expand_past_the_limit(tmp_path):
    path = _deflated_npz(tmp_path / "bomb.npz", 100)  # about 100 KB on disk
    with pytest.raises(LoadLimitError, match="would need 104857.* bytes.*max_bytes=.*"
                                             "GRADKIT_LOAD_MAX_BYTES") as info:
        gk.load(path)
    assert str(path) in str(info.value)


def test_the_load_limit_is_raised_by_argument_or_environment(tmp_path, monkeypatch):
    path = _deflated_npz(tmp_path / "small.npz", 1)
    assert gk.load(path)["w"].shape == (2**17,)  # small files always get 64 MiB
    with pytest.raises(LoadLimitError):
        gk.load(path, max_bytes=2**19)
    monkeypatch.setenv("GRADKIT_LOAD_MAX_BYTES", str(2**19))
    with pytest.raises(LoadLimitError):
        gk.load(path)
    assert gk.load(path, max_bytes=2**21)["w"].shape == (2**17,)
    monkeypatch.setenv("GRADKIT_LOAD_MAX_BYTES", "lots")
    with pytest.raises(ValueError, match="GRADKIT_LOAD_MAX_BYTES='lots'"):
        gk.load(path)


def test_an_npy_header_may_not_declare_more_than_its_member_holds(tmp_path):
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("w.npy", "w") as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
            member.write(bytes(16))
    with pytest.raises(SerializationError, match=r"'w.npy' declares a float64 array of shape "
                                                 r"\(1000000000000,\) .* but holds only"):
        gk.load(path)
