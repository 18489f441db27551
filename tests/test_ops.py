"""The op table, generated from the registry: every op, every sample, every backend.

Each sample is gradchecked in float64 by central differences along random
directions, first and second order (double backprop), relative error <= 1e-6.
An op registered without samples fails ``test_every_op_has_samples``.
"""
from __future__ import annotations

import numpy as np
import pytest

import gradkit as gk
from gradkit.registry import OPS, call_sample

RTOL = 1e-6


def _cases():
    rng = np.random.default_rng(0)
    cases = []
    for name in sorted(OPS):
        entry = OPS[name]
        if entry.samples is None:
            continue
        for i, sample in enumerate(entry.samples(rng)):
            cases.append(pytest.param(entry, sample, id=f"{name}-{i}"))
    return cases


CASES = _cases()
DIFFERENTIABLE = [c for c in CASES if c.values[0].differentiable]


def _call(entry, sample, args):
    out = call_sample(entry, args, sample.params)
    if isinstance(out, (list, tuple)):  # split: check every piece
        return gk.concatenate([gk.reshape(o, (-1,)) for o in out], axis=0)
    return out


def _tensors(sample, dtype=None):
    out = []
    for a in sample.args:
        a = np.asarray(a)
        if dtype is not None and a.dtype.kind == "f":
            a = a.astype(dtype)
        out.append(gk.tensor(a))
    return out


def test_every_op_has_samples():
    missing = [name for name, entry in OPS.items() if not entry.samples]
    assert not missing, f"ops without samples (their gradients would go unchecked): {missing}"


@pytest.mark.parametrize("entry,sample", DIFFERENTIABLE)
def test_gradient_first_and_second_order(entry, sample):
    xs = _tensors(sample, np.float64)
    gk.testing.gradcheck(lambda *a: _call(entry, sample, a), *xs, order=2, rtol=RTOL,
                         nondiff=sample.nondiff)


@pytest.mark.parametrize("entry,sample", CASES)
def test_float32_forward_matches_float64(entry, sample):
    """Forward in float32 keeps float32 and agrees with float64 to float32 precision."""
    out64 = _call(entry, sample, _tensors(sample, np.float64))
    out32 = _call(entry, sample, _tensors(sample, np.float32))
    if out64.dtype.kind == "f":
        assert out32.dtype == sample.params.get("dtype", np.float32)
        np.testing.assert_allclose(out32.numpy(), out64.numpy(), rtol=1e-5, atol=1e-6)
    else:
        assert out32.dtype == out64.dtype
        np.testing.assert_array_equal(out32.numpy(), out64.numpy())


@pytest.mark.parametrize("entry,sample", DIFFERENTIABLE)
def test_gradient_has_input_shape_and_dtype(entry, sample):
    xs = [t.requires_grad_(True) if t.dtype.kind == "f" and i not in sample.nondiff else t
          for i, t in enumerate(_tensors(sample, np.float32))]
    out = _call(entry, sample, xs)
    out.sum().backward()
    # (a None gradient means zero, which the gradcheck above verifies numerically)
    for x in xs:
        if x.grad is not None:
            assert x.grad.shape == x.shape and x.grad.dtype == x.dtype


MIXED = [c for c in DIFFERENTIABLE
         if sum(np.asarray(a).dtype.kind == "f" for a in c.values[1].args) >= 2]


@pytest.mark.parametrize("entry,sample", MIXED)
def test_mixed_precision_gradients_have_their_inputs_dtypes(entry, sample):
    """Float inputs of two precisions (float64 data into a float32 model): each gradient
    has its own input's dtype, or the op refuses the mix with a gradkit error."""
    floats = [i for i, a in enumerate(sample.args) if np.asarray(a).dtype.kind == "f"]
    xs = [gk.tensor(np.asarray(a).astype(np.float32 if i == floats[-1] else np.float64))
          if i in floats else gk.tensor(np.asarray(a)) for i, a in enumerate(sample.args)]
    xs = [t.requires_grad_(True) if i in floats and i not in sample.nondiff else t
          for i, t in enumerate(xs)]
    try:
        out = _call(entry, sample, xs)
    except gk.GradkitError:
        return  # a refusal that names the op is a documented outcome
    out.sum().backward()
    for x in xs:
        if x.grad is not None:
            assert x.grad.shape == x.shape and x.grad.dtype == x.dtype
