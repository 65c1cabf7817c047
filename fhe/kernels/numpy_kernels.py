"""Reference kernels in numpy: exact 64-bit modular arithmetic without Python ints.

A 64x64 -> 128-bit product is assembled from four 32x32 partial products (each exact in
uint64); reduction is Barrett's with per-tower constants. uint64 array arithmetic wraps
modulo 2^64, which the formulas rely on.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from fhe.kernels.base import U64, Array, BarrettConstants

_LOW32 = np.uint64(0xFFFFFFFF)
_U64_MAX = (1 << 64) - 1


def mulhi(a: U64, b: U64) -> U64:
    """High 64 bits of the exact 128-bit products a * b (uint64, broadcasting)."""
    a0, a1 = a & _LOW32, a >> 32
    b0, b1 = b & _LOW32, b >> 32
    p00, p01, p10 = a0 * b0, a0 * b1, a1 * b0
    mid = (p00 >> 32) + (p01 & _LOW32) + (p10 & _LOW32)
    hi: U64 = a1 * b1 + (p01 >> 32) + (p10 >> 32) + (mid >> 32)
    return hi


def mulmod(a: U64, b: U64, q: U64, mu: U64, bits: U64) -> U64:
    """Exact a * b mod q for a, b < q < 2^60; q, mu, bits broadcast against a and b."""
    one = np.uint64(1)
    lo = a * b
    q1: U64 = np.bitwise_or(mulhi(a, b) << (np.uint64(65) - bits), lo >> (bits - one))
    q3: U64 = np.bitwise_or(mulhi(q1, mu) << (np.uint64(63) - bits), (q1 * mu) >> (bits + one))
    r = lo - q3 * q
    r = np.where(r >= q, r - q, r)
    out: U64 = np.where(r >= q, r - q, r)
    return out


@lru_cache(maxsize=64)
def _constants(moduli: tuple[int, ...]) -> tuple[U64, U64, U64]:
    c = BarrettConstants.of(moduli)
    return c.q.reshape(-1, 1), c.mu.reshape(-1, 1), c.bits.reshape(-1, 1)


def column(q: U64) -> U64:
    """Moduli (towers,) as a (towers, 1) uint64 column that broadcasts over limbs."""
    return np.asarray(q, dtype=np.uint64).reshape(-1, 1)


class NumpyKernels:
    """The reference backend; always available."""

    name = "numpy"

    def to_device(self, a: U64) -> U64:
        return np.asarray(a, dtype=np.uint64)

    def to_host(self, a: Array) -> U64:
        return np.asarray(a, dtype=np.uint64)

    def add(self, a: Array, b: Array, q: U64) -> U64:
        qc = column(q)
        s = a + b
        out: U64 = np.where(s >= qc, s - qc, s)
        return out

    def sub(self, a: Array, b: Array, q: U64) -> U64:
        qc = column(q)
        out: U64 = np.where(a >= b, a - b, a + (qc - b))
        return out

    def neg(self, a: Array, q: U64) -> U64:
        qc = column(q)
        out: U64 = np.where(a == 0, a, qc - a)
        return out

    def sum_batch(self, batch: Sequence[Array] | Array, q: U64) -> U64:
        qc = column(q)
        # acc < q plus `room` more terms < q stays below 2^64.
        room = _U64_MAX // int(qc.max()) - 1
        acc: U64 | None = None
        pending = 0
        for x in batch:
            if acc is None:
                acc = np.array(x, dtype=np.uint64)
                continue
            acc += x
            pending += 1
            if pending == room:
                np.remainder(acc, qc, out=acc)
                pending = 0
        if acc is None:
            raise ValueError("sum_batch needs at least one array")
        if pending:
            np.remainder(acc, qc, out=acc)
        return acc

    def mul_int(self, a: Array, c: int, q: U64) -> U64:
        cs = np.array([c % int(qi) for qi in q], dtype=np.uint64).reshape(-1, 1)
        return self.mul(a, cs, q)

    def mul(self, a: Array, b: Array, q: U64) -> U64:
        # One (towers, N) slice at a time: the temporaries stay in cache (3x faster).
        qc, mu, bits = _constants(tuple(int(x) for x in q))
        a, b = np.asarray(a), np.asarray(b)
        out = np.empty(np.broadcast_shapes(a.shape, b.shape), dtype=np.uint64)
        a, b = np.broadcast_to(a, out.shape), np.broadcast_to(b, out.shape)
        for idx in np.ndindex(out.shape[:-2]):
            out[idx] = mulmod(a[idx], b[idx], qc, mu, bits)
        return out
