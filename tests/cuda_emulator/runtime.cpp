// The emulator's runtime: runs a grid of CUDA threads as fibers on one host thread.
//
// Blocks run one after another. Inside a block every thread is a fiber with its own
// stack (switched by a few lines of assembly on x86-64, by ucontext elsewhere). The
// scheduler passes over the threads in order, resuming each runnable one until it
// exits, blocks (at a barrier or a warp-wide operation) or yields after an atomic.
// When none can run, it releases a warp operation whose mask has fully arrived or,
// once every live thread waits at the same barrier, the barrier. Anything else is a
// divergent barrier or a deadlock, reported through cuda_emu_last_error().
//
// Array arguments (copied by the launcher) and the dynamic shared memory end right at a
// PROT_NONE guard region, and every fiber stack starts above one: a kernel touching a
// guard raises SIGSEGV, which the runtime's handler (installed for the launch only, on
// the launching thread only) turns into an error naming the argument.
//
// Compiled once per runtime version as its own translation unit (host headers are
// fine here), then linked into every kernel module.
#include "cuda_emulator_abi.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

// ---- stack switching --------------------------------------------------------------------

#if defined(__x86_64__) && !defined(CUDA_EMU_UCONTEXT)
// A context is the saved stack pointer; the stack holds the callee-saved registers and
// the SSE/x87 control words (the System V ABI's callee-saved state), then the return
// address. No signal mask is saved: that is what makes it fast (no system call).
struct Context {
    void* sp = nullptr;
};
extern "C" void cuda_emu_switch_stack(void** save_sp, void* load_sp);
asm(R"(
    .text
    .p2align 4
    .globl cuda_emu_switch_stack
    .hidden cuda_emu_switch_stack
    .type cuda_emu_switch_stack, @function
cuda_emu_switch_stack:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cuda_emu_switch_stack, .-cuda_emu_switch_stack
)");

// Prepares `context` so that switching to it calls entry() on the given stack.
void context_start(Context& context, char* stack, size_t size, void (*entry)()) {
    auto top = reinterpret_cast<unsigned long>(stack + size) & ~15ul;
    auto* slot = reinterpret_cast<unsigned long*>(top);
    *--slot = 0;                                       // entry() sees rsp % 16 == 8
    *--slot = reinterpret_cast<unsigned long>(entry);  // "returned" to by the switch
    for (int i = 0; i < 6; ++i) *--slot = 0;           // rbp rbx r12 r13 r14 r15
    unsigned int control[2];
    asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(control[0]), "=m"(control[1]));
    *--slot = control[0] | static_cast<unsigned long>(control[1] & 0xffff) << 32;
    context.sp = slot;
}

void context_switch(Context& from, Context& to) { cuda_emu_switch_stack(&from.sp, to.sp); }
#else
struct Context {
    ucontext_t uc;
};

void context_start(Context& context, char* stack, size_t size, void (*entry)()) {
    getcontext(&context.uc);
    context.uc.uc_stack.ss_sp = stack;
    context.uc.uc_stack.ss_size = size;
    context.uc.uc_link = nullptr;  // entry() never returns
    makecontext(&context.uc, entry, 0);
}

