"""gradkit as an Array API namespace: the namespace protocol, dtypes and their functions,
creation functions with ``device=``, seeded random tensors, DLPack, devices, and code
written for the standard (only ``xp.*`` calls and operators) running on gradkit
tensors and differentiated by ``gk.grad``.

Values are compared with array-api-strict (the standard's reference library) on the
same inputs; hypothesis draws shapes and dtypes.
"""
from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

# the test extra's libraries: where one is missing (a GPU machine), this file skips
pytest.importorskip("hypothesis")
pytest.importorskip("array_api_strict")

import array_api_strict as xps  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.array_api import make_strategies_namespace  # noqa: E402
from strict_reference import FLOATS, INTS, QUICK, assert_same, host, to_strict  # noqa: E402

import gradkit as gk  # noqa: E402
from gradkit import backends  # noqa: E402
from gradkit.backends.numpy.backend import NumpyBackend  # noqa: E402

ALL_DTYPES = FLOATS + INTS + [np.dtype("uint64"), np.dtype(bool)]
STRICT_DTYPE = {np.dtype(name): getattr(xps, name) for name in (
    "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
    "uint64", "bool")}

# The standard's functions (2023.12 and some of 2024.12) gradkit offers; the README
# lists the same, and the rest as not covered.
COVERED = """
abs acos acosh add asin asinh atan atan2 atanh bitwise_and bitwise_invert bitwise_left_shift
bitwise_or bitwise_right_shift bitwise_xor ceil clip copysign cos cosh divide equal exp expm1
floor floor_divide greater greater_equal hypot isfinite isinf isnan less less_equal log log1p
log2 log10 logaddexp logical_and logical_not logical_or logical_xor maximum minimum multiply
negative nextafter not_equal positive pow reciprocal remainder round sign signbit sin sinh
square sqrt subtract tan tanh trunc
arange asarray empty empty_like eye from_dlpack full full_like linspace meshgrid ones ones_like
tril triu zeros zeros_like
astype can_cast finfo iinfo isdtype result_type
bool float32 float64 int8 int16 int32 int64 uint8 uint16 uint32 uint64
e inf nan newaxis pi
matmul matrix_transpose tensordot vecdot
broadcast_arrays broadcast_to concat expand_dims flip moveaxis permute_dims repeat reshape roll
squeeze stack tile unstack
argmax argmin count_nonzero nonzero searchsorted where
unique_values argsort sort
cumulative_sum max mean min prod std sum var all any diff take take_along_axis
""".split()
NOT_COVERED = """complex64 complex128 conj real imag unique_all unique_counts unique_inverse
cumulative_prod isin fft""".split()
LINALG_COVERED = """cholesky cross det diagonal inv matmul matrix_norm matrix_power
matrix_transpose outer slogdet solve tensordot trace vecdot vector_norm""".split()
LINALG_NOT_COVERED = "eigh eigvalsh svd svdvals qr pinv matrix_rank".split()


# -- the namespace --------------------------------------------------------------------------

def test_a_tensor_names_gradkit_as_its_namespace():
    x = gk.tensor([1.0])
    assert x.__array_namespace__() is gk
    for version in ("2021.12", "2022.12", "2023.12", "2024.12"):
        assert x.__array_namespace__(api_version=version) is gk
    with pytest.raises(ValueError, match="api_version"):
        x.__array_namespace__(api_version="2019.01")
    assert gk.__array_api_version__ == "2023.12"


def test_the_namespace_offers_what_the_readme_says():
    missing = [name for name in COVERED if not hasattr(gk, name)]
    assert not missing, missing
    present = [name for name in NOT_COVERED if hasattr(gk, name)]
    assert not present, f"{present} are offered: move them to the README's covered list"
    assert all(callable(getattr(gk.linalg, n)) for n in LINALG_COVERED)
    assert not [n for n in LINALG_NOT_COVERED if hasattr(gk.linalg, n)]
    assert (gk.e, gk.pi, gk.newaxis) == (math.e, math.pi, None)
    assert gk.inf == math.inf and math.isnan(gk.nan)


