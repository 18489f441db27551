// Fused optimizer updates for gradkit's CUDA backend: one pass over each parameter.
//
// Each kernel reads param and grad, updates the optimizer's state buffers in place
// and writes the new parameter to out (the same rules as gradkit/ops/optim_update.py).

#define GRID_STRIDE_LOOP(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

// Each kernel evaluates the reference's expression in the reference's order; a
// hyperparameter that the reference combines as a Python float arrives as one T.

// g = grad + weight_decay * param (skipped when weight_decay is 0, so an infinite
// parameter does not turn into NaN); with momentum: velocity = momentum * velocity + g
// and the step is velocity (or g + momentum * velocity when nesterov);
// out = param - lr * step.
template <typename T>
__global__ void sgd_update(const T* param, const T* grad, T* velocity, T* out, long long n,
                           T lr, int use_momentum, T momentum, int nesterov, T weight_decay) {
    GRID_STRIDE_LOOP(i, n) {
        T g = weight_decay != T(0) ? grad[i] + weight_decay * param[i] : grad[i];
        if (use_momentum) {  // else velocity is any valid pointer and is not touched
            T vel = momentum * velocity[i] + g;
            velocity[i] = vel;
            g = nesterov ? g + momentum * vel : vel;
        }
        out[i] = param[i] - lr * g;
    }
}

// Adam (L2 weight decay added to the gradient) or AdamW (decoupled: the parameter
// shrinks by lr * weight_decay). The step count stays on the device (a 0-d int64
// array, counted from 1); the bias corrections 1 - beta1^step and
// sqrt(1 - beta2^step) are computed in double, as the reference does in Python.
template <typename T>
__global__ void adam_update(const T* param, const T* grad, T* m, T* v, T* out, long long n,
                            double lr, double beta1, double beta2, double eps,
                            double weight_decay, int decoupled, const long long* step) {
    const double count = double(*step);
    const T step_size = T(lr / (1.0 - pow(beta1, count)));
    const T bias2_sqrt = T(sqrt(1.0 - pow(beta2, count)));
    const bool l2 = !decoupled && weight_decay != 0.0;
    const bool shrink = decoupled && weight_decay != 0.0;
    GRID_STRIDE_LOOP(i, n) {
        T p = param[i];
        T g = l2 ? grad[i] + T(weight_decay) * p : grad[i];
        T m_new = T(beta1) * m[i] + T(1.0 - beta1) * g;
        T v_new = T(beta2) * v[i] + T(1.0 - beta2) * (g * g);
        m[i] = m_new;
        v[i] = v_new;
        if (shrink) p = p * T(1.0 - lr * weight_decay);
        T denominator = sqrt(v_new) / bias2_sqrt + T(eps);
        out[i] = p - step_size * (m_new / denominator);
    }
}

// Explicit instantiations of both dtypes, for compilers given no name expressions
// (RawModule and ci/nvrtc_compile.py instantiate through name expressions).
#define INSTANTIATE_OPTIM(T)                                                                   \
    template __global__ void sgd_update<T>(const T*, const T*, T*, T*, long long, T, int, T, int, \
                                           T);                                                  \
    template __global__ void adam_update<T>(const T*, const T*, T*, T*, T*, long long, double,  \
                                            double, double, double, double, int,              \
                                            const long long*);
INSTANTIATE_OPTIM(float)
INSTANTIATE_OPTIM(double)