void context_switch(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kGuardBytes = 4096;            // below each fiber stack
constexpr size_t kArrayGuardBytes = 64 * 1024;  // after each guarded array
constexpr size_t kSharedLimit = 48 * 1024;  // static + dynamic, per block (sm_90 default)
constexpr unsigned kWarpSize = 32;
// Atomics in a row, with no thread exiting or blocking, taken for a spin that never ends.
constexpr unsigned long long kSpinLimit = 1ull << 24;

enum class State { Ready, AtBarrier, AtWarpOp, Exited };

struct Fiber {
    Context context;
    cuda_emu_thread info;
    State state = State::Exited;
    int line = 0;  // source line of the barrier or warp operation it waits at
    int op = 0;
    unsigned mask = 0;
    unsigned long long value = 0;
    int arg = 0;
    int width = 32;
    unsigned long long result = 0;
};

struct StaticShared {
    size_t size;
    unsigned long long filled_in_block;
};

struct Launch {
    std::vector<Fiber>* fibers = nullptr;
    unsigned nthreads = 0;
    void (*thunk)(void*) = nullptr;
    void* context = nullptr;
    Context scheduler;
    Fiber* current = nullptr;
    bool failed = false;
    std::string error;
    unsigned char* dynamic_shared = nullptr;
    size_t dynamic_bytes = 0;
    size_t static_bytes = 0;
    unsigned long long block_serial = 0;
    unsigned long long atomics_without_progress = 0;
    std::unordered_map<void*, StaticShared> statics;
    const cuda_emu_guard* guards = nullptr;
    int guard_count = 0;
};

std::mutex launch_mutex;  // one launch at a time: static shared memory is module-wide
Launch* active = nullptr;
std::string last_error;
std::vector<char*> stacks;  // kStackBytes each, a PROT_NONE guard page below
std::mutex allocation_mutex;
std::unordered_map<void*, std::pair<void*, size_t>> guarded_regions;  // start -> mapping
std::vector<std::pair<void*, size_t>> file_scope_shared;  // cuda_emu_register_shared

// ---- fibers ------------------------------------------------------------------------------

char* stack_for(size_t index) {
    while (stacks.size() <= index) {
        void* base = mmap(nullptr, kStackBytes + kGuardBytes, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (base == MAP_FAILED) return nullptr;
        mprotect(base, kGuardBytes, PROT_NONE);
        stacks.push_back(static_cast<char*>(base) + kGuardBytes);
    }
    return stacks[index];
}

void fiber_main() {
    active->thunk(active->context);
    active->current->state = State::Exited;
    active->atomics_without_progress = 0;
    context_switch(active->current->context, active->scheduler);  // never resumed
}

void resume(Fiber& fiber) {
    active->current = &fiber;
    cuda_emu_self = &fiber.info;
    context_switch(active->scheduler, fiber.context);
    cuda_emu_self = nullptr;
}

void yield_to_scheduler() { context_switch(active->current->context, active->scheduler); }

std::string where(const Fiber& fiber) {
    const cuda_emu_thread& t = fiber.info;
    char text[160];
    std::snprintf(text, sizeof text, "block (%u, %u, %u), thread (%u, %u, %u)", t.blockIdx.x,
                  t.blockIdx.y, t.blockIdx.z, t.threadIdx.x, t.threadIdx.y, t.threadIdx.z);
    return text;
}

void fail(const std::string& message) {
    if (!active->failed) active->error = message;
    active->failed = true;
}

// ---- describing what the threads of a block are doing --------------------------------

const char* op_name(int op) {
    static const char* names[] = {"__syncwarp",      "__shfl_sync",   "__shfl_up_sync",
                                  "__shfl_down_sync", "__shfl_xor_sync", "__ballot_sync",
                                  "__any_sync",      "__all_sync"};
    return (op >= 0 && op < 8) ? names[op] : "warp operation";
}

const char* barrier_name(int op) {
    static const char* names[] = {"__syncthreads", "__syncthreads_count", "__syncthreads_and",
                                  "__syncthreads_or"};
    return (op >= 0 && op < 4) ? names[op] : "barrier";
}

std::string activity(const Fiber& f) {
    char text[120];
    switch (f.state) {
        case State::Exited: return "exited";
        case State::Ready: return "spin at an atomic";
        case State::AtBarrier:
            std::snprintf(text, sizeof text, "wait at %s() on line %d", barrier_name(f.op),
                          f.line);
            return text;
        case State::AtWarpOp:
            std::snprintf(text, sizeof text, "wait at %s(mask 0x%08x) on line %d", op_name(f.op),
                          f.mask, f.line);
            return text;
    }
    return "?";
}

// "threads 0-127 wait at __syncthreads() on line 12; threads 128-255 exited"
std::string describe_block(const Launch& launch) {
    const std::vector<Fiber>& fibers = *launch.fibers;
    constexpr int kShownRuns = 8;
    std::string text;
    unsigned start = 0;
    int runs = 0;
    for (unsigned i = 1; i <= launch.nthreads; ++i) {
        if (i < launch.nthreads && activity(fibers[i]) == activity(fibers[start])) continue;
        if (++runs > kShownRuns) {
            start = i;
            continue;
        }
        char range[64];
        if (i - 1 == start)
            std::snprintf(range, sizeof range, "thread %u ", start);
        else
            std::snprintf(range, sizeof range, "threads %u-%u ", start, i - 1);
        if (!text.empty()) text += "; ";
        text += range + activity(fibers[start]);
        start = i;
    }
    if (runs > kShownRuns) text += "; ... (" + std::to_string(runs - kShownRuns) + " more)";
    return text + " (linear thread indices)";
}

// ---- warp operations ---------------------------------------------------------------------

// The lane whose value lane `lane` reads, or `lane` itself where CUDA returns its own value.
unsigned source_lane(const Fiber& f, unsigned lane) {
    const unsigned width = static_cast<unsigned>(f.width);
    const unsigned segment = lane & ~(width - 1);
    const unsigned delta = static_cast<unsigned>(f.arg);
    switch (f.op) {
        case CUDA_EMU_SHFL_IDX: return segment + (static_cast<unsigned>(f.arg) & (width - 1));
        case CUDA_EMU_SHFL_UP: return (lane - segment) >= delta ? lane - delta : lane;
        case CUDA_EMU_SHFL_DOWN: return (lane - segment) + delta < width ? lane + delta : lane;
        case CUDA_EMU_SHFL_XOR: {
            unsigned source = lane ^ static_cast<unsigned>(f.arg);
            return (source >= kWarpSize || (source & ~(width - 1)) > segment) ? lane : source;
        }
    }
    return lane;
}

// True when every lane named by fibers[first]'s mask waits at the same operation.
bool warp_group_complete(const Launch& launch, unsigned first) {
    const std::vector<Fiber>& fibers = *launch.fibers;
    const Fiber& f = fibers[first];
    const unsigned base = first - first % kWarpSize;
    for (unsigned lane = 0; lane < kWarpSize; ++lane) {
        if (!(f.mask >> lane & 1u)) continue;
        unsigned index = base + lane;
        if (index >= launch.nthreads) return false;
        const Fiber& other = fibers[index];
        if (other.state != State::AtWarpOp || other.line != f.line || other.op != f.op ||
            other.mask != f.mask)
            return false;
    }
    return true;
}

// Computes every lane's result of a complete group and makes its lanes runnable.
void release_warp_group(Launch& launch, unsigned first) {
    std::vector<Fiber>& fibers = *launch.fibers;
    const unsigned base = first - first % kWarpSize;
    const unsigned mask = fibers[first].mask;
    unsigned long long votes = 0;
    for (unsigned lane = 0; lane < kWarpSize; ++lane)
        if ((mask >> lane & 1u) && fibers[base + lane].value != 0) votes |= 1ull << lane;
    for (unsigned lane = 0; lane < kWarpSize; ++lane) {
        if (!(mask >> lane & 1u)) continue;
        Fiber& f = fibers[base + lane];
        switch (f.op) {
            case CUDA_EMU_SYNCWARP: f.result = 0; break;
            case CUDA_EMU_BALLOT: f.result = votes; break;
            case CUDA_EMU_ANY: f.result = votes != 0; break;
            case CUDA_EMU_ALL: f.result = votes == mask; break;
            default: {
                unsigned source = source_lane(f, lane);
                if (!(mask >> source & 1u)) {
                    fail(std::string(op_name(f.op)) + " on line " + std::to_string(f.line) +
                         ": lane " + std::to_string(lane) + " reads lane " +
                         std::to_string(source) + ", which is not in the mask (" +
                         where(f) + ")");
                    return;
                }
                f.result = fibers[base + source].value;
            }
        }
        f.state = State::Ready;
    }
}

bool release_warps(Launch& launch) {
    bool released = false;
    for (unsigned i = 0; i < launch.nthreads && !launch.failed; ++i) {
        if ((*launch.fibers)[i].state == State::AtWarpOp && warp_group_complete(launch, i)) {
            release_warp_group(launch, i);
            released = true;
        }
    }
    return released;
}

// ---- barriers ------------------------------------------------------------------------------

// Releases __syncthreads() (or _count/_and/_or) when every thread waits at the same one;
// otherwise reports.
bool release_barrier(Launch& launch) {
    std::vector<Fiber>& fibers = *launch.fibers;
    bool any_waiting = false, uniform = true, someone_exited = false, warp_waiting = false;
    int line = -1, op = 0;
    for (unsigned i = 0; i < launch.nthreads; ++i) {
        const Fiber& f = fibers[i];
        if (f.state == State::Exited) someone_exited = true;
        if (f.state == State::AtWarpOp) warp_waiting = true;
        if (f.state != State::AtBarrier) continue;
        if (any_waiting && (f.line != line || f.op != op)) uniform = false;
        any_waiting = true;
        line = f.line;
        op = f.op;
    }
    if (any_waiting && uniform && !someone_exited && !warp_waiting) {
        unsigned long long count = 0;
        for (unsigned i = 0; i < launch.nthreads; ++i) count += fibers[i].value != 0;
        const unsigned long long results[] = {0, count, count == launch.nthreads, count != 0};
        for (unsigned i = 0; i < launch.nthreads; ++i) {
            fibers[i].result = results[op];
            fibers[i].state = State::Ready;
        }
        return true;
    }
    std::string block = where(fibers[0]);
    block = block.substr(0, block.find(", thread"));
    if (any_waiting && !warp_waiting)
        fail("divergent __syncthreads() in " + block + ": " + describe_block(launch));
    else
        fail("deadlock in " + block + ": " + describe_block(launch));
    return false;
}

// ---- blocks and grids --------------------------------------------------------------------

bool start_fibers(Launch& launch, uint3 block, const unsigned* dims) {
    std::vector<Fiber>& fibers = *launch.fibers;
    for (unsigned i = 0; i < launch.nthreads; ++i) {
        Fiber& f = fibers[i];
        f.info.threadIdx = {i % dims[3], (i / dims[3]) % dims[4], i / (dims[3] * dims[4])};
        f.info.blockIdx = block;
        f.info.blockDim = dim3(dims[3], dims[4], dims[5]);
        f.info.gridDim = dim3(dims[0], dims[1], dims[2]);
        f.info.lane = i % kWarpSize;
        f.state = State::Ready;
        char* stack = stack_for(i);
        if (stack == nullptr) {
            fail("out of memory for thread stacks");
            return false;
        }
        context_start(f.context, stack, kStackBytes, fiber_main);
    }
    return true;
}

bool report_spinning(Launch& launch) {
    std::string block = where((*launch.fibers)[0]);
    block = block.substr(0, block.find(", thread"));
    fail("livelock in " + block + ": " + std::to_string(kSpinLimit) + " atomic operations in a "
         "row while no thread exited or reached a barrier; a thread spinning on an atomic "
         "waits for one that cannot run: " + describe_block(launch));
    return false;
}

bool run_block(Launch& launch, uint3 block, const unsigned* dims) {
    launch.block_serial++;
    if (launch.dynamic_bytes) std::memset(launch.dynamic_shared, 0xFF, launch.dynamic_bytes);
    for (auto& variable : file_scope_shared) std::memset(variable.first, 0xFF, variable.second);
    if (!start_fibers(launch, block, dims)) return false;
    std::vector<Fiber>& fibers = *launch.fibers;
    for (;;) {
        bool live = false, runnable = false;
        for (unsigned i = 0; i < launch.nthreads; ++i) {
            if (fibers[i].state == State::Ready) resume(fibers[i]);
            if (launch.failed) return false;
            live = live || fibers[i].state != State::Exited;
            runnable = runnable || fibers[i].state == State::Ready;  // yielded at an atomic
        }
        if (!live) return true;
        if (runnable) {
            if (launch.atomics_without_progress > kSpinLimit) return report_spinning(launch);
            continue;
        }
        launch.atomics_without_progress = 0;
        if (!release_warps(launch) && !release_barrier(launch)) return false;
        if (launch.failed) return false;
    }
}

int run_grid(Launch& launch, const unsigned* dims) {
    for (unsigned z = 0; z < dims[2]; ++z)
        for (unsigned y = 0; y < dims[1]; ++y)
            for (unsigned x = 0; x < dims[0]; ++x)
                if (!run_block(launch, uint3{x, y, z}, dims)) return 1;
    return 0;
}

// ---- faults ---------------------------------------------------------------------------------

sigjmp_buf fault_jump;
pthread_t launch_thread;
struct sigaction previous_segv, previous_bus;
stack_t previous_signal_stack;
char signal_stack[64 * 1024];
char fault_message[512];

// What the faulting address is: a guard after an argument, a stack guard, or neither.
void describe_fault(const char* address, bool write) {
    const char* verb = write ? "wrote" : "read";
    for (int i = 0; i < active->guard_count; ++i) {
        const cuda_emu_guard& g = active->guards[i];
        const char* end = static_cast<const char*>(g.start) + g.size;
        if (address >= end && address < end + kArrayGuardBytes) {
            std::snprintf(fault_message, sizeof fault_message,
                          "%s past the end of %s: byte %ld of a %lu-byte array (%s)", verb,
                          g.label, static_cast<long>(address - static_cast<const char*>(g.start)),
                          g.size, active->current ? where(*active->current).c_str() : "");
            return;
        }
    }
    for (char* stack : stacks) {
        if (address >= stack - kGuardBytes && address < stack) {
            std::snprintf(fault_message, sizeof fault_message,
                          "stack overflow: a thread used more than %zu KiB of stack (%s)",
                          kStackBytes / 1024, where(*active->current).c_str());
            return;
        }
    }
    std::snprintf(fault_message, sizeof fault_message,
                  "segmentation fault: %s address %p, which is no argument's guard (a wild or "
                  "null pointer, or an access before an array's start) (%s)", verb,
                  static_cast<const void*>(address),
                  active->current ? where(*active->current).c_str() : "");
}

void on_fault(int signal, siginfo_t* info, void* context) {
    if (active == nullptr || !pthread_equal(pthread_self(), launch_thread)) {
        // not ours: put the previous handler back and let the access fault again
        sigaction(signal, signal == SIGSEGV ? &previous_segv : &previous_bus, nullptr);
        return;
    }
    bool write = false;
#if defined(__x86_64__)
    write = (static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_ERR] & 2) != 0;
#else
    (void)context;
#endif
    describe_fault(static_cast<const char*>(info->si_addr), write);
    siglongjmp(fault_jump, 1);
}

void catch_faults() {
    launch_thread = pthread_self();
    stack_t alternate{};
    alternate.ss_sp = signal_stack;
    alternate.ss_size = sizeof signal_stack;
    sigaltstack(&alternate, &previous_signal_stack);
    struct sigaction action{};
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, &previous_segv);
    sigaction(SIGBUS, &action, &previous_bus);
}