def test_inspection_api():
    info = gk.__array_namespace_info__()
    assert info.capabilities()["data-dependent shapes"] is True
    assert info.default_device() == gk.Device(gk.get_backend())
    assert gk.get_backend().name in [str(d) for d in info.devices()]
    defaults = info.default_dtypes()
    assert defaults["real floating"] == gk.get_default_dtype() and defaults["indexing"] == gk.int64
    assert set(info.dtypes(kind="integral")) == {"int8", "int16", "int32", "int64", "uint8",
                                                  "uint16", "uint32", "uint64"}
    assert set(info.dtypes(kind=("bool", "real floating"))) == {"bool", "float32", "float64"}


def test_hypothesis_can_draw_gradkit_arrays_through_the_namespace():
    """hypothesis.extra.array_api builds arrays with gk.asarray, gk.full, setitem...:
    gradkit works as the namespace of an Array API consumer (real dtypes only)."""
    strategies = make_strategies_namespace(gk, api_version="2023.12")

    @QUICK
    @given(strategies.arrays(dtype=st.one_of(strategies.boolean_dtypes(),
                                             strategies.real_dtypes()),
                             shape=strategies.array_shapes(min_dims=0, max_dims=3, max_side=4)))
    def check(x):
        assert isinstance(x, gk.Tensor) and x.device == gk.Device(gk.get_backend())
        assert_same(gk.abs(x) if x.dtype.kind != "b" else x, xps.abs(to_strict(host(x)))
                    if x.dtype.kind != "b" else to_strict(host(x)))

    check()


# -- dtypes ---------------------------------------------------------------------------------

def test_dtype_objects():
    assert gk.bool == np.dtype(bool) and gk.float32 == np.float32 and gk.uint64 == np.uint64
    assert gk.tensor([True]).dtype == gk.bool and gk.zeros(1).dtype == gk.float32


@pytest.mark.parametrize("kind", ["bool", "signed integer", "unsigned integer", "integral",
                                  "real floating", "complex floating", "numeric",
                                  ("bool", "integral")])
def test_isdtype_matches_the_standard(kind):
    for dtype in ALL_DTYPES:
        assert gk.isdtype(dtype, kind) == xps.isdtype(STRICT_DTYPE[dtype], kind), (dtype, kind)
    assert gk.isdtype(gk.float32, gk.float32) and not gk.isdtype(gk.float32, gk.float64)


def test_result_type_and_can_cast_match_the_standard():
    for a in ALL_DTYPES:
        for b in ALL_DTYPES:
            sa, sb = STRICT_DTYPE[a], STRICT_DTYPE[b]
            assert gk.can_cast(a, b) == xps.can_cast(sa, sb), (a, b)
            try:
                expected = xps.result_type(sa, sb)
            except TypeError:  # undefined by the standard: gradkit answers as NumPy
                continue
            assert gk.result_type(a, b) == np.dtype(str(expected).split(".")[-1]), (a, b)
    x = gk.zeros(2, dtype="int8")
    assert gk.result_type(x, gk.int16, 1) == gk.int16 and gk.result_type(x, 1.0) == gk.float32
    assert gk.result_type(gk.float64, 1.0, True) == gk.float64


def test_finfo_and_iinfo_match_the_standard():
    for dtype in FLOATS:
        ours, theirs = gk.finfo(dtype), xps.finfo(STRICT_DTYPE[dtype])
        for field in ("bits", "eps", "max", "min", "smallest_normal"):
            assert getattr(ours, field) == getattr(theirs, field), field
            assert type(getattr(ours, field)) is (int if field == "bits" else float), field
        assert ours.dtype == dtype
        assert gk.finfo(gk.zeros(1, dtype=dtype)).bits == ours.bits
    for dtype in INTS + [np.dtype("uint64")]:
        ours, theirs = gk.iinfo(dtype), xps.iinfo(STRICT_DTYPE[dtype])
        assert (ours.bits, ours.min, ours.max) == (theirs.bits, theirs.min, theirs.max)
    with pytest.raises(gk.DTypeError, match="iinfo"):
        gk.finfo(gk.int32)


# -- creation --------------------------------------------------------------------------------

