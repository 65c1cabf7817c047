"""NTT and CKKS encoding against their definitions (OpenFHE agreement: test_ops.py)."""

from __future__ import annotations

import numpy as np
import pytest

from fhe.client import KeySet
from fhe.encoding import (
    bit_reverse_permutation,
    encode_coefficients,
    ntt,
    smallest_root_of_unity,
)
from fhe.keys import KeyMeta

N = 16
Q = 7681  # prime, 7681 = 1 mod 32


def test_bit_reverse_permutation() -> None:
    assert list(bit_reverse_permutation(8)) == [0, 4, 2, 6, 1, 5, 3, 7]


def test_smallest_root_is_smallest_primitive() -> None:
    psi = smallest_root_of_unity(Q, N)
    roots = [x for x in range(2, Q) if pow(x, 2 * N, Q) == 1 and pow(x, N, Q) == Q - 1]
    assert psi == min(roots)


def test_ntt_is_evaluation_at_odd_powers_in_bit_reversed_order(
    rng: np.random.Generator,
) -> None:
    a = rng.integers(0, Q, size=(1, N)).astype(np.uint64)
    psi, brv = smallest_root_of_unity(Q, N), bit_reverse_permutation(N)
    expected = [
        sum(int(a[0, k]) * pow(psi, (2 * int(brv[i]) + 1) * k, Q) for k in range(N)) % Q
        for i in range(N)
    ]
    assert [int(x) for x in ntt(a, [Q])[0]] == expected


def test_ntt_turns_negacyclic_convolution_into_products(rng: np.random.Generator) -> None:
    a, b = rng.integers(0, Q, size=N), rng.integers(0, Q, size=N)
    conv = [0] * N
    for i in range(N):
        for j in range(N):
            sign = 1 if i + j < N else -1
            conv[(i + j) % N] = (conv[(i + j) % N] + sign * int(a[i]) * int(b[j])) % Q
    fa, fb = (ntt(x.astype(np.uint64).reshape(1, N), [Q])[0] for x in (a, b))
    fc = ntt(np.array([conv], dtype=np.uint64), [Q])[0]
    assert [int(x) * int(y) % Q for x, y in zip(fa, fb, strict=True)] == [int(x) for x in fc]


def test_psi_is_the_root_of_unity_openfhe_stores(keys: KeySet, meta: KeyMeta) -> None:
    # The context serializes each tower's ring parameters as ... u64 q, u64 root ...
    context = keys.bundle.context.data
    for q in meta.moduli:
        at = context.find(q.to_bytes(8, "little"))
        assert at > 0
        root = int.from_bytes(context[at + 8 : at + 16], "little")
        assert root == smallest_root_of_unity(q, meta.ring_dim)


@pytest.mark.parametrize("slots", [4, 64, 2048])
def test_encoding_decodes_to_values_at_the_slot_roots(rng: np.random.Generator, slots: int) -> None:
    ring_dim, scale = 4096, float(1 << 30)
    values = rng.uniform(-2, 2, size=min(slots, 37))
    c = encode_coefficients(list(values), ring_dim, slots, scale).astype(np.float64)
    m = 2 * ring_dim
    # Slot j (of N/2, the vector repeated) is the value at xi^(5^j); check a sample.
    js = np.unique(np.concatenate([np.arange(min(slots, 40)), rng.integers(0, m // 4, 24)]))
    exponents = np.array([pow(5, int(j), m) for j in js])
    powers = np.exp(2j * np.pi * np.outer(exponents, np.arange(ring_dim)) / m)
    decoded = powers @ c / scale
    padded = np.concatenate([values, np.zeros(slots - len(values))])
    assert np.max(np.abs(decoded - padded[js % slots])) < 1e-6


def test_encoding_refuses_bad_inputs() -> None:
    with pytest.raises(ValueError):
        encode_coefficients([1.0] * 65, 4096, 64, 2.0**40)
    with pytest.raises(ValueError):
        encode_coefficients([float("nan")], 4096, 64, 2.0**40)
    with pytest.raises(ValueError):
        encode_coefficients([1e9], 4096, 64, 2.0**60)
