"""The tape and reverse mode: Node, backward (grad mode is gradkit.grad_mode's, the
functional transforms gradkit.transforms'; both are importable from here too).

A Tensor made by an op whose inputs need a gradient carries a :class:`Node`: the
op, its input Tensors, its params and its output array. ``backward`` sorts the
nodes reverse-topologically (iteratively, so deep graphs never hit the recursion
limit), calls each op's VJP with the upstream gradient, and frees what it used.
VJPs are built from gradkit ops, so with ``create_graph=True`` the backward pass
is itself recorded and can be differentiated again; ``jvp``, ``jacobian`` and
``hessian`` are built on that.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from gradkit.errors import CaptureError, DTypeError, GradkitError, GraphError, ShapeError, describe
from gradkit.grad_mode import (Differentiating, GradMode, depends_on,  # noqa: F401
                               check_stays_in_graph, enable_grad, grad_enabled,
                               is_grad_enabled, no_grad)
from gradkit.interception import (add_gradient_ready_listener, current_interceptor,
                                  gradient_ready, gradient_ready_listeners)
from gradkit.tensor import Tensor, bind_backward, bound_ops


class Node:
    """One recorded op application; also the ``ctx`` a VJP rule receives."""

    __slots__ = ("op", "inputs", "params", "out_data", "backend", "needs", "versions",
                 "freed_by")

    def __init__(self, op: Any, inputs: tuple, params: dict, out_data: Any,
                 backend: Any, needs: tuple) -> None:
        self.op = op
        self.inputs = inputs
        self.params = params
        self.out_data = out_data
        self.backend = backend
        self.needs = needs
        n = len(inputs)  # (one and two inputs spelled out: most ops, and faster)
        self.versions = ((inputs[0]._version,) if n == 1 else
                         (inputs[0]._version, inputs[1]._version) if n == 2 else
                         tuple([t._version for t in inputs]))
        self.freed_by: str | None = None

    @property
    def out(self) -> Tensor:
        """The op's output as a Tensor wired to this node (so VJPs can use it)."""
        return Tensor(self.out_data, self.backend, self)

    def constant(self, array: Any, from_input_values: bool = True) -> Tensor:
        """A raw array of this node's backend as a Tensor that needs no gradient.

        ``from_input_values=False`` says ``array`` does not depend on the inputs'
        values (zeros of their shape, an identity matrix). One that does (a mask like
        ``x.data > 0``) is computed outside the ops, so ``gk.capture`` cannot replay
        it and refuses to record it.
        """
        if from_input_values:
            if current_interceptor.get() is not None:
                raise CaptureError(
                    f"capture: the gradient of {self.op.name} computes a value from its "
                    "inputs' raw arrays (outside the ops), which a replay cannot repeat; a "
                    f"step that differentiates {self.op.name} cannot be captured yet")
        return Tensor(array, self.backend)

    def free(self, why: str = "an earlier backward freed it; pass retain_graph=True to the "
             "first backward if you need to go through it twice") -> None:
        self.inputs = None
        self.out_data = None
        self.freed_by = why

    def check_versions(self) -> None:
        """Raise if an input was modified in place after this op recorded it."""
        inputs = self.inputs
        n = len(inputs)
        if (inputs[0]._version == self.versions[0] if n == 1 else
                (inputs[0]._version, inputs[1]._version) == self.versions if n == 2 else
                tuple([t._version for t in inputs]) == self.versions):
            return
        for index, (t, version) in enumerate(zip(self.inputs, self.versions)):
            if t._version != version:
                raise GraphError(
                    f"{self.op.name}: input {index} ({describe(t)}) was modified in place "
                    "after this op used it, so its gradient would be wrong; make the "
                    "in-place update after backward, or use x = x - ... instead of x -= ...")

    def __repr__(self) -> str:
        return f"<Node {self.op.name}>"


def _graph_gone(node: Node) -> GraphError:
    return GraphError(f"backward: the graph through op {node.op.name!r} is gone: "
                      f"{node.freed_by}")