def test_creation_functions_match_the_standard():
    cases = [("zeros", ((2, 3),), {}), ("ones", (4,), {"dtype": "int32"}),
             ("full", ((2,), 7), {}), ("full", ((2,), 7.5), {}), ("full", ((1,), True), {}),
             ("full", ((2,), 3), {"dtype": "float64"}), ("eye", (3,), {}), ("eye", (2, 4), {"k": 1}),
             ("eye", (3,), {"k": -1, "dtype": "int8"}), ("arange", (5,), {}),
             ("arange", (1, 2, 0.25), {}), ("arange", (10, 0, -3), {}),
             ("linspace", (0, 1, 5), {}), ("linspace", (0.0, 1.0, 4), {"endpoint": False}),
             ("linspace", (2, 3, 3), {"dtype": "float64"})]
    for name, args, kwargs in cases:
        strict_kwargs = {k: (STRICT_DTYPE[np.dtype(v)] if k == "dtype" else v)
                         for k, v in kwargs.items()}
        if name in ("zeros", "ones", "linspace", "arange", "eye", "full") and \
                "dtype" not in kwargs and name not in ("arange", "full"):
            strict_kwargs["dtype"] = xps.float32  # gradkit's default float is float32
        if name == "full" and isinstance(args[1], float) and "dtype" not in kwargs:
            strict_kwargs["dtype"] = xps.float32
        if name == "arange" and any(isinstance(a, float) for a in args):
            strict_kwargs["dtype"] = xps.float32
        assert_same(getattr(gk, name)(*args, **kwargs), getattr(xps, name)(*args, **strict_kwargs))
    like = gk.zeros((2, 2), dtype="int16")
    for name in ("zeros_like", "ones_like", "empty_like"):
        out = getattr(gk, name)(like)
        assert (out.shape, out.dtype, out.device) == ((2, 2), gk.int16, like.device)
    assert gk.full_like(like, 4).numpy().tolist() == [[4, 4], [4, 4]]
    assert gk.full_like(like, 1.5, dtype="float64").dtype == gk.float64
    assert gk.empty((3,)).shape == (3,)


@QUICK
@given(start=st.integers(-5, 5), stop=st.integers(-5, 5), step=st.integers(1, 3) | st.integers(-3, -1))
def test_arange_matches_the_standard(start, stop, step):
    assert_same(gk.arange(start, stop, step), xps.arange(start, stop, step))


def test_device_arguments_are_accepted_and_checked():
    here = gk.Device(gk.get_backend())
    for device in (here, str(here), gk.get_backend()):
        assert gk.zeros(2, device=device).device == here
        assert gk.asarray([1.0], device=device).device == here
    x = gk.zeros(2, device="strict")
    assert x.device == gk.Device("strict") and x.backend == "strict"
    assert gk.zeros_like(x).device == x.device  # *_like: the input's device
    assert gk.ones_like(x, device=here).device == here
    with pytest.raises(gk.BackendError, match="unknown backend 'tpu9'"):
        gk.zeros(2, device="tpu9")
    with pytest.raises(gk.BackendError, match="expected a gk.Device"):
        gk.ones(2, device=3)
    with pytest.raises(gk.BackendError, match="disagree"):
        gk.zeros(2, backend="numpy", device="strict")


def test_asarray_keeps_tensors_and_their_graph():
    x = gk.tensor([1.0, 2.0], requires_grad=True)
    assert gk.asarray(x) is x
    g = gk.grad(lambda t: (gk.asarray(t, dtype="float64") * 2).sum())(x)
    assert g.dtype == gk.float32 and g.numpy().tolist() == [2.0, 2.0]
    g = gk.grad(lambda t: gk.asarray([t[0], 3.0, t[1] * t[1]]).sum())(gk.tensor([1.0, 2.0]))
    assert g.numpy().tolist() == [1.0, 4.0]  # a list of tensors is stacked, differentiably
    with pytest.raises(ValueError, match="copy=False"):
        gk.asarray(x, dtype="float64", copy=False)
    y = gk.asarray(x, copy=True)
    assert y is not x and y.requires_grad


