"""Every kernel backend against Python integers: exact modular arithmetic."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhe.kernels import Kernels, available_backends, get_backend
from fhe.kernels.base import U64, BarrettConstants
from fhe.kernels.numpy_kernels import mulmod

# NTT-friendly sizes do not matter to the arithmetic; these cover 12..60 bits.
MODULI = [4097, (1 << 31) - 1, (1 << 32) + 15, 1099511480321, 1125899906826241, (1 << 60) - 93]


def as_ints(a: U64) -> list[int]:
    return [int(x) for x in np.asarray(a).ravel()]


@st.composite
def modmul_case(draw: st.DrawFn) -> tuple[int, list[int], list[int]]:
    q = draw(st.integers(min_value=3, max_value=(1 << 60) - 1))
    n = draw(st.integers(min_value=1, max_value=16))
    values = st.integers(min_value=0, max_value=q - 1)
    return (
        q,
        draw(st.lists(values, min_size=n, max_size=n)),
        draw(st.lists(values, min_size=n, max_size=n)),
    )


@settings(max_examples=300, deadline=None)
@given(modmul_case())
def test_mulmod_exact_against_python_ints(case: tuple[int, list[int], list[int]]) -> None:
    q, a, b = case
    c = BarrettConstants.of([q])
    got = mulmod(np.array(a, dtype=np.uint64), np.array(b, dtype=np.uint64), c.q, c.mu, c.bits)
    assert as_ints(got) == [x * y % q for x, y in zip(a, b, strict=True)]


@pytest.mark.parametrize("q", MODULI)
def test_mulmod_edge_values(q: int) -> None:
    edge = [0, 1, 2, q // 2, q - 2, q - 1]
    a = np.array([x for x in edge for _ in edge], dtype=np.uint64)
    b = np.array(edge * len(edge), dtype=np.uint64)
    c = BarrettConstants.of([q])
    assert as_ints(mulmod(a, b, c.q, c.mu, c.bits)) == [
        int(x) * int(y) % q for x, y in zip(a, b, strict=True)
    ]


def limbs(rng: np.random.Generator, shape: tuple[int, ...], moduli: list[int]) -> U64:
    q = np.array(moduli, dtype=np.uint64).reshape(-1, 1)
    raw = rng.integers(0, 1 << 63, size=shape, dtype=np.uint64)
    return raw % q


def reference(a: U64, moduli: list[int], op: Callable[[int, int], int]) -> list[int]:
    out = []
    for idx, x in np.ndenumerate(a):
        out.append(op(int(x), moduli[idx[-2]]))
    return out


@pytest.fixture()
def qs() -> list[int]:
    return MODULI[2:5]


def test_add_sub_neg(backend: Kernels, rng: np.random.Generator, qs: list[int]) -> None:
    q = np.array(qs, dtype=np.uint64)
    a, b = limbs(rng, (2, 3, 64), qs), limbs(rng, (2, 3, 64), qs)
    da, db = backend.to_device(a), backend.to_device(b)
    pairs = list(zip(as_ints(a), as_ints(b), strict=True))
    towers = [qs[i[-2]] for i, _ in np.ndenumerate(a)]
    added = as_ints(backend.to_host(backend.add(da, db, q)))
    subbed = as_ints(backend.to_host(backend.sub(da, db, q)))
    negated = as_ints(backend.to_host(backend.neg(da, q)))
    assert added == [(x + y) % m for (x, y), m in zip(pairs, towers, strict=True)]
    assert subbed == [(x - y) % m for (x, y), m in zip(pairs, towers, strict=True)]
    assert negated == [(-x) % m for (x, _), m in zip(pairs, towers, strict=True)]


@pytest.mark.parametrize("count", [1, 2, 17, 40])
def test_sum_batch(backend: Kernels, rng: np.random.Generator, qs: list[int], count: int) -> None:
    q = np.array(qs, dtype=np.uint64)
    batch = [limbs(rng, (2, 3, 32), qs) for _ in range(count)]
    expected = [
        sum(col) % qs[i // 32 % 3] for i, col in enumerate(zip(*map(as_ints, batch), strict=True))
    ]
    from_list = backend.sum_batch([backend.to_device(x) for x in batch], q)
    from_stack = backend.sum_batch(backend.to_device(np.stack(batch)), q)
    assert as_ints(backend.to_host(from_list)) == expected
    assert as_ints(backend.to_host(from_stack)) == expected


def test_sum_batch_of_60_bit_moduli_stays_exact(backend: Kernels) -> None:
    # 40 terms of q - 1 overflow uint64 unless partial sums are reduced.
    qs = [(1 << 60) - 93, (1 << 59) + 21]
    q = np.array(qs, dtype=np.uint64)
    batch = [np.array([[m - 1] * 4 for m in qs], dtype=np.uint64) for _ in range(40)]
    got = as_ints(backend.to_host(backend.sum_batch([backend.to_device(x) for x in batch], q)))
    assert got == [40 * (m - 1) % m for m in qs for _ in range(4)]


@pytest.mark.parametrize("factor", [0, 1, 3, -1, -7, 1 << 70])
def test_mul_int(backend: Kernels, rng: np.random.Generator, qs: list[int], factor: int) -> None:
    q = np.array(qs, dtype=np.uint64)
    a = limbs(rng, (2, 3, 16), qs)
    got = as_ints(backend.to_host(backend.mul_int(backend.to_device(a), factor, q)))
    assert got == reference(a, qs, lambda x, m: x * factor % m)


def test_mul_broadcasts_plaintext_over_elements(
    backend: Kernels, rng: np.random.Generator, qs: list[int]
) -> None:
    q = np.array(qs, dtype=np.uint64)
    a, p = limbs(rng, (2, 3, 64), qs), limbs(rng, (3, 64), qs)
    got = backend.to_host(backend.mul(backend.to_device(a), backend.to_device(p), q))
    for e in range(2):
        for t in range(3):
            expected = [int(x) * int(y) % qs[t] for x, y in zip(a[e, t], p[t], strict=True)]
            assert as_ints(got[e, t]) == expected


def test_backends_agree_bit_for_bit(rng: np.random.Generator, qs: list[int]) -> None:
    q = np.array(qs, dtype=np.uint64)
    a, p = limbs(rng, (2, 3, 256), qs), limbs(rng, (3, 256), qs)
    results = []
    for name in available_backends():
        k = get_backend(name)
        results.append(k.to_host(k.mul(k.to_device(a), k.to_device(p), q)))
    for other in results[1:]:
        assert np.array_equal(results[0], other)


def test_get_backend_names(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_backend("numpy").name == "numpy"
    monkeypatch.setenv("CONFIDE_FHE_BACKEND", "numpy")
    assert get_backend().name == "numpy"
    assert get_backend("auto").name in available_backends()
    with pytest.raises(ValueError):
        get_backend("tpu")
    if "cupy" not in available_backends():
        with pytest.raises(RuntimeError):
            get_backend("cupy")


def test_barrett_constants_refuse_moduli_over_60_bits() -> None:
    with pytest.raises(ValueError):
        BarrettConstants.of([(1 << 61) - 1])
