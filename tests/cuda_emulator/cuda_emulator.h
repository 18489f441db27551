// cuda_emulator.h: compile a CUDA C++ (.cu) file as host C++ with g++, for the emulator.
//
// The emulator includes this header first in the translation unit and compiles with
// -nostdinc -nostdinc++: like NVRTC, the kernel sees no host header, so INFINITY, NAN,
// HUGE_VAL, M_PI, printf, std:: and <cmath> are missing here exactly as they are there.
// Everything below is either a compiler builtin (__builtin_exp...) or a call into the
// emulator's runtime (runtime.cpp, through cuda_emulator_abi.h).
//
// Memory spaces: __shared__ declarations are rewritten by the loader (see
// cuda_emulator/source.py) into static storage that the runtime fills with 0xFF at
// each block start; `extern __shared__ T name[];` becomes a pointer to the launch's
// dynamic shared memory. __constant__ and __device__ variables are ordinary globals.
#ifndef CUDA_EMULATOR_H
#define CUDA_EMULATOR_H

#include "cuda_emulator_abi.h"

// What NVRTC predefines, and a way for kernels to know they run emulated.
#define __CUDACC__ 1
#define __CUDACC_RTC__ 1
#define __CUDA_ARCH__ 900
#define CUDA_EMULATOR 1

typedef decltype(sizeof(0)) size_t;
typedef decltype((char*)0 - (char*)0) ptrdiff_t;

// ---- execution-space and variable qualifiers ------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __constant__
#define __managed__
// Only declarations the loader could not rewrite (e.g. inside a macro) still say
// __shared__: they become plain statics, neither counted nor filled with the pattern.
#define __shared__ static

// ---- the running thread ---------------------------------------------------------------
#define threadIdx (cuda_emu_self->threadIdx)
#define blockIdx (cuda_emu_self->blockIdx)
#define blockDim (cuda_emu_self->blockDim)
#define gridDim (cuda_emu_self->gridDim)
#define warpSize 32

#define __syncthreads() ((void)cuda_emu_syncthreads(0, __LINE__, 0))
#define __syncthreads_count(predicate) cuda_emu_syncthreads(1, __LINE__, (predicate) ? 1 : 0)
#define __syncthreads_and(predicate) cuda_emu_syncthreads(2, __LINE__, (predicate) ? 1 : 0)
#define __syncthreads_or(predicate) cuda_emu_syncthreads(3, __LINE__, (predicate) ? 1 : 0)
#define __trap() cuda_emu_fail("__trap() called", __LINE__)
inline void __threadfence() {}
inline void __threadfence_block() {}
inline void __threadfence_system() {}
template <typename T>
inline T __ldg(const T* address) { return *address; }

// ---- warp-wide operations: every lane of the mask takes part at once ------------------
namespace cuda_emu {
template <typename T>
inline unsigned long long to_bits(T value) {
    unsigned long long bits = 0;
    __builtin_memcpy(&bits, &value, sizeof(T));
    return bits;
}
template <typename T>
inline T from_bits(unsigned long long bits) {
    T value;
    __builtin_memcpy(&value, &bits, sizeof(T));
    return value;
}
inline unsigned long long warp(int op, int line, unsigned int mask, unsigned long long value,
                               int arg, int width) {
    return cuda_emu_warp(op, line, mask, value, arg, width);
}
}  // namespace cuda_emu

// One overload per type CUDA offers (int, unsigned, long, unsigned long, long long,
// unsigned long long, float, double), so other types convert or fail as they do there.
#define CUDA_EMU_SHUFFLES(T)                                                                  \
    namespace cuda_emu {                                                                      \
    inline T shfl(int line, unsigned int mask, T var, int src_lane, int width = 32) {         \
        return from_bits<T>(warp(CUDA_EMU_SHFL_IDX, line, mask, to_bits(var), src_lane, width)); \
    }                                                                                         \
    inline T shfl_up(int line, unsigned int mask, T var, unsigned int delta, int width = 32) { \
        return from_bits<T>(warp(CUDA_EMU_SHFL_UP, line, mask, to_bits(var), (int)delta, width)); \
    }                                                                                         \
    inline T shfl_down(int line, unsigned int mask, T var, unsigned int delta, int width = 32) { \
        return from_bits<T>(warp(CUDA_EMU_SHFL_DOWN, line, mask, to_bits(var), (int)delta, width)); \
    }                                                                                         \
    inline T shfl_xor(int line, unsigned int mask, T var, int lane_mask, int width = 32) {    \
        return from_bits<T>(warp(CUDA_EMU_SHFL_XOR, line, mask, to_bits(var), lane_mask, width)); \
    }                                                                                         \
    }
