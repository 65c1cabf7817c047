"""Finishing scores and means with OpenFHE: what the key owner decrypts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from fhe import client, evaluator, ops
from fhe.bundle import validate_bundle
from fhe.client import KeySet, decrypt
from fhe.errors import ForeignCiphertext, IncompatibleCiphertext, UnsupportedKey
from fhe.kernels import Kernels
from fhe.keys import KeyMeta


def test_score_decrypts_to_the_dot_product(
    backend: Kernels,
    keys: KeySet,
    meta: KeyMeta,
    encrypt: Callable[[Any], bytes],
    rng: np.random.Generator,
) -> None:
    x, w, b = rng.uniform(-1, 1, 64), rng.uniform(-1, 1, 64), 0.75
    score = evaluator.score(encrypt(x), list(w), b, keys.bundle, meta, backend=backend)
    got = decrypt(keys, score, 64)
    assert abs(got[0] - (x @ w + b)) < 1e-4
    assert np.max(np.abs(got - (x @ w + b))) < 1e-4  # every slot holds the sum


def test_score_with_fewer_features_than_slots(
    keys: KeySet, meta: KeyMeta, encrypt: Callable[[Any], bytes], rng: np.random.Generator
) -> None:
    x, w = rng.uniform(-1, 1, 10), rng.uniform(-1, 1, 10)
    got = decrypt(keys, evaluator.score(encrypt(x), list(w), -1.0, keys.bundle, meta), 1)
    assert abs(got[0] - (x @ w - 1.0)) < 1e-4


def test_finish_score_refusals(
    keys: KeySet, meta: KeyMeta, encrypt: Callable[[Any], bytes], other_keys: KeySet
) -> None:
    fresh = encrypt([1.0])
    with pytest.raises(IncompatibleCiphertext):
        evaluator.finish_score(fresh, 0.0, keys.bundle, meta)
    foreign = ops.multiply_plain(client.encrypt(other_keys, [1.0]).data, [1.0])
    with pytest.raises(ForeignCiphertext):
        evaluator.finish_score(foreign, 0.0, keys.bundle, meta)
    product = ops.multiply_plain(fresh, [1.0])
    with pytest.raises(UnsupportedKey):
        evaluator.finish_score(product, 0.0, keys.bundle, replace(meta, rotation_steps=()))


def test_mean(
    keys: KeySet, meta: KeyMeta, encrypt: Callable[[Any], bytes], rng: np.random.Generator
) -> None:
    vectors = rng.uniform(-5, 5, size=(6, 64))
    total = ops.aggregate([encrypt(v) for v in vectors])
    got = decrypt(keys, evaluator.mean(total, 6, keys.bundle, meta), 64)
    assert np.max(np.abs(got - vectors.mean(axis=0))) < 1e-5
    with pytest.raises(ValueError):
        evaluator.mean(total, 0, keys.bundle, meta)
    with pytest.raises(UnsupportedKey):
        evaluator.mean(total, 6, keys.bundle, replace(meta, depth=0))


def test_scoring_preset_end_to_end(rng: np.random.Generator) -> None:
    """The production preset (N = 2^15, 128-bit): register, score 256 features, decrypt."""
    keys = client.generate_keys("scoring")
    meta = validate_bundle(keys.bundle)  # the default level: 128-bit
    x, w = rng.uniform(-1, 1, 256), rng.uniform(-1, 1, 256)
    ct = client.encrypt(keys, list(x)).data
    got = decrypt(keys, evaluator.score(ct, list(w), 2.0, keys.bundle, meta), 1)
    assert abs(got[0] - (x @ w + 2.0)) < 1e-4
