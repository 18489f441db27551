// Elementwise activation kernels for gradkit's CUDA backend.
//
// Compiled at first use by cupy.RawModule (name_expressions instantiate each
// template for float and double); CI compiles it the same way (ci/nvrtc_compile.py).
// Every kernel uses a grid-stride loop, so any grid size covers any n.
//
// kind: 0 identity, 1 relu, 2 leaky_relu (slope), 3 elu (alpha), 4 sigmoid, 5 tanh
// (the order of gradkit.backends.cuda_backend.ACTIVATION_KINDS).

#define GRID_STRIDE_LOOP(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

template <typename T>
__device__ __forceinline__ T activate(T z, int kind, T slope, T alpha) {
    switch (kind) {
        case 1: return isnan(z) || z > T(0) ? z : T(0);  // NaN stays NaN, as max(z, 0)
        case 2: return z > T(0) ? z : z * slope;
        case 3: return z > T(0) ? z : alpha * expm1(z);
        case 4: {  // stable: exp of a non-positive number never overflows
            T e = exp(-fabs(z));
            return z >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
        }
        case 5: return tanh(z);
        default: return z;
    }
}

// d act / d z, written in terms of the output y = act(z).
template <typename T>
__device__ __forceinline__ T local_gradient_from_output(T y, int kind, T slope, T alpha) {
    switch (kind) {
        case 1: return y > T(0) ? T(1) : T(0);
        case 2: return y > T(0) ? T(1) : slope;
        case 3: return y > T(0) ? T(1) : y + alpha;
        case 4: return y * (T(1) - y);
        case 5: return T(1) - y * y;
        default: return T(1);
    }
}

// d act / d z, written in terms of the input z (relu, leaky_relu, elu).
template <typename T>
__device__ __forceinline__ T local_gradient_from_input(T z, int kind, T slope, T alpha) {
    switch (kind) {
        case 1: return z > T(0) ? T(1) : T(0);
        case 2: return z > T(0) ? T(1) : slope;
        case 3: return z > T(0) ? T(1) : alpha * exp(z);
        default: return T(1);
    }
}

template <typename T>
__global__ void activation_forward(const T* x, T* y, long long n, int kind, T slope, T alpha) {
    GRID_STRIDE_LOOP(i, n) { y[i] = activate(x[i], kind, slope, alpha); }
}

template <typename T>
__global__ void activation_backward_from_input(const T* g, const T* x, T* out, long long n,
                                               int kind, T slope, T alpha) {
    GRID_STRIDE_LOOP(i, n) { out[i] = g[i] * local_gradient_from_input(x[i], kind, slope, alpha); }
}

template <typename T>
__global__ void activation_backward_from_output(const T* g, const T* y, T* out, long long n,
                                                int kind, T slope, T alpha) {
    GRID_STRIDE_LOOP(i, n) { out[i] = g[i] * local_gradient_from_output(y[i], kind, slope, alpha); }
}

// y = act(x + b) for x of shape (rows, cols) and b of shape (cols,), one pass.
template <typename T>
__global__ void bias_activation_forward(const T* x, const T* b, T* y, long long n, long long cols,
                                        int kind, T slope, T alpha) {
    GRID_STRIDE_LOOP(i, n) { y[i] = activate(x[i] + b[i % cols], kind, slope, alpha); }
}

// Explicit instantiations of both dtypes, for compilers given no name expressions
// (RawModule and ci/nvrtc_compile.py instantiate through name expressions).
#define INSTANTIATE_ACTIVATIONS(T)                                                              \
    template __global__ void activation_forward<T>(const T*, T*, long long, int, T, T);         \
    template __global__ void activation_backward_from_input<T>(const T*, const T*, T*, long long, \
                                                                int, T, T);                     \
    template __global__ void activation_backward_from_output<T>(const T*, const T*, T*,           \
                                                                 long long, int, T, T);          \
    template __global__ void bias_activation_forward<T>(const T*, const T*, T*, long long,       \
                                                         long long, int, T, T);
INSTANTIATE_ACTIVATIONS(float)
INSTANTIATE_ACTIVATIONS(double)
