"""The CUDA emulator (tests/cuda_emulator): small kernels of its own, then gradkit's .cu files.

Everything here runs emulated: g++ compiles the .cu under cuda_emulator.h and the
threads run as fibers on the CPU. It proves kernel maths, indexing, barriers, warp
operations and launch arguments; it proves nothing about speed or warp timing.
"""
from __future__ import annotations

import numpy as np
import pytest

import cuda_emulator as ce
from gradkit.backends.cuda import backend as cuda_backend

_NO_COMPILER = ce.compiler_available()
pytestmark = [pytest.mark.cuda_kernels,
              pytest.mark.skipif(_NO_COMPILER is not None, reason=_NO_COMPILER or "")]


@pytest.fixture(autouse=True)
def backend(monkeypatch):
    """The emulator tests do not depend on gradkit's default backend: run them once.

    They ask for tiny grids themselves where they want them, whatever the environment.
    """
    monkeypatch.delenv(ce.TINY_GRID_ENV, raising=False)
    yield None


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def kernel(code: str, name: str, **module_options) -> ce.Kernel:
    return ce.RawModule(code=code, name_expressions=[name], **module_options).get_function(name)


GRID_STRIDE = r"""
template <typename T>
__global__ void axpy(const T* x, T* y, long long n, T a) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x)
        y[i] += a * x[i];
}
"""

ONE_PER_THREAD = r"""
extern "C" __global__ void fill_index(int* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = i;
}
"""


# ---- execution -------------------------------------------------------------------------

@pytest.mark.parametrize("grid", [1, 3, (5,), (70, 1, 1)])
def test_grid_stride_loop_covers_any_grid(grid, rng):
    axpy = kernel(GRID_STRIDE, "axpy<double>")
    x, y = rng.normal(size=1000), rng.normal(size=1000)
    expected = y + 2.5 * x
    axpy(grid, (64,), (x, y, np.int64(x.size), np.float64(2.5)))
    np.testing.assert_array_equal(y, expected)


def test_thread_and_block_indices_in_three_dimensions():
    code = r"""
    extern "C" __global__ void where(int* out) {
        int block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
        int thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
        int threads = blockDim.x * blockDim.y * blockDim.z;
        out[block * threads + thread] = block * 1000 + thread;
    }"""
    out = np.full(2 * 3 * 2 * 4 * 2 * 3, -1, dtype=np.int32)
    ce.RawModule(code=code).get_function("where")((2, 3, 2), (4, 2, 3), (out,))
    blocks, threads = np.divmod(np.arange(out.size), 24)
    np.testing.assert_array_equal(out, blocks * 1000 + threads)


SHARED_REDUCTION = r"""
template <typename T>
__global__ void block_sums(const T* x, T* sums, T* total, int n) {
    __shared__ T partial[256];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    partial[threadIdx.x] = i < n ? x[i] : T(0);
    __syncthreads();
    for (unsigned int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        sums[blockIdx.x] = partial[0];
        atomicAdd(total, partial[0]);
    }
}
"""


def test_shared_memory_block_reduction_with_atomic_total(rng):
    x = rng.integers(-50, 50, size=1000).astype(np.float64)
    sums, total = np.zeros(4), np.zeros(1)
    kernel(SHARED_REDUCTION, "block_sums<double>")((4,), (256,), (x, sums, total, np.int32(x.size)))
    np.testing.assert_array_equal(sums, np.add.reduceat(x, [0, 256, 512, 768]))
    assert total[0] == x.sum()


