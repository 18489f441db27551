"""Modules: layers that own their parameters, and the networks built from them.

A :class:`Module` registers every Tensor that requires a gradient, and every
Module, assigned to it as an attribute; ``named_parameters()`` walks them with
dotted names (``"layers.0.weight"``), ``state_dict()`` copies them to NumPy and
``load_state_dict()`` puts them back, checking every key, shape and dtype first.

>>> import gradkit as gk
>>> model = gk.nn.MLP([2, 8, 3], seed=0)
>>> [name for name, _ in model.named_parameters()]
['layers.0.weight', 'layers.0.bias', 'layers.1.weight', 'layers.1.bias']
>>> model(gk.ones((5, 2))).shape
(5, 3)
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import numpy as np

from gradkit import backends as _backends
from gradkit import interception, ops
from gradkit.dtypes import as_dtype, get_default_dtype
from gradkit.errors import ArgumentError, GradkitError
from gradkit.ops.fused import ACTIVATIONS as FUSED_ACTIVATIONS
from gradkit.tensor import Tensor, tensor


class StateDictError(GradkitError, ValueError):
    """A state dict that does not fit the module: missing or unexpected keys, wrong shapes."""


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(strict=False)`` skipped."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class Module:
    """Base class of layers and networks: parameters, children, train/eval mode.

    Subclasses set parameters (leaf Tensors with ``requires_grad=True``) and
    child modules as attributes in ``__init__`` (after ``super().__init__()``)
    and define ``forward``; calling the module calls ``forward``. Other
    attributes (Tensors without a gradient included) are plain attributes: not
    in ``state_dict()``, not moved by ``to()``.

    >>> import gradkit as gk
    >>> class Affine(gk.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.scale = gk.tensor([2.0], requires_grad=True)
    ...     def forward(self, x):
    ...         return x * self.scale
    >>> Affine()(gk.tensor([3.0])).numpy().tolist()
    [6.0]
    >>> list(Affine().state_dict())
    ['scale']
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    # -- registration ---------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before "
                                 f"assigning attributes (assigning {name!r})")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Tensor) and value.requires_grad and value.is_leaf:
            self.register_parameter(name, value)
        elif isinstance(value, Module):
            self._modules[name] = value
            self.__dict__.pop(name, None)
        else:
            if isinstance(value, (list, tuple)) and any(isinstance(v, Module) for v in value):
                raise TypeError(f"{type(self).__name__}.{name}: a list of modules is not "
                                "registered (its parameters would be missed); wrap it in "
                                "gk.nn.Sequential(*modules)")
            object.__setattr__(self, name, value)
        interception.note_state_change()  # a captured step may have used the old value

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: parameters and children live in dicts.
        for table in ("_parameters", "_modules"):
            entries = self.__dict__.get(table)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        if name in self._parameters:
            del self._parameters[name]
        elif name in self._modules:
            del self._modules[name]
        else:
            object.__delattr__(self, name)
        interception.note_state_change()

    def register_parameter(self, name: str, value: Tensor) -> None:
        """Register ``value`` (a leaf Tensor that requires a gradient) as parameter ``name``."""
        if not isinstance(value, Tensor) or not value.requires_grad or not value.is_leaf:
            raise TypeError(f"{type(self).__name__}.register_parameter: {name!r} must be a "
                            "leaf Tensor with requires_grad=True")
        self.__dict__.pop(name, None)
        self._parameters[name] = value
        interception.note_state_change()

    # -- walking ------------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """This module and every descendant, with dotted names ("" for this one)."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        """This module and every descendant."""
        for _, module in self.named_modules():
            yield module

    def children(self) -> Iterator["Module"]:
        """The direct child modules."""
        yield from self._modules.values()

    def named_parameters(self) -> Iterator[tuple[str, Tensor]]:
        """Every parameter with its dotted name, each shared tensor once."""
        seen: set[int] = set()
        for prefix, module in self.named_modules():
            for name, parameter in module._parameters.items():
                if id(parameter) not in seen:
                    seen.add(id(parameter))
                    yield (f"{prefix}.{name}" if prefix else name), parameter

    def parameters(self) -> Iterator[Tensor]:
        """Every parameter (what an optimizer takes)."""
        for _, parameter in self.named_parameters():
            yield parameter

    # -- modes and calls ----------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Set training mode (Dropout active) on this module and every descendant."""
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        interception.note_state_change()
        return self

    def eval(self) -> "Module":
        """Set evaluation mode (Dropout is the identity); same as ``train(False)``."""
        return self.train(False)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} defines no forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        interceptor = interception.current_interceptor.get()
        if interceptor is not None:  # gk.capture: a replay needs this module as it is now
            interceptor.called_module(self)
        return self.forward(*args, **kwargs)

    def guarded_state(self) -> tuple:
        """What a step that calls this module depends on besides its parameters'
        values: the attributes of this module and of every descendant (parameters and
        children as objects, ``training``, settings such as Dropout's ``p``), one
        ``(module, attributes, parameters, children)`` entry each, this one first: a
        forward may read a child's parameters without calling it. gk.capture compares
        it before replaying.

        >>> import gradkit as gk
        >>> layer = gk.nn.Dropout(0.5)
        >>> before = layer.guarded_state()
        >>> layer.eval() is layer and layer.guarded_state() != before
        True
        """
        return tuple((module, tuple(module.__dict__.items()),
                      tuple(module._parameters.items()), tuple(module._modules.items()))
                     for module in self.modules())

    def zero_grad(self) -> None:
        """Forget every parameter's accumulated gradient."""
        for parameter in self.parameters():
            parameter.grad = None

    # -- moving ---------------------------------------------------------------------------
    def to(self, backend: Any) -> "Module":
        """Move every parameter to ``backend`` (in place); returns the module.

        Moved parameters are new leaf tensors that require a gradient (without a
        ``.grad``); parameters already there stay as they are. Create optimizers
        after moving, since they hold the parameter tensors.
        """
        target = _backends.get(backend)
        moved: dict[int, Tensor] = {}
        for module in self.modules():
            for name, parameter in module._parameters.items():
                if parameter.array_backend is target:
                    continue
                if id(parameter) not in moved:
                    moved[id(parameter)] = tensor(parameter, backend=target, requires_grad=True)
                module._parameters[name] = moved[id(parameter)]
        interception.note_state_change()
        return self

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter as a NumPy copy (dtype kept), keyed by its dotted name."""
        return {name: parameter.numpy() for name, parameter in self.named_parameters()}

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy ``state`` (NumPy arrays or Tensors) into the parameters, on their own backends.

        Everything is checked before anything changes: with ``strict`` a missing
        or unexpected key is an error, and a shape or dtype that differs from the
        parameter's always is (byte order aside: a big-endian array is converted
        to native order, values unchanged). The error lists every problem; on an
        error no parameter has changed. Returns the keys skipped (with ``strict=False``).
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"load_state_dict: expected a dict of arrays, got "
                            f"{type(state).__name__}")
        own = dict(self.named_parameters())
        missing = [key for key in own if key not in state]
        unexpected = [key for key in state if key not in own]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        arrays = {}
        for key in [key for key in own if key in state]:
            array, problem = _host_array(key, state[key], own[key])
            if problem:
                problems.append(problem)
            arrays[key] = array
        if problems:
            raise StateDictError(f"load_state_dict into {type(self).__name__}: "
                                 + "; ".join(problems))
        for key, array in arrays.items():
            _overwrite_parameter(own[key], array)
        return IncompatibleKeys(missing, unexpected)

    # -- printing -------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """What goes between the parentheses of this module's repr."""
        return ""

    def __repr__(self) -> str:
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"  ({name}): " + repr(child).replace("\n", "\n  ")
                 for name, child in self._modules.items()]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


