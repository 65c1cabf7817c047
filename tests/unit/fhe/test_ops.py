"""Limb-path operations against OpenFHE itself, over every kernel backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from fhe import native, ops
from fhe.client import KeySet, decrypt, encrypt
from fhe.codec import parse_ciphertext, write_ciphertext
from fhe.errors import ForeignCiphertext, IncompatibleCiphertext, MalformedCiphertext
from fhe.kernels import Kernels
from fhe.keys import KeyMeta


def openfhe_sum(cc: Any, ciphertexts: list[bytes]) -> bytes:
    total = native.ciphertext(ciphertexts[0])
    for data in ciphertexts[1:]:
        total = cc.EvalAdd(total, native.ciphertext(data))
    return native.serialize(total)


@pytest.mark.parametrize("count", [1, 2, 7])
def test_aggregate_is_byte_identical_to_openfhe_evaladd(
    backend: Kernels,
    keys: KeySet,
    encrypt: Callable[[Any], bytes],
    rng: np.random.Generator,
    count: int,
) -> None:
    cts = [encrypt(rng.uniform(-10, 10, 64)) for _ in range(count)]
    cc = native.context(keys.bundle.context)
    assert ops.aggregate(cts, backend=backend) == openfhe_sum(cc, cts)


def test_aggregate_of_live_ciphertexts_is_byte_identical(
    backend: Kernels, live: dict[str, Any], rng: np.random.Generator
) -> None:
    cc, pair = live["cc"], live["pair"]
    objs = [
        cc.Encrypt(pair.publicKey, cc.MakeCKKSPackedPlaintext(list(rng.uniform(-1, 1, 64))))
        for _ in range(5)
    ]
    total = objs[0]
    for c in objs[1:]:
        total = cc.EvalAdd(total, c)
    serialized = [native.serialize(c) for c in objs]
    assert ops.aggregate(serialized, backend=backend) == native.serialize(total)


def test_running_sum_equals_one_shot_sum(
    backend: Kernels,
    encrypt: Callable[[Any], bytes],
    rng: np.random.Generator,
) -> None:
    cts = [encrypt(rng.uniform(-1, 1, 64)) for _ in range(5)]
    running = cts[0]
    for data in cts[1:]:
        running = ops.aggregate([running, data], backend=backend)
    assert running == ops.aggregate(cts, backend=backend)


def test_hundred_vectors_sum_exactly(
    backend: Kernels, keys: KeySet, encrypt: Callable[[Any], bytes], rng: np.random.Generator
) -> None:
    vectors = rng.uniform(0.5, 100.0, size=(100, 64))
    total = ops.aggregate([encrypt(v) for v in vectors], backend=backend)
    got, expected = decrypt(keys, total, 64), vectors.sum(axis=0)
    assert np.max(np.abs(got - expected) / np.abs(expected)) <= 1e-6


def test_aggregate_refuses_mixed_keys_and_shapes(
    encrypt: Callable[[Any], bytes], other_keys: KeySet
) -> None:
    mine = encrypt([1.0])
    with pytest.raises(ForeignCiphertext):
        ops.aggregate([mine, encrypt_with(other_keys)])
    product = ops.multiply_plain(mine, [2.0])
    with pytest.raises(IncompatibleCiphertext):
        ops.aggregate([mine, product])
    with pytest.raises(MalformedCiphertext):
        ops.aggregate([mine, mine[:-3]])
    with pytest.raises(ValueError):
        ops.aggregate([])


def encrypt_with(keys: KeySet) -> bytes:
    return encrypt(keys, [1.0]).data


def test_multiply_plain_matches_openfhe_evalmult_error(
    backend: Kernels, keys: KeySet, encrypt: Callable[[Any], bytes], rng: np.random.Generator
) -> None:
    x, w = rng.uniform(-1, 1, 64), rng.uniform(-2, 2, 64)
    ct = encrypt(x)
    cc = native.context(keys.bundle.context)
    mine = cc.Rescale(native.ciphertext(ops.multiply_plain(ct, list(w), backend=backend)))
    theirs = cc.Rescale(cc.EvalMult(native.ciphertext(ct), cc.MakeCKKSPackedPlaintext(list(w))))
    err_mine = np.max(np.abs(decrypt(keys, native.serialize(mine), 64) - x * w))
    err_theirs = np.max(np.abs(decrypt(keys, native.serialize(theirs), 64) - x * w))
    assert err_mine <= 4 * err_theirs + 1e-9
    assert err_mine < 1e-5


def test_multiply_plain_sets_product_metadata(
    backend: Kernels, encrypt: Callable[[Any], bytes]
) -> None:
    product = native.ciphertext(ops.multiply_plain(encrypt([1.0]), [1.0], backend=backend))
    assert product.GetNoiseScaleDeg() == 2
    assert product.GetScalingFactor() == 2.0**80
    with pytest.raises(IncompatibleCiphertext):
        ops.multiply_plain(native.serialize(product), [1.0])


def test_multiply_plain_refuses_too_many_weights(encrypt: Callable[[Any], bytes]) -> None:
    with pytest.raises(ValueError):
        ops.multiply_plain(encrypt([1.0]), [1.0] * 65)


@pytest.mark.parametrize("factor", [3, -2])
def test_multiply_int(
    backend: Kernels,
    keys: KeySet,
    encrypt: Callable[[Any], bytes],
    rng: np.random.Generator,
    factor: int,
) -> None:
    x = rng.uniform(-1, 1, 64)
    got = decrypt(keys, ops.multiply_int(encrypt(x), factor, backend=backend), 64)
    assert np.max(np.abs(got - factor * x)) < 1e-6


def test_check_submission(
    encrypt: Callable[[Any], bytes], meta: KeyMeta, other_keys: KeySet
) -> None:
    assert ops.check_submission(encrypt([1.0]), meta).key_tag == meta.key_tag
    with pytest.raises(ForeignCiphertext):
        ops.check_submission(encrypt_with(other_keys), meta)
    with pytest.raises(MalformedCiphertext):
        ops.check_submission(b"not a ciphertext", meta)


def limbless(data: bytes) -> bytes:
    """`data` with every residue zeroed: the bytes a result inherits from its frame."""
    view = parse_ciphertext(data)
    return write_ciphertext(view, np.zeros(view.shape, dtype=np.uint64))


def test_template_frames_the_result(
    keys: KeySet, meta: KeyMeta, encrypt: Callable[[Any], bytes], rng: np.random.Generator
) -> None:
    template = native.output_template(keys.bundle)
    good = encrypt(rng.uniform(-1, 1, 64))
    tampered = bytearray(encrypt(rng.uniform(-1, 1, 64)))
    tampered[100] ^= 0xFF  # inside the serialized context: the codec does not read it
    ops.check_submission(bytes(tampered), meta)
    for result in (
        ops.aggregate([bytes(tampered), good], template=template),
        ops.multiply_plain(bytes(tampered), [1.0], template=template),
        ops.multiply_int(bytes(tampered), 2, template=template),
    ):
        out = parse_ciphertext(result)
        framed = write_ciphertext(
            parse_ciphertext(template),
            np.zeros(out.shape, dtype=np.uint64),
            noise_scale_degree=out.noise_scale_degree,
            scaling_factor=out.scaling_factor,
        )
        assert limbless(result) == framed
    total = ops.aggregate([good, good], template=template)
    assert np.allclose(decrypt(keys, total, 64), 2 * decrypt(keys, good, 64), atol=1e-6)


def test_template_of_another_key_is_refused(
    encrypt: Callable[[Any], bytes], other_keys: KeySet
) -> None:
    with pytest.raises(ForeignCiphertext):
        ops.aggregate([encrypt([1.0])], template=native.output_template(other_keys.bundle))


def test_aggregate_many_equals_one_aggregate_per_group(
    backend: Kernels, keys: KeySet, rng: np.random.Generator
) -> None:
    """One vectorized sum over groups of different lengths, byte-identical per group."""
    template = native.output_template(keys.bundle)
    groups = [[encrypt(keys, list(rng.uniform(-1, 1, 4))).data for _ in range(n)]
              for n in (1, 5, 2, 17)]
    got = ops.aggregate_many(groups, backend=backend, template=template)
    assert got == [ops.aggregate(g, backend=backend, template=template) for g in groups]
    with pytest.raises(ValueError):
        ops.aggregate_many([groups[0], []], backend=backend)


def test_multiply_plain_many_equals_one_product_each(
    backend: Kernels, keys: KeySet, rng: np.random.Generator
) -> None:
    cts = [encrypt(keys, list(rng.uniform(-1, 1, 8))).data for _ in range(3)]
    weights = [list(rng.uniform(-1, 1, 8)) for _ in range(3)]
    got = ops.multiply_plain_many(cts, weights, backend=backend)
    assert got == [ops.multiply_plain(c, w, backend=backend)
                   for c, w in zip(cts, weights, strict=True)]