WARP_OPS = r"""
extern "C" __global__ void warp_ops(const float* x, float* sums, float* butterfly, int* broadcast,
                                    int* scan, unsigned int* ballots, int* votes) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int lane = threadIdx.x % warpSize;
    float v = x[i];
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffff, v, offset);
    if (lane == 0) sums[i / 32] = v;
    float b = x[i];
    for (int mask = 1; mask < 32; mask *= 2) b = fmaxf(b, __shfl_xor_sync(0xffffffff, b, mask));
    butterfly[i] = b;
    broadcast[i] = __shfl_sync(0xffffffff, i, 3);
    int s = 1;
    for (int offset = 1; offset < 32; offset *= 2) {
        int up = __shfl_up_sync(0xffffffff, s, offset);
        if (lane >= offset) s += up;
    }
    scan[i] = s;
    ballots[i] = __ballot_sync(0xffffffff, x[i] > 0.0f);
    votes[2 * i] = __any_sync(0xffffffff, x[i] > 2.0f);
    votes[2 * i + 1] = __all_sync(0xffffffff, x[i] > -100.0f);
    __syncwarp();
}
"""


def test_warp_shuffles_and_votes_exchange_across_the_warp(rng):
    n = 128
    x = rng.normal(size=n).astype(np.float32)
    sums, butterfly = np.zeros(n // 32, np.float32), np.zeros(n, np.float32)
    broadcast, scan = np.zeros(n, np.int32), np.zeros(n, np.int32)
    ballots, votes = np.zeros(n, np.uint32), np.zeros(2 * n, np.int32)
    ce.RawModule(code=WARP_OPS).get_function("warp_ops")(
        (2,), (64,), (x, sums, butterfly, broadcast, scan, ballots, votes))
    warps = x.reshape(-1, 32)
    np.testing.assert_allclose(sums, warps.sum(axis=1), rtol=1e-5)
    np.testing.assert_array_equal(butterfly, np.repeat(warps.max(axis=1), 32))
    np.testing.assert_array_equal(broadcast, np.repeat(np.arange(0, n, 32) + 3, 32))
    np.testing.assert_array_equal(scan, np.tile(np.arange(1, 33), n // 32))
    bits = (warps > 0) * (1 << np.arange(32, dtype=np.uint64))
    np.testing.assert_array_equal(ballots, np.repeat(bits.sum(axis=1), 32).astype(np.uint32))
    np.testing.assert_array_equal(votes[0::2], np.repeat((warps > 2).any(axis=1), 32))
    assert votes[1::2].all()


def test_atomics_of_each_type():
    code = r"""
    extern "C" __global__ void atomics(int* i, unsigned int* u, unsigned long long* ull,
                                       long long* ll, float* f, double* d) {
        int t = blockIdx.x * blockDim.x + threadIdx.x;
        atomicAdd(&i[0], 1);
        atomicSub(&i[1], 2);
        atomicMax(&i[2], t);
        atomicMin(&i[3], -t);
        atomicCAS(&i[4], t, t + 1);  // counts up as threads arrive in order
        atomicInc(&u[0], 9u);
        atomicAdd(&u[1], 3u);
        atomicExch(&u[2], 77u);
        atomicAdd(&ull[0], 1ull << 40);
        atomicMax(&ll[0], (long long)t << 35);
        atomicAdd(f, 0.5f);
        atomicAdd(d, 0.25);
    }"""
    i = np.array([0, 0, -1, 0, 0], np.int32)
    u, ull = np.zeros(3, np.uint32), np.zeros(1, np.uint64)
    ll, f, d = np.zeros(1, np.int64), np.zeros(1, np.float32), np.zeros(1, np.float64)
    ce.RawModule(code=code).get_function("atomics")((3,), (100,), (i, u, ull, ll, f, d))
    np.testing.assert_array_equal(i, [300, -600, 299, -299, 300])
    np.testing.assert_array_equal(u, [300 % 10, 900, 77])
    assert ull[0] == 300 << 40 and ll[0] == 299 << 35
    assert f[0] == 150.0 and d[0] == 75.0


def test_shuffle_width_and_partial_masks():
    code = r"""
    extern "C" __global__ void segments(int* idx, int* down, int* up, int* low_half) {
        int i = threadIdx.x;
        idx[i] = __shfl_sync(0xffffffff, i, 1, 8);       // lane 1 of each 8-lane segment
        down[i] = __shfl_down_sync(0xffffffff, i, 2, 8);  // own value past the segment end
        up[i] = __shfl_up_sync(0xffffffff, i, 3, 16);
        low_half[i] = -1;
        if (i < 16) low_half[i] = __shfl_xor_sync(0x0000ffff, i, 1);
        __syncwarp(0xffffffff);
    }"""
    outs = [np.zeros(32, np.int32) for _ in range(4)]
    ce.RawModule(code=code).get_function("segments")(1, 32, tuple(outs))
    lanes = np.arange(32)
    np.testing.assert_array_equal(outs[0], lanes // 8 * 8 + 1)
    np.testing.assert_array_equal(outs[1], np.where(lanes % 8 < 6, lanes + 2, lanes))
    np.testing.assert_array_equal(outs[2], np.where(lanes % 16 >= 3, lanes - 3, lanes))
    np.testing.assert_array_equal(outs[3], np.where(lanes < 16, lanes ^ 1, -1))


def test_device_math_and_bit_casts(rng):
    code = r"""
    extern "C" __global__ void math(const float* x, float* f, double* d, int* flags) {
        int i = threadIdx.x;
        float v = x[i];
        f[5 * i] = expf(v) + expm1(v) + log1pf(fabsf(v)) + tanh(v);
        f[5 * i + 1] = rsqrtf(fabs(v) + 1.0f) * sqrt(fabs(v)) + pow(fabs(v), 1.5f);
        f[5 * i + 2] = fmaxf(v, 0.0f) + fmin(v, 0.0f) + copysignf(2.0f, v) + max(v, 0.5f);
        f[5 * i + 3] = __int_as_float(__float_as_int(v));
        f[5 * i + 4] = __int_as_float(0xff800000);
        d[i] = exp((double)v) + log(fabs((double)v) + 1.0) + __longlong_as_double(
            __double_as_longlong(1.5));
        flags[i] = isinf(f[5 * i + 4]) * 1 + isnan(v / 0.0f - v / 0.0f) * 2 +
                   isfinite(v) * 4 + signbit(v) * 8 + (max(-1, 2u) == 4294967295u) * 16;
    }"""
    x = rng.normal(size=32).astype(np.float32)
    f, d, flags = np.zeros(5 * 32, np.float32), np.zeros(32), np.zeros(32, np.int32)
    ce.RawModule(code=code).get_function("math")(1, 32, (x, f, d, flags))
    f = f.reshape(32, 5).astype(np.float64)
    a = np.abs(x.astype(np.float64))
    np.testing.assert_allclose(f[:, 0], np.exp(x) + np.expm1(x) + np.log1p(a) + np.tanh(x),
                               rtol=1e-5)
    np.testing.assert_allclose(f[:, 1], np.sqrt(a) / np.sqrt(a + 1) + a ** 1.5, rtol=1e-5)
    np.testing.assert_allclose(f[:, 2], np.maximum(x, 0) + np.minimum(x, 0) + np.copysign(2, x)
                               + np.maximum(x, 0.5), rtol=1e-6)
    np.testing.assert_array_equal(f[:, 3], x)
    assert (f[:, 4] == -np.inf).all()
    np.testing.assert_allclose(d, np.exp(x.astype(np.float64)) + np.log(a + 1) + 1.5, rtol=1e-6)
    np.testing.assert_array_equal(flags, 1 + 2 + 4 + 8 * (x < 0) + 16)


def test_barrier_reductions():
    code = r"""
    extern "C" __global__ void votes(const int* x, int* out) {
        int v = x[threadIdx.x];
        int count = __syncthreads_count(v > 0);
        int all = __syncthreads_and(v > -5);
        int any = __syncthreads_or(v > 8);
        if (threadIdx.x == 0) { out[0] = count; out[1] = all; out[2] = any; }
    }"""
    x, out = np.arange(-3, 61, dtype=np.int32), np.zeros(3, np.int32)
    ce.RawModule(code=code).get_function("votes")(1, 64, (x, out))
    np.testing.assert_array_equal(out, [60, 1, 1])


SPIN_LOCK = r"""
extern "C" __global__ void locked_increment(int* lock, int* counter, int hold_forever) {
    while (atomicCAS(lock, 0, 1) != 0) {}
    int seen = *counter;  // not atomic: the lock makes it safe
    *counter = seen + 1;
    if (hold_forever && threadIdx.x == 0) { __syncthreads(); return; }
    atomicExch(lock, 0);
}
"""


def test_a_spin_lock_lets_the_holder_go_on_and_a_lost_lock_is_reported():
    module = ce.RawModule(code=SPIN_LOCK)
    lock, counter = np.zeros(1, np.int32), np.zeros(1, np.int32)
    module.get_function("locked_increment")((3,), (64,), (lock, counter, np.int32(0)))
    assert counter[0] == 3 * 64 and lock[0] == 0
    with pytest.raises(ce.EmulatorKernelError, match="livelock in block .*threads 1-63 spin at "
                       "an atomic"):
        module.get_function("locked_increment")(1, 64, (lock * 0, counter, np.int32(1)))


def test_uninitialised_shared_memory_reads_as_nan():
    code = r"""
    extern "C" __global__ void peek(float* out, int* bits) {
        __shared__ float tile[64];
        extern __shared__ int dynamic[];
        if (threadIdx.x == 0) tile[0] = 1.0f;
        __syncthreads();
        out[blockIdx.x * blockDim.x + threadIdx.x] = tile[threadIdx.x];
        bits[blockIdx.x * blockDim.x + threadIdx.x] = dynamic[threadIdx.x];
        __syncthreads();
        tile[threadIdx.x] = 2.0f;  // the next block must not see these
        dynamic[threadIdx.x] = 5;
    }"""
    out, bits = np.zeros(128, np.float32), np.zeros(128, np.int32)
    ce.RawModule(code=code).get_function("peek")((2,), (64,), (out, bits), shared_mem=64 * 4)
    assert (out[[0, 64]] == 1.0).all()
    assert np.isnan(np.delete(out, [0, 64])).all()
    assert (bits == -1).all()


def test_file_scope_extern_shared_and_static_shared():
    code = r"""
    extern __shared__ double scratch[];
    __shared__ int counter;
    __device__ void put(int i, double v) { scratch[i] = v; }
    extern "C" __global__ void reverse(const double* x, double* y) {
        if (threadIdx.x == 0) counter = 0;
        __syncthreads();
        put(threadIdx.x, x[threadIdx.x]);
        atomicAdd(&counter, 1);
        __syncthreads();
        y[threadIdx.x] = scratch[blockDim.x - 1 - threadIdx.x] + counter;
    }"""
    x, y = np.arange(32.0), np.zeros(32)
    ce.RawModule(code=code).get_function("reverse")(1, 32, (x, y), shared_mem=32 * 8)
    np.testing.assert_array_equal(y, x[::-1] + 32)


# ---- what the emulator reports -----------------------------------------------------------

@pytest.mark.parametrize("body, message", [
    ("if (threadIdx.x < 16) __syncthreads();", "divergent __syncthreads()"),
    ("if (threadIdx.x >= 40) return;\n __syncthreads();", "threads 40-63 exited"),
    ("if (threadIdx.x % 2) { __syncthreads(); }\n else { out[0] = 1; __syncthreads(); }",
     "thread 0 wait at __syncthreads[(][)] on line 3; "
     "thread 1 wait at __syncthreads[(][)] on line 2"),
    ("if (threadIdx.x != 5) out[0] = __shfl_sync(0xffffffff, 1, 0);", "deadlock"),
    ("__trap();", "__trap() called"),
    ("out[0] = __shfl_sync(0x0000ffff, 1, 0);", "does not name the calling lane"),
    ("if (threadIdx.x < 16) out[0] = __shfl_sync(0x0000ffff, 1, 20);", "not in the mask"),
])
def test_misbehaving_kernels_raise_instead_of_hanging(body, message):
    code = 'extern "C" __global__ void bad(int* out) {\n' + body + "\n}"
    bad = ce.RawModule(code=code).get_function("bad")
    with pytest.raises(ce.EmulatorKernelError, match="bad: .*" + message.replace("(", r"\(")
                       .replace(")", r"\)")):
        bad((2,), (64,), (np.zeros(1, np.int32),))


def test_divergent_barrier_names_the_lines_and_threads():
    code = ('extern "C" __global__ void bad(int* out) {\n'
            "    if (threadIdx.x < 32) __syncthreads();\n"
            "    else __syncthreads();\n"
            "}")
    with pytest.raises(ce.EmulatorKernelError) as caught:
        ce.RawModule(code=code).get_function("bad")(1, 64, (np.zeros(1, np.int32),))
    assert str(caught.value) == (
        "bad: divergent __syncthreads() in block (0, 0, 0): threads 0-31 wait at "
        "__syncthreads() on line 2; threads 32-63 wait at __syncthreads() on line 3 "
        "(linear thread indices)")


@pytest.mark.parametrize("args, message", [
    ((np.zeros(8), np.zeros(8), 8, np.float32(1)), r"argument 1 \(index 0\) is const float\*.*"
                                                    r"its dtype is float64"),
    ((np.zeros(8, np.float32), np.zeros(8, np.float32), 8, 1.0),
     r"argument 4 \(index 3\) is float; expected float: np.float32; got float 1.0"),
    ((np.zeros(8, np.float32), np.zeros(8, np.float32), np.int32(8), np.float32(1)),
     r"argument 3 \(index 2\) is long long.*got np.int32"),
    ((np.zeros(8, np.float32), np.zeros((8, 2), np.float32)[:, 0], 8, np.float32(1)),
     "not C-contiguous"),
    ((np.zeros(8, np.float32), 0, 8, np.float32(1)), r"float\*.*not an array"),
    ((np.zeros(8, np.float32), np.zeros(8, np.float32), 8), "takes 4 arguments"),
    ((np.zeros(8, np.float32), np.zeros(8, np.float32), 2**63, np.float32(1)),
     "does not fit in long long"),
])
def test_wrong_arguments_are_refused_with_the_expected_c_type(args, message):
    axpy = kernel(GRID_STRIDE, "axpy<float>")
    with pytest.raises(ce.EmulatorLaunchError, match="axpy<float>: .*" + message):
        axpy(1, 32, args)


def test_read_only_array_only_for_a_const_pointer():
    axpy = kernel(GRID_STRIDE, "axpy<float>")
    frozen = np.zeros(8, np.float32)
    frozen.flags.writeable = False
    axpy(1, 32, (frozen, np.zeros(8, np.float32), 8, np.float32(1)))
    with pytest.raises(ce.EmulatorLaunchError, match="read-only"):
        axpy(1, 32, (np.zeros(8, np.float32), frozen, 8, np.float32(1)))


class DeviceArray:
    """A stand-in for a CuPy array: only __cuda_array_interface__ (over host memory)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.__cuda_array_interface__ = {
            "version": 3, "shape": array.shape, "typestr": array.dtype.str,
            "data": (array.ctypes.data, False), "strides": None if array.flags.c_contiguous
            else array.strides, "descr": [("", array.dtype.str)], "stream": None}


def test_cuda_array_interface_objects_are_arrays():
    axpy = kernel(GRID_STRIDE, "axpy<float>")
    x, y = np.arange(40, dtype=np.float32), np.ones(40, np.float32)
    axpy(2, 32, (DeviceArray(x), DeviceArray(y), 40, np.float32(3)))
    np.testing.assert_array_equal(y, 1 + 3 * x)
    strided = DeviceArray(np.zeros((40, 2), np.float32)[:, :1])
    with pytest.raises(ce.EmulatorLaunchError, match="not C-contiguous"):
        axpy(2, 32, (DeviceArray(x), strided, 40, np.float32(3)))


@pytest.mark.parametrize("grid, block, shared, message", [
    (1, 1025, 0, "block x = 1025 is outside 1..1024"),
    (1, (32, 33), 0, "1056 threads, more than 1024"),
    (1, (1, 1, 65), 0, "block z = 65 is outside 1..64"),
    ((1, 65536), 32, 0, "grid y = 65536 is outside 1..65535"),
    (2**31, 32, 0, "grid x = 2147483648 is outside"),
    (0, 32, 0, "grid x = 0 is outside"),
    ((1, 1, 1, 1), 32, 0, "tuple of 1 to 3 ints"),
    (1.0, 32, 0, "tuple of 1 to 3 ints"),
    (1, 32, 48 * 1024 + 1, "shared_mem = 49153 bytes"),
])
def test_launches_a_gpu_refuses_are_refused(grid, block, shared, message):
    axpy = kernel(GRID_STRIDE, "axpy<float>")
    args = (np.zeros(8, np.float32), np.zeros(8, np.float32), 8, np.float32(1))
    with pytest.raises(ce.EmulatorLaunchError, match=message.replace("(", r"\(")):
        axpy(grid, block, args, shared_mem=shared)


def test_static_plus_dynamic_shared_memory_over_48_kib_is_refused():
    code = r"""
    extern "C" __global__ void big(float* out) {
        __shared__ float tile[10240];  // 40 KiB
        extern __shared__ float more[];
        tile[threadIdx.x] = 1.0f;
        out[threadIdx.x] = tile[threadIdx.x] + more[0];
    }"""
    big = ce.RawModule(code=code).get_function("big")
    big(1, 32, (np.zeros(32, np.float32),), shared_mem=8 * 1024)
    with pytest.raises(ce.EmulatorKernelError, match="40960 bytes static .* 9216 bytes dynamic"):
        big(1, 32, (np.zeros(32, np.float32),), shared_mem=9 * 1024)


def test_tiny_grid_runs_grid_stride_loops_but_breaks_one_element_per_thread(monkeypatch):
    fill = ce.RawModule(code=ONE_PER_THREAD).get_function("fill_index")
    n, out = 1000, np.full(1000, -1, np.int32)
    fill((8,), (128,), (out, np.int32(n)))
    np.testing.assert_array_equal(out, np.arange(n))
    out[:] = -1
    fill((8,), (128,), (out, np.int32(n)), tiny_grid=True)
    assert (out[:256] == np.arange(256)).all() and (out[256:] == -1).all()
    monkeypatch.setenv(ce.TINY_GRID_ENV, "1")
    out[:] = -1
    fill((8,), (128,), (out, np.int32(n)))
    assert (out[256:] == -1).all()
    axpy = kernel(GRID_STRIDE, "axpy<double>")  # a grid-stride loop is right either way
    x, y = np.arange(1000.0), np.zeros(1000)
    axpy((8,), (128,), (x, y, 1000, 1.0))
    np.testing.assert_array_equal(y, x)
    tiny_off = ce.RawModule(code=ONE_PER_THREAD, tiny_grid=False).get_function("fill_index")
    out[:] = -1
    tiny_off((8,), (128,), (out, np.int32(n)))
    np.testing.assert_array_equal(out, np.arange(n))


OUT_OF_BOUNDS = r"""
extern "C" __global__ void shifted(const float* x, float* y, int n, int shift) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i + shift];
}
extern "C" __global__ void spill(float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i] = 1.0f;  // one too many
}
extern "C" __global__ void dynamic(float* y) {
    extern __shared__ float s[];
    s[threadIdx.x] = 1.0f;
    y[threadIdx.x] = s[threadIdx.x];
}
extern "C" __global__ void recurse(int* out, int depth) {
    volatile char frame[4096];
    frame[0] = (char)depth;
    if (depth > 0) recurse(out, depth - 1);
    out[0] += frame[0];
}
extern "C" __global__ void wild(float* y) { y[0] = *(float*)0x10; }
"""


def test_reads_and_writes_past_an_array_are_reported_with_the_argument():
    module = ce.RawModule(code=OUT_OF_BOUNDS)
    x, y = np.arange(100, dtype=np.float32), np.zeros(100, np.float32)
    module.get_function("shifted")(4, 32, (x, y, np.int32(100), np.int32(0)))
    np.testing.assert_array_equal(y, x)  # written through the guarded copy, copied back
    with pytest.raises(ce.EmulatorKernelError, match=r"shifted: read past the end of argument 1 "
                       r"\(const float\*, 100 elements of float32\): byte 400 of a 400-byte"):
        module.get_function("shifted")(4, 32, (x, y, np.int32(100), np.int32(1)))
    with pytest.raises(ce.EmulatorKernelError, match=r"wrote past the end of argument 1 "
                       r"\(float\*, 100 elements"):
        module.get_function("spill")(4, 32, (y, np.int32(100)))
    with pytest.raises(ce.EmulatorKernelError, match="past the end of argument 1 .*0 elements"):
        module.get_function("spill")(1, 32, (y[:0], np.int32(0)))


def test_dynamic_shared_memory_past_shared_mem_is_reported():
    dynamic = ce.RawModule(code=OUT_OF_BOUNDS).get_function("dynamic")
    dynamic(1, 32, (np.zeros(32, np.float32),), shared_mem=32 * 4)
    with pytest.raises(ce.EmulatorKernelError, match="past the end of the dynamic shared memory"):
        dynamic(1, 32, (np.zeros(32, np.float32),), shared_mem=16 * 4)


def test_stack_overflow_and_wild_pointers_are_reported():
    module = ce.RawModule(code=OUT_OF_BOUNDS)
    with pytest.raises(ce.EmulatorKernelError, match="recurse: stack overflow"):
        module.get_function("recurse")(1, 1, (np.zeros(1, np.int32), np.int32(1000)))
    with pytest.raises(ce.EmulatorKernelError, match="wild: segmentation fault: read address 0x10"):
        module.get_function("wild")(1, 1, (np.zeros(1, np.float32),))
    module.get_function("recurse")(1, 1, (np.zeros(1, np.int32), np.int32(3)))  # still usable


def test_the_same_array_twice_shares_one_guarded_copy_and_overlaps_keep_aliasing():
    code = r'''extern "C" __global__ void inc(float* a, float* b) {
        a[threadIdx.x] += 1.0f;
        b[threadIdx.x] += 1.0f;
    }'''
    inc = ce.RawModule(code=code).get_function("inc")
    same = np.zeros(32, np.float32)
    inc(1, 32, (same, same))
    assert (same == 2).all()
    overlapping = np.zeros(64, np.float32)
    inc(1, 32, (overlapping, overlapping[16:48]))
    np.testing.assert_array_equal(overlapping, np.repeat([1, 2, 1, 0], 16))


# ---- compiling as NVRTC would ----------------------------------------------------------

@pytest.mark.parametrize("expression, missing", [
    ("-INFINITY", "INFINITY"), ("NAN", "NAN"), ("HUGE_VAL", "HUGE_VAL"), ("M_PI", "M_PI"),
    ("std::exp(1.0f)", "std"), ("(printf(\"x\"), 1.0f)", "printf"),
])
def test_host_header_names_do_not_compile(expression, missing):
    code = 'extern "C" __global__ void k(float* y) { y[0] = ' + expression + "; }"
    with pytest.raises(ce.EmulatorCompileError, match=f"'{missing}'"):
        ce.RawModule(code=code)


def test_infinity_is_rejected_with_a_hint():
    code = 'extern "C" __global__ void k(float* y) { y[0] = -INFINITY; }'
    with pytest.raises(ce.EmulatorCompileError) as caught:
        ce.RawModule(code=code)
    assert "module.cu:1:" in str(caught.value)
    assert "'INFINITY' was not declared" in str(caught.value)
    assert "__int_as_float(0x7f800000)" in str(caught.value)


def test_host_headers_cannot_be_included():
    with pytest.raises(ce.EmulatorCompileError, match="cmath"):
        ce.RawModule(code="#include <cmath>\n" + ONE_PER_THREAD)


def test_atomic_overloads_are_cudas():
    code = 'extern "C" __global__ void k(long long* p) { atomicAdd(p, 1LL); }'
    with pytest.raises(ce.EmulatorCompileError, match="atomicAdd"):
        ce.RawModule(code=code)


def test_shared_initialiser_is_refused():
    code = 'extern "C" __global__ void k(int* p) { __shared__ int x = 0; p[0] = x; }'
    with pytest.raises(ce.EmulatorCompileError, match="initializer not allowed"):
        ce.RawModule(code=code)


def test_defines_and_std_options_are_honoured():
    code = r"""
    extern "C" __global__ void k(int* out) {
    #if __cplusplus >= 201703L
        out[0] = SCALE * 17;
    #else
        out[0] = SCALE * 14;
    #endif
    }"""
    out = np.zeros(1, np.int32)
    ce.RawModule(code=code, options=("-DSCALE=2",)).get_function("k")(1, 1, (out,))
    assert out[0] == 34
    ce.RawModule(code=code, options=("--std=c++14", "-D", "SCALE=3", "--use_fast_math")
                 ).get_function("k")(1, 1, (out,))
    assert out[0] == 42


def test_missing_compiler_is_reported_as_no_cpp_compiler(monkeypatch):
    monkeypatch.setenv("GRADKIT_EMULATOR_CXX", "no-such-g++")
    assert ce.compiler_available().startswith("no C++ compiler: no-such-g++ is not on PATH")
    with pytest.raises(ce.EmulatorCompileError, match="no C\\+\\+ compiler"):
        ce.RawModule(code=ONE_PER_THREAD + "// not cached")


def test_modules_are_built_once():
    first = ce.RawModule(code=ONE_PER_THREAD)
    assert ce.RawModule(code=ONE_PER_THREAD).library_path == first.library_path
    assert ce.RawModule(code=ONE_PER_THREAD, options=("-DX",)).library_path != first.library_path


def test_unknown_name_expression_is_refused():
    with pytest.raises(ce.EmulatorLaunchError, match="no kernel 'axpy<int>'"):
        ce.RawModule(code=GRID_STRIDE, name_expressions=["axpy<float>"]).get_function("axpy<int>")


# ---- gradkit's own kernels ------------------------------------------------------------------

def _module(source: str) -> ce.RawModule:
    """kernels/<source> compiled as the CUDA backend compiles it (options, name expressions)."""
    return ce.RawModule(code=cuda_backend.kernel_source(source),
                        options=cuda_backend.COMPILE_OPTIONS,
                        name_expressions=cuda_backend.name_expressions(source))


@pytest.mark.parametrize("source", cuda_backend.kernel_names())
def test_every_kernel_file_compiles_for_float_and_double(source):
    module = _module(source)
    for name in module.name_expressions:
        signature = module.get_function(name).signature
        element = "float" if name.endswith("<float>") else "double"
        assert f"const {element}*" in signature and f"{element}*" in signature
        assert "?" not in signature


# Each kernel against its op's reference, through the CUDA backend's own launch code:
# tests/test_cuda_kernels.py.