CUDA_EMU_SHUFFLES(int)
CUDA_EMU_SHUFFLES(unsigned int)
CUDA_EMU_SHUFFLES(long)
CUDA_EMU_SHUFFLES(unsigned long)
CUDA_EMU_SHUFFLES(long long)
CUDA_EMU_SHUFFLES(unsigned long long)
CUDA_EMU_SHUFFLES(float)
CUDA_EMU_SHUFFLES(double)
#undef CUDA_EMU_SHUFFLES

#define __shfl_sync(...) ::cuda_emu::shfl(__LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) ::cuda_emu::shfl_up(__LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) ::cuda_emu::shfl_down(__LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) ::cuda_emu::shfl_xor(__LINE__, __VA_ARGS__)
#define __ballot_sync(mask, predicate) \
    ((unsigned int)cuda_emu_warp(CUDA_EMU_BALLOT, __LINE__, (mask), (predicate) ? 1 : 0, 0, 32))
#define __any_sync(mask, predicate) \
    ((int)cuda_emu_warp(CUDA_EMU_ANY, __LINE__, (mask), (predicate) ? 1 : 0, 0, 32))
#define __all_sync(mask, predicate) \
    ((int)cuda_emu_warp(CUDA_EMU_ALL, __LINE__, (mask), (predicate) ? 1 : 0, 0, 32))
// __syncwarp() or __syncwarp(mask): an object that knows the line, called with the mask.
#define __syncwarp ::cuda_emu::SyncWarp(__LINE__)
namespace cuda_emu {
struct SyncWarp {
    int line;
    explicit SyncWarp(int l) : line(l) {}
    void operator()(unsigned int mask = 0xffffffffu) const {
        cuda_emu_warp(CUDA_EMU_SYNCWARP, line, mask, 0, 0, 32);
    }
};
}  // namespace cuda_emu

// ---- atomics --------------------------------------------------------------------------
// Fibers never interleave inside a call, so a plain read-modify-write is atomic; after
// it the thread lets the others run, as threads interleave on a GPU (and so that a
// thread spinning on an atomic lets the one it waits for make progress).
// The overload set is CUDA's (sm_60 and later): e.g. no atomicAdd(long long*, ...).
#define CUDA_EMU_ATOMIC(name, T, update)         \
    inline T name(T* address, T val) {           \
        T old = *address;                        \
        *address = (update);                     \
        cuda_emu_atomic_done();                  \
        return old;                              \
    }
#define CUDA_EMU_WRAP(T, U, op) (T)((U)old op (U)val)  // no signed-overflow UB
CUDA_EMU_ATOMIC(atomicAdd, int, CUDA_EMU_WRAP(int, unsigned int, +))
CUDA_EMU_ATOMIC(atomicAdd, unsigned int, old + val)
CUDA_EMU_ATOMIC(atomicAdd, unsigned long long, old + val)
CUDA_EMU_ATOMIC(atomicAdd, float, old + val)
CUDA_EMU_ATOMIC(atomicAdd, double, old + val)
CUDA_EMU_ATOMIC(atomicSub, int, CUDA_EMU_WRAP(int, unsigned int, -))
CUDA_EMU_ATOMIC(atomicSub, unsigned int, old - val)
CUDA_EMU_ATOMIC(atomicExch, int, val)
CUDA_EMU_ATOMIC(atomicExch, unsigned int, val)
CUDA_EMU_ATOMIC(atomicExch, unsigned long long, val)
CUDA_EMU_ATOMIC(atomicExch, float, val)
CUDA_EMU_ATOMIC(atomicMin, int, val < old ? val : old)
CUDA_EMU_ATOMIC(atomicMin, unsigned int, val < old ? val : old)
CUDA_EMU_ATOMIC(atomicMin, long long, val < old ? val : old)
CUDA_EMU_ATOMIC(atomicMin, unsigned long long, val < old ? val : old)
CUDA_EMU_ATOMIC(atomicMax, int, val > old ? val : old)
CUDA_EMU_ATOMIC(atomicMax, unsigned int, val > old ? val : old)
CUDA_EMU_ATOMIC(atomicMax, long long, val > old ? val : old)
CUDA_EMU_ATOMIC(atomicMax, unsigned long long, val > old ? val : old)
CUDA_EMU_ATOMIC(atomicAnd, int, old & val)
CUDA_EMU_ATOMIC(atomicAnd, unsigned int, old & val)
CUDA_EMU_ATOMIC(atomicAnd, unsigned long long, old & val)
CUDA_EMU_ATOMIC(atomicOr, int, old | val)
CUDA_EMU_ATOMIC(atomicOr, unsigned int, old | val)
CUDA_EMU_ATOMIC(atomicOr, unsigned long long, old | val)
CUDA_EMU_ATOMIC(atomicXor, int, old ^ val)
CUDA_EMU_ATOMIC(atomicXor, unsigned int, old ^ val)
CUDA_EMU_ATOMIC(atomicXor, unsigned long long, old ^ val)
CUDA_EMU_ATOMIC(atomicInc, unsigned int, old >= val ? 0u : old + 1u)
CUDA_EMU_ATOMIC(atomicDec, unsigned int, (old == 0u || old > val) ? val : old - 1u)
#undef CUDA_EMU_WRAP
#undef CUDA_EMU_ATOMIC