void stop_catching_faults() {
    sigaction(SIGSEGV, &previous_segv, nullptr);
    sigaction(SIGBUS, &previous_bus, nullptr);
    sigaltstack(&previous_signal_stack, nullptr);
}

// Runs the grid with faults caught; a fault ends it (the fibers are abandoned).
int run_grid_catching_faults(Launch& launch, const unsigned* dims) {
    catch_faults();
    int status;
    if (sigsetjmp(fault_jump, 1) == 0) {
        status = run_grid(launch, dims);
    } else {
        cuda_emu_self = nullptr;
        fail(fault_message);
        status = 1;
    }
    stop_catching_faults();
    return status;
}

size_t page_size() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }

}  // namespace

// ---- the interface ------------------------------------------------------------------------

extern "C" {

__attribute__((visibility("hidden"))) const cuda_emu_thread* cuda_emu_self = nullptr;

void cuda_emu_atomic_done(void) {
    active->atomics_without_progress++;
    yield_to_scheduler();  // stays Ready: the other threads run before it goes on
}

int cuda_emu_syncthreads(int op, int line, int predicate) {
    Fiber& f = *active->current;
    active->atomics_without_progress = 0;
    f.state = State::AtBarrier;
    f.op = op;
    f.line = line;
    f.value = predicate != 0;
    yield_to_scheduler();
    return static_cast<int>(f.result);
}

unsigned long long cuda_emu_warp(int op, int line, unsigned int mask, unsigned long long value,
                                 int arg, int width) {
    Fiber& f = *active->current;
    if (!(mask >> f.info.lane & 1u)) {
        fail(std::string(op_name(op)) + " on line " + std::to_string(line) + ": the mask 0x" +
             [&] { char h[16]; std::snprintf(h, sizeof h, "%08x", mask); return std::string(h); }() +
             " does not name the calling lane " + std::to_string(f.info.lane) + " (" + where(f) + ")");
        yield_to_scheduler();
    }
    if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
        fail(std::string(op_name(op)) + " on line " + std::to_string(line) + ": width " +
             std::to_string(width) + " is not a power of two from 1 to 32");
        yield_to_scheduler();
    }
    active->atomics_without_progress = 0;
    f.state = State::AtWarpOp;
    f.line = line;
    f.op = op;
    f.mask = mask;
    f.value = value;
    f.arg = arg;
    f.width = width;
    yield_to_scheduler();
    return f.result;
}

