"""The CUDA backend: arrays on an NVIDIA GPU through CuPy, hot kernels in kernels/*.cu.

Matmul goes to cuBLAS (CuPy's matmul). Activations, their VJPs, the fused
bias+activation and the fused softmax+cross-entropy run CUDA C kernels that
``cupy.RawModule`` compiles from the .cu sources on first use, so importing
gradkit never needs a GPU or CuPy. Every other op runs its reference forward on
CuPy. Select it with ``GRADKIT_BACKEND=cuda`` (or ``cupy``) or ``gk.use_backend("cuda")``.
"""
from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gradkit.backends.base import Backend
from gradkit.registry import get_op

# The activation codes of kernels/activations.cu, in order.
ACTIVATION_KINDS = ("identity", "relu", "leaky_relu", "elu", "sigmoid", "tanh")
THREADS = 256
MAX_BLOCKS = 65535
# The options gradkit gives cupy.RawModule for every kernels/*.cu; CuPy adds its own
# (ci/nvrtc_compile.py lists them) and CI compiles with the same through NVRTC.
COMPILE_OPTIONS = ("-std=c++14",)


def kernel_source(name: str) -> str:
    """The text of kernels/<name>: inside the installed wheel, else in the source tree."""
    packaged = resources.files("gradkit").joinpath("kernels", name)
    if packaged.is_file():
        return packaged.read_text()
    checkout = Path(__file__).resolve().parents[2] / "kernels" / name
    if checkout.is_file():
        return checkout.read_text()
    raise FileNotFoundError(f"CUDA kernel source {name} is neither in the gradkit package "
                            f"(gradkit/kernels/) nor in the source tree ({checkout})")


def kernel_names() -> list[str]:
    """The .cu files under kernels/: the installed wheel's, else the source tree's.

    >>> "softmax_cross_entropy.cu" in kernel_names()
    True
    """
    packaged = resources.files("gradkit").joinpath("kernels")
    if packaged.is_dir():
        return sorted(p.name for p in packaged.iterdir() if p.name.endswith(".cu"))
    return sorted(p.name for p in (Path(__file__).resolve().parents[2] / "kernels").glob("*.cu"))


def name_expressions(source: str) -> list[str]:
    """The templates RawModule instantiates from kernels/<source>: each kernel for float and double.

    >>> name_expressions("optim.cu")
    ['sgd_update<float>', 'sgd_update<double>', 'adam_update<float>', 'adam_update<double>']
    """
    return [f"{kernel}<{c_type}>" for kernel in KERNELS_BY_SOURCE[source]
            for c_type in _C_TYPE.values()]


class CupyNamespace:
    """CuPy, with the Array API names the reference forwards use filled in.

    Older CuPy releases lack some NumPy 2 / Array API spellings (``pow``,
    ``concat``, ``permute_dims``, ``matrix_transpose``, ``astype``, ``bool``,
    ``asin``..., ``bitwise_invert``...).
    """

    def __init__(self, cupy: Any) -> None:
        self._cupy = cupy
        fill_ins: dict[str, Any] = {
            "pow": cupy.power,
            "concat": cupy.concatenate,
            "permute_dims": cupy.transpose,
            "matrix_transpose": lambda x: cupy.swapaxes(x, -1, -2),
            "astype": lambda x, dtype, copy=True: x.astype(dtype, copy=copy),
            "bool": cupy.bool_,
            # the standard's spellings of the math in gradkit/ops/math.py
            "asin": cupy.arcsin, "acos": cupy.arccos, "atan": cupy.arctan,
            "atan2": cupy.arctan2, "asinh": cupy.arcsinh, "acosh": cupy.arccosh,
            "atanh": cupy.arctanh, "bitwise_invert": cupy.invert,
            "bitwise_left_shift": cupy.left_shift, "bitwise_right_shift": cupy.right_shift,
        }
        for name, fill_in in fill_ins.items():
            if not hasattr(cupy, name):
                setattr(self, name, fill_in)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._cupy, name)
        setattr(self, name, value)  # found once, then a plain attribute
        return value


