"""Backend selection: which backend new tensors go to.

``GRADKIT_BACKEND`` is read the first time a default is needed (never at import):
``numpy`` (default), or a comma list tried in order (``numba,numpy``). An explicit
single choice that is unavailable is an error that says why, never a silent fallback.

>>> import gradkit as gk
>>> with gk.use_backend("numpy"):
...     gk.get_backend().name
'numpy'
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from typing import Any, Callable, Iterator

from gradkit.backends.base import Backend

__all__ = ["Backend", "available", "get", "get_backend", "register_backend",
           "set_backend", "unregister_backend", "use_backend"]
from gradkit.errors import BackendError

log = logging.getLogger("gradkit")

_factories: dict[str, Callable[[], Backend]] = {}
_instances: dict[str, Backend] = {}
_aliases: dict[str, str] = {}
_default: Backend | None = None
_override: contextvars.ContextVar[Backend | None] = contextvars.ContextVar(
    "gradkit_backend", default=None)


def register_backend(name: str, factory: Callable[[], Backend],
                     aliases: tuple[str, ...] = ()) -> None:
    """Make ``factory()`` selectable as ``name`` (and its aliases).

    The factory is called once, on first use, so registering never imports the
    backend's array library.
    """
    _factories[name] = factory
    _instances.pop(name, None)
    for alias in aliases:
        _aliases[alias] = name


_entry_points_loaded = False


def _load_entry_points() -> None:
    """Register backends that installed packages declare under ``gradkit.backends``.

    An entry point names a Backend subclass or a function returning a Backend;
    it is imported only when that backend is first used.
    """
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points
    for point in entry_points(group="gradkit.backends"):
        if point.name not in _factories:
            register_backend(point.name, lambda point=point: point.load()())


def unregister_backend(name: str) -> None:
    """Forget the backend ``name`` (tests, or a plugin being unloaded)."""
    key = _canonical(name)
    _factories.pop(key, None)
    _instances.pop(key, None)
    global _default
    if _default is not None and _default.name == key:
        _default = None


def _canonical(name: str) -> str:
    name = name.strip().lower()
    return _aliases.get(name, name)


def get(name: str | Backend) -> Backend:
    """The backend called ``name``; raises BackendError saying why it is unusable."""
    if isinstance(name, Backend):
        return name
    key = _canonical(name)
    if key not in _factories:
        _load_entry_points()
    if key not in _factories:
        raise BackendError(f"unknown backend {name!r}; known: {sorted(_factories)}")
    backend = _instances.get(key)
    if backend is None:
        try:
            backend = _factories[key]()
        except Exception as exc:  # a third-party factory that fails says why
            raise BackendError(f"backend {key!r} failed to load: {exc}") from exc
        reason = backend.unavailable_reason()
        if reason is not None:
            raise BackendError(f"backend {key!r} is unavailable: {reason}")
        _instances[key] = backend
    return backend


def instantiated() -> list[Backend]:
    """The backends created so far in this process."""
    return list(_instances.values())


def owner_of(array: Any) -> Backend:
    """A backend created in this process whose arrays are of ``array``'s type (the one
    that can read it: NumPy and Numba share NumPy's arrays, and either reads them)."""
    for backend in _instances.values():
        if type(array) is backend.array_type:
            return backend
    raise BackendError(f"no backend in use holds arrays of type {type(array).__name__}")


def available() -> dict[str, str | None]:
    """Every registered backend mapped to None (usable) or the reason it is not."""
    _load_entry_points()
    status: dict[str, str | None] = {}
    for key in list(_factories):
        try:
            get(key)
            status[key] = None
        except BackendError as exc:
            status[key] = str(exc)
    return status


def _from_environment() -> Backend:
    spec = os.environ.get("GRADKIT_BACKEND", "numpy") or "numpy"
    choices = spec.split(",")
    if not all(c.strip() for c in choices):
        _load_entry_points()
        raise BackendError(f"GRADKIT_BACKEND={spec!r} has an empty entry; set it to a backend "
                           f"name or a comma list of names tried in order, from "
                           f"{sorted(_factories)} (e.g. 'numba,numpy'), or unset it for numpy")
    if len(choices) == 1:
        return get(choices[0])
    reasons = []
    for choice in choices:
        try:
            return get(choice)
        except BackendError as exc:
            reasons.append(str(exc))
    raise BackendError(f"GRADKIT_BACKEND={spec!r}: no backend usable: " + "; ".join(reasons))


def get_backend() -> Backend:
    """The backend new tensors go to (``use_backend`` block, else the default)."""
    override = _override.get()
    if override is not None:
        return override
    global _default
    if _default is None:
        _default = _from_environment()
        log.info("gradkit backend: %s", _default.name)
    return _default


def set_backend(name: str | Backend) -> None:
    """Make ``name`` the default backend for this process."""
    global _default
    _default = get(name)


@contextlib.contextmanager
def use_backend(name: str | Backend) -> Iterator[Backend]:
    """Within the block (this thread / async context only), new tensors go to ``name``."""
    token = _override.set(get(name))
    try:
        yield _override.get()
    finally:
        _override.reset(token)


def _numpy_factory() -> Backend:
    from gradkit.backends.numpy.backend import NumpyBackend
    return NumpyBackend()


register_backend("numpy", _numpy_factory, aliases=("np", "cpu"))


def _numba_factory() -> Backend:
    from gradkit.backends.numba.backend import NumbaBackend
    return NumbaBackend()


register_backend("numba", _numba_factory)


def _cuda_factory() -> Backend:
    from gradkit.backends.cuda.backend import CudaBackend
    return CudaBackend()


register_backend("cuda", _cuda_factory, aliases=("cupy", "gpu"))