def test_asarray_shares_memory_where_it_can():
    a = np.arange(4.0)
    shared = gk.asarray(a)
    copied = gk.asarray(a, copy=True)
    a[0] = 9.0
    if gk.get_backend().name in ("numpy", "numba"):
        assert shared.numpy()[0] == 9.0 and gk.asarray(a, copy=False).numpy()[0] == 9.0
    assert copied.numpy()[0] == 0.0
    assert gk.asarray([1, 2]).dtype == gk.int64 and gk.asarray(1.5).dtype == gk.float32
    assert gk.asarray(np.float64(1.5)).dtype == gk.float64
    assert gk.asarray(a, dtype="float32").dtype == gk.float32
    with pytest.raises(ValueError, match="copy=False"):
        gk.asarray([1.0, 2.0], copy=False)
    with pytest.raises(gk.DTypeError):
        gk.asarray(np.ones(2, dtype=np.complex64))
    strict = gk.asarray(xps.asarray([1.0, 2.0]))  # another library's array, through DLPack
    assert strict.numpy().tolist() == [1.0, 2.0] and strict.device == gk.Device(gk.get_backend())


# -- devices, moving, DLPack, host conversion --------------------------------------------------

def test_device_and_to_device():
    x = gk.tensor([1.0, -2.0], requires_grad=True)
    assert x.device == gk.Device(x.backend) and hash(x.device) == hash(gk.Device(x.backend))
    assert repr(gk.Device("np")) == "Device('numpy')" and str(gk.Device("numpy")) == "numpy"
    y = x.to_device(gk.Device("strict"))
    assert y.device == gk.Device("strict")
    (gk.exp(y) * 2).sum().backward()  # computed on strict, the gradient comes back
    assert x.grad.device == x.device
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp([1.0, -2.0]), rtol=1e-6)


def test_dlpack_exports_and_imports_without_copies():
    x = gk.tensor([1.0, 2.0, 3.0])
    assert x.__dlpack_device__()[0] == gk.get_backend().dlpack_device_type
    if gk.get_backend().dlpack_device_type != 1:  # host-memory exchange below
        return
    exported = np.from_dlpack(x)
    if gk.get_backend().name in ("numpy", "numba"):
        assert np.shares_memory(exported, x.data)
    a = np.arange(3.0)
    t = gk.from_dlpack(a)
    a[1] = 7.0
    assert t.numpy().tolist() == [0.0, 7.0, 2.0] and t.device == gk.Device(gk.get_backend())
    assert gk.from_dlpack(a, copy=True).numpy().tolist() == [0.0, 7.0, 2.0]
    s = gk.from_dlpack(xps.asarray([1.0, 2.0]), device="strict")
    assert s.backend == "strict" and gk.from_dlpack(s).backend == gk.get_backend().name
    leaf = gk.tensor([1.0], requires_grad=True)
    if isinstance(leaf.data, np.ndarray):  # NumPy-backed leaves hold read-only data...
        assert not np.from_dlpack(leaf).flags.writeable  # ...and export it read-only


def test_implicit_host_conversion_is_refused_off_the_host():
    from gradkit.backends.cuda.backend import CudaBackend
    assert CudaBackend.host_conversion_allowed is False and CudaBackend.dlpack_device_type == 2

    class OffHost(NumpyBackend):  # stands in for a GPU backend
        name = "offhost"
        host_conversion_allowed = False

    backends.register_backend("offhost", OffHost)
    try:
        t = gk.tensor([1.0, 2.0], backend="offhost")
        with pytest.raises(gk.HostConversionError, match=r"Call \.numpy\(\)"):
            np.asarray(t)
        with pytest.raises(TypeError):  # HostConversionError is a TypeError, as CuPy's
            np.array(t)
        assert t.numpy().tolist() == [1.0, 2.0] and float(t.sum()) == 3.0
    finally:
        backends.unregister_backend("offhost")
    assert np.asarray(gk.tensor([1.0])).tolist() == [1.0]


# -- random ------------------------------------------------------------------------------------