def _host_array(key: str, value: Any, parameter: Tensor) -> tuple[np.ndarray | None, str | None]:
    """``value`` as a NumPy array, or a message saying why it cannot load into ``parameter``."""
    if isinstance(value, Tensor):
        array = value.numpy()
    elif isinstance(value, np.ndarray):
        # a copy in native byte order: big-endian '>f4' from a file loads as float32
        array = np.array(value, dtype=value.dtype.newbyteorder("="), copy=True)
    else:
        return None, f"{key!r}: expected a NumPy array or Tensor, got {type(value).__name__}"
    if array.shape != parameter.shape or array.dtype != parameter.dtype:
        return None, (f"{key!r}: expected {parameter.dtype} {parameter.shape}, "
                      f"got {array.dtype} {array.shape}")
    return array, None


def _overwrite_parameter(parameter: Tensor, array: np.ndarray) -> None:
    """Give ``parameter`` (same Tensor object, so optimizers keep it) new values."""
    backend = parameter.array_backend
    parameter.write(backend.read_only(backend.asarray(array)))


# -- layers --------------------------------------------------------------------------------

INITS = ("he", "xavier")


def initial_weight(in_features: int, out_features: int, init: str,
                   rng: np.random.Generator) -> np.ndarray:
    """An (in_features, out_features) float64 weight drawn by ``init``.

    "he": normal with std sqrt(2 / in_features) (for ReLU-like activations);
    "xavier": Glorot uniform on +-sqrt(6 / (in_features + out_features)).

    >>> import numpy as np
    >>> initial_weight(100, 50, "he", np.random.default_rng(0)).shape
    (100, 50)
    """
    if init == "he":
        return rng.standard_normal((in_features, out_features)) * math.sqrt(2.0 / in_features)
    if init == "xavier":
        bound = math.sqrt(6.0 / (in_features + out_features))
        return rng.uniform(-bound, bound, size=(in_features, out_features))
    raise ArgumentError(f"unknown init {init!r}; choose one of {INITS}")


