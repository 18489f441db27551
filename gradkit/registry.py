"""The op registry: every op, defined once, in one global table.

An op has a name, a reference forward written against an array module ``xp``
(so it runs on NumPy, CuPy or any Array-API library), a VJP rule written with
differentiable gradkit ops (so gradients of gradients come free), and the sample
inputs its tests draw. A backend may register a faster kernel for any op; every
other op runs its reference forward on that backend's ``xp``.

>>> import gradkit as gk
>>> gk.registry.get_op("exp").name
'exp'

Adding an op of your own is :func:`register_op` (also ``gk.register_op``).
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from gradkit import backends as _backends
from gradkit.autodiff import Node, grad_enabled
from gradkit.interception import current_interceptor as capture_recording
from gradkit.dtypes import get_default_dtype, is_floating, to_numpy_dtype
from gradkit.errors import (ArgumentError, BackendError, DTypeError, GradkitError, IndexingError,
                            ShapeError,
                            describe_operands)
from gradkit.tensor import Tensor, host_array


class Sample:
    """One test input for an op: positional arrays (float64 NumPy) and keyword params.

    ``Sample(x, y, axis=0)``; ``nondiff`` lists positional arguments that gradcheck
    must not perturb (integer labels, boolean masks are skipped automatically).
    """

    __slots__ = ("args", "params", "nondiff")

    def __init__(self, *args: Any, nondiff: Sequence[int] = (),
                 **params: Any) -> None:
        self.args = args
        self.params = params
        self.nondiff = tuple(nondiff)

    def __repr__(self) -> str:
        shapes = [getattr(a, "shape", a) for a in self.args]
        return f"Sample({shapes}, {self.params})"


SampleFn = Callable[[np.random.Generator], Iterable[Sample]]


class Op:
    """A primitive: reference forward, VJP rule, samples, per-backend kernels.

    ``forward(xp, *arrays, **params) -> array`` runs on raw arrays.
    ``vjp(ctx, g) -> tuple`` gets the tape node (``ctx.inputs``, ``ctx.out``,
    ``ctx.params``, ``ctx.needs``) and the upstream gradient ``g`` as Tensors, and
    returns one gradient (or None) per input, built from gradkit ops.
    ``vjp=None`` marks an op with no gradient (comparisons, argmax).
    ``float_only=True`` marks a function of real numbers (``exp``, ``mean``): dispatch
    computes its integer and bool operands in float (see :func:`float_operands`).
    """

    def __init__(self, name: str, forward: Callable[..., Any],
                 vjp: Callable[..., tuple] | None, samples: SampleFn | None,
                 family: str, variadic: bool = False,
                 check: Callable[..., None] | None = None, check_values: bool = False,
                 value_shaped: bool = False, index_param: str | None = None,
                 float_only: bool | None = None, output_backend: str | None = None) -> None:
        self.name = name
        self.forward = forward
        self.vjp = vjp
        self.samples = samples
        self.family = family
        self.variadic = variadic
        self.check = check
        self.check_values = check_values  # the check reads values: gk.capture reruns it
        # the result's shape depends on the input values (gk.capture refuses such a step)
        self.value_shaped = value_shaped
        self.index_param = index_param  # the param holding an index: a boolean mask there
        # makes the result's shape depend on values too
        self.float_only = float_only  # None until registered: keep a replaced op's (_add)
        # the param naming the backend the result lives on (a move between backends);
        # for every other op, the result lives on its inputs' backend
        self.output_backend = output_backend
        self.function: Callable[..., Any] | None = None
        self.registered = False
        self.arg_names: list[str] = []  # the array arguments, named in error messages

    @property
    def differentiable(self) -> bool:
        return self.vjp is not None

    def __call__(self, *args: Any, **params: Any) -> Any:
        return self.function(*args, **params)

    def __repr__(self) -> str:
        return f"<gradkit op {self.name}>"


class Composite:
    """A public function built from other ops; its gradient follows from theirs.

    Composites sit in the same table as primitives so the generated tests check
    their gradients too.
    """

    def __init__(self, name: str, function: Callable[..., Any], samples: SampleFn | None,
                 family: str, differentiable: bool = True, variadic: bool = False,
                 float_only: bool = False) -> None:
        self.name = name
        self.function = function
        self.float_only = float_only  # its function casts integer and bool tensors first
        self.samples = samples
        self.family = family
        self.differentiable = differentiable
        self.variadic = variadic  # takes its tensors as one sequence (stack)

    def __call__(self, *args: Any, **params: Any) -> Any:
        return self.function(*args, **params)

    def __repr__(self) -> str:
        return f"<gradkit composite {self.name}>"


OPS: dict[str, Op | Composite] = {}
# Bumped whenever an op's definition is replaced: gk.capture records anew after that.
definitions_changed = 0


def get_op(name: str) -> Op | Composite:
    """The registered op called ``name``."""
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"no op named {name!r}; registered: {sorted(OPS)}") from None


def _add(entry: Op | Composite, replace: bool) -> Op | Composite:
    """Put ``entry`` in the table; returns what sits there now.

    Replacing an Op updates the registered Op in place, so every function, method
    and VJP that already holds it runs the new forward and VJP. The new forward
    must take the same arguments.
    """
    existing = OPS.get(entry.name)
    if existing is not None and not replace:
        raise ValueError(f"an op named {entry.name!r} is already registered; "
                         "pass replace=True to override it")
    if isinstance(existing, Op) and isinstance(entry, Op):
        old = list(inspect.signature(existing.forward).parameters)[1:]
        new = list(inspect.signature(entry.forward).parameters)[1:]
        if old != new:
            raise ValueError(f"register_op: replacing {entry.name!r} needs the same "
                             f"arguments {old}, got {new}")
        global definitions_changed
        definitions_changed += 1
        for field in ("forward", "vjp", "samples", "check", "check_values"):
            setattr(existing, field, getattr(entry, field))
        if entry.float_only is not None:  # else the replaced op's dtype rule stays
            existing.float_only = entry.float_only
        for backend in _backends.instantiated():
            backend.invalidate(entry.name)
        return existing
    if existing is not None:
        if isinstance(existing, Op):
            existing.registered = False
    OPS[entry.name] = entry
    if isinstance(entry, Op):
        entry.registered = True
        entry.float_only = bool(entry.float_only)
    return entry


def unregister_op(name: str) -> None:
    """Remove a user op from the table (its functions stop dispatching).

    Built-in ops cannot be removed (other ops' gradients call them); replace one
    with ``register_op(name, ..., replace=True)`` instead.
    """
    entry = OPS.get(name)
    if entry is None:
        return
    if entry.family != "user":
        raise ValueError(f"unregister_op: {name!r} is a built-in op; override it with "
                         "register_op(..., replace=True) instead")
    del OPS[name]
    if isinstance(entry, Op):
        entry.registered = False


def _shown_signature(op: Op, signature: inspect.Signature, array_params: list,
                     keyword_params: list, positional: Sequence[str]) -> inspect.Signature:
    """The public function's signature, as the Array API standard writes it: the arrays
    positional-only; the params in ``positional`` next (positional-only when listed
    before a ``"/"`` entry, else positional-or-keyword); every other param keyword-only."""
    P = inspect.Parameter
    only = positional[:positional.index("/")] if "/" in positional else ()
    named = [name for name in positional if name != "/"]
    if [p.name for p in keyword_params[:len(named)]] != named:
        raise ValueError(f"{op.name}: positional params {named} must come first among the "
                         f"forward's keyword-only params {[p.name for p in keyword_params]}")
    if op.variadic:
        arrays = [P("arrays", P.POSITIONAL_ONLY)]
    else:
        arrays = [p.replace(kind=P.POSITIONAL_ONLY) for p in array_params]
    shown = arrays + [p.replace(kind=P.POSITIONAL_ONLY if p.name in only else P.POSITIONAL_OR_KEYWORD)
                      for p in keyword_params[:len(named)]] + keyword_params[len(named):]
    return signature.replace(parameters=shown)


# Param types that need no conversion (the common case, checked first: bind is hot).
_PLAIN_PARAMS = frozenset({int, float, bool, str, type(None), tuple, list})


def _plain_params(params: dict[str, Any], known: set[str]) -> bool:
    """Whether ``params`` are all the op's own, by keyword, of plain types: then
    ``bind`` has nothing to do (the common call, ``gk.sum(x, axis=0)``)."""
    for name, value in params.items():
        if name not in known or type(value) not in _PLAIN_PARAMS:
            return False
    return True


def _public_function(op: Op, forward: Callable[..., Any],
                     positional: Sequence[str] = ()) -> Callable[..., Any]:
    """A real Python function for ``op``: its name, docstring and signature minus ``xp``.

    The forward's positional parameters are the array inputs; its keyword-only
    parameters are the op's params, which callers may also pass positionally
    after the arrays (``gk.sum(x, 0)``). Trailing optional arrays passed as None
    (``linear(x, W, None)``) are dropped. The signature shown is the standard's
    (see ``_shown_signature``).
    """
    P = inspect.Parameter
    signature = inspect.signature(forward)
    after_xp = list(signature.parameters.values())[1:]
    array_params = [p for p in after_xp if p.kind is P.POSITIONAL_OR_KEYWORD]
    keyword_params = [p for p in after_xp if p.kind is P.KEYWORD_ONLY]
    param_names = [p.name for p in keyword_params]
    array_names = {p.name: i for i, p in enumerate(array_params)}
    op.arg_names = list(array_names)
    known = set(param_names)
    # Every call records its params complete, defaults included, so a VJP reads
    # ctx.params["axis"] without repeating the op's defaults.
    defaults = {p.name: p.default for p in keyword_params if p.default is not P.empty}
    n_required = sum(p.default is P.empty for p in array_params)

    def bind(args: tuple, params: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        if len(args) > len(array_params) and not op.variadic:
            extra, args = args[len(array_params):], args[:len(array_params)]
            if len(extra) > len(param_names):
                raise TypeError(f"{op.name}: takes {len(array_params)} array argument(s) and "
                                f"params {param_names}, got {len(args) + len(extra)} positional")
            for name, value in zip(param_names, extra):
                if name in params:
                    raise TypeError(f"{op.name}: got two values for {name!r}")
                params[name] = value
        for name, value in list(params.items()):
            if type(value) not in _PLAIN_PARAMS and isinstance(value, np.generic):
                # a NumPy scalar param (slope=np.float64(0.1)) is a Python number: it
                # takes the tensor's dtype, as Python numbers do (and as in PyTorch)
                params[name] = value.item()
            if name in array_names:
                args = args + (None,) * (array_names[name] + 1 - len(args))
                args = args[:array_names[name]] + (params.pop(name),) + args[array_names[name] + 1:]
            elif name not in known:
                raise TypeError(f"{op.name}: unexpected argument {name!r}; it takes "
                                f"{[p.name for p in array_params] + param_names}")
        while len(args) > n_required and args[-1] is None:
            args = args[:-1]
        return args, params

    if op.variadic:
        def function(arrays: Sequence[Any], /, **params: Any) -> Tensor:
            if params.keys() - known:
                bind((), params)
            return dispatch(op, tuple(arrays), {**defaults, **params})
    else:
        n_arrays = len(array_params)

        def function(*args: Any, **params: Any) -> Tensor:
            if len(args) != n_arrays or params and (
                    (args and args[-1] is None) or not _plain_params(params, known)):
                args, params = bind(args, params)
            return dispatch(op, args, {**defaults, **params} if defaults else params)
    functools.update_wrapper(function, forward)
    del function.__wrapped__
    function.__signature__ = _shown_signature(  # type: ignore[attr-defined]
        op, signature, array_params, keyword_params, positional)
    function.op = op  # type: ignore[attr-defined]
    return function


def primitive(name: str | None = None, *, vjp: Callable[..., tuple] | None,
              samples: SampleFn | None, family: str = "user", variadic: bool = False,
              check: Callable[..., None] | None = None, check_values: bool = False,
              value_shaped: bool = False, index_param: str | None = None,
              replace: bool = False, positional: Sequence[str] = (),
              float_only: bool | None = None, output_backend: str | None = None
              ) -> Callable[[Callable[..., Any]], Callable[..., Tensor]]:
    """Decorator: turn a reference forward ``f(xp, *arrays, **params)`` into an op.

    ``check(*tensors, **params)`` validates the operands before the kernel runs;
    ``check_values=True`` says it reads their values (not only shapes and dtypes),
    so :func:`gradkit.capture` runs it again on every replay.
    ``value_shaped=True`` says the result's shape depends on the input values
    (``argwhere``); ``index_param`` names the param holding an index, where a boolean
    mask does the same (``getitem``'s ``index``). :func:`gradkit.capture` refuses both.
    ``output_backend`` names the param that says which backend the result lives on (a
    move between backends); otherwise it lives on the inputs' backend.

    ``float_only=True``: a function of real numbers (the Array API standard's "should
    have a floating-point data type"); integer and bool operands are computed in float
    (:func:`float_operands`), so the forward only ever sees floats. Replacing an op
    (``replace=True``) keeps its rule unless ``float_only`` is given.

    ``positional`` names the first params, which the public signature shows after the
    arrays without ``*``, as the Array API standard does: ``("shape",)`` for
    ``reshape(x, /, shape, *, copy=None)``; a ``"/"`` entry makes the names before it
    positional-only: ``("repetitions", "/")`` for ``tile(x, repetitions, /)``.

    Returns the public function (dispatching to the op); the :class:`Op` is its
    ``.op`` attribute and sits in the registry under ``name``.
    """
    def decorate(forward: Callable[..., Any]) -> Callable[..., Tensor]:
        op = Op(name or forward.__name__, forward, vjp, samples, family, variadic, check,
                check_values, value_shaped=value_shaped, index_param=index_param,
                float_only=float_only, output_backend=output_backend)
        op.function = _public_function(op, forward, positional)
        return _add(op, replace).function
    return decorate


def composite(name: str | None = None, *, samples: SampleFn | None, family: str = "user",
              differentiable: bool = True, replace: bool = False, variadic: bool = False,
              float_only: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register a function built from other ops (gradient for free).

    ``variadic=True``: the function takes its tensors as one sequence (``stack``).
    ``float_only=True``: as for :func:`primitive`, for a function of one array, its first
    argument (``var``, ``linalg.vector_norm``; ``matrix_power``'s ``n`` stays as it is):
    an integer or bool Tensor or NumPy array there is cast by :func:`float_operands`
    before the function runs.
    """
    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        if float_only:
            function = _casting_float_arguments(function)
        entry = Composite(name or function.__name__, function, samples, family, differentiable,
                          variadic, float_only)
        _add(entry, replace)
        function.op = entry  # type: ignore[attr-defined]
        return function
    return decorate


def call_sample(entry: Op | Composite, tensors: Sequence[Any], params: dict[str, Any]) -> Any:
    """Call ``entry`` on a sample's tensors and params, as its signature wants them: the
    tensors as one list for a variadic op, positional-only params (``tile``'s
    ``repetitions``, ``moveaxis``'s axes) by position, the others by name."""
    if entry.variadic:
        return entry.function(list(tensors), **params)
    P = inspect.Parameter
    only = [p.name for p in inspect.signature(entry.function).parameters.values()
            if p.kind is P.POSITIONAL_ONLY][len(tensors):]
    params = dict(params)
    by_position = [params.pop(name) for name in only if name in params]
    return entry.function(*tensors, *by_position, **params)


def register_op(name: str, forward: Callable[..., Any], vjp: Callable[..., tuple] | None,
                samples: SampleFn | None = None, replace: bool = False,
                float_only: bool | None = None) -> Callable[..., Tensor]:
    """Add your own differentiable op; returns the function that calls it.

    ``forward(xp, *arrays, **params)`` computes the output from raw arrays of the
    tensors' backend (``xp`` is its array module). ``vjp(ctx, g)`` returns one
    gradient per input, built from gradkit ops so that higher-order gradients work:
    ``ctx.inputs`` are the input Tensors, ``ctx.out`` the output, ``ctx.params``
    the keyword params, ``ctx.needs[i]`` whether input ``i`` needs a gradient.
    This plays the role of ``jax.custom_vjp`` / ``torch.autograd.Function``.
    ``float_only=True``: integer and bool operands reach ``forward`` as floats
    (:func:`float_operands`).

    >>> import gradkit as gk
    >>> def cube_forward(xp, x):
    ...     return x ** 3
    >>> def cube_vjp(ctx, g):
    ...     (x,) = ctx.inputs
    ...     return (g * 3 * x * x,)
    >>> cube = gk.register_op("cube_doc_example", cube_forward, cube_vjp)
    >>> gk.grad(lambda x: cube(x))(gk.tensor(2.0)).item()
    12.0
    >>> gk.unregister_op("cube_doc_example")
    """
    return primitive(name, vjp=vjp, samples=samples, family="user", replace=replace,
                     float_only=float_only)(forward)


# -- arguments every op checks the same way ---------------------------------------

def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def as_shape(shape: Any, where: str, argument: str = "shape", *, infer: bool = False,
             operand: Any = None) -> tuple[int, ...]:
    """``shape`` (an integer or a tuple/list of integers, Python or NumPy) as a tuple of
    Python ints.

    Anything else (floats, strings, bools, negative sizes) is an ArgumentError naming
    ``where``, ``argument`` and ``operand`` (the tensor being reshaped), never a size
    truncated from a float. ``infer=True`` lets one entry be -1 (reshape).

    >>> as_shape((2, 3), "zeros"), as_shape(4, "zeros")
    ((2, 3), (4,))
    >>> as_shape((2.9, 1), "zeros")
    Traceback (most recent call last):
    gradkit.errors.ArgumentError: zeros: shape must be an integer or a tuple of integers, got (2.9, 1)
    """
    if type(shape) is tuple:  # the common case: Python ints, no -1 (a loop: it is hot)
        for n in shape:
            if type(n) is not int or n < 0:
                break
        else:
            return shape
    entries = (shape,) if _is_integer(shape) else shape
    if not isinstance(entries, (tuple, list)) or not all(_is_integer(n) for n in entries):
        raise ArgumentError(f"{where}: {argument} must be an integer or a tuple of integers, "
                            f"got {shape!r}{_operand_suffix(operand)}")
    result = tuple([int(n) for n in entries])
    negative = [n for n in result if n < 0]
    if negative and not (infer and negative == [-1]):
        allowed = "; one entry may be -1" if infer else ""
        raise ArgumentError(f"{where}: {argument} {shape!r} has a negative size{allowed}"
                            f"{_operand_suffix(operand)}")
    return result


def _operand_suffix(operand: Any) -> str:
    return "" if operand is None else f" (operand: {describe_operands(['x'], [operand])})"


def as_size(value: Any, where: str, argument: str) -> int:
    """A single non-negative integer ``value`` (a count, a matrix size) as a Python int."""
    if not _is_integer(value):
        raise ArgumentError(f"{where}: {argument} must be an integer, got {value!r}")
    return as_shape(value, where, argument)[0]


# -- dispatch: the hot path ----------------------------------------------------

# Python numbers met by ops, as read-only 0-d arrays: (type, value, dtype, backend) ->
# array. A chain like ``y * 1.0001 + 0.0001`` then converts each number once.
_NUMBER_ARRAYS: dict[tuple, Any] = {}
_NUMBER_ARRAYS_MAX = 1024


def _number_array(value: int | float, dtype: np.dtype, backend: Any) -> Any:
    """``value`` as a read-only 0-d array of ``dtype`` on ``backend`` (cached)."""
    if value == 0 and type(value) is float:  # 0.0 == -0.0: the sign must not be cached away
        return backend.asarray(value, dtype=dtype)
    key = (type(value), value, dtype, backend)
    array = _NUMBER_ARRAYS.get(key)
    if array is None:
        array = backend.read_only(backend.asarray(value, dtype=dtype), in_place=True)
        if len(_NUMBER_ARRAYS) >= _NUMBER_ARRAYS_MAX:  # NaNs never hit: keep it bounded
            _NUMBER_ARRAYS.clear()
        _NUMBER_ARRAYS[key] = array
    return array


def _lift(value: Any, backend: Any, like_dtype: np.dtype | None, op: Op, index: int,
          args: tuple) -> Tensor:
    """A non-Tensor operand (``args[index]``) as a constant Tensor on ``backend``.

    Python scalars are weakly typed, as in NumPy 2 and JAX: they take the dtype of
    the tensor they meet (a float meeting an int tensor takes the default float).
    """
    kind = type(value)
    if kind is float:
        dtype = like_dtype if like_dtype is not None and is_floating(like_dtype) else get_default_dtype()
        return Tensor(_number_array(value, dtype, backend), backend)
    if kind is int:
        dtype = like_dtype if like_dtype is not None and like_dtype.kind in "iuf" else np.dtype("int64")
        try:
            return Tensor(_number_array(value, dtype, backend), backend)
        except OverflowError:  # -1 meeting uint8, 2 ** 70 meeting int64
            raise _argument_error(DTypeError, op, index, args,
                                  f"({value}) does not fit {dtype}, the dtype of the tensor it "
                                  "meets; pass it as a tensor of a wider dtype") from None
    if kind is bool:
        dtype = np.dtype(bool) if like_dtype is None or like_dtype.kind == "b" else like_dtype
        return Tensor(_number_array(value, dtype, backend), backend)
    if isinstance(value, (int, float)):  # subclasses (np.float64 is a float): weak too
        plain = bool(value) if isinstance(value, bool) else (
            int(value) if isinstance(value, int) else float(value))
        return _lift(plain, backend, like_dtype, op, index, args)
    return _lift_array(value, backend, op, index, args)


def _argument_error(cls: type, op: Op, index: int, args: tuple, why: str) -> GradkitError:
    """``cls``: ``op``'s argument ``index`` ``why``, naming every operand."""
    names = _operand_names(op, len(args))
    return cls(f"{op.name}: argument {names[index]} {why} (operands: "
               f"{describe_operands(names, list(args))})")


def _lift_array(value: Any, backend: Any, op: Op, index: int, args: tuple) -> Tensor:
    """An array-like operand (NumPy array or scalar, list) as a constant Tensor.

    Complex values (gradkit has no complex dtypes), ragged lists and non-numeric
    data are refused, naming the op, the argument and every operand.
    """
    if hasattr(value, "dtype"):
        array = value
    else:
        try:
            array = host_array(value)
        except GradkitError:  # a list holding a tensor that refuses to leave the graph
            raise
        except (ValueError, TypeError) as exc:
            raise _argument_error(ShapeError, op, index, args,
                                  f"({type(value).__name__}) is not a rectangular array of "
                                  f"numbers: {exc}") from exc
        if array.dtype == np.float64:
            array = array.astype(get_default_dtype())
    kind = to_numpy_dtype(array.dtype).kind
    if kind not in "biuf":
        what = ("is complex; gradkit has no complex dtypes (use the real and imaginary "
                "parts as two real tensors)") if kind == "c" else \
            f"has dtype {array.dtype}, which is not numeric"
        raise _argument_error(DTypeError, op, index, args, what)
    try:
        return Tensor(backend.asarray(array), backend)
    except Exception as exc:
        raise BackendError(f"{op.name}: argument {index} ({type(value).__name__}) cannot "
                           f"move to backend {backend.name}: {exc}") from exc


def _common_backend(op: Op, args: tuple) -> Any:
    backend = None
    for value in args:
        if isinstance(value, Tensor):
            if backend is None:
                backend = value.array_backend
            elif value.array_backend is not backend:
                names = [f"arg{i}" for i in range(len(args))]
                raise BackendError(
                    f"{op.name}: operands live on different backends "
                    f"({backend.name} and {value.array_backend.name}): "
                    f"{describe_operands(names, list(args))}; move one with "
                    f".to({backend.name!r}) or .to({value.array_backend.name!r})")
    return backend if backend is not None else _backends.get_backend()


def _as_tensors(op: Op, args: tuple) -> tuple[Tensor, ...]:
    """``args`` with every non-Tensor lifted to a constant on the tensors' backend."""
    if len(args) == 2:  # the common case first: a float tensor and a Python float
        x, y = args
        if type(y) is float and type(x) is Tensor and type(x.data.dtype) in _FLOAT_DTYPES:
            return x, Tensor(_number_array(y, x.data.dtype, x.array_backend), x.array_backend)
        if type(x) is float and type(y) is Tensor and type(y.data.dtype) in _FLOAT_DTYPES:
            return Tensor(_number_array(x, y.data.dtype, y.array_backend), y.array_backend), y
    backend = _common_backend(op, args)
    if op.float_only:
        return _as_float_tensors(op, args, backend)
    like = None
    for value in args:
        if type(value) is Tensor:
            dtype = value.dtype
            like = dtype if like is None or like == dtype else np.promote_types(like, dtype)
    return tuple([v if type(v) is Tensor else _lift(v, backend, like, op, i, args)
                  for i, v in enumerate(args)])


# -- float-only ops: integer and bool operands are computed in float --------------

# NumPy's (and CuPy's) float dtype classes: a set of types compares no dtype objects, so
# another library's dtype (array-api-strict's) is simply not in it, and takes the slow path
_FLOAT_DTYPES = frozenset([type(np.dtype(name)) for name in ("float16", "float32", "float64")])
_FLOAT32 = np.dtype("float32")  # the common case, checked by identity first


def float_dtype_of(values: Sequence[Any]) -> np.dtype:
    """The float dtype a float-only op computes ``values`` in: the promotion of the
    float Tensors among them, or the default float dtype when there is none.

    Integer and bool tensors, like Python numbers, take the dtype of the floats they
    meet, as in PyTorch and JAX (``atan2(float16, int64)`` is float16).

    >>> import gradkit as gk
    >>> float_dtype_of([gk.tensor([1, 2])]), float_dtype_of([gk.tensor([1.0], dtype="float64"), 2])
    (dtype('float32'), dtype('float64'))
    """
    target = None
    for value in values:
        if isinstance(value, Tensor):
            dtype = value.dtype
            if dtype.kind == "f":
                target = dtype if target is None or target == dtype else \
                    np.promote_types(target, dtype)
    return get_default_dtype() if target is None else target


def float_operands(op: Op | Composite, tensors: Sequence[Any]) -> tuple:
    """``tensors`` with every integer and bool Tensor cast to :func:`float_dtype_of`
    them (other values pass through): what a float-only op computes on.

    The rule for every function the Array API standard defines for floating-point
    inputs only: ``gk.exp(int8 tensor)`` is float32 (the default float dtype, as in
    PyTorch), not NumPy's float16; a mix (float64, int64) computes in float64. The cast
    is an ``astype`` call, so ``gk.capture`` records it; integer tensors cannot need a
    gradient, so the float operands' gradients are those of the op itself.
    """
    target = float_dtype_of(tensors)
    cast = OPS["astype"]
    return tuple([dispatch(cast, (t,), {"dtype": target})
                  if isinstance(t, Tensor) and t.dtype.kind != "f" else t for t in tensors])


def _as_float_tensors(op: Op, args: tuple, backend: Any) -> tuple[Tensor, ...]:
    """``_as_tensors`` for a float-only op: its Python numbers take the float dtype its
    operands are computed in (``atan2(int8 tensor, 300)`` is fine: 300 meets float32,
    not int8), and its integer and bool tensors are cast to it (:func:`float_operands`)."""
    like = None
    cast = False  # an integer or bool tensor (or another library's dtype object: look closer)
    for value in args:
        if type(value) is Tensor:
            dtype = value.data.dtype
            if dtype is _FLOAT32 or type(dtype) in _FLOAT_DTYPES:
                like = dtype if like is None or like == dtype else np.promote_types(like, dtype)
            else:
                cast = True
        elif not isinstance(value, (int, float)):  # an array (not weak: its dtype counts)
            return _as_float_tensors(op, tuple([
                v if type(v) is Tensor or isinstance(v, (int, float)) else
                _lift_array(v, backend, op, i, args) for i, v in enumerate(args)]), backend)
    if cast or like is None:
        like = float_dtype_of(args)
    args = tuple([v if type(v) is Tensor else _lift(v, backend, like, op, i, args)
                  for i, v in enumerate(args)])
    return float_operands(op, args) if cast else args


def _casting_float_arguments(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` (a float-only composite of one array) with its first argument, when
    an integer or bool Tensor or NumPy array, computed in float (:func:`float_operands`)."""
    first = next(iter(inspect.signature(function).parameters))

    def in_float(x: Any) -> Any:
        if isinstance(x, np.ndarray) and x.dtype.kind != "f":
            backend = _backends.get_backend()
            x = Tensor(backend.asarray(x), backend)
        if isinstance(x, Tensor) and x.dtype.kind != "f":
            (x,) = float_operands(cast_first.op, (x,))
        return x

    @functools.wraps(function)
    def cast_first(*args: Any, **params: Any) -> Any:
        if args:
            args = (in_float(args[0]),) + args[1:]
        elif first in params:
            params[first] = in_float(params[first])
        return function(*args, **params)
    return cast_first


def _operand_names(op: Op, count: int) -> list[str]:
    """What error messages call an op's ``count`` operands (its forward's argument names)."""
    if op.variadic:
        return [f"arrays[{i}]" for i in range(count)]
    last = op.arg_names[-1] if op.arg_names else "arg"
    return [op.arg_names[i] if i < len(op.arg_names) else f"{last}{i}" for i in range(count)]


def op_error(op: Op, tensors: tuple, exc: Exception) -> GradkitError:
    """A library's exception from a kernel, as a gradkit error naming op and operands."""
    names = _operand_names(op, len(tensors))
    operands = describe_operands(names, list(tensors))
    cls = (DTypeError if isinstance(exc, TypeError) else
           IndexingError if isinstance(exc, IndexError) else
           ArgumentError if type(exc).__name__ == "LinAlgError" else ShapeError)  # singular...
    return cls(f"{op.name}: {exc} (operands: {operands})")


def dispatch(op: Op, args: tuple, params: dict[str, Any]) -> Tensor:
    """Run ``op`` on the backend that owns the tensors; record a tape node if needed.

    This is the hot path of every op: one pass over the arguments, one kernel
    call, and a Node only when grad mode is on and some input needs a gradient.
    """
    if not op.registered:
        raise KeyError(f"op {op.name!r} was unregistered")
    backend = None
    needs_grad = False
    float_only = op.float_only
    cast = False
    for a in args:
        if type(a) is not Tensor:
            args = _as_tensors(op, args)
            backend = args[0].array_backend if args else _backends.get_backend()
            needs_grad = True in [t._requires_grad for t in args]
            break
        if backend is None:
            backend = a.array_backend
        elif a.array_backend is not backend:
            _common_backend(op, args)  # raises, naming both backends
        if a._requires_grad:
            needs_grad = True  # (a float: only those can require a gradient)
        elif float_only and a.data.dtype is not _FLOAT32 and \
                type(a.data.dtype) not in _FLOAT_DTYPES:
            cast = True
    if backend is None:
        backend = _backends.get_backend()
    if cast:  # a float-only op: integer and bool operands computed in float
        args = float_operands(op, args)
    if op.check is not None:
        op.check(*args, **params)
    kernel = backend.resolved.get(op.name) or backend.resolve(op)
    recorder = capture_recording.get()
    if recorder is not None:  # (before the launch: a kernel may update an operand in place)
        recorder.will_launch(args)
    try:  # (one and two operands spelled out: most ops, and faster than a list)
        n_args = len(args)
        out = (kernel(args[0].data, **params) if n_args == 1 else
               kernel(args[0].data, args[1].data, **params) if n_args == 2 else
               kernel(*[t.data for t in args], **params))
    except GradkitError:
        raise
    except (ValueError, TypeError, IndexError) as exc:
        raise op_error(op, args, exc) from exc
    if op.output_backend is not None:  # a move: the result lives on another backend
        backend = _backends.get(params[op.output_backend])
    converted = type(out) is not backend.array_type
    if converted:
        out = backend.asarray(out)
    if recorder is not None:
        recorder.kernel(op, kernel, args, params, out, converted, backend)
    if needs_grad and op.vjp is not None and grad_enabled.get() and \
            (getattr(out.dtype, "kind", None) or to_numpy_dtype(out.dtype).kind) == "f":
        needs = ((args[0]._requires_grad,) if n_args == 1 else
                 (args[0]._requires_grad, args[1]._requires_grad) if n_args == 2 else
                 tuple([t._requires_grad for t in args]))
        return Tensor(out, backend, Node(op, args, params, out, backend, needs))
    return Tensor(out, backend)
