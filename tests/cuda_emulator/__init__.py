"""A CUDA emulator for tests: .cu kernels compiled by g++ and run on the CPU.

Each thread of a block runs as a fiber; blocks run one after another. Barriers, warp
operations and atomics behave as on a GPU, and the emulator reports (as exceptions)
what a GPU would refuse or silently get wrong: argument types, launch limits,
divergent barriers, deadlocks, too much shared memory, accesses past an array's end.
Reads of shared memory nothing wrote show up as NaN (every byte 0xFF). README.md has
the overview and the known limits; module.py the launch API, source.py the rewrites
of the source, build.py options and caching, guards.py the out-of-bounds checks,
cuda_emulator.h what kernels can use, runtime.cpp the scheduler.

    from cuda_emulator import RawModule
    module = RawModule(code=text, options=("-std=c++14",), name_expressions=["k<float>"])
    module.get_function("k<float>")((2,), (256,), (x, y, np.int64(n)))
"""
from cuda_emulator.build import compiler_available
from cuda_emulator.errors import EmulatorCompileError, EmulatorKernelError, EmulatorLaunchError
from cuda_emulator.module import (TINY_GRID_ENV, Kernel, RawModule, tiny_grid_from_env)

__all__ = ["RawModule", "Kernel", "EmulatorCompileError", "EmulatorLaunchError",
           "EmulatorKernelError", "compiler_available", "TINY_GRID_ENV", "tiny_grid_from_env"]