def _reverse_topological(roots: Sequence[Node]) -> list[Node]:
    """Nodes reachable from ``roots``, each before every node it consumes.

    Iterative depth-first post-order: no recursion, so a chain of any length works.
    A node popped the first time is entered and pushed again under its inputs; popped
    again (all its inputs are done by then), it is done. Copies of a node pushed by
    other consumers before it was entered are skipped.
    """
    order: list[Node] = []
    entered: set[Node] = set()
    done: set[Node] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node in entered:
            if node not in done:
                done.add(node)
                order.append(node)
            continue
        if node.inputs is None:
            raise _graph_gone(node)
        entered.add(node)
        stack.append(node)
        for t in node.inputs:
            parent = t.node
            if parent is not None and parent not in entered:
                stack.append(parent)
    order.reverse()
    return order


def _conform_gradient(node: Node, index: int, inp: Tensor, g: Any) -> Tensor:
    """``g`` as input ``index``'s gradient: a Tensor of its shape and dtype.

    A floating gradient wider than its input is cast down, as PyTorch's engine does:
    where float64 data meets a float32 model, an op's VJP computes in float64 for both
    inputs. Anything else (a narrower gradient would have lost precision) is a VJP
    bug, named.
    """
    if type(g) is not Tensor:
        raise GraphError(f"{node.op.name}: VJP returned {type(g).__name__} for input "
                         f"{index}; it must return gradkit Tensors (or None)")
    if g.data.shape != inp.data.shape:
        raise ShapeError(f"{node.op.name}: VJP returned a gradient of shape {g.shape} for "
                         f"input {index} ({describe(inp)}); a gradient has its input's shape")
    if g.dtype.kind == "f" and inp.dtype.kind == "f" and g.dtype.itemsize > inp.dtype.itemsize:
        return g.astype(inp.dtype)
    raise DTypeError(f"{node.op.name}: VJP returned a gradient of dtype {g.dtype} for "
                     f"input {index} ({describe(inp)}); a gradient has its input's dtype")


def _accumulate(store: dict, key: Any, g: Tensor) -> None:
    previous = store.get(key)
    store[key] = g if previous is None else previous + g


def _checked_gradient_count(node: Node, grads: Any) -> Sequence[Tensor | None]:
    """``grads``, a VJP's result, if it holds one gradient (or None) per input."""
    if not isinstance(grads, (tuple, list)) or len(grads) != len(node.inputs):
        got = (f"{len(grads)} gradients" if isinstance(grads, (tuple, list))
               else type(grads).__name__)
        raise GraphError(f"{node.op.name}: its VJP must return a tuple of {len(node.inputs)} "
                         f"gradients (one per input, None allowed), got {got}")
    return grads


def _check_capturable_accumulation(leaf: Tensor) -> None:
    """Inside gk.capture, a .grad from before the step cannot be accumulated into: a
    replay would add to the recording's gradient, not to the one there at that call."""
    recorder = current_interceptor.get()
    if recorder is not None:
        recorder.check_accumulation(leaf)


def _independent(g: Tensor, seen: set[int]) -> Tensor:
    """``g`` itself, unless its array is shared or read-only: then a private copy.

    One gradient array can reach several leaves (``add`` passes ``g`` to both
    inputs) or be the user's own cotangent or a broadcast view; each ``.grad``
    gets memory of its own that the user can modify.
    """
    data = g.data
    if id(data) in seen or not g.array_backend.is_writeable(data):
        g = bound_ops().copy(g)  # an op, so gk.capture records and replays it
    seen.add(id(g.data))
    return g