def test_seeded_random_tensors_are_reproducible():
    a, b = gk.random.default_rng(3), gk.random.default_rng(3)
    for draw in (lambda r: r.normal(1.0, 2.0, size=(2, 3)), lambda r: r.uniform(-1, 1, size=4),
                 lambda r: r.integers(0, 10, size=5), lambda r: r.permutation(6),
                 lambda r: r.random((2,)), lambda r: r.standard_normal(3)):
        x, y = draw(a), draw(b)
        assert x.device == gk.Device(gk.get_backend())
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    expected = np.random.default_rng(3).normal(1.0, 2.0, size=(2, 3)).astype(np.float32)
    np.testing.assert_array_equal(gk.random.default_rng(3).normal(1.0, 2.0, (2, 3)).numpy(),
                                  expected)
    assert not np.array_equal(gk.random.default_rng(4).normal(size=3).numpy(),
                              gk.random.default_rng(3).normal(size=3).numpy())


def test_random_dtypes_ranges_and_devices():
    rng = gk.random.default_rng(0)
    assert rng.normal(size=2).dtype == gk.float32 and rng.normal(size=2, dtype="float64").dtype == gk.float64
    assert rng.normal().shape == ()
    u = rng.uniform(2.0, 3.0, size=1000)
    assert 2.0 <= float(gk.min(u)) and float(gk.max(u)) < 3.0
    i = rng.integers(5, size=1000)
    assert i.dtype == gk.int64 and set(i.numpy().tolist()) == {0, 1, 2, 3, 4}
    assert rng.integers(0, 2, size=10, dtype="uint8").dtype == gk.uint8
    assert rng.normal(size=2, device="strict").backend == "strict"
    with pytest.raises(gk.DTypeError):
        rng.normal(size=2, dtype="int32")
    assert sorted(rng.permutation(5).numpy().tolist()) == [0, 1, 2, 3, 4]


def test_permutation_of_a_tensor_shuffles_rows_differentiably():
    x = gk.tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    shuffled = gk.random.default_rng(1).permutation(x)
    assert sorted(shuffled.numpy()[:, 0].tolist()) == [0.0, 2.0, 4.0]
    (shuffled * shuffled).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.arange(6.0).reshape(3, 2))


# -- code written for the standard, run and differentiated by gradkit ----------------------------

def softmax_regression_loss(W, X, labels):
    """Mean cross-entropy of a linear softmax classifier, for any Array API namespace."""
    xp = X.__array_namespace__()
    logits = X @ W
    logits = logits - xp.max(logits, axis=1, keepdims=True)
    log_probs = logits - xp.log(xp.sum(xp.exp(logits), axis=1, keepdims=True))
    classes = xp.arange(W.shape[1], device=X.device)
    one_hot = xp.astype(labels[:, None] == classes[None, :], X.dtype)
    return -xp.mean(xp.sum(one_hot * log_probs, axis=1))


def polynomial(coefficients, x):
    """Horner's rule, highest degree first."""
    xp = x.__array_namespace__()
    out = xp.zeros_like(x)
    for i in range(coefficients.shape[0]):
        out = out * x + coefficients[i]
    return out


def layer_norm(x, scale, eps=1e-5):
    xp = x.__array_namespace__()
    mean = xp.mean(x, axis=-1, keepdims=True)
    var = xp.var(x, axis=-1, keepdims=True)
    return (x - mean) / xp.sqrt(var + eps) * scale


def ridge_fit_loss(X, y, lam):
    """Fit ridge regression in closed form, return the training error's norm."""
    xp = X.__array_namespace__()
    n = X.shape[1]
    A = xp.matrix_transpose(X) @ X + lam * xp.eye(n, dtype=X.dtype, device=X.device)
    w = xp.linalg.solve(A, xp.matrix_transpose(X) @ y)
    return xp.linalg.vector_norm(X @ w - y)


def pairwise_table(a, b):
    """Fills a matrix with __setitem__, as generic code often does."""
    xp = a.__array_namespace__()
    out = xp.zeros((2, a.shape[0]), dtype=a.dtype, device=a.device)
    out[0, :] = xp.sin(a) * b
    out[1, ...] = xp.flip(a * a, axis=0)
    return xp.sum(out * out)