class CudaBackend(Backend):
    """NVIDIA GPUs through CuPy, with gradkit's CUDA C kernels for the hot ops."""

    name = "cuda"
    host_conversion_allowed = False  # np.asarray(t) raises: call t.numpy()
    dlpack_device_type = 2

    def __init__(self) -> None:
        super().__init__()
        self._namespace: CupyNamespace | None = None
        self._modules: dict[str, Any] = {}

    def unavailable_reason(self) -> str | None:
        try:
            import cupy
        except ImportError as exc:
            return (f"CuPy is not installed ({exc}); install it with "
                    "pip install 'gradkit[cuda12]' or 'gradkit[cuda13]' (the CUDA major "
                    "of your driver; 'gradkit[cuda]' is cuda12)")
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDARuntimeError without a driver
            return f"no usable CUDA device: {exc}; check nvidia-smi and the driver"
        if count == 0:
            return "no CUDA device is visible (CUDA_VISIBLE_DEVICES, nvidia-smi)"
        return None

    # -- arrays -----------------------------------------------------------------
    @property
    def xp(self) -> Any:
        if self._namespace is None:
            import cupy
            self._namespace = CupyNamespace(cupy)
            self._register_kernels()
        return self._namespace

    @property
    def array_type(self) -> type:
        import cupy
        return cupy.ndarray

    def asarray(self, data: Any, dtype: np.dtype | None = None) -> Any:
        import cupy
        return cupy.asarray(data, dtype=dtype)

    def copy(self, array: Any) -> Any:
        import cupy
        return cupy.array(array, copy=True)

    def to_numpy(self, array: Any) -> np.ndarray:
        import cupy
        return cupy.asnumpy(array)

    def resolve(self, op: Any) -> Callable[..., Any]:
        self.xp  # noqa: B018  (registers the kernels on first use)
        return super().resolve(op)

    # -- kernels ------------------------------------------------------------------
    def module(self, source: str) -> Any:
        """The compiled RawModule of kernels/<source>, built on first use."""
        if source not in self._modules:
            import cupy
            self._modules[source] = cupy.RawModule(
                code=kernel_source(source), options=COMPILE_OPTIONS,
                name_expressions=name_expressions(source))
        return self._modules[source]

    def function(self, source: str, name: str, dtype: np.dtype) -> Any:
        return self.module(source).get_function(f"{name}<{_C_TYPE[np.dtype(dtype)]}>")

    def _register_kernels(self) -> None:
        for op_name, factory in KERNEL_FACTORIES.items():
            self.register_kernel(op_name, factory(self))


_C_TYPE = {np.dtype("float32"): "float", np.dtype("float64"): "double"}

KERNELS_BY_SOURCE = {
    "activations.cu": ["activation_forward", "activation_backward_from_input",
                       "activation_backward_from_output", "bias_activation_forward"],
    "softmax_cross_entropy.cu": ["softmax_cross_entropy_forward",
                                 "softmax_cross_entropy_backward"],
    "optim.cu": ["sgd_update", "adam_update"],
}


