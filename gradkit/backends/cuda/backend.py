"""The CUDA backend: arrays on an NVIDIA GPU through CuPy, hot kernels in kernels/*.cu.

Matmul goes to cuBLAS (CuPy's matmul). Activations, their VJPs, the fused
bias+activation and the fused softmax+cross-entropy run CUDA C kernels that
``cupy.RawModule`` compiles from the .cu sources on first use, so importing
gradkit never needs a GPU or CuPy. Every other op runs its reference forward on
CuPy. Select it with ``GRADKIT_BACKEND=cuda`` (or ``cupy``) or ``gk.use_backend("cuda")``.
The kernels are made by the factories of ``KERNEL_FACTORIES`` (``factory(backend, op,
reference)``, gradkit/backends/base.py) on each op's first use.
"""
from __future__ import annotations

import weakref
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from gradkit.backends.base import Backend, Kernel, KernelFactory
from gradkit.indexing import is_advanced, raw_index

# The activation codes of kernels/activations.cu, in order.
ACTIVATION_KINDS = ("identity", "relu", "leaky_relu", "elu", "sigmoid", "tanh")
THREADS = 256
MAX_BLOCKS = 65535
# The options gradkit gives cupy.RawModule for every kernels/*.cu; CuPy adds its own
# (ci/nvrtc_compile.py lists them) and CI compiles with the same through NVRTC.
COMPILE_OPTIONS = ("-std=c++14",)

# Each .cu file of kernels/ and the kernel templates gradkit launches from it.
KERNELS_BY_SOURCE = {
    "activations.cu": ["activation_forward", "activation_backward_from_input",
                       "activation_backward_from_output", "bias_activation_forward"],
    "softmax_cross_entropy.cu": ["softmax_cross_entropy_forward",
                                 "softmax_cross_entropy_backward"],
    "optim.cu": ["sgd_update", "adam_update"],
}
_C_TYPE = {np.dtype("float32"): "float", np.dtype("float64"): "double"}


def kernel_source(name: str) -> str:
    """The text of kernels/<name>: inside the installed wheel, else in the source tree.

    >>> "activation_forward" in kernel_source("activations.cu")
    True
    """
    packaged = resources.files("gradkit").joinpath("kernels", name)
    if packaged.is_file():
        return packaged.read_text()
    checkout = Path(__file__).resolve().parents[3] / "kernels" / name
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
    return sorted(p.name for p in (Path(__file__).resolve().parents[3] / "kernels").glob("*.cu"))


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


def _cuda_version(number: int) -> str:
    """CUDA's integer version (12040) as text (12.4)."""
    return f"{number // 1000}.{number % 1000 // 10}"