def _three_ways(function, *arrays_):
    """The function on NumPy, array-api-strict and gradkit inputs."""
    as_np = function(*[np.asarray(a) for a in arrays_])
    as_strict = function(*[to_strict(a) for a in arrays_])
    as_gk = function(*[gk.asarray(a) for a in arrays_])
    return host(as_np), host(as_strict), as_gk


def test_generic_code_runs_unchanged_on_gradkit_tensors():
    rng = np.random.default_rng(0)
    W, X = rng.standard_normal((4, 3)), rng.standard_normal((10, 4))
    labels = rng.integers(0, 3, size=10)
    cases = [(softmax_regression_loss, (W, X, labels)),
             (polynomial, (np.array([2.0, -1.0, 0.5]), rng.standard_normal(5))),
             (layer_norm, (rng.standard_normal((3, 6)), rng.uniform(0.5, 2.0, 6))),
             (ridge_fit_loss, (X, rng.standard_normal(10), np.float64(0.3))),
             (pairwise_table, (rng.standard_normal(4), rng.standard_normal(4)))]
    for function, arrays_ in cases:
        as_np, as_strict, as_gk = _three_ways(function, *arrays_)
        assert isinstance(as_gk, gk.Tensor)
        np.testing.assert_allclose(as_gk.numpy(), as_strict, rtol=1e-12)
        np.testing.assert_allclose(as_strict, as_np, rtol=1e-12)


def test_gk_grad_differentiates_generic_code():
    rng = np.random.default_rng(1)
    W, X = rng.standard_normal((4, 3)), rng.standard_normal((10, 4))
    labels = rng.integers(0, 3, size=10)
    y = gk.asarray(rng.standard_normal(10))
    g = gk.grad(softmax_regression_loss)(gk.asarray(W), gk.asarray(X), gk.asarray(labels))
    logits = X @ W
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    expected = X.T @ (probs - np.eye(3)[labels]) / 10
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-10)
    c, x = gk.asarray(np.array([2.0, -1.0, 0.5])), gk.asarray(rng.standard_normal(5))
    g = gk.grad(lambda c_: polynomial(c_, x).sum())(c)
    xs = x.numpy()
    np.testing.assert_allclose(g.numpy(), [np.sum(xs ** 2), np.sum(xs), 5.0], rtol=1e-12)
    checks = [
        (lambda w: softmax_regression_loss(w, gk.asarray(X), gk.asarray(labels)), (W,)),
        (lambda s, t: layer_norm(s, t), (rng.standard_normal((3, 6)), rng.uniform(0.5, 2, 6))),
        (lambda a, lam: ridge_fit_loss(a, y, lam), (X, np.float64(0.3))),
        (pairwise_table, (rng.standard_normal(4), rng.standard_normal(4)))]
    for function, arrays_ in checks:
        gk.testing.gradcheck(function, *[gk.asarray(a) for a in arrays_], order=2)


# -- signatures --------------------------------------------------------------------------

def _standard_default(value):
    """array-api-strict marks 'not given' with its own sentinel where the standard says None."""
    return None if type(value).__name__ == "Undef" else value


def _signature_mismatches(ours, standard) -> list[str]:
    """How ``ours`` departs from the standard's signature: each of its parameters must be
    there with its name, kind and (where the standard fixes one) default; gradkit's own
    extra parameters must be keyword-only with a default, so no standard call changes."""
    P = inspect.Parameter
    theirs = list(inspect.signature(standard).parameters.values())
    mine = list(inspect.signature(ours).parameters.values())
    problems = []
    by_name = {p.name: p for p in mine}
    for position, p in enumerate(theirs):
        q = by_name.get(p.name)
        if q is None:
            problems.append(f"no parameter {p.name!r}")
            continue
        if q.kind is not p.kind:
            problems.append(f"{p.name!r} is {q.kind.description}, the standard says "
                            f"{p.kind.description}")
        if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD) and mine.index(q) != position:
            problems.append(f"{p.name!r} at position {mine.index(q)}, the standard's {position}")
        default = _standard_default(p.default)
        if p.default is not P.empty and (q.default is P.empty or q.default != default):
            problems.append(f"{p.name!r} defaults to {q.default!r}, the standard's {default!r}")
    standard_names = {p.name for p in theirs}
    for q in mine:
        if q.name not in standard_names and (q.kind is not P.KEYWORD_ONLY or q.default is P.empty):
            problems.append(f"extra parameter {q.name!r} must be keyword-only with a default")
    return problems