void* cuda_emu_dynamic_shared(void) { return active->dynamic_shared; }

void cuda_emu_note_shared(void* address, unsigned long size, int line) {
    Launch& launch = *active;
    auto found = launch.statics.find(address);
    if (found == launch.statics.end()) {
        found = launch.statics.emplace(address, StaticShared{size, 0}).first;
        launch.static_bytes += size;
        if (launch.static_bytes + launch.dynamic_bytes > kSharedLimit) {
            fail("too much shared memory: " + std::to_string(launch.static_bytes) +
                 " bytes static (reached the __shared__ declaration on line " +
                 std::to_string(line) + ") + " + std::to_string(launch.dynamic_bytes) +
                 " bytes dynamic > 49152 bytes (48 KiB) per block");
            yield_to_scheduler();
        }
    }
    if (found->second.filled_in_block != launch.block_serial) {
        std::memset(address, 0xFF, size);
        found->second.filled_in_block = launch.block_serial;
    }
}

int cuda_emu_register_shared(void* address, unsigned long size) {
    file_scope_shared.emplace_back(address, size);
    return 0;
}

void cuda_emu_fail(const char* message, int line) {
    fail(std::string(message) + " on line " + std::to_string(line) + " (" +
         where(*active->current) + ")");
    yield_to_scheduler();
}

