// The interface between kernel code (compiled under cuda_emulator.h) and the emulator's
// runtime (runtime.cpp). Included by both; it must not include any header itself.
#ifndef CUDA_EMULATOR_ABI_H
#define CUDA_EMULATOR_ABI_H

struct uint3 {
    unsigned int x, y, z;
};

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
        : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

// What one emulated thread sees of itself; the runtime points cuda_emu_self at the
// record of the thread (fiber) that runs now.
struct cuda_emu_thread {
    uint3 threadIdx;
    uint3 blockIdx;
    dim3 blockDim;
    dim3 gridDim;
    unsigned int lane;  // linear thread index % 32
};

// The warp-wide operations, in the order runtime.cpp names them.
enum cuda_emu_warp_op {
    CUDA_EMU_SYNCWARP = 0,
    CUDA_EMU_SHFL_IDX,
    CUDA_EMU_SHFL_UP,
    CUDA_EMU_SHFL_DOWN,
    CUDA_EMU_SHFL_XOR,
    CUDA_EMU_BALLOT,
    CUDA_EMU_ANY,
    CUDA_EMU_ALL,
};

#pragma GCC visibility push(hidden)
extern "C" {
extern const cuda_emu_thread* cuda_emu_self;

// Blocks the calling thread at the barrier of source line `line`: op 0 __syncthreads(),
// 1 __syncthreads_count(predicate), 2 _and, 3 _or; returns that reduction.
int cuda_emu_syncthreads(int op, int line, int predicate);
// After each atomic: lets the other threads of the block run (a thread spinning on an
// atomic lets the one it waits for go on; endless spinning is reported).
void cuda_emu_atomic_done(void);
// One lane's part in a warp-wide operation; returns the lane's result bits.
unsigned long long cuda_emu_warp(int op, int line, unsigned int mask, unsigned long long value,
                                 int arg, int width);
// The dynamic shared memory of the running launch.
void* cuda_emu_dynamic_shared(void);
// Called where a thread passes a static __shared__ declaration: counts it against the
// shared-memory limit and fills it with 0xFF bytes once per block.
void cuda_emu_note_shared(void* address, unsigned long size, int line);
// Ends the launch with an error (__trap(), misuse found by the header).
void cuda_emu_fail(const char* message, int line);
// Registers a file-scope __shared__ variable (at load): filled at every block start.
int cuda_emu_register_shared(void* address, unsigned long size);
}
#pragma GCC visibility pop

// An array argument copied to just before a PROT_NONE guard region: an access to the
// guard is reported with this label ("argument 2 (float*, 1000 elements)").
struct cuda_emu_guard {
    const void* start;
    unsigned long size;
    const char* label;
};

extern "C" {

// Runs a whole grid: thunk(context) once per thread. dims = grid x, y, z, block x, y, z.
// Returns 0, or nonzero with cuda_emu_last_error() saying why.
int cuda_emu_run_grid(const unsigned int* dims, unsigned long dynamic_shared_bytes,
                      void (*thunk)(void*), void* context, const cuda_emu_guard* guards,
                      int guard_count);
const char* cuda_emu_last_error(void);
// size bytes ending right at a guard region (the start aligned to `align`); release
// with cuda_emu_guarded_free. size 0 gives a pointer into the guard itself.
void* cuda_emu_guarded_alloc(unsigned long size, unsigned long align);
void cuda_emu_guarded_free(void* start);
}

#endif