def _blocks(n: int) -> int:
    return max(1, min(MAX_BLOCKS, (n + THREADS - 1) // THREADS))


def _same_float_arrays(*arrays: Any) -> bool:
    """True when the kernels apply: same shape, same float32/float64 dtype, C-contiguous."""
    first = arrays[0]
    return (first.dtype in _C_TYPE and first.size > 0 and
            all(a.dtype == first.dtype and a.shape == first.shape and a.flags.c_contiguous
                for a in arrays))


def _scalars(dtype: np.dtype, kind: str, slope: float, alpha: float) -> tuple:
    """The (kind, slope, alpha) kernel arguments, typed for the kernel's T."""
    return (np.int32(ACTIVATION_KINDS.index(kind)), dtype.type(slope), dtype.type(alpha))


def _activation_params(kind: str, slope: float, alpha: float) -> dict[str, float]:
    """The keyword params the op of this activation takes (for the reference fallback)."""
    return {"leaky_relu": {"slope": slope}, "elu": {"alpha": alpha}}.get(kind, {})


def _activation(kind: str) -> KernelFactory:
    """Forward kernel of a pointwise activation, e.g. relu."""
    def factory(backend: CudaBackend, op: Any, fallback: Kernel) -> Kernel:
        def kernel(x: Any, slope: float = 0.01, alpha: float = 1.0) -> Any:
            if not _same_float_arrays(x):
                return fallback(x, **_activation_params(kind, slope, alpha))
            y = backend.xp.empty_like(x)
            backend.launch("activations.cu", "activation_forward", (x, y), _blocks(x.size),
                           (x, y, np.int64(x.size)) + _scalars(x.dtype, kind, slope, alpha))
            return y
        return kernel
    return factory


def _launch_pointwise_backward(backend: CudaBackend, name: str, g: Any, saved: Any, kind: str,
                               slope: float, alpha: float) -> Any:
    """``g * act'(.)`` in one pass: ``saved`` is the input (relu...) or the output (sigmoid...)."""
    out = backend.xp.empty_like(g)
    backend.launch("activations.cu", name, (g, saved, out), _blocks(g.size),
                   (g, saved, out, np.int64(g.size)) + _scalars(g.dtype, kind, slope, alpha))
    return out


def _activation_backward(kind: str, from_output: bool) -> KernelFactory:
    """VJP kernel ``g * act'(.)`` from the input (relu...) or the output (sigmoid...)."""
    def factory(backend: CudaBackend, op: Any, fallback: Kernel) -> Kernel:
        name = "activation_backward_from_output" if from_output else "activation_backward_from_input"

        def kernel(g: Any, saved: Any, slope: float = 0.01, alpha: float = 1.0) -> Any:
            if not _same_float_arrays(g, saved):
                return fallback(g, saved, **_activation_params(kind, slope, alpha))
            return _launch_pointwise_backward(backend, name, g, saved, kind, slope, alpha)
        return kernel
    return factory


def _bias_activation(backend: CudaBackend, op: Any, fallback: Kernel) -> Kernel:
    def kernel(x: Any, bias: Any, activation: str = "relu", slope: float = 0.01,
               alpha: float = 1.0) -> Any:
        if not (_same_float_arrays(x) and bias.dtype == x.dtype and bias.ndim == 1 and
                bias.flags.c_contiguous and x.ndim >= 1 and x.shape[-1] == bias.shape[0]):
            return fallback(x, bias, activation=activation, slope=slope, alpha=alpha)
        y = backend.xp.empty_like(x)
        backend.launch("activations.cu", "bias_activation_forward", (x, bias, y), _blocks(x.size),
                       (x, bias, y, np.int64(x.size), np.int64(bias.shape[0]))
                       + _scalars(x.dtype, activation, slope, alpha))
        return y
    return kernel


def _bias_activation_backward(backend: CudaBackend, op: Any, fallback: Kernel) -> Kernel:
    def kernel(g: Any, y: Any, activation: str = "relu", slope: float = 0.01,
               alpha: float = 1.0) -> Any:
        if not _same_float_arrays(g, y):
            return fallback(g, y, activation=activation, slope=slope, alpha=alpha)
        return _launch_pointwise_backward(backend, "activation_backward_from_output", g, y,
                                          activation, slope, alpha)
    return kernel


def _row_kernel_applies(logits: Any) -> bool:
    return (logits.ndim == 2 and logits.dtype in _C_TYPE and logits.flags.c_contiguous and
            logits.shape[0] > 0 and logits.shape[1] > 0)


def _device_labels(op_name: str, backend: CudaBackend, logits: Any, labels: Any) -> Any:
    """``labels`` as the kernels read them: one int64 per row of ``logits``.

    A kernel would read past the end of labels that are too short and truncate float
    labels silently, so both are errors here (cross_entropy's own check has already
    read the values' range, once per step).
    """
    from gradkit.errors import DTypeError, ShapeError
    if labels.dtype.kind not in "iu":
        raise DTypeError(f"{op_name}: argument labels must be integer class indices, got "
                         f"cuda {labels.dtype} {tuple(labels.shape)}")
    if labels.shape != (logits.shape[0],):
        raise ShapeError(f"{op_name}: argument labels must have shape ({logits.shape[0]},), one "
                         f"per row of logits, got cuda {labels.dtype} {tuple(labels.shape)} "
                         f"(logits: cuda {logits.dtype} {tuple(logits.shape)})")
    return backend.xp.ascontiguousarray(backend.xp.astype(labels, backend.xp.int64, copy=False))


def _launch_rows(backend: CudaBackend, name: str, arrays: tuple, rows: int, args: tuple) -> None:
    """One block per row (a grid-stride loop over rows beyond the grid)."""
    backend.launch("softmax_cross_entropy.cu", name, arrays, min(rows, MAX_BLOCKS), args,
                   shared_mem=THREADS * arrays[0].itemsize)


def _cross_entropy(backend: CudaBackend, op: Any, fallback: Kernel) -> Kernel:
    def kernel(logits: Any, labels: Any) -> Any:
        if not _row_kernel_applies(logits):
            return fallback(logits, labels)
        labels = _device_labels("cross_entropy", backend, logits, labels)
        rows, cols = logits.shape
        row_loss = backend.xp.empty((rows,), dtype=logits.dtype)
        _launch_rows(backend, "softmax_cross_entropy_forward", (logits, labels, row_loss), rows,
                     (logits, labels, row_loss, np.int64(rows), np.int64(cols)))
        return backend.xp.mean(row_loss)
    return kernel


def _cross_entropy_backward(backend: CudaBackend, op: Any, fallback: Kernel) -> Kernel:
    def kernel(g: Any, logits: Any, labels: Any) -> Any:
        # the kernel scales every row by one upstream value: a scalar g (the mean's)
        if not _row_kernel_applies(logits) or g.dtype != logits.dtype or g.size != 1:
            return fallback(g, logits, labels)
        labels = _device_labels("cross_entropy_backward", backend, logits, labels)
        rows, cols = logits.shape
        grad = backend.xp.empty_like(logits)
        g = backend.xp.ascontiguousarray(backend.xp.reshape(g, (1,)))
        _launch_rows(backend, "softmax_cross_entropy_backward", (logits, g, labels, grad), rows,
                     (g, logits, labels, grad, np.int64(rows), np.int64(cols)))
        return grad
    return kernel


def check_index_bounds(backend: Backend, index: tuple, shape: tuple, op_name: str) -> None:
    """Raise for an integer-array index out of range: CuPy wraps such indices around
    where NumPy raises. One device-to-host copy per index array."""
    from gradkit.errors import IndexingError
    axis = 0
    for item in index:
        if item is None:
            continue
        if item is Ellipsis:  # what follows counts from the end
            rest = [i for i in index[index.index(item) + 1:] if i is not None]
            axis = len(shape) - len(rest)
            continue
        dtype = getattr(item, "dtype", None)
        if dtype is not None and item.ndim > 0 and dtype.kind in "iu" and item.size > 0:
            if axis >= len(shape):
                return  # too many indices: the array library says so
            low, high = backend.value_range(item)
            if low < -shape[axis] or high >= shape[axis]:
                raise IndexingError(f"{op_name}: index values from {low} to {high} are out of "
                                    f"range for axis {axis} of size {shape[axis]}")
        axis += 1 if dtype is None or dtype.kind != "b" else item.ndim


def _getitem(backend: CudaBackend, op: Any, reference: Kernel) -> Kernel:
    def kernel(x: Any, index: Any) -> Any:
        check_index_bounds(backend, raw_index(index, backend.xp), x.shape, "getitem")
        return reference(x, index=index)
    return kernel


def _scatter_add(backend: CudaBackend, op: Any, reference: Kernel) -> Kernel:
    """The VJP of indexing: cupyx.scatter_add accumulates repeated indices atomically;
    basic indices (which never repeat an element) go to the reference."""

    def kernel(values: Any, shape: Any, index: Any) -> Any:
        raw = raw_index(index, backend.xp)
        if not is_advanced(raw) or any(item is None for item in raw):
            return reference(values, shape=shape, index=index)
        check_index_bounds(backend, raw, tuple(shape), "scatter_add")
        out = backend.xp.zeros(shape, dtype=values.dtype)
        backend.cupyx.scatter_add(out, raw, values)
        return out
    return kernel


def _sgd_update(backend: CudaBackend, op: Any, fallback: Kernel) -> Kernel:
    """SGD in one pass: reads param and grad, updates velocity in place, returns the new param."""

    def kernel(param: Any, grad: Any, velocity: Any = None, *, lr: float, momentum: float = 0.0,
               nesterov: bool = False, weight_decay: float = 0.0) -> Any:
        arrays = (param, grad) if velocity is None else (param, grad, velocity)
        if not _same_float_arrays(*arrays):
            return fallback(param, grad, velocity, lr=lr, momentum=momentum,
                            nesterov=nesterov, weight_decay=weight_decay)
        out = backend.xp.empty_like(param)
        t = param.dtype.type
        backend.launch("optim.cu", "sgd_update", arrays + (out,), _blocks(param.size),
                       (param, grad, velocity if momentum != 0 else out, out,
                        np.int64(param.size), t(lr), np.int32(momentum != 0), t(momentum),
                        np.int32(bool(nesterov)), t(weight_decay)))
        return out
    return kernel


def _adam_update(backend: CudaBackend, op: Any, fallback: Kernel) -> Kernel:
    """Adam/AdamW in one pass: updates m and v in place, returns the new param. The step
    count stays on the device: the kernel reads it and computes the bias corrections."""

    def kernel(param: Any, grad: Any, m: Any, v: Any, step: Any, *, lr: float, beta1: float,
               beta2: float, eps: float, weight_decay: float, decoupled: bool) -> Any:
        if not _same_float_arrays(param, grad, m, v):
            return fallback(param, grad, m, v, step, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                            weight_decay=weight_decay, decoupled=decoupled)
        out = backend.xp.empty_like(param)
        step = backend.xp.ascontiguousarray(backend.xp.astype(step, backend.xp.int64, copy=False))
        hyperparameters = tuple(np.float64(h) for h in (lr, beta1, beta2, eps, weight_decay))
        backend.launch("optim.cu", "adam_update", (param, grad, m, v, out, step),
                       _blocks(param.size),
                       (param, grad, m, v, out, np.int64(param.size)) + hyperparameters
                       + (np.int32(bool(decoupled)), step))
        return out
    return kernel


KERNEL_FACTORIES: dict[str, KernelFactory] = {
    "relu": _activation("relu"),
    "leaky_relu": _activation("leaky_relu"),
    "elu": _activation("elu"),
    "sigmoid": _activation("sigmoid"),
    "tanh": _activation("tanh"),
    "relu_backward": _activation_backward("relu", from_output=False),
    "leaky_relu_backward": _activation_backward("leaky_relu", from_output=False),
    "elu_backward": _activation_backward("elu", from_output=False),
    "sigmoid_backward": _activation_backward("sigmoid", from_output=True),
    "tanh_backward": _activation_backward("tanh", from_output=True),
    "bias_activation": _bias_activation,
    "bias_activation_backward": _bias_activation_backward,
    "cross_entropy": _cross_entropy,
    "cross_entropy_backward": _cross_entropy_backward,
    "getitem": _getitem,
    "scatter_add": _scatter_add,
    "sgd_update": _sgd_update,
    "adam_update": _adam_update,
}


class CudaBackend(Backend):
    """NVIDIA GPUs through CuPy, with gradkit's CUDA C kernels for the hot ops.

    ``cupy`` and ``cupyx`` default to the installed CuPy, imported on first use;
    tests pass a stand-in with CuPy's traits (an emulation on the CPU).
    """

    name = "cuda"
    host_conversion_allowed = False  # np.asarray(t) raises: call t.numpy()
    dlpack_device_type = 2
    kernel_factories = KERNEL_FACTORIES

    def __init__(self, cupy: Any = None, cupyx: Any = None) -> None:
        super().__init__()
        self._cupy, self._cupyx = cupy, cupyx
        self._namespace: CupyNamespace | None = None
        self._modules: dict[tuple[str, int], Any] = {}
        self._functions: dict[tuple[str, str, np.dtype, int], Any] = {}
        # CuPy arrays have no writeable flag: the arrays read_only() handed out are
        # remembered here (id -> weak reference) and never written through.
        self._read_only: dict[int, weakref.ref] = {}

    @property
    def cupy(self) -> Any:
        if self._cupy is None:
            import cupy
            self._cupy = cupy
        return self._cupy

    @property
    def cupyx(self) -> Any:
        if self._cupyx is None:
            import cupyx
            self._cupyx = cupyx
        return self._cupyx

    def unavailable_reason(self) -> str | None:
        try:
            cupy = self.cupy
        except ImportError as exc:
            return (f"CuPy is not installed ({exc}); install it with "
                    "pip install 'gradkit[cuda12]' or 'gradkit[cuda13]' (the CUDA major "
                    "of your driver, as nvidia-smi shows it; 'gradkit[cuda]' is cuda12)")
        try:
            driver = cupy.cuda.runtime.driverGetVersion()
        except Exception as exc:  # no libcuda: no NVIDIA driver on this machine
            return (f"no NVIDIA driver ({type(exc).__name__}: {exc}); install the driver "
                    "(nvidia-smi must work), or use another backend")
        if driver == 0:
            return "no NVIDIA driver is loaded (nvidia-smi must work); or use another backend"
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # a driver older than CuPy's CUDA, a broken install
            return (f"no usable CUDA device: {exc}; the driver supports CUDA "
                    f"{_cuda_version(driver)}: install the gradkit extra of that major "
                    "(cuda12 or cuda13), or update the driver")
        if count == 0:
            return "no CUDA device is visible (CUDA_VISIBLE_DEVICES, nvidia-smi)"
        return None

    def report(self) -> list[str]:
        """What ``gradkit info`` says of CUDA here: versions, devices, and whether
        gradkit's kernels compile (NVRTC and the CUDA headers present), with the fix."""
        cupy = self.cupy
        runtime = cupy.cuda.runtime
        lines = [f"CuPy {cupy.__version__}, CUDA runtime {_cuda_version(runtime.runtimeGetVersion())}"
                 f", driver supports CUDA {_cuda_version(runtime.driverGetVersion())}"]
        for index in range(runtime.getDeviceCount()):
            props = runtime.getDeviceProperties(index)
            name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            lines.append(f"cuda:{index} {name}, compute capability {props['major']}."
                         f"{props['minor']}, {props['totalGlobalMem'] / 2**30:.0f} GiB")
        try:
            lines.append(f"NVRTC {'.'.join(map(str, cupy.cuda.nvrtc.getVersion()))}")
            self.function("activations.cu", "activation_forward", np.dtype("float32"))
            lines.append("gradkit's kernels compile here (NVRTC, CUDA headers)")
        except Exception as exc:
            lines.append(f"gradkit's kernels do not compile here: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}; NVRTC and the CUDA "
                         "headers come with a CUDA Toolkit or with pip install "
                         "'gradkit[cuda12]' / 'gradkit[cuda13]' (cupy-cuda1Xx[ctk])")
        return lines

    # -- arrays -----------------------------------------------------------------
    @property
    def xp(self) -> Any:
        if self._namespace is None:
            self._namespace = CupyNamespace(self.cupy)
        return self._namespace

    @property
    def array_type(self) -> type:
        return self.cupy.ndarray

    def asarray(self, data: Any, dtype: np.dtype | None = None) -> Any:
        return self.cupy.asarray(data, dtype=dtype)

    def copy(self, array: Any) -> Any:
        return self.cupy.array(array, copy=True)

    def to_numpy(self, array: Any) -> np.ndarray:
        return self.cupy.asnumpy(array)

    def is_writeable(self, array: Any) -> bool:
        return id(array) not in self._read_only

    def read_only(self, array: Any, in_place: bool = False) -> Any:
        """``array`` (or a view of it) remembered as read-only: gradkit never writes
        through it (CuPy itself cannot refuse writes)."""
        if not self.is_writeable(array):
            return array
        view = array if in_place else array.view()
        key = id(view)
        self._read_only[key] = weakref.ref(view, lambda _, key=key: self._read_only.pop(key, None))
        return view

    def value_range(self, array: Any) -> tuple[int, int]:
        """Smallest and largest element in one device-to-host copy (one sync)."""
        xp = self.xp
        low, high = self.cupy.asnumpy(xp.stack([xp.min(array), xp.max(array)])).tolist()
        return int(low), int(high)

    # -- kernels ------------------------------------------------------------------
    def function(self, source: str, name: str, dtype: np.dtype) -> Any:
        """The compiled kernel ``name<T>`` of kernels/<source> for ``dtype`` on the
        current device (each module is compiled once per device, each kernel looked
        up once)."""
        device = self.cupy.cuda.Device().id
        key = (source, name, dtype, device)
        kernel = self._functions.get(key)
        if kernel is None:
            module = self._modules.get((source, device))
            if module is None:
                module = self.cupy.RawModule(code=kernel_source(source), options=COMPILE_OPTIONS,
                                             name_expressions=name_expressions(source))
                self._modules[(source, device)] = module
            kernel = self._functions[key] = module.get_function(f"{name}<{_C_TYPE[dtype]}>")
        return kernel

    def launch(self, source: str, name: str, arrays: tuple, grid: int, args: tuple,
               shared_mem: int = 0) -> None:
        """Run ``name<T>`` (``T`` from the first array) on the device that holds
        ``arrays``: a kernel launched on another GPU than its data's would read
        garbage, so every array must be on one device (not testable with one GPU)."""
        device = arrays[0].device
        for array in arrays[1:]:
            if array.device != device:
                from gradkit.errors import BackendError
                raise BackendError(f"{name}: arrays on different GPUs ({device} and "
                                   f"{array.device}); move them to one device")
        with device:
            kernel = self.function(source, name, arrays[0].dtype)
            kernel((grid,), (THREADS,), args, shared_mem=shared_mem)