# -- the engine's gradient-ready event ----------------------------------------------
# Reported through the core's interception point (gradkit.interception): the engine
# calls interception.gradient_ready(leaf) right after a leaf's .grad got its last
# contribution, once per leaf per backward.
def on_gradient_ready(callback: Callable[[Tensor], None]) -> Callable[[], None]:
    """Call ``callback(leaf)`` whenever a leaf's ``.grad`` is final during a backward.

    It fires once per leaf per ``backward()`` (not for the functional transforms,
    which write no ``.grad``), after the leaf's last accumulation, in the order the
    gradients become final; ``leaf.grad`` may be replaced by the callback. While any
    callback is registered, a backward that fails partway may have written some
    ``.grad`` already. Returns a function that removes the callback. (The public name
    of ``gradkit.interception.add_gradient_ready_listener``.)

    >>> import gradkit as gk
    >>> from gradkit.autodiff import on_gradient_ready
    >>> w, b = gk.tensor([2.0], requires_grad=True), gk.tensor([1.0], requires_grad=True)
    >>> seen = []
    >>> remove = on_gradient_ready(lambda leaf: seen.append(leaf.grad.tolist()))
    >>> (w * 3.0 + b * w).sum().backward()
    >>> remove(); sorted(seen)
    [[2.0], [4.0]]
    """
    return add_gradient_ready_listener(callback)


def _leaf_uses(order: list[Node]) -> dict[int, int]:
    """How many edges of the graph feed each leaf that needs a gradient."""
    uses: dict[int, int] = {}
    for node in order:
        for inp, need in zip(node.inputs, node.needs):
            if need and inp.node is None:
                uses[id(inp)] = uses.get(id(inp), 0) + 1
    return uses


def _install_grad(leaf: Tensor, g: Tensor, seen: set[int]) -> None:
    if leaf.grad is not None:
        _check_capturable_accumulation(leaf)
    leaf.write(grad=_independent(g, seen) if leaf.grad is None else leaf.grad + g,
               accumulated=True)


def _finish_leaves(node: Node, uses: dict[int, int], leaf_grads: dict[int, Tensor],
                   finished: set[int], seen: set[int]) -> None:
    """[gradient-ready event] ``node``'s VJP has run: a leaf input with no edge left
    has its final gradient, so install its .grad and fire the event."""
    for inp, need in zip(node.inputs, node.needs):
        key = id(inp)
        if not need or inp.node is not None or key not in uses:
            continue
        uses[key] -= 1
        if uses[key] == 0 and key in leaf_grads and inp._requires_grad and key not in finished:
            finished.add(key)
            _install_grad(inp, leaf_grads[key], seen)
            gradient_ready(inp)


