"""Kernel backends: `get_backend("auto" | "numpy" | "cupy")`.

The name defaults to the `CONFIDE_FHE_BACKEND` environment variable, then "auto":
CuPy when it imports and a CUDA device exists, numpy otherwise.
"""

from __future__ import annotations

import os

from fhe.kernels.base import Kernels
from fhe.kernels.cupy_kernels import CupyKernels, cuda_device_present
from fhe.kernels.numpy_kernels import NumpyKernels

__all__ = ["Kernels", "available_backends", "get_backend"]

_INSTANCES: dict[str, Kernels] = {}


def available_backends() -> list[str]:
    """Names of the backends that can run here, numpy first."""
    return ["numpy", "cupy"] if cuda_device_present() else ["numpy"]


def get_backend(name: str | None = None) -> Kernels:
    """The (shared) kernels for `name`; ValueError on an unknown name, RuntimeError
    when "cupy" is asked for and no CUDA device is usable."""
    choice = (name or os.environ.get("CONFIDE_FHE_BACKEND") or "auto").strip().lower()
    if choice == "auto":
        choice = "cupy" if cuda_device_present() else "numpy"
    if choice not in ("numpy", "cupy"):
        raise ValueError(f"unknown FHE backend {choice!r}; use auto, numpy or cupy")
    if choice not in _INSTANCES:
        _INSTANCES[choice] = NumpyKernels() if choice == "numpy" else CupyKernels()
    return _INSTANCES[choice]