def _check_features(layer: str, **sizes: Any) -> None:
    for name, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ArgumentError(f"{layer}: {name} must be a positive int, got {size!r}")


class Linear(Module):
    """``x @ weight + bias`` with weight (in_features, out_features), bias zeros.

    ``init``: "he" or "xavier"; ``seed`` feeds ``numpy.random.default_rng``.
    ``dtype`` defaults to gradkit's default float dtype (float32); parameters go
    to the current backend.

    >>> import gradkit as gk
    >>> layer = gk.nn.Linear(3, 2, seed=0)
    >>> layer.weight.shape, layer.bias.numpy().tolist(), layer.weight.dtype
    ((3, 2), [0.0, 0.0], dtype('float32'))
    >>> layer(gk.ones((4, 3))).shape
    (4, 2)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 init: str = "he", seed: int | None = None, dtype: Any = None) -> None:
        super().__init__()
        _check_features("Linear", in_features=in_features, out_features=out_features)
        resolved = get_default_dtype() if dtype is None else as_dtype(dtype, "Linear")
        weight = initial_weight(in_features, out_features, init, np.random.default_rng(seed))
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = tensor(weight, dtype=resolved, requires_grad=True)
        self.bias = (tensor(np.zeros(out_features), dtype=resolved, requires_grad=True)
                     if bias else None)

    def forward(self, x: Tensor) -> Tensor:
        return ops.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Sequential(Module):
    """Modules applied in order; indexable, with ``len`` and iteration.

    >>> import gradkit as gk
    >>> net = gk.nn.Sequential(gk.nn.Linear(2, 4, seed=0), gk.nn.ReLU(), gk.nn.Linear(4, 1))
    >>> len(net), type(net[1]).__name__, net(gk.ones((3, 2))).shape
    (3, 'ReLU', (3, 1))
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential: argument {index} must be a Module, got "
                                f"{type(module).__name__}")
            self._modules[str(index)] = module

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def forward(self, x: Any) -> Any:
        for module in self._modules.values():
            x = module(x)
        return x