def _blocks(n: int) -> int:
    return max(1, min(MAX_BLOCKS, (n + THREADS - 1) // THREADS))


def _same_float_arrays(*arrays: Any) -> bool:
    """True when the kernels apply: same shape, same float32/float64 dtype, C-contiguous."""
    first = arrays[0]
    return (first.dtype in _C_TYPE and first.size > 0 and
            all(a.dtype == first.dtype and a.shape == first.shape and a.flags.c_contiguous
                for a in arrays))


def _reference(op_name: str, backend: CudaBackend) -> Callable[..., Any]:
    return functools.partial(get_op(op_name).forward, backend.xp)


def _scalars(dtype: np.dtype, kind: str, slope: float, alpha: float) -> tuple:
    """The (kind, slope, alpha) kernel arguments, typed for the kernel's T."""
    return (np.int32(ACTIVATION_KINDS.index(kind)), dtype.type(slope), dtype.type(alpha))


def _activation_params(kind: str, slope: float, alpha: float) -> dict[str, float]:
    """The keyword params the op of this activation takes (for the reference fallback)."""
    return {"leaky_relu": {"slope": slope}, "elu": {"alpha": alpha}}.get(kind, {})


def _activation(op_name: str, kind: str) -> Callable[[CudaBackend], Callable[..., Any]]:
    """Forward kernel of a pointwise activation, e.g. relu."""
    def factory(backend: CudaBackend) -> Callable[..., Any]:
        fallback = _reference(op_name, backend)

        def kernel(x: Any, slope: float = 0.01, alpha: float = 1.0) -> Any:
            if not _same_float_arrays(x):
                return fallback(x, **_activation_params(kind, slope, alpha))
            y = backend.xp.empty_like(x)
            launch = backend.function("activations.cu", "activation_forward", x.dtype)
            launch((_blocks(x.size),), (THREADS,),
                   (x, y, np.int64(x.size)) + _scalars(x.dtype, kind, slope, alpha))
            return y
        return kernel
    return factory


def _launch_pointwise_backward(backend: CudaBackend, name: str, g: Any, saved: Any, kind: str,
                               slope: float, alpha: float) -> Any:
    """``g * act'(.)`` in one pass: ``saved`` is the input (relu...) or the output (sigmoid...)."""
    out = backend.xp.empty_like(g)
    launch = backend.function("activations.cu", name, g.dtype)
    launch((_blocks(g.size),), (THREADS,),
           (g, saved, out, np.int64(g.size)) + _scalars(g.dtype, kind, slope, alpha))
    return out


def _activation_backward(op_name: str, kind: str, from_output: bool
                         ) -> Callable[[CudaBackend], Callable[..., Any]]:
    """VJP kernel ``g * act'(.)`` from the input (relu...) or the output (sigmoid...)."""
    def factory(backend: CudaBackend) -> Callable[..., Any]:
        fallback = _reference(op_name, backend)
        name = "activation_backward_from_output" if from_output else "activation_backward_from_input"

        def kernel(g: Any, saved: Any, slope: float = 0.01, alpha: float = 1.0) -> Any:
            if not _same_float_arrays(g, saved):
                return fallback(g, saved, **_activation_params(kind, slope, alpha))
            return _launch_pointwise_backward(backend, name, g, saved, kind, slope, alpha)
        return kernel
    return factory


def _bias_activation(backend: CudaBackend) -> Callable[..., Any]:
    fallback = _reference("bias_activation", backend)

    def kernel(x: Any, bias: Any, activation: str = "relu", slope: float = 0.01,
               alpha: float = 1.0) -> Any:
        if not (_same_float_arrays(x) and bias.dtype == x.dtype and bias.ndim == 1 and
                bias.flags.c_contiguous and x.ndim >= 1 and x.shape[-1] == bias.shape[0]):
            return fallback(x, bias, activation=activation, slope=slope, alpha=alpha)
        y = backend.xp.empty_like(x)
        launch = backend.function("activations.cu", "bias_activation_forward", x.dtype)
        launch((_blocks(x.size),), (THREADS,),
               (x, bias, y, np.int64(x.size), np.int64(bias.shape[0]))
               + _scalars(x.dtype, activation, slope, alpha))
        return y
    return kernel


def _bias_activation_backward(backend: CudaBackend) -> Callable[..., Any]:
    fallback = _reference("bias_activation_backward", backend)

    def kernel(g: Any, y: Any, activation: str = "relu", slope: float = 0.01,
               alpha: float = 1.0) -> Any:
        if not _same_float_arrays(g, y):
            return fallback(g, y, activation=activation, slope=slope, alpha=alpha)
        return _launch_pointwise_backward(backend, "activation_backward_from_output", g, y,
                                          activation, slope, alpha)
    return kernel


def _row_kernel_applies(logits: Any, labels: Any) -> bool:
    return (logits.ndim == 2 and logits.dtype in _C_TYPE and logits.flags.c_contiguous and
            logits.shape[0] > 0 and logits.shape[1] > 0)


def _cross_entropy(backend: CudaBackend) -> Callable[..., Any]:
    fallback = _reference("cross_entropy", backend)

    def kernel(logits: Any, labels: Any) -> Any:
        if not _row_kernel_applies(logits, labels):
            return fallback(logits, labels)
        xp = backend.xp
        rows, cols = logits.shape
        row_loss = xp.empty((rows,), dtype=logits.dtype)
        launch = backend.function("softmax_cross_entropy.cu", "softmax_cross_entropy_forward",
                                  logits.dtype)
        launch((min(rows, MAX_BLOCKS),), (THREADS,),
               (logits, xp.ascontiguousarray(labels, dtype=xp.int64), row_loss,
                np.int64(rows), np.int64(cols)), shared_mem=THREADS * logits.itemsize)
        return xp.mean(row_loss)
    return kernel


def _cross_entropy_backward(backend: CudaBackend) -> Callable[..., Any]:
    fallback = _reference("cross_entropy_backward", backend)

    def kernel(g: Any, logits: Any, labels: Any) -> Any:
        if not _row_kernel_applies(logits, labels) or g.dtype != logits.dtype:
            return fallback(g, logits, labels)
        xp = backend.xp
        rows, cols = logits.shape
        grad = xp.empty_like(logits)
        launch = backend.function("softmax_cross_entropy.cu", "softmax_cross_entropy_backward",
                                  logits.dtype)
        launch((min(rows, MAX_BLOCKS),), (THREADS,),
               (xp.ascontiguousarray(g), logits, xp.ascontiguousarray(labels, dtype=xp.int64),
                grad, np.int64(rows), np.int64(cols)), shared_mem=THREADS * logits.itemsize)
        return grad
    return kernel


def _scatter_add(backend: CudaBackend) -> Callable[..., Any]:
    """The VJP of indexing: cupyx.scatter_add accumulates repeated indices atomically."""
    from gradkit.ops.shape import _raw_index

    def kernel(values: Any, shape: Any, index: Any) -> Any:
        import cupyx
        out = backend.xp.zeros(shape, dtype=values.dtype)
        cupyx.scatter_add(out, _raw_index(index, backend.xp), values)
        return out
    return kernel


def _sgd_update(backend: CudaBackend) -> Callable[..., Any]:
    """SGD in one pass: reads param and grad, updates velocity in place, returns the new param."""
    fallback = _reference("sgd_update", backend)

    def kernel(param: Any, grad: Any, velocity: Any = None, *, lr: float, momentum: float = 0.0,
               nesterov: bool = False, weight_decay: float = 0.0) -> Any:
        arrays = (param, grad) if velocity is None else (param, grad, velocity)
        if not _same_float_arrays(*arrays):
            return fallback(param, grad, velocity, lr=lr, momentum=momentum,
                            nesterov=nesterov, weight_decay=weight_decay)
        out = backend.xp.empty_like(param)
        t = param.dtype.type
        launch = backend.function("optim.cu", "sgd_update", param.dtype)
        launch((_blocks(param.size),), (THREADS,),
               (param, grad, velocity if momentum != 0 else out, out, np.int64(param.size),
                t(lr), np.int32(momentum != 0), t(momentum), np.int32(bool(nesterov)),
                t(weight_decay)))
        return out
    return kernel


def _adam_update(backend: CudaBackend) -> Callable[..., Any]:
    """Adam/AdamW in one pass: updates m and v in place, returns the new param."""
    fallback = _reference("adam_update", backend)

    def kernel(param: Any, grad: Any, m: Any, v: Any, step: Any, *, lr: float, beta1: float,
               beta2: float, eps: float, weight_decay: float, decoupled: bool) -> Any:
        params = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                      decoupled=decoupled)
        if not _same_float_arrays(param, grad, m, v):
            return fallback(param, grad, m, v, step, **params)
        # The bias corrections are computed on the host from the 0-d step count: one
        # device-to-host copy per update (reading it on the device would avoid that).
        step = int(step)
        out = backend.xp.empty_like(param)
        t = param.dtype.type
        launch = backend.function("optim.cu", "adam_update", param.dtype)
        launch((_blocks(param.size),), (THREADS,),
               (param, grad, m, v, out, np.int64(param.size), t(lr), t(beta1), t(beta2), t(eps),
                t(weight_decay), np.int32(bool(decoupled)), t(1 - beta1 ** step),
                t((1 - beta2 ** step) ** 0.5)))
        return out
    return kernel


KERNEL_FACTORIES: dict[str, Callable[[CudaBackend], Callable[..., Any]]] = {
    "relu": _activation("relu", "relu"),
    "leaky_relu": _activation("leaky_relu", "leaky_relu"),
    "elu": _activation("elu", "elu"),
    "sigmoid": _activation("sigmoid", "sigmoid"),
    "tanh": _activation("tanh", "tanh"),
    "relu_backward": _activation_backward("relu_backward", "relu", from_output=False),
    "leaky_relu_backward": _activation_backward("leaky_relu_backward", "leaky_relu", from_output=False),
    "elu_backward": _activation_backward("elu_backward", "elu", from_output=False),
    "sigmoid_backward": _activation_backward("sigmoid_backward", "sigmoid", from_output=True),
    "tanh_backward": _activation_backward("tanh_backward", "tanh", from_output=True),
    "bias_activation": _bias_activation,
    "bias_activation_backward": _bias_activation_backward,
    "cross_entropy": _cross_entropy,
    "cross_entropy_backward": _cross_entropy_backward,
    "scatter_add": _scatter_add,
    "sgd_update": _sgd_update,
    "adam_update": _adam_update,
}
