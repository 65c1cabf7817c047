"""CUDA kernels through CuPy: the same arithmetic as the numpy reference, bit for bit.

Importing this module never needs CuPy; constructing `CupyKernels` does, and a device.
Modular multiplication is a RawKernel: the 128-bit product from `__umul64hi`, reduced
with the same Barrett constants as numpy (fhe.kernels.base.BarrettConstants).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from fhe.kernels.base import U64, Array, BarrettConstants

_SOURCE = r"""
typedef unsigned long long u64;

extern "C" __global__ void confide_mulmod(
        const u64* a, const u64* b, const u64* q, const u64* mu, const u64* bits, u64* out,
        long long total, long long n, long long towers, long long b_div, long long b_mod) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        long long t = (i / n) % towers;
        u64 m = q[t], u = mu[t];
        unsigned int k = (unsigned int)bits[t];
        u64 x = a[i], y = b[(i / b_div) % b_mod];
        u64 lo = x * y, hi = __umul64hi(x, y);
        u64 q1 = (hi << (65 - k)) | (lo >> (k - 1));
        u64 q3 = (__umul64hi(q1, u) << (63 - k)) | ((q1 * u) >> (k + 1));
        u64 r = lo - q3 * m;
        if (r >= m) r -= m;
        if (r >= m) r -= m;
        out[i] = r;
    }
}

extern "C" __global__ void confide_sum(
        const u64* batch, const u64* q, u64* out,
        long long total, long long n, long long towers, long long count) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        u64 m = q[(i / n) % towers];
        u64 s = 0;
        for (long long j = 0; j < count; ++j) {
            s += batch[j * total + i];
            if (s >= m) s -= m;
        }
        out[i] = s;
    }
}
"""

_THREADS = 256
_MAX_BLOCKS = 65535
_HOST_CHUNK = 32


@lru_cache(maxsize=1)
def cuda_device_present() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except (ImportError, OSError, RuntimeError):  # no CuPy, no driver, or no device
        return False


class CupyKernels:
    """Kernels on the current CUDA device."""

    name = "cupy"

    def __init__(self) -> None:
        if not cuda_device_present():
            raise RuntimeError("the cupy backend needs CuPy and a CUDA device")
        import cupy

        self.cp: Any = cupy
        module = cupy.RawModule(code=_SOURCE)
        self._mulmod = module.get_function("confide_mulmod")
        self._sum = module.get_function("confide_sum")
        self._moduli: dict[tuple[int, ...], tuple[Array, Array, Array]] = {}

    def to_device(self, a: U64) -> Array:
        return self.cp.asarray(np.ascontiguousarray(a, dtype=np.uint64))

    def to_host(self, a: Array) -> U64:
        out: U64 = self.cp.asnumpy(a)
        return out

    def _constants(self, q: U64) -> tuple[Array, Array, Array]:
        """Device copies of the Barrett constants (q, mu, bits), cached per moduli."""
        key = tuple(int(x) for x in q)
        if key not in self._moduli:
            c = BarrettConstants.of(key)
            self._moduli[key] = (
                self.cp.asarray(c.q),
                self.cp.asarray(c.mu),
                self.cp.asarray(c.bits),
            )
        return self._moduli[key]

    def _column(self, q: U64) -> Array:
        return self._constants(q)[0].reshape(-1, 1)

    def _launch(self, kernel: Any, total: int, args: tuple[Any, ...]) -> None:
        blocks = max(1, min(_MAX_BLOCKS, (total + _THREADS - 1) // _THREADS))
        kernel((blocks,), (_THREADS,), args)

    def add(self, a: Array, b: Array, q: U64) -> Array:
        cp, qc = self.cp, self._column(q)
        s = a + b
        return cp.where(s >= qc, s - qc, s)

    def sub(self, a: Array, b: Array, q: U64) -> Array:
        cp, qc = self.cp, self._column(q)
        return cp.where(a >= b, a - b, a + (qc - b))

    def neg(self, a: Array, q: U64) -> Array:
        cp, qc = self.cp, self._column(q)
        return cp.where(a == 0, a, qc - a)

    def _sum_stacked(self, stacked: Array, q: U64) -> Array:
        cp = self.cp
        stacked = cp.ascontiguousarray(stacked, dtype=cp.uint64)
        count, shape = stacked.shape[0], stacked.shape[1:]
        towers, n = shape[-2], shape[-1]
        out = cp.empty(shape, dtype=cp.uint64)
        total = int(out.size)
        qd = self._constants(q)[0]
        args = (stacked, qd, out, np.int64(total), np.int64(n), np.int64(towers), np.int64(count))
        self._launch(self._sum, total, args)
        return out

    def sum_batch(self, batch: Sequence[Array] | Array, q: U64) -> Array:
        cp = self.cp
        if isinstance(batch, cp.ndarray):
            return self._sum_stacked(batch, q)
        items = list(batch)
        if not items:
            raise ValueError("sum_batch needs at least one array")
        acc = None
        for i in range(0, len(items), _HOST_CHUNK):
            chunk = items[i : i + _HOST_CHUNK]
            if all(isinstance(x, np.ndarray) for x in chunk):
                stacked = self.to_device(np.stack(chunk))
            else:
                stacked = cp.stack([cp.asarray(x, dtype=cp.uint64) for x in chunk])
            part = self._sum_stacked(stacked, q)
            acc = part if acc is None else self.add(acc, part, q)
        return acc

    def mul_int(self, a: Array, c: int, q: U64) -> Array:
        cs = np.array([c % int(qi) for qi in q], dtype=np.uint64).reshape(-1, 1)
        return self.mul(a, self.cp.asarray(cs), q)

    def mul(self, a: Array, b: Array, q: U64) -> Array:
        cp = self.cp
        a = cp.ascontiguousarray(cp.asarray(a, dtype=cp.uint64))
        b = cp.asarray(b, dtype=cp.uint64)
        towers, n = a.shape[-2], a.shape[-1]
        if b.shape == (towers, 1):
            b_div, b_mod = n, towers
        elif b.shape == a.shape[-b.ndim :] and b.ndim >= 2:
            b_div, b_mod = 1, int(b.size)
        else:
            b = cp.broadcast_to(b, a.shape)
            b_div, b_mod = 1, int(a.size)
        b = cp.ascontiguousarray(b)
        qd, mu, bits = self._constants(q)
        out = cp.empty_like(a)
        total = int(a.size)
        args = (
            a,
            b,
            qd,
            mu,
            bits,
            out,
            np.int64(total),
            np.int64(n),
            np.int64(towers),
            np.int64(b_div),
            np.int64(b_mod),
        )
        self._launch(self._mulmod, total, args)
        return out
