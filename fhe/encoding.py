"""CKKS plaintext encoding and the negacyclic NTT, in OpenFHE's conventions (numpy only).

Encoding: slot j of a ring of dimension N is the value at the root xi^(5^j), xi = e^(2 pi i/2N);
a vector of `slots` < N/2 values is repeated to fill N/2 slots, the polynomial found by one
FFT, scaled by the plaintext scale and rounded. Real values only, so the conjugate root
carries the same value. NTT: psi is the smallest primitive 2N-th root of unity mod q,
input in natural order, output in bit-reversed order (out[i] = m(psi^(2 brv(i) + 1))),
as OpenFHE's forward transform; the test suite checks both against OpenFHE decryption.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from fhe.kernels.base import U64
from fhe.kernels.numpy_kernels import mulmod

I64 = npt.NDArray[np.int64]

_MAX_COEFFICIENT = 1 << 62


def bit_reverse_permutation(n: int) -> I64:
    """Index i -> i with its log2(n) bits reversed."""
    bits = n.bit_length() - 1
    idx = np.arange(n, dtype=np.int64)
    rev = np.zeros(n, dtype=np.int64)
    for b in range(bits):
        rev |= ((idx >> b) & 1) << (bits - 1 - b)
    return rev


@lru_cache(maxsize=256)
def smallest_root_of_unity(q: int, n: int) -> int:
    """The smallest primitive 2n-th root of unity modulo the prime q (q = 1 mod 2n)."""
    cofactor = (q - 1) // (2 * n)
    for g in range(2, min(q, 1 << 16)):  # a prime's least non-residue is tiny
        root = pow(g, cofactor, q)
        if pow(root, n, q) == q - 1:
            break
    else:
        raise ValueError("no primitive root: modulus is not an NTT prime")
    best, step, x = root, root * root % q, root
    for _ in range(n - 1):
        x = x * step % q
        best = min(best, x)
    return best


def _constants(q: int) -> tuple[U64, U64, U64]:
    n = q.bit_length()
    q_, mu, bits = (np.array([x], dtype=np.uint64) for x in (q, (1 << (2 * n)) // q, n))
    return q_, mu, bits


@lru_cache(maxsize=64)
def _psi_table(q: int, n: int) -> U64:
    """psi^brv(k) mod q for k < n: the twiddles of the bit-reversed-output NTT."""
    psi = smallest_root_of_unity(q, n)
    qq, mu, bits = _constants(q)
    powers: U64 = np.ones(1, dtype=np.uint64)
    while powers.size < n:
        step = np.array([pow(psi, powers.size, q)], dtype=np.uint64)
        powers = np.concatenate([powers, mulmod(powers, step, qq, mu, bits)])
    table: U64 = powers[bit_reverse_permutation(n)]
    table.flags.writeable = False
    return table


def ntt(coeffs: U64, moduli: Sequence[int]) -> U64:
    """Forward negacyclic NTT of (towers, N) residues, tower t modulo moduli[t]."""
    towers, n = coeffs.shape
    qs = [int(q) for q in moduli]
    tables = np.stack([_psi_table(q, n) for q in qs])
    q3 = np.array(qs, dtype=np.uint64).reshape(-1, 1, 1)
    mu3 = np.array([(1 << (2 * q.bit_length())) // q for q in qs], dtype=np.uint64)
    bits3 = np.array([q.bit_length() for q in qs], dtype=np.uint64)
    mu3, bits3 = mu3.reshape(-1, 1, 1), bits3.reshape(-1, 1, 1)
    a = np.array(coeffs, dtype=np.uint64)
    m, t = 1, n
    while m < n:
        t //= 2
        v = a.reshape(towers, m, 2, t)
        u = v[:, :, 0, :].copy()
        w = mulmod(v[:, :, 1, :], tables[:, m : 2 * m].reshape(towers, m, 1), q3, mu3, bits3)
        s = u + w
        v[:, :, 0, :] = np.where(s >= q3, s - q3, s)
        v[:, :, 1, :] = np.where(u >= w, u - w, u + (q3 - w))
        m *= 2
    return a


@lru_cache(maxsize=8)
def _slot_positions(n: int) -> tuple[I64, I64]:
    """For slot j < n/2: index s of root xi^(2s+1) = xi^(5^j), and of its conjugate."""
    m = 2 * n
    rot = np.empty(n // 2, dtype=np.int64)
    x = 1
    for j in range(n // 2):
        rot[j] = x
        x = x * 5 % m
    return (rot - 1) // 2, (m - rot - 1) // 2


def encode_coefficients(values: Sequence[float], ring_dim: int, slots: int, scale: float) -> I64:
    """Integer coefficients (int64, length N) of the plaintext for real `values`."""
    if not 1 <= len(values) <= slots or (ring_dim // 2) % slots:
        raise ValueError(f"need 1..{slots} values, and slots dividing N/2")
    z = np.zeros(slots)
    z[: len(values)] = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(z)):
        raise ValueError("values must be finite")
    full = np.tile(z, (ring_dim // 2) // slots)
    at, conj = _slot_positions(ring_dim)
    v = np.zeros(ring_dim, dtype=np.complex128)
    v[at] = full
    v[conj] = full
    twist = np.exp(-1j * np.pi * np.arange(ring_dim) / ring_dim)
    c = np.rint((np.fft.fft(v) / ring_dim * twist).real * scale)
    if np.max(np.abs(c)) >= _MAX_COEFFICIENT:
        raise ValueError("values too large for the plaintext scale")
    out: I64 = c.astype(np.int64)
    return out


@lru_cache(maxsize=32)
def plaintext_limbs(
    values: tuple[float, ...], ring_dim: int, slots: int, scale: float, moduli: tuple[int, ...]
) -> U64:
    """Encoded `values` as read-only (towers, N) residues in evaluation (NTT) form."""
    c = encode_coefficients(values, ring_dim, slots, scale)
    residues = np.mod(c[None, :], np.array(moduli, dtype=np.int64)[:, None]).astype(np.uint64)
    out = ntt(residues, moduli)
    out.flags.writeable = False
    return out
