"""The kernel interface: modular arithmetic on RNS limbs, one backend per device kind.

Limb arrays have shape (..., towers, N) with uint64 residues; `q` is the (towers,) uint64
moduli of the last-but-one axis (each below 2^60). Arrays are the backend's own type
(numpy or CuPy); `to_device`/`to_host` move them. Results are always fully reduced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Array = Any
U64 = npt.NDArray[np.uint64]
MAX_MODULUS_BITS = 60


@dataclass(frozen=True)
class BarrettConstants:
    """Per-tower constants for Barrett reduction of a 2n-bit product modulo q < 2^n.

    mu = floor(4^n / q); with q1 = x >> (n - 1) and q3 = (q1 * mu) >> (n + 1),
    x - q3 * q lies in [0, 3q) (Handbook of Applied Cryptography, 14.42, base 2).
    """

    q: U64
    mu: U64
    bits: U64

    @classmethod
    def of(cls, moduli: Sequence[int]) -> BarrettConstants:
        qs = [int(q) for q in moduli]
        if any(q < 3 or q.bit_length() > MAX_MODULUS_BITS for q in qs):
            raise ValueError(f"moduli must be in [3, 2^{MAX_MODULUS_BITS})")
        bits = [q.bit_length() for q in qs]
        mus = [(1 << (2 * n)) // q for q, n in zip(qs, bits, strict=True)]
        return cls(
            q=np.array(qs, dtype=np.uint64),
            mu=np.array(mus, dtype=np.uint64),
            bits=np.array(bits, dtype=np.uint64),
        )


class Kernels(Protocol):
    """Modular limb arithmetic; `numpy` is the reference, `cupy` runs on a CUDA device."""

    name: str

    def to_device(self, a: U64) -> Array: ...

    def to_host(self, a: Array) -> U64: ...

    def add(self, a: Array, b: Array, q: U64) -> Array: ...

    def sub(self, a: Array, b: Array, q: U64) -> Array: ...

    def neg(self, a: Array, q: U64) -> Array: ...

    def sum_batch(self, batch: Sequence[Array] | Array, q: U64) -> Array:
        """Sum of B limb arrays (a sequence, or one array with B on axis 0)."""
        ...

    def mul_int(self, a: Array, c: int, q: U64) -> Array:
        """a * c mod q for any Python integer c (negative allowed)."""
        ...

    def mul(self, a: Array, b: Array, q: U64) -> Array:
        """Exact a * b mod q, elementwise; b broadcasts over a's leading axes."""
        ...