__attribute__((visibility("default"))) int cuda_emu_run_grid(
        const unsigned int* dims, unsigned long dynamic_shared_bytes, void (*thunk)(void*),
        void* context, const cuda_emu_guard* guards, int guard_count) {
    std::lock_guard<std::mutex> lock(launch_mutex);
    Launch launch;
    launch.nthreads = dims[3] * dims[4] * dims[5];
    launch.thunk = thunk;
    launch.context = context;
    launch.dynamic_bytes = dynamic_shared_bytes;
    launch.dynamic_shared = static_cast<unsigned char*>(
        cuda_emu_guarded_alloc(dynamic_shared_bytes, 16));
    cuda_emu_guard shared_guard{launch.dynamic_shared, dynamic_shared_bytes,
                                "the dynamic shared memory (shared_mem bytes)"};
    std::vector<cuda_emu_guard> all_guards(guards, guards + guard_count);
    all_guards.push_back(shared_guard);
    launch.guards = all_guards.data();
    launch.guard_count = static_cast<int>(all_guards.size());
    std::vector<Fiber> fibers(launch.nthreads);
    launch.fibers = &fibers;
    for (auto& variable : file_scope_shared) launch.static_bytes += variable.second;
    int status = 1;
    if (launch.dynamic_shared == nullptr) {
        launch.error = "out of memory for the dynamic shared memory";
    } else if (launch.static_bytes + launch.dynamic_bytes > kSharedLimit) {
        launch.error = "too much shared memory: " + std::to_string(launch.static_bytes) +
                       " bytes in file-scope __shared__ variables + " +
                       std::to_string(launch.dynamic_bytes) +
                       " bytes dynamic > 49152 bytes (48 KiB) per block";
    } else {
        active = &launch;
        status = run_grid_catching_faults(launch, dims);
        active = nullptr;
    }
    if (launch.dynamic_shared) cuda_emu_guarded_free(launch.dynamic_shared);
    last_error = launch.error;
    return status;
}

