"""Devices: where a tensor's data lives. In gradkit a device is a backend.

``x.device`` is a :class:`Device`; every creation function takes ``device=`` (a
Device, a backend name such as ``"numpy"`` or ``"cuda"``, or a Backend), and
``x.to_device(device)`` moves a tensor (gradients flow back across the move). A
backend is one device: gradkit does not tell apart the GPUs of one machine.

>>> import gradkit as gk
>>> x = gk.ones(2, device="numpy")
>>> x.device, str(x.device), x.device == gk.Device("numpy")
(Device('numpy'), 'numpy', True)
"""
from __future__ import annotations

from typing import Any

from gradkit import backends as _backends
from gradkit.errors import BackendError

# DLPack device types (dlpack.h): where a backend's arrays are, as __dlpack_device__ says.
DLPACK_CPU = 1
DLPACK_CUDA = 2


class Device:
    """The device of a backend, compared by the backend's name.

    >>> import gradkit as gk
    >>> gk.Device("np")                       # backend aliases resolve
    Device('numpy')
    """

    __slots__ = ("name",)

    def __init__(self, backend: Any) -> None:
        self.name = resolve_backend(backend).name

    @property
    def backend(self) -> Any:
        """The Backend object this device stands for."""
        return _backends.get(self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("gradkit.Device", self.name))

    def __repr__(self) -> str:
        return f"Device({self.name!r})"

    def __str__(self) -> str:
        return self.name


def resolve_backend(device: Any, default: Any = None) -> Any:
    """The Backend that ``device`` names; ``default`` (or the current backend) for None.

    Accepts a :class:`Device`, a backend name or alias, or a Backend. Anything else
    raises a BackendError listing what is accepted.
    """
    if device is None:
        return default if default is not None else _backends.get_backend()
    if isinstance(device, Device):
        return _backends.get(device.name)
    if isinstance(device, (str, _backends.Backend)):
        return _backends.get(device)
    raise BackendError(f"device: expected a gk.Device, a backend name (e.g. 'numpy', 'cuda') "
                       f"or None, got {type(device).__name__} {device!r}")


def devices() -> list[Device]:
    """Every device (backend) usable on this machine.

    >>> import gradkit as gk
    >>> gk.Device("numpy") in gk.device.devices()
    True
    """
    return [Device(name) for name, reason in _backends.available().items() if reason is None]
