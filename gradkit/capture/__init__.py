"""Record a step's kernel calls once, then replay them without the engine: ``gk.capture``.

An eager step pays, for every op, a Tensor, a tape node, a dispatch and a visit
by the backward walk. For small shapes that is most of the step. ``gk.capture(f)``
runs ``f`` eagerly on its first two calls while recording every kernel launched
(forward, backward and optimizer alike), checks that the two recordings agree,
and from then on replays the recorded kernels on the new arguments' arrays: no
Tensor, node or dispatch per op. It is the CPU counterpart of capturing a CUDA
graph, in the spirit of tinygrad's TinyJit and ``torch.cuda.graphs``.

>>> import gradkit as gk
>>> w = gk.tensor([1.0, 2.0], requires_grad=True)
>>> opt = gk.optim.SGD([w], lr=0.1)
>>> @gk.capture
... def step(x):
...     loss = ((x * w).sum() - 1.0) ** 2
...     loss.backward()
...     opt.step()
...     opt.zero_grad()
...     return loss
>>> [round(step(gk.tensor([1.0, 1.0])).item(), 4) for _ in range(4)]
[4.0, 1.44, 0.5184, 0.1866]
>>> step.replays
2

What a replay repeats: every gradkit op's kernel, in the recorded order with the
recorded params, on the arrays the arguments and pre-existing tensors (parameters,
optimizer buffers) hold at that call; then the arrays the step installed into
pre-existing tensors (in-place operators, ``x[i] = v``, optimizer updates) and the
``.grad`` it left on them. Returned tensors come back detached. Where a kernel reads
an array for the last time and nothing else can see that memory, the backend may
write the kernel's result into it (the source says so), as hand-written NumPy does.

What a replay checks (its guards), and what it does when one fails:

- Recorded anew (a new recording absorbs the change): an argument with a new shape,
  strides, dtype, backend or ``requires_grad`` (or a new non-tensor argument, or
  keyword names); the default backend, dtype or grad mode; an op redefined with
  ``register_op(..., replace=True)``; a state tensor (parameter, buffer) whose array got
  another layout; any attribute of a module the step called (a parameter or child
  rebound, ``model.train()``/``eval()``, Dropout's ``p``); an optimizer the step stepped
  given other parameters or buffers (``load_state_dict``), a hyperparameter that calls
  for other buffers (SGD's momentum to or from 0), or a newer optimizer made over its
  parameters; ``requires_grad`` of a tensor the step read switched; a global or closure
  variable the function's own code names rebound to another object. A change between
  the two recorded calls makes the second one a first recording.
- Read afresh on every replay (no new recording): the values of the arguments and of
  every tensor the step found in place (parameters, optimizer buffers), and an
  optimizer's hyperparameters (``opt.lr = ...`` from a schedule; they are checked when
  set).
- Refused with :class:`CaptureError`, changing nothing: a ``.grad`` from before the call
  that the step's backward would add to (gradient accumulation across calls: call
  ``zero_grad`` in the step, before backward); and, when recording, a step whose two
  recorded calls differ (see below). A refused recording rolls back what it did to
  tensors from before the call (arrays, buffers updated in place, ``.grad``) and to the
  optimizer's buffers.

Most guards are checked only when ``gradkit.interception.state_version`` moved (each
of those changes ticks it), so an unchanged step pays one integer comparison for them;
a step that keeps recording anew warns once, naming what changed.

What a replay freezes: everything computed outside gradkit ops (Python numbers,
branches taken, host NumPy results, random draws on the host, values read from Python
objects other than the ones above). The two recorded calls must agree on it (same
kernels, params, constants and updated tensors), so a step whose Python side changes
between calls (dropout masks drawn on the host, a branch on a loss value, alternating
buffers) raises :class:`CaptureError` naming the first difference instead of replaying
stale values. It also refuses what it could not repeat: a read through a view of memory
an in-place operator changed, an in-place update of a view of memory from outside the
call, an array replaced by assigning ``.data``, backward adding to a ``.grad`` from
before the step, a tensor that shares its array with an argument without being it,
results whose shape depends on values (boolean-mask indexing, argwhere,
unique_values), and the gradient of a user op whose VJP computes a value from its
inputs' raw arrays (``ctx.constant``; no built-in op's VJP does).

Whole-step compilation (on unless ``gk.capture(f, compile=False)`` or
``GRADKIT_CAPTURE_COMPILE=0``) turns each run of consecutive kernel calls of a plan
that have a compiled form on their backend (the Numba backend: ``LOWERINGS`` in
gradkit/backends/numba/lowering.py says which ops, for which arrays) into one
``@numba.njit`` function: the replay keeps its guards, its installs and the calls
without a compiled form as Python lines, and runs each such run of calls as one native
call, with the optimizers' hyperparameters as arguments (read afresh on each call).
It computes what the Python replay computes, bit for bit (the same loops, serial or
parallel as the Python kernels pick them, NumPy's summation order, and the same BLAS
for matmul; tested in tests/test_capture_compile.py). ``f.explain()`` says per plan
which calls run compiled and why each other one does not, and ``f.source`` shows the
compiled functions' sources. They are written to ``~/.cache/gradkit/plans`` (or
``$GRADKIT_CACHE_DIR/plans``) and cached there by Numba; ``plan.compile_seconds`` is the
time compiling (or loading) them took. Needs numba and SciPy (Numba's BLAS for
matmul): ``pip install "gradkit[numba]"``.

Along the plan, the compiled function fuses what it can without changing a bit:
chains of elementwise arithmetic into one loop, bias + activation after a matmul (and
its backward over the incoming gradient, with the bias's gradient summed in the same
pass), kernels writing over an intermediate read for the last time; and its
intermediates of 1 MiB and more that nothing outside it sees live in an arena kept
from call to call (``explain()`` says how large; the compiled steps of a process
share one, as large as the largest needs, one step at a time), so a step does not map
and page-fault fresh memory for them as malloc does above its mmap threshold. A matmul's
operands are whole arrays: BLAS takes no elementwise prologue, so an activation's
backward is one pass of its own, written over the matmul's result that the next
matmul reads.

A replay installs nothing unless every kernel succeeded; buffers that update
kernels change in place (SGD momentum, Adam's m and v) have advanced if a later
kernel fails, as in an eager step that fails after its optimizer step.
"""
from gradkit.capture.recorder import (CaptureError, External, KernelCall, Recorder,  # noqa: F401
                                      note_created, recording)
from gradkit.capture.compare import compare  # noqa: F401
from gradkit.capture.plan import Plan  # noqa: F401
from gradkit.capture.api import MAX_PENDING, MAX_PLANS, CapturedFunction, capture  # noqa: F401

__all__ = ["capture", "CapturedFunction", "CaptureError"]


def __getattr__(name: str) -> object:
    """``active_recordings`` is read live from gradkit.interception (it changes)."""
    if name == "active_recordings":
        from gradkit import interception
        return interception.active_recordings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