SIGNATURES = [(name, getattr(gk, name), getattr(xps, name)) for name in COVERED
              if callable(getattr(xps, name)) and not isinstance(getattr(xps, name), type)] + \
    [(f"linalg.{name}", getattr(gk.linalg, name), getattr(xps.linalg, name))
     for name in LINALG_COVERED] + \
    [(f"__array_namespace_info__().{name}", getattr(gk.__array_namespace_info__(), name),
      getattr(xps.__array_namespace_info__(), name))
     for name in ("capabilities", "default_device", "default_dtypes", "dtypes", "devices")]


def test_every_function_has_the_standards_signature():
    mismatches = {name: problems for name, ours, standard in SIGNATURES
                  if (problems := _signature_mismatches(ours, standard))}
    assert not mismatches, "\n".join(f"{name}{inspect.signature(ours)}: {mismatches[name]}"
                                     for name, ours, _ in SIGNATURES if name in mismatches)


def test_positional_params_of_the_standard_are_positional(backend):
    x = gk.reshape(gk.arange(6), (2, 3))
    assert gk.broadcast_to(gk.zeros(3), (2, 3)).shape == (2, 3)
    assert gk.expand_dims(x, 0).shape == (1, 2, 3)
    assert gk.permute_dims(x, (1, 0)).shape == (3, 2)
    assert gk.roll(gk.arange(3), 1).tolist() == [2, 0, 1]
    assert gk.squeeze(gk.zeros((1, 2)), 0).shape == (2,)
    assert gk.tile(gk.arange(2), (2,)).tolist() == [0, 1, 0, 1]
    assert gk.repeat(gk.arange(2), 2).tolist() == [0, 0, 1, 1]
    assert gk.moveaxis(x, 0, 1).shape == (3, 2)


def test_the_namespace_lists_the_standards_dtypes_only():
    info = gk.__array_namespace_info__()
    assert set(info.dtypes()) == {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16",
                                  "uint32", "uint64", "float32", "float64"}
    assert set(info.dtypes(kind="real floating")) == {"float32", "float64"}
    assert gk.zeros(2, dtype="float16").dtype == np.float16  # still usable, as an extra


@pytest.mark.parametrize("dtype", INTS + [np.dtype("uint64")])
def test_vecdot_and_matmul_keep_an_integer_dtype(backend, dtype):
    x1 = gk.asarray(np.array([[1, 2, 3], [4, 5, 6]], dtype=dtype))
    x2 = gk.asarray(np.array([1, 0, 2], dtype=dtype))
    assert gk.vecdot(x1, x2).dtype == dtype == gk.matmul(x1, x2).dtype
    assert gk.vecdot(x1, x2).tolist() == [7, 16]
    assert gk.linalg.vecdot(x1, x2, axis=-1).dtype == dtype


@pytest.mark.parametrize("repeats", [2, [2], np.array([2]), np.array(2)], ids=repr)
def test_repeat_broadcasts_a_single_count(backend, repeats):
    x = gk.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    counts = gk.asarray(repeats) if isinstance(repeats, np.ndarray) else repeats
    out = gk.repeat(x, counts, axis=1)
    assert out.tolist() == [[1.0, 1.0, 2.0, 2.0], [3.0, 3.0, 4.0, 4.0]]
    out.sum().backward()
    assert x.grad.tolist() == [[2.0, 2.0], [2.0, 2.0]]


def test_repeat_counts_are_integers(backend):
    with pytest.raises(gk.ArgumentError, match="repeat: repeats must be integers"):
        gk.repeat(gk.zeros(2), [1.5, 2.0])
    with pytest.raises(gk.ShapeError, match="repeat: repeats has 3 counts for 2 elements"):
        gk.repeat(gk.zeros(2), [1, 2, 3])
