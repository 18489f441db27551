// Fused softmax + cross-entropy for gradkit's CUDA backend: one block per row.
//
// logits (rows, cols) row-major, labels (rows,) int64. Forward writes each row's
// loss log(sum(exp(z - max))) - (z[label] - max); the mean is taken by the caller.
// Backward writes (softmax(z) - onehot(label)) * (*g / rows). The block size must
// be a power of two no larger than 1024 (the caller launches 256 threads).

template <typename T>
__device__ T block_reduce_max(T value, T* shared) {
    shared[threadIdx.x] = value;
    __syncthreads();
    for (unsigned int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) shared[threadIdx.x] = fmax(shared[threadIdx.x], shared[threadIdx.x + stride]);
        __syncthreads();
    }
    T result = shared[0];
    __syncthreads();
    return result;
}

template <typename T>
__device__ T block_reduce_sum(T value, T* shared) {
    shared[threadIdx.x] = value;
    __syncthreads();
    for (unsigned int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
        __syncthreads();
    }
    T result = shared[0];
    __syncthreads();
    return result;
}

// -inf as a bit pattern: NVRTC (what cupy.RawModule compiles with) has no host
// headers, so no INFINITY or <cmath>.
template <typename T>
__device__ T negative_infinity();

template <>
__device__ float negative_infinity<float>() { return __int_as_float(0xff800000); }

template <>
__device__ double negative_infinity<double>() { return __longlong_as_double(0xfff0000000000000LL); }

// The row's maximum and log(sum(exp(z - max))); every thread of the block gets both.
// finite_shift: an infinite maximum shifts by 0 instead (the loss, as in the reference
// forward); without it a row holding +inf gives NaN, as the reference backward does.
template <typename T>
__device__ void row_log_sum_exp(const T* row, long long cols, T* shared, bool finite_shift,
                                T* row_max, T* log_total) {
    T local_max = negative_infinity<T>();
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) local_max = fmax(local_max, row[j]);
    T m = block_reduce_max(local_max, shared);
    if (finite_shift && isinf(m)) m = T(0);
    T local_sum = T(0);
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) local_sum += exp(row[j] - m);
    *row_max = m;
    *log_total = log(block_reduce_sum(local_sum, shared));
}

template <typename T>
__global__ void softmax_cross_entropy_forward(const T* logits, const long long* labels,
                                              T* row_loss, long long rows, long long cols) {
    extern __shared__ unsigned char shared_bytes[];
    T* shared = reinterpret_cast<T*>(shared_bytes);
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* row = logits + r * cols;
        T m, log_total;
        row_log_sum_exp(row, cols, shared, true, &m, &log_total);
        if (threadIdx.x == 0) row_loss[r] = log_total - (row[labels[r]] - m);
    }
}

template <typename T>
__global__ void softmax_cross_entropy_backward(const T* g, const T* logits, const long long* labels,
                                               T* grad, long long rows, long long cols) {
    extern __shared__ unsigned char shared_bytes[];
    T* shared = reinterpret_cast<T*>(shared_bytes);
    const T scale = g[0] / T(rows);
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* row = logits + r * cols;
        T m, log_total;
        row_log_sum_exp(row, cols, shared, false, &m, &log_total);
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
            T p = exp(row[j] - m - log_total);
            grad[r * cols + j] = (p - (j == labels[r] ? T(1) : T(0))) * scale;
        }
    }
}

// Explicit instantiations of both dtypes, for compilers given no name expressions
// (RawModule and ci/nvrtc_compile.py instantiate through name expressions).
#define INSTANTIATE_SOFTMAX_CROSS_ENTROPY(T)                                                    \
    template __global__ void softmax_cross_entropy_forward<T>(const T*, const long long*, T*,   \
                                                               long long, long long);           \
    template __global__ void softmax_cross_entropy_backward<T>(const T*, const T*,              \
                                                                const long long*, T*, long long, \
                                                                long long);
INSTANTIATE_SOFTMAX_CROSS_ENTROPY(float)
INSTANTIATE_SOFTMAX_CROSS_ENTROPY(double)
