// Fused optimizer updates for gradkit's CUDA backend: one pass over each parameter.
//
// Each kernel reads param and grad, updates the optimizer's state buffers in place
// and writes the new parameter to out (the same rules as gradkit/ops/optim_update.py).

#define GRID_STRIDE_LOOP(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

// g = grad + weight_decay * param; with momentum: velocity = momentum * velocity + g and
// the step is velocity (or g + momentum * velocity when nesterov); out = param - lr * step.
template <typename T>
__global__ void sgd_update(const T* param, const T* grad, T* velocity, T* out, long long n,
                           T lr, int use_momentum, T momentum, int nesterov, T weight_decay) {
    GRID_STRIDE_LOOP(i, n) {
        T g = grad[i] + weight_decay * param[i];
        if (use_momentum) {  // else velocity is any valid pointer and is not touched
            T vel = momentum * velocity[i] + g;
            velocity[i] = vel;
            g = nesterov ? g + momentum * vel : vel;
        }
        out[i] = param[i] - lr * g;
    }
}

// Adam (L2 weight decay added to the gradient) or AdamW (decoupled: the parameter
// shrinks by lr * weight_decay). bias1 = 1 - beta1^step, bias2_sqrt = sqrt(1 - beta2^step).
template <typename T>
__global__ void adam_update(const T* param, const T* grad, T* m, T* v, T* out, long long n,
                            T lr, T beta1, T beta2, T eps, T weight_decay, int decoupled,
                            T bias1, T bias2_sqrt) {
    GRID_STRIDE_LOOP(i, n) {
        T p = param[i];
        T g = decoupled ? grad[i] : grad[i] + weight_decay * p;
        T m_new = beta1 * m[i] + (T(1) - beta1) * g;
        T v_new = beta2 * v[i] + (T(1) - beta2) * (g * g);
        m[i] = m_new;
        v[i] = v_new;
        if (decoupled) p = p * (T(1) - lr * weight_decay);
        T denominator = sqrt(v_new) / bias2_sqrt + eps;
        out[i] = p - (lr / bias1) * (m_new / denominator);
    }
}

// Explicit instantiations of both dtypes, for compilers given no name expressions
// (RawModule and ci/nvrtc_compile.py instantiate through name expressions).
#define INSTANTIATE_OPTIM(T)                                                                   \
    template __global__ void sgd_update<T>(const T*, const T*, T*, T*, long long, T, int, T, int, \
                                           T);                                                  \
    template __global__ void adam_update<T>(const T*, const T*, T*, T*, T*, long long, T, T, T, \
                                            T, T, int, T, T);
INSTANTIATE_OPTIM(float)
INSTANTIATE_OPTIM(double)
