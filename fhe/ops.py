"""Server-side operations on serialized ciphertexts, on RNS limbs (numpy or CuPy only).

No OpenFHE here: parse, compute with a kernel backend, write back. Results are
OpenFHE BINARY ciphertexts that OpenFHE deserializes and the key owner decrypts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fhe.codec import (
    EVALUATION,
    CiphertextView,
    check_compatible,
    check_frame,
    parse_ciphertext,
    write_ciphertext,
)
from fhe.encoding import plaintext_limbs
from fhe.errors import IncompatibleCiphertext
from fhe.kernels import Kernels, get_backend
from fhe.kernels.base import U64
from fhe.keys import KeyMeta


def _kernels(backend: Kernels | str | None) -> Kernels:
    return backend if backend is not None and not isinstance(backend, str) else get_backend(backend)


def _moduli(view: CiphertextView) -> U64:
    return np.array(view.moduli, dtype=np.uint64)


def check_submission(ciphertext: bytes, meta: KeyMeta) -> CiphertextView:
    """Parse a contribution and check it is a fresh ciphertext under the registered key.

    Raises MalformedCiphertext, IncompatibleCiphertext or ForeignCiphertext.
    """
    view = parse_ciphertext(ciphertext)
    check_compatible(view, meta)
    return view


def _check_same(views: Sequence[CiphertextView]) -> None:
    first = views[0]
    for v in views[1:]:
        check_frame(first, v)
        if (v.noise_scale_degree, v.scaling_factor) != (
            first.noise_scale_degree,
            first.scaling_factor,
        ):
            raise IncompatibleCiphertext("ciphertexts differ in scale")


def _frame(view: CiphertextView, template: bytes | None) -> CiphertextView:
    """Where a result is written: a trusted `template` of the same key, else the input."""
    if template is None:
        return view
    frame = parse_ciphertext(template)
    check_frame(frame, view)
    return frame


def aggregate(
    ciphertexts: Sequence[bytes],
    *,
    backend: Kernels | str | None = None,
    template: bytes | None = None,
) -> bytes:
    """Slot-wise sum of ciphertexts under one key: byte-identical to OpenFHE's EvalAdd chain.

    With `template` (fhe.native.output_template of the key) every byte of the result
    outside the limbs comes from the key owner's material, none from a contributor.
    """
    if not ciphertexts:
        raise ValueError("aggregate needs at least one ciphertext")
    views = [parse_ciphertext(c) for c in ciphertexts]
    _check_same(views)
    first = views[0]
    k, q = _kernels(backend), _moduli(first)
    sums = [k.sum_batch([v.elements[e] for v in views], q) for e in range(len(first.elements))]
    return write_ciphertext(
        _frame(first, template),
        [k.to_host(x) for x in sums],
        noise_scale_degree=first.noise_scale_degree,
        scaling_factor=first.scaling_factor,
    )


def multiply_int(
    ciphertext: bytes,
    factor: int,
    *,
    backend: Kernels | str | None = None,
    template: bytes | None = None,
) -> bytes:
    """Every slot times the integer `factor`; scale and level unchanged."""
    view = parse_ciphertext(ciphertext)
    k = _kernels(backend)
    out = k.mul_int(k.to_device(view.limbs), factor, _moduli(view))
    return write_ciphertext(
        _frame(view, template),
        k.to_host(out),
        noise_scale_degree=view.noise_scale_degree,
        scaling_factor=view.scaling_factor,
    )


def multiply_plain(
    ciphertext: bytes,
    weights: Sequence[float],
    *,
    backend: Kernels | str | None = None,
    template: bytes | None = None,
) -> bytes:
    """Slot-wise product with real `weights` (missing slots are 0), like OpenFHE's
    EvalMult by a plaintext: the result has noise scale degree 2 and scale squared, and
    needs an OpenFHE Rescale (fhe.evaluator) before further use.
    """
    view = parse_ciphertext(ciphertext)
    if view.fmt != EVALUATION or view.noise_scale_degree != 1:
        raise IncompatibleCiphertext("multiply_plain needs a fresh ciphertext (scale degree 1)")
    scale = view.scaling_factor
    plain = plaintext_limbs(
        tuple(float(w) for w in weights), view.ring_dim, view.slots, scale, view.moduli
    )
    k = _kernels(backend)
    out = k.mul(k.to_device(view.limbs), k.to_device(plain), _moduli(view))
    return write_ciphertext(
        _frame(view, template), k.to_host(out), noise_scale_degree=2, scaling_factor=scale * scale
    )


def aggregate_many(
    groups: Sequence[Sequence[bytes]],
    *,
    backend: Kernels | str | None = None,
    template: bytes | None = None,
) -> list[bytes]:
    """One slot-wise sum per group, all groups under one key, in one vectorized limb
    operation: position j of every group is stacked into one (groups, elements, towers,
    N) array (zeros where a group is shorter) and the backend sums the positions. Each
    result is byte-identical to `aggregate(group)` (and so to OpenFHE's EvalAdd chain).
    """
    if not groups or any(not g for g in groups):
        raise ValueError("aggregate_many needs non-empty groups")
    views = [[parse_ciphertext(c) for c in g] for g in groups]
    first = views[0][0]
    _check_same([v for g in views for v in g])
    k, q = _kernels(backend), _moduli(first)
    zeros = np.zeros(first.limbs.shape, dtype=np.uint64)
    longest = max(len(g) for g in views)

    def position(j: int) -> U64:
        return np.stack([g[j].limbs if j < len(g) else zeros for g in views])

    sums = k.to_host(k.sum_batch((k.to_device(position(j)) for j in range(longest)), q))
    frame = _frame(first, template)
    return [
        write_ciphertext(frame, sums[i], noise_scale_degree=first.noise_scale_degree,
                         scaling_factor=first.scaling_factor)
        for i in range(len(groups))
    ]


def multiply_plain_many(
    ciphertexts: Sequence[bytes],
    weights: Sequence[Sequence[float]],
    *,
    backend: Kernels | str | None = None,
    template: bytes | None = None,
) -> list[bytes]:
    """`multiply_plain` of each ciphertext by its own weights, under one key, as one
    vectorized product: (R, 2, towers, N) ciphertext limbs times (R, 1, towers, N)
    plaintexts."""
    views = [parse_ciphertext(c) for c in ciphertexts]
    first = views[0]
    for v in views:
        check_frame(first, v)
        if v.fmt != EVALUATION or v.noise_scale_degree != 1:
            raise IncompatibleCiphertext("multiply_plain needs a fresh ciphertext (scale degree 1)")
    scale = first.scaling_factor
    plains = np.stack([
        plaintext_limbs(tuple(float(x) for x in w), first.ring_dim, first.slots, scale,
                        first.moduli)[np.newaxis]
        for w in weights
    ])
    k = _kernels(backend)
    stacked = k.to_device(np.stack([v.limbs for v in views]))
    out = k.to_host(k.mul(stacked, k.to_device(plains), _moduli(first)))
    frame = _frame(first, template)
    return [
        write_ciphertext(frame, out[i], noise_scale_degree=2, scaling_factor=scale * scale)
        for i in range(len(views))
    ]
