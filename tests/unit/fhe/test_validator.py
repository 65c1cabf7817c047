"""Key bundles validated in separate processes: the same answers as in-process, crafted
bundles (bit flips, truncations, huge length fields; hypothesis) refused with
MalformedKeyBundle, and a failed or stuck child costs only its own request."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhe.bundle import validate_bundle
from fhe.client import KeySet
from fhe.errors import MalformedKeyBundle, SecretKeyRefused
from fhe.keys import CryptoContextBlob, EvalMultKeyBlob, KeyMeta, PublicBundle, PublicKeyBlob
from fhe.security import NOT_SET
from fhe.validator import CRASHED, TOO_SLOW, ValidatorPool

FIELDS = {"context": CryptoContextBlob, "public_key": PublicKeyBlob,
          "eval_mult_key": EvalMultKeyBlob}


@pytest.fixture(scope="module")
def pool() -> Iterator[ValidatorPool]:
    p = ValidatorPool(processes=1, memory_mb=1024, timeout_s=60)
    yield p
    p.close()


@pytest.fixture(scope="module")
def small(keys: KeySet) -> PublicBundle:
    """The test key without rotation keys: quick to validate again and again."""
    return replace(keys.bundle, rotation_keys=None)


def test_same_answer_as_in_process(pool: ValidatorPool, keys: KeySet, meta: KeyMeta) -> None:
    assert pool.validate(keys.bundle, NOT_SET) == meta
    with pytest.raises(MalformedKeyBundle, match="below the 128-bit security level"):
        pool.validate(keys.bundle, "HEStd_128_classic")


def test_secret_key_refused_in_the_child(pool: ValidatorPool, small: PublicBundle,
                                         keys: KeySet) -> None:
    bad = replace(small, eval_mult_key=EvalMultKeyBlob(keys.require_secret().data))
    with pytest.raises(SecretKeyRefused.__bases__[0], match="secret key"):
        pool.validate(bad, NOT_SET)


def mutate(data: bytes, kind: str, pos: int, value: int) -> bytes:
    pos %= max(1, len(data))
    if kind == "flip":
        out = bytearray(data)
        out[pos] ^= 1 << (value % 8)
        return bytes(out)
    if kind == "truncate":
        return data[:pos]
    # a huge length field: 8 bytes of a large u64 written over the blob
    out = bytearray(data)
    out[pos : pos + 8] = (value | (1 << 40)).to_bytes(8, "little")
    return bytes(out)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(FIELDS)),
       kind=st.sampled_from(["flip", "truncate", "length"]),
       pos=st.integers(min_value=0, max_value=1 << 24),
       value=st.integers(min_value=0, max_value=(1 << 63) - 1))
def test_crafted_bundles_refused_and_harm_nobody(
    pool: ValidatorPool, small: PublicBundle, field: str, kind: str, pos: int, value: int
) -> None:
    data = mutate(small.blobs()[field], kind, pos, value)
    crafted = replace(small, **{field: FIELDS[field](data)})
    try:
        got = pool.validate(crafted, NOT_SET)
    except MalformedKeyBundle:
        pass
    else:  # a harmless change: what OpenFHE itself accepts, in-process
        assert got == validate_bundle(crafted, min_security=NOT_SET)
    assert pool.validate(small, NOT_SET).key_id == small.key_id  # the pool still works


def test_dead_child_replaced_and_stuck_child_refused(pool: ValidatorPool,
                                                     small: PublicBundle) -> None:
    pool.validate(small, NOT_SET)
    [child] = pool._idle
    os.kill(child.proc.pid, signal.SIGKILL)  # died while idle: not a request's fault
    assert pool.validate(small, NOT_SET).key_id == small.key_id
    pool.timeout_s = 0.001
    try:
        with pytest.raises(MalformedKeyBundle, match=TOO_SLOW.split(":")[1].strip()[:20]):
            pool.validate(small, NOT_SET)
    finally:
        pool.timeout_s = 60
    assert pool.validate(small, NOT_SET).key_id == small.key_id


def test_memory_limit_refuses_instead_of_growing() -> None:
    """A child too small for OpenFHE: the request is refused (400), nothing else breaks."""
    tiny = ValidatorPool(memory_mb=128, timeout_s=60)
    try:
        with pytest.raises(MalformedKeyBundle) as refused:
            tiny.validate(PublicBundle(CryptoContextBlob(b"\x01" * 64), PublicKeyBlob(b"x"),
                                       EvalMultKeyBlob(b"y")), NOT_SET)
        assert str(refused.value) in (CRASHED, "public_key: not a serialized public key",
                                      "key bundle: too large to read within the validator's "
                                      "memory limit")
    finally:
        tiny.close()