__attribute__((visibility("default"))) void* cuda_emu_guarded_alloc(unsigned long size,
                                                                    unsigned long align) {
    const size_t page = page_size();
    const size_t data_pages = (size + align + page - 1) / page;
    const size_t length = data_pages * page + kArrayGuardBytes;
    char* base = static_cast<char*>(mmap(nullptr, length, PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (base == MAP_FAILED) return nullptr;
    char* guard = base + data_pages * page;
    mprotect(guard, kArrayGuardBytes, PROT_NONE);
    // the start is aligned to `align` (a power of two); when size is not a multiple of
    // it, up to align - 1 bytes between the end and the guard go unnoticed
    const size_t rounded = align > 1 ? (size + align - 1) / align * align : size;
    char* start = guard - rounded;
    std::lock_guard<std::mutex> lock(allocation_mutex);
    guarded_regions[start] = {base, length};
    return start;
}

__attribute__((visibility("default"))) void cuda_emu_guarded_free(void* start) {
    std::lock_guard<std::mutex> lock(allocation_mutex);
    auto found = guarded_regions.find(start);
    if (found == guarded_regions.end()) return;
    munmap(found->second.first, found->second.second);
    guarded_regions.erase(found);
}

__attribute__((visibility("default"))) const char* cuda_emu_last_error(void) {
    return last_error.c_str();
}

}  // extern "C"