class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability ``p`` and
    scale the rest by ``1 / (1 - p)``; in eval mode (and with ``p=0``) the identity.

    The mask comes from ``numpy.random.default_rng(seed)`` on the host, so a seed
    gives the same masks on every backend.

    >>> import gradkit as gk
    >>> drop = gk.nn.Dropout(0.5, seed=0)
    >>> sorted(set(drop(gk.ones(100)).numpy().tolist()))
    [0.0, 2.0]
    >>> drop.eval()(gk.ones(3)).numpy().tolist()
    [1.0, 1.0, 1.0]
    """

    def __init__(self, p: float = 0.5, seed: int | None = None) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, Real) or not 0 <= p < 1:
            raise ArgumentError(f"Dropout: p must be a probability in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = np.random.default_rng(seed)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        keep = self.rng.random(x.shape) >= self.p
        mask = tensor(keep / (1.0 - self.p), dtype=x.dtype, backend=x.array_backend)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


# -- activations ---------------------------------------------------------------------------

class Identity(Module):
    """Returns its input.

    >>> import gradkit as gk
    >>> gk.nn.Identity()(gk.tensor([1.0])).numpy().tolist()
    [1.0]
    """

    def forward(self, x: Tensor) -> Tensor:
        return x


class ReLU(Module):
    """``max(x, 0)``.

    >>> import gradkit as gk
    >>> gk.nn.ReLU()(gk.tensor([-1.0, 2.0])).numpy().tolist()
    [0.0, 2.0]
    """

    def forward(self, x: Tensor) -> Tensor:
        return ops.relu(x)


class LeakyReLU(Module):
    """``x`` where positive, else ``slope * x``.

    >>> import gradkit as gk
    >>> gk.nn.LeakyReLU(0.5)(gk.tensor([-2.0, 2.0])).numpy().tolist()
    [-1.0, 2.0]
    """

    def __init__(self, slope: float = 0.01) -> None:
        super().__init__()
        self.slope = slope

    def forward(self, x: Tensor) -> Tensor:
        return ops.leaky_relu(x, slope=self.slope)

    def extra_repr(self) -> str:
        return f"slope={self.slope}"


class ELU(Module):
    """``x`` where positive, else ``alpha * (exp(x) - 1)``.

    >>> import gradkit as gk
    >>> gk.nn.ELU()(gk.tensor([0.0, 2.0])).numpy().tolist()
    [0.0, 2.0]
    """

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        return ops.elu(x, alpha=self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Sigmoid(Module):
    """``1 / (1 + exp(-x))``.

    >>> import gradkit as gk
    >>> gk.nn.Sigmoid()(gk.tensor([0.0])).numpy().tolist()
    [0.5]
    """

    def forward(self, x: Tensor) -> Tensor:
        return ops.sigmoid(x)


class Tanh(Module):
    """The hyperbolic tangent.

    >>> import gradkit as gk
    >>> gk.nn.Tanh()(gk.tensor([0.0])).numpy().tolist()
    [0.0]
    """

    def forward(self, x: Tensor) -> Tensor:
        return ops.tanh(x)


class Softplus(Module):
    """``log(1 + exp(x))``.

    >>> import gradkit as gk
    >>> round(gk.nn.Softplus()(gk.tensor([0.0])).item(), 4)
    0.6931
    """

    def forward(self, x: Tensor) -> Tensor:
        return ops.softplus(x)


class GELU(Module):
    """GELU (tanh approximation).

    >>> import gradkit as gk
    >>> round(gk.nn.GELU()(gk.tensor([1.0])).item(), 4)
    0.8412
    """

    def forward(self, x: Tensor) -> Tensor:
        return ops.gelu(x)


class Maxout(Module):
    """The max over groups of ``pieces`` consecutive features (last axis shrinks by ``pieces``).

    >>> import gradkit as gk
    >>> gk.nn.Maxout(2)(gk.tensor([[1.0, 5.0, 3.0, 2.0]])).numpy().tolist()
    [[5.0, 3.0]]
    """

    def __init__(self, pieces: int) -> None:
        super().__init__()
        _check_features("Maxout", pieces=pieces)
        self.pieces = int(pieces)

    def forward(self, x: Tensor) -> Tensor:
        return ops.maxout(x, pieces=self.pieces)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


# -- the multilayer perceptron ------------------------------------------------------------

# Activations that run as a module after the linear layer (not fused with the bias).
MODULE_ACTIVATIONS = ("softplus", "gelu", "maxout")
MLP_ACTIVATIONS = FUSED_ACTIVATIONS + MODULE_ACTIVATIONS
XAVIER_ACTIVATIONS = ("sigmoid", "tanh", "identity")


def _check_dims(dims: Any) -> list[int]:
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence) or len(dims) < 2:
        raise ArgumentError(f"MLP: dims must list at least the input and output sizes, "
                            f"e.g. [2, 100, 3]; got {dims!r}")
    for index, size in enumerate(dims):
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ArgumentError(f"MLP: dims[{index}] must be a positive int, got {size!r} "
                                f"(dims={list(dims)!r})")
    return [int(size) for size in dims]


def _activation_module(activation: str, pieces: int) -> Module:
    if activation == "softplus":
        return Softplus()
    if activation == "gelu":
        return GELU()
    return Maxout(pieces)


class MLP(Module):
    """A multilayer perceptron: hidden layers ``act(x @ W + b)``, then linear logits.

    ``dims`` lists the layer widths, input first (``[2, 100, 3]``). Hidden layers
    with an activation in ``gradkit.ops.fused.ACTIVATIONS`` (identity, relu,
    leaky_relu, elu, sigmoid, tanh) run ``gk.bias_activation(gk.linear(x, W), b)``,
    one fused pass on the Numba and CUDA backends; softplus, gelu and maxout run
    ``linear`` then the activation (maxout: the layer outputs ``pieces`` times
    the width). ``init`` defaults to "xavier" for sigmoid/tanh/identity, else "he".
    ``seed`` seeds every layer and the dropout (applied after each hidden
    activation in training mode). ``slope``/``alpha`` are leaky_relu's and elu's.

    >>> import gradkit as gk
    >>> model = gk.nn.MLP([4, 16, 16, 3], activation="tanh", seed=1)
    >>> model(gk.ones((2, 4))).shape
    (2, 3)
    >>> model(gk.ones((2, 4), requires_grad=True)).node.op.name   # logits: plain linear
    'linear'
    """

    def __init__(self, dims: Sequence[int], activation: str = "relu", init: str | None = None,
                 seed: int | None = 0, dropout: float = 0.0, *, slope: float = 0.01,
                 alpha: float = 1.0, pieces: int = 2, dtype: Any = None) -> None:
        super().__init__()
        sizes = _check_dims(dims)
        if activation not in MLP_ACTIVATIONS:
            raise ArgumentError(f"MLP: unknown activation {activation!r}; choose one of "
                                f"{MLP_ACTIVATIONS}")
        if init is None:
            init = "xavier" if activation in XAVIER_ACTIVATIONS else "he"
        if init not in INITS:
            raise ArgumentError(f"MLP: unknown init {init!r}; choose one of {INITS}")
        self.dims, self.activation = sizes, activation
        self.slope, self.alpha = slope, alpha
        self.activation_layer = (None if activation in FUSED_ACTIVATIONS
                                 else _activation_module(activation, pieces))
        widen = self.activation_layer.pieces if activation == "maxout" else 1
        seeds = np.random.SeedSequence(seed).generate_state(len(sizes))
        layers = [Linear(n_in, n_out * (widen if i < len(sizes) - 2 else 1), init=init,
                         seed=int(seeds[i]), dtype=dtype)
                  for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))]
        self.layers = Sequential(*layers)
        self.dropout = Dropout(dropout, seed=int(seeds[-1]))

    def _hidden(self, layer: Linear, x: Tensor) -> Tensor:
        if self.activation_layer is None:
            return ops.bias_activation(ops.linear(x, layer.weight), layer.bias,
                                       activation=self.activation, slope=self.slope,
                                       alpha=self.alpha)
        return self.activation_layer(layer(x))

    def forward(self, x: Tensor) -> Tensor:
        *hidden, last = list(self.layers)
        for layer in hidden:
            x = self.dropout(self._hidden(layer, x))
        return last(x)

    def extra_repr(self) -> str:
        return f"dims={self.dims}, activation={self.activation!r}"
