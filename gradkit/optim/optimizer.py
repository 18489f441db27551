"""The Optimizer base class: the parameter list, step(), zero_grad() and saved state.

A subclass names its hyperparameters, checks them, names the per-parameter
buffers it keeps, and computes one parameter's new array through a registered op
(``gk.sgd_update``, ``gk.adam_update``), so a backend can run each update as one
fused kernel.

>>> import gradkit as gk
>>> w = gk.tensor([1.0, 2.0], requires_grad=True)
>>> opt = gk.optim.SGD([w], lr=0.5)
>>> (w * w).sum().backward()
>>> opt.step()
>>> w.numpy().tolist()
[0.0, 0.0]
"""
from __future__ import annotations

import contextlib
import math
import weakref
from numbers import Real
from typing import Any, Iterable, Mapping

import numpy as np

from gradkit import interception
from gradkit.autodiff import no_grad
from gradkit.creation import zeros, zeros_like
from gradkit.errors import ArgumentError, GradkitError, describe
from gradkit.tensor import Tensor, tensor

HYPERPARAMETER_PREFIX = "hyperparameters."
STATE_PREFIX = "state."


class OptimizerStateError(GradkitError, ValueError):
    """A saved optimizer state that does not fit this optimizer or its parameters."""


def check_number(owner: str, name: str, value: Any, low: float = 0.0,
                 below: float | None = None) -> float:
    """``value`` as a float, if it is a finite real number >= ``low`` (and < ``below``)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ArgumentError(f"{owner}: {name} must be a finite number, got {value!r}")
    if value < low or (below is not None and value >= below):
        allowed = f">= {low}" if below is None else f"in [{low}, {below})"
        raise ArgumentError(f"{owner}: {name} must be {allowed}, got {value!r}")
    return float(value)


def _parameter_list(params: Iterable[Tensor], owner: str) -> list[Tensor]:
    if isinstance(params, Tensor) or not isinstance(params, Iterable) or \
            hasattr(params, "named_parameters"):
        raise TypeError(f"{owner}: params must be an iterable of Tensors, e.g. "
                        f"model.parameters(); got {type(params).__name__}")
    params = list(params)
    if not params:
        raise ArgumentError(f"{owner}: got an empty parameter list")
    seen: set[int] = set()
    for index, param in enumerate(params):
        if not isinstance(param, Tensor):
            raise TypeError(f"{owner}: params[{index}] must be a Tensor, got "
                            f"{type(param).__name__}")
        if not param.is_leaf or param.dtype.kind != "f":
            raise ArgumentError(f"{owner}: params[{index}] must be a floating leaf tensor "
                                f"(a parameter), got {describe(param)}"
                                + ("" if param.is_leaf else " produced by an op"))
        if id(param) in seen:
            raise ArgumentError(f"{owner}: params[{index}] appears more than once")
        seen.add(id(param))
    return params


# id(parameter) -> the optimizer made over it most recently (a captured step that steps
# an older one records anew: "opt = SGD(model.parameters())" again replaces the optimizer).
# An entry lives as long as its optimizer, which holds the parameter: ids stay unique.
_newest_optimizer: "weakref.WeakValueDictionary[int, Optimizer]" = weakref.WeakValueDictionary()


def install(param: Tensor, new: Tensor) -> None:
    """Make ``new``'s array the parameter's (same Tensor object); bump its version.

    A parameter's array is a read-only view by design, so the update is never
    written into it: the parameter gets the new array instead.
    """
    param.write(new.data, how="install", source=new)


class Optimizer:
    """Base class: holds the parameters and, per parameter, a state dict.

    ``self.state[i]`` holds parameter ``i``'s buffers (Tensors on its backend,
    created on its first update) and, where used, its ``"step"`` count (a 0-d
    int64 Tensor there too).
    Subclasses set ``hyperparameter_names`` and implement ``check_hyperparameters``,
    ``buffer_names`` and ``update``. Parameters whose ``grad`` is None are skipped.

    >>> import gradkit as gk
    >>> w = gk.tensor([1.0], requires_grad=True)
    >>> opt = gk.optim.Adam([w], lr=0.1)
    >>> (w * w).sum().backward()
    >>> opt.step()
    >>> [key for key in opt.state_dict() if key.startswith("state.")]
    ['state.0.m', 'state.0.v', 'state.0.step']
    """

    hyperparameter_names: tuple[str, ...] = ()
    uses_step: bool = False  # whether each parameter's state counts its updates

    def __init__(self, params: Iterable[Tensor], **hyperparameters: Any) -> None:
        self.params = _parameter_list(params, type(self).__name__)
        self.state: list[dict[str, Any]] = [{} for _ in self.params]
        for name, value in self.check_hyperparameters(hyperparameters).items():
            object.__setattr__(self, name, value)
        for param in self.params:
            _newest_optimizer[id(param)] = self
        interception.note_state_change()

    def __setattr__(self, name: str, value: Any) -> None:
        """Setting a hyperparameter (``opt.lr = 0.01``, a schedule) checks it like the
        constructor does; a captured step reads the new value on its next replay."""
        if name in self.hyperparameter_names:
            buffers = self.buffer_names(self.hyperparameters())
            value = self.check_hyperparameters({**self.hyperparameters(), name: value})[name]
            object.__setattr__(self, name, value)
            if self.buffer_names(self.hyperparameters()) != buffers:
                interception.note_state_change()  # (momentum 0 <-> not: another recording)
            return
        object.__setattr__(self, name, value)
        if name in ("params", "state"):
            interception.note_state_change()

    # -- what subclasses define -----------------------------------------------------
    def check_hyperparameters(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` checked and normalised (floats, bools); raises ArgumentError."""
        raise NotImplementedError

    def buffer_names(self, hyperparameters: Mapping[str, Any]) -> tuple[str, ...]:
        """The per-parameter buffers kept under these hyperparameters."""
        return ()

    def update(self, param: Tensor, grad: Tensor, state: dict[str, Any]) -> Tensor:
        """The parameter's new value; may update ``state``'s buffers in place."""
        raise NotImplementedError

    # -- what users call --------------------------------------------------------------
    def step(self) -> None:
        """Update every parameter that has a gradient."""
        buffers = self.buffer_names(self.hyperparameters())
        interceptor = interception.current_interceptor.get()
        steps = (contextlib.nullcontext() if interceptor is None  # gk.capture: see guarded_state
                 else interceptor.stepping_optimizer(self))
        with steps, no_grad():
            for param, state in zip(self.params, self.state):
                if param.grad is None:
                    continue
                for name in buffers:
                    if name not in state:
                        state[name] = zeros_like(param)
                if self.uses_step:  # a 0-d tensor counted up in place (gk.capture replays it)
                    if "step" not in state:
                        state["step"] = zeros((), dtype="int64", device=param.array_backend)
                    state["step"] += 1
                install(param, self.update(param, param.grad, state))

    def zero_grad(self) -> None:
        """Forget every parameter's gradient."""
        for param in self.params:
            param.grad = None

    def hyperparameters(self) -> dict[str, Any]:
        """The current hyperparameters by name."""
        return {name: getattr(self, name) for name in self.hyperparameter_names}

    def guarded_state(self) -> tuple:
        """What a step that calls ``step()`` depends on besides array values: the
        parameters and buffers (as objects), the buffers the hyperparameters call for,
        and whether this is still the newest optimizer of each parameter. gk.capture
        compares it before replaying; the hyperparameters' values themselves are
        replay inputs.

        >>> import gradkit as gk
        >>> w = gk.tensor([1.0], requires_grad=True)
        >>> opt = gk.optim.SGD([w], lr=0.1)
        >>> before = opt.guarded_state()
        >>> opt.momentum = 0.9          # SGD now keeps a velocity buffer
        >>> opt.guarded_state() == before
        False
        """
        return (tuple(self.params), tuple(tuple(state.items()) for state in self.state),
                self.buffer_names(self.hyperparameters()),
                tuple(_newest_optimizer.get(id(param)) is self for param in self.params))

    # -- saving -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Hyperparameters and per-parameter state as NumPy arrays (``gk.save`` takes it).

        Keys: ``hyperparameters.<name>`` (0-d arrays) and ``state.<i>.<buffer>``,
        ``state.<i>.step`` for parameter ``i`` (in the order given to the optimizer).
        """
        out = {HYPERPARAMETER_PREFIX + name: np.asarray(value)
               for name, value in self.hyperparameters().items()}
        for index, state in enumerate(self.state):
            for name, value in state.items():
                out[f"{STATE_PREFIX}{index}.{name}"] = (
                    value.numpy() if isinstance(value, Tensor) else np.asarray(value, np.int64))
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned; checks everything before changing anything."""
        owner = f"{type(self).__name__}.load_state_dict"
        hyper, per_param, problems = self._split_saved_state(state)
        missing = [n for n in self.hyperparameter_names if n not in hyper]
        if missing:
            problems.append(f"missing keys: {[HYPERPARAMETER_PREFIX + n for n in missing]}")
        if problems:
            raise OptimizerStateError(f"{owner}: " + "; ".join(problems))
        try:
            hyper = self.check_hyperparameters(hyper)
        except ArgumentError as exc:
            raise OptimizerStateError(f"{owner}: saved hyperparameters: {exc}") from None
        new_state = self._checked_param_state(per_param, self.buffer_names(hyper), problems)
        if problems:
            raise OptimizerStateError(f"{owner}: " + "; ".join(problems))
        for name, value in hyper.items():
            object.__setattr__(self, name, value)
        for old, new in zip(self.state, new_state):
            for name, value in new.items():  # keep the tensor objects that exist (a captured
                kept = old.get(name)          # step reads them), holding the loaded arrays
                if isinstance(kept, Tensor) and kept.shape == value.shape and \
                        kept.dtype == value.dtype:
                    kept.write(value.data, source=value)
                    new[name] = kept
        self.state = new_state  # (ticks interception.state_version: see __setattr__)

    def _split_saved_state(self, state: Mapping[str, Any]
                           ) -> tuple[dict[str, Any], dict[int, dict[str, Any]], list[str]]:
        hyper: dict[str, Any] = {}
        per_param: dict[int, dict[str, Any]] = {}
        unexpected = []
        for key, value in state.items():
            value = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
            name = key[len(HYPERPARAMETER_PREFIX):]
            if key.startswith(HYPERPARAMETER_PREFIX) and name in self.hyperparameter_names:
                hyper[name] = value.item() if value.size == 1 else value
                continue
            index, _, buffer = key[len(STATE_PREFIX):].partition(".")
            if key.startswith(STATE_PREFIX) and index.isdigit() and \
                    int(index) < len(self.params) and buffer:
                per_param.setdefault(int(index), {})[buffer] = value
            else:
                unexpected.append(key)
        return hyper, per_param, [f"unexpected keys: {unexpected}"] if unexpected else []

    def _checked_param_state(self, per_param: dict[int, dict[str, Any]],
                             buffers: tuple[str, ...], problems: list[str]
                             ) -> list[dict[str, Any]]:
        expected = set(buffers) | ({"step"} if self.uses_step else set())
        new_state: list[dict[str, Any]] = [{} for _ in self.params]
        for index, saved in sorted(per_param.items()):
            param = self.params[index]
            if set(saved) != expected:
                problems.append(f"state.{index}: expected entries {sorted(expected)}, got "
                                f"{sorted(saved)}")
                continue
            for name, array in saved.items():
                if name == "step":
                    if array.shape != () or array.dtype.kind not in "iu" or array < 0:
                        problems.append(f"state.{index}.step: expected a 0-d count >= 0, got "
                                        f"{array.dtype} {array.shape}")
                    else:
                        new_state[index]["step"] = tensor(array.astype(np.int64),
                                                          backend=param.array_backend)
                elif array.shape != param.shape or array.dtype != param.dtype:
                    problems.append(f"state.{index}.{name}: expected {param.dtype} "
                                    f"{param.shape} (the parameter's), got {array.dtype} "
                                    f"{array.shape}")
                else:
                    new_state[index][name] = tensor(array, backend=param.array_backend)
        return new_state

    def __repr__(self) -> str:
        values = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({len(self.params)} parameters, {values})"