def run_backward(outputs: Sequence[Tensor], cotangents: Sequence[Tensor],
                 inputs: Sequence[Tensor] | None, retain_graph: bool,
                 create_graph: bool) -> list[Tensor | None] | None:
    """Backpropagate ``cotangents`` from ``outputs``.

    With ``inputs=None`` gradients accumulate into every leaf's ``.grad`` (this is
    ``Tensor.backward``); otherwise the gradients of ``inputs`` are returned and no
    ``.grad`` is touched (this is what the functional transforms use).
    """
    retain_graph = retain_graph or create_graph
    node_grads: dict[Node, Tensor] = {}
    leaf_grads: dict[int, Tensor] = {}
    targets = None if inputs is None else {id(t.node if t.node is not None else t) for t in inputs}
    captured: dict[int, Tensor] = {}
    roots = []
    for out, cot in zip(outputs, cotangents):
        if out.node is None:
            _accumulate(leaf_grads, id(out), cot)
        else:
            _accumulate(node_grads, out.node, cot)
            roots.append(out.node)
    leaves: dict[int, Tensor] = {id(o): o for o in outputs if o.node is None}
    seen = {id(cot.data) for cot in cotangents}
    node = None  # the node whose VJP runs (for the error path)
    with GradMode(create_graph):
        try:
            order = _reverse_topological(roots)
            # [gradient-ready event] count each leaf's pending contributions
            uses = _leaf_uses(order) if inputs is None and gradient_ready_listeners else None
            finished: set[int] = set()
            for node in order:
                g = node_grads.pop(node, None)
                if g is None:
                    if uses is not None:  # [gradient-ready event] its edges are done too
                        _finish_leaves(node, uses, leaf_grads, finished, seen)
                    continue
                if targets is not None and id(node) in targets:
                    captured[id(node)] = g
                node_inputs = node.inputs
                if node_inputs is None:  # freed since the sort (by a listener's backward)
                    raise _graph_gone(node)
                if len(node_inputs) != 1 or node_inputs[0]._version != node.versions[0]:
                    node.check_versions()  # (the one-input case inlined: this loop is hot)
                try:
                    input_grads = node.op.vjp(node, g)
                except GradkitError:
                    raise
                except Exception as exc:
                    raise GraphError(f"{node.op.name}: its VJP raised {type(exc).__name__}: "
                                     f"{exc}") from exc
                if type(input_grads) is not tuple or len(input_grads) != len(node_inputs):
                    input_grads = _checked_gradient_count(node, input_grads)
                needs = node.needs
                for index, inp in enumerate(node_inputs):
                    gi = input_grads[index]
                    if gi is None or not needs[index]:
                        continue
                    if type(gi) is not Tensor or gi.data.shape != inp.data.shape or \
                            gi.data.dtype != inp.data.dtype:
                        gi = _conform_gradient(node, index, inp, gi)
                    parent = inp.node
                    if parent is not None:  # (_accumulate, inlined: this loop is hot)
                        previous = node_grads.get(parent)
                        node_grads[parent] = gi if previous is None else previous + gi
                    else:
                        leaves[id(inp)] = inp
                        _accumulate(leaf_grads, id(inp), gi)
                if uses is not None:  # [gradient-ready event]
                    _finish_leaves(node, uses, leaf_grads, finished, seen)
                if not retain_graph:
                    node.free()
        except Exception as exc:
            # no .grad was touched; say why the graph is gone where this backward freed
            # it: the nodes it went through before ``node`` that are freed now
            reached = order[:order.index(node)] if node is not None else []
            for node in reached:
                if node.inputs is None:
                    node.freed_by = (f"an earlier backward failed partway "
                                     f"({type(exc).__name__}: {exc}) and had freed it; "
                                     "build the graph again")
            raise
        if inputs is None:
            for key, g in leaf_grads.items():
                leaf = leaves[key]
                if leaf._requires_grad and key not in finished:
                    _install_grad(leaf, g, seen)
                    if uses is not None:
                        gradient_ready(leaf)
            return None
    captured.update(leaf_grads)
    found = [captured.get(id(t.node if t.node is not None else t)) for t in inputs]
    return [g if g is None or create_graph else _independent(g, seen) for g in found]


def root_cotangent(out: Tensor, grad: Any, where: str) -> Tensor:
    if grad is None:
        if out.size != 1:
            raise GraphError(
                f"{where}: output has shape {out.shape} ({describe(out)}); backward without "
                "a gradient needs a scalar (size-1) output. Reduce it (e.g. .sum()) or pass "
                "grad= with the output's shape")
        return Tensor(out.array_backend.xp.ones(out.shape, dtype=out.data.dtype), out.array_backend)
    if not isinstance(grad, Tensor):
        grad = Tensor(out.array_backend.asarray(grad, dtype=out.dtype), out.array_backend)
    if grad.shape != out.shape:
        raise ShapeError(f"{where}: grad has shape {grad.shape} but the output has shape "
                         f"{out.shape} ({describe(out)})")
    if grad.dtype != out.dtype:
        grad = grad.astype(out.dtype)
    return grad


def backward(out: Tensor, grad: Any = None, retain_graph: bool = False,
             create_graph: bool = False) -> None:
    """Accumulate d(out)/d(leaf) into every leaf's ``.grad`` (see Tensor.backward)."""
    if not out._requires_grad:
        raise GraphError(f"backward: this tensor ({describe(out)}) does not require a "
                         "gradient: no input of the computation had requires_grad=True")
    cotangent = root_cotangent(out, grad, "backward")
    run_backward([out], [cotangent], None, retain_graph, create_graph)


bind_backward(backward)  # Tensor.backward (the tensor module does not import this one)
