"""The emulator's exceptions."""
from __future__ import annotations


class EmulatorCompileError(RuntimeError):
    """g++ refused the module (the message carries its diagnostics), or the source
    uses something the emulator cannot rewrite."""


class EmulatorLaunchError(RuntimeError):
    """A launch a GPU would refuse: wrong arguments, launch limits, unknown kernel."""


class EmulatorKernelError(EmulatorLaunchError):
    """The kernel misbehaved while it ran: divergent __syncthreads(), deadlock at a
    barrier or warp operation, too much shared memory, __trap()."""