#define CUDA_EMU_ATOMIC_CAS(T)                             \
    inline T atomicCAS(T* address, T compare, T val) {     \
        T old = *address;                                  \
        if (old == compare) *address = val;                \
        cuda_emu_atomic_done();                            \
        return old;                                        \
    }
CUDA_EMU_ATOMIC_CAS(int)
CUDA_EMU_ATOMIC_CAS(unsigned int)
CUDA_EMU_ATOMIC_CAS(unsigned long long)
CUDA_EMU_ATOMIC_CAS(unsigned short)
#undef CUDA_EMU_ATOMIC_CAS

// ---- device math NVRTC offers without headers ------------------------------------------
// For each name: f(double), the float overload f(float) (CUDA's C++ overloads) and fF(float).
#define CUDA_EMU_UNARY(name)                                                  \
    inline double name(double x) { return __builtin_##name(x); }              \
    inline float name(float x) { return __builtin_##name##f(x); }             \
    inline float name##f(float x) { return __builtin_##name##f(x); }
#define CUDA_EMU_BINARY(name)                                                           \
    inline double name(double x, double y) { return __builtin_##name(x, y); }           \
    inline float name(float x, float y) { return __builtin_##name##f(x, y); }           \
    inline float name##f(float x, float y) { return __builtin_##name##f(x, y); }
CUDA_EMU_UNARY(exp)
CUDA_EMU_UNARY(exp2)
CUDA_EMU_UNARY(expm1)
CUDA_EMU_UNARY(log)
CUDA_EMU_UNARY(log2)
CUDA_EMU_UNARY(log10)
CUDA_EMU_UNARY(log1p)
CUDA_EMU_UNARY(sqrt)
CUDA_EMU_UNARY(cbrt)
CUDA_EMU_UNARY(sin)
CUDA_EMU_UNARY(cos)
CUDA_EMU_UNARY(tan)
CUDA_EMU_UNARY(asin)
CUDA_EMU_UNARY(acos)
CUDA_EMU_UNARY(atan)
CUDA_EMU_UNARY(sinh)
CUDA_EMU_UNARY(cosh)
CUDA_EMU_UNARY(tanh)
CUDA_EMU_UNARY(erf)
CUDA_EMU_UNARY(erfc)
CUDA_EMU_UNARY(fabs)
CUDA_EMU_UNARY(floor)
CUDA_EMU_UNARY(ceil)
CUDA_EMU_UNARY(round)
CUDA_EMU_UNARY(trunc)
CUDA_EMU_BINARY(pow)
CUDA_EMU_BINARY(fmax)
CUDA_EMU_BINARY(fmin)
CUDA_EMU_BINARY(fmod)
CUDA_EMU_BINARY(atan2)
CUDA_EMU_BINARY(hypot)
CUDA_EMU_BINARY(copysign)
#undef CUDA_EMU_UNARY
#undef CUDA_EMU_BINARY
inline double fma(double x, double y, double z) { return __builtin_fma(x, y, z); }
inline float fma(float x, float y, float z) { return __builtin_fmaf(x, y, z); }
inline float fmaf(float x, float y, float z) { return __builtin_fmaf(x, y, z); }
inline double rsqrt(double x) { return 1.0 / __builtin_sqrt(x); }
inline float rsqrt(float x) { return 1.0f / __builtin_sqrtf(x); }
inline float rsqrtf(float x) { return 1.0f / __builtin_sqrtf(x); }
inline float __expf(float x) { return __builtin_expf(x); }
inline float __logf(float x) { return __builtin_logf(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }

#define CUDA_EMU_CLASSIFY(name, builtin)                       \
    inline bool name(float x) { return builtin(x); }           \
    inline bool name(double x) { return builtin(x); }
CUDA_EMU_CLASSIFY(isinf, __builtin_isinf)
CUDA_EMU_CLASSIFY(isnan, __builtin_isnan)
CUDA_EMU_CLASSIFY(isfinite, __builtin_isfinite)
CUDA_EMU_CLASSIFY(signbit, __builtin_signbit)
#undef CUDA_EMU_CLASSIFY

inline int abs(int x) { return x < 0 ? -x : x; }
inline long long abs(long long x) { return x < 0 ? -x : x; }
inline long long llabs(long long x) { return x < 0 ? -x : x; }
inline float abs(float x) { return __builtin_fabsf(x); }
inline double abs(double x) { return __builtin_fabs(x); }

// min/max: CUDA's overloads for each integer and floating type, and the float/double mix.
#define CUDA_EMU_MIN_MAX(T)                                      \
    inline T min(T a, T b) { return b < a ? b : a; }             \
    inline T max(T a, T b) { return a < b ? b : a; }
CUDA_EMU_MIN_MAX(int)
CUDA_EMU_MIN_MAX(unsigned int)
CUDA_EMU_MIN_MAX(long)
CUDA_EMU_MIN_MAX(unsigned long)
CUDA_EMU_MIN_MAX(long long)
CUDA_EMU_MIN_MAX(unsigned long long)
#define CUDA_EMU_MIXED_MIN_MAX(A, B, R)                                            \
    inline R min(A a, B b) { return (R)b < (R)a ? (R)b : (R)a; }                    \
    inline R max(A a, B b) { return (R)a < (R)b ? (R)b : (R)a; }
CUDA_EMU_MIXED_MIN_MAX(int, unsigned int, unsigned int)
CUDA_EMU_MIXED_MIN_MAX(unsigned int, int, unsigned int)
CUDA_EMU_MIXED_MIN_MAX(long long, unsigned long long, unsigned long long)
CUDA_EMU_MIXED_MIN_MAX(unsigned long long, long long, unsigned long long)
#undef CUDA_EMU_MIXED_MIN_MAX
#undef CUDA_EMU_MIN_MAX
inline unsigned int umin(unsigned int a, unsigned int b) { return b < a ? b : a; }
inline unsigned int umax(unsigned int a, unsigned int b) { return a < b ? b : a; }
inline long long llmin(long long a, long long b) { return b < a ? b : a; }
inline long long llmax(long long a, long long b) { return a < b ? b : a; }
inline unsigned long long ullmin(unsigned long long a, unsigned long long b) { return b < a ? b : a; }
inline unsigned long long ullmax(unsigned long long a, unsigned long long b) { return a < b ? b : a; }
inline float min(float a, float b) { return __builtin_fminf(a, b); }
inline float max(float a, float b) { return __builtin_fmaxf(a, b); }
inline double min(double a, double b) { return __builtin_fmin(a, b); }
inline double max(double a, double b) { return __builtin_fmax(a, b); }
inline double min(float a, double b) { return __builtin_fmin(a, b); }
inline double max(float a, double b) { return __builtin_fmax(a, b); }
inline double min(double a, float b) { return __builtin_fmin(a, b); }
inline double max(double a, float b) { return __builtin_fmax(a, b); }

// ---- reinterpreting bits ----------------------------------------------------------------
inline float __int_as_float(int x) { return __builtin_bit_cast(float, x); }
inline int __float_as_int(float x) { return __builtin_bit_cast(int, x); }
inline float __uint_as_float(unsigned int x) { return __builtin_bit_cast(float, x); }
inline unsigned int __float_as_uint(float x) { return __builtin_bit_cast(unsigned int, x); }
inline double __longlong_as_double(long long x) { return __builtin_bit_cast(double, x); }
inline long long __double_as_longlong(double x) { return __builtin_bit_cast(long long, x); }

#endif
