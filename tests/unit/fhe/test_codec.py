"""Ciphertext codec: structural parsing, zero-copy limbs, write-back, typed refusals."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from fhe import codec, native
from fhe.client import KeySet, encrypt
from fhe.codec import check_compatible, holds_secret_key, parse_ciphertext, write_ciphertext
from fhe.errors import ForeignCiphertext, IncompatibleCiphertext, MalformedCiphertext
from fhe.keys import KeyMeta


def live_ciphertext(live: dict[str, Any], values: list[float]) -> bytes:
    cc, pair = live["cc"], live["pair"]
    return native.serialize(cc.Encrypt(pair.publicKey, cc.MakeCKKSPackedPlaintext(values)))


def test_parse_fresh_ciphertext(encrypt: Callable[[Any], bytes], meta: KeyMeta) -> None:
    view = parse_ciphertext(encrypt([1.0, 2.0, 3.0]))
    assert view.limbs.shape == (2, len(meta.moduli), meta.ring_dim)
    assert view.limbs.dtype == np.uint64
    assert view.moduli == meta.moduli
    assert view.key_tag == meta.key_tag
    assert (view.slots, view.level, view.noise_scale_degree) == (meta.slots, 0, 1)
    assert view.scaling_factor == 2.0**40
    assert view.fmt == codec.EVALUATION
    check_compatible(view, meta)


def test_limbs_are_views_over_the_bytes(live: dict[str, Any]) -> None:
    data = live_ciphertext(live, [1.0, -1.0])
    view = parse_ciphertext(data)
    assert not view.limbs.flags.owndata
    assert not view.limbs.flags.writeable
    assert np.shares_memory(view.limbs, np.frombuffer(data, dtype=np.uint8))
    first = view.block.firsts[0]
    assert int(view.limbs[0, 0, 0]) == struct.unpack_from("<Q", data, first)[0]


def test_ciphertext_of_a_deserialized_key_has_inline_parameters(
    live: dict[str, Any], encrypt: Callable[[Any], bytes]
) -> None:
    # Encrypting with a key read back from bytes writes ring parameters inline.
    inline, fresh = parse_ciphertext(encrypt([1.0])), parse_ciphertext(live_ciphertext(live, [1.0]))
    assert inline.block.tower_strides[0] != inline.block.tower_strides[1]
    assert len(set(fresh.block.tower_strides)) == 1
    for view in (inline, fresh):
        for e, element in enumerate(view.block.elements(view.data)):
            assert np.array_equal(element, view.limbs[e])


@pytest.mark.parametrize("source", ["live", "client"])
def test_write_back_unchanged_limbs_is_identity(
    source: str, live: dict[str, Any], encrypt: Callable[[Any], bytes]
) -> None:
    data = live_ciphertext(live, [0.5]) if source == "live" else encrypt([0.5])
    view = parse_ciphertext(data)
    assert write_ciphertext(view, np.array(view.limbs)) == data


def test_write_back_changes_limbs_and_metadata(
    encrypt: Callable[[Any], bytes], keys: KeySet
) -> None:
    view = parse_ciphertext(encrypt([1.5, 2.5]))
    q = view.block.moduli_column()
    doubled = (view.limbs * np.uint64(2)) % q
    out = parse_ciphertext(
        write_ciphertext(view, doubled, noise_scale_degree=2, scaling_factor=3.0)
    )
    assert np.array_equal(out.limbs, doubled)
    assert (out.noise_scale_degree, out.scaling_factor) == (2, 3.0)
    restored = write_ciphertext(out, doubled, noise_scale_degree=1, scaling_factor=2.0**40)
    assert native.ciphertext(restored).GetNoiseScaleDeg() == 1


def test_write_back_refuses_wrong_shapes_and_unreduced_limbs(
    encrypt: Callable[[Any], bytes],
) -> None:
    view = parse_ciphertext(encrypt([1.0]))
    with pytest.raises(ValueError):
        write_ciphertext(view, np.array(view.limbs[:1]))
    bad = np.array(view.limbs)
    bad[1, 0, 5] = view.moduli[0]
    with pytest.raises(MalformedCiphertext):
        write_ciphertext(view, bad)


def cut_points(length: int) -> list[int]:
    return [0, 1, 63, 400, 700, length // 3, length // 2, length - 49, length - 8, length - 1]


@pytest.mark.parametrize("fraction", range(10))
def test_truncated_ciphertext_is_malformed(fraction: int, encrypt: Callable[[Any], bytes]) -> None:
    data = encrypt([1.0])
    with pytest.raises(MalformedCiphertext):
        parse_ciphertext(data[: cut_points(len(data))[fraction]])


def test_garbage_and_trailing_bytes_are_malformed(
    encrypt: Callable[[Any], bytes], rng: np.random.Generator
) -> None:
    data = encrypt([1.0])
    for bad in (b"", b"\x01" * 2000, rng.bytes(len(data)), data + b"\x00", b"\x00" + data[1:]):
        with pytest.raises(MalformedCiphertext):
            parse_ciphertext(bad)


@pytest.mark.parametrize(
    "field", ["residue", "ring_dim", "modulus", "format", "encoding", "slots", "tag"]
)
def test_corrupt_fields_are_malformed(field: str, encrypt: Callable[[Any], bytes]) -> None:
    data = encrypt([1.0])
    view = parse_ciphertext(data)
    first, n, q0 = view.block.firsts[0], view.ring_dim, view.moduli[0]
    tag_at = data.find(view.key_tag.encode())
    offset, fmt, value = {
        "residue": (first, "<Q", q0),  # not reduced
        "ring_dim": (first - 8, "<Q", n // 2),  # disagrees with the residue count
        "modulus": (first + 8 * n, "<Q", q0 + 2),  # not 1 mod 2N
        "format": (first + 8 * n + 8, "<I", 7),
        "encoding": (view.trailer + 32, "<I", 2),  # not CKKS
        "slots": (view.trailer, "<I", 0),
        "tag": (tag_at, "<B", 0x0A),  # not a key tag character
    }[field]
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    with pytest.raises(MalformedCiphertext):
        parse_ciphertext(bytes(out))


def test_wrong_ring_is_incompatible(wider_ring_keys: KeySet, meta: KeyMeta) -> None:
    view = parse_ciphertext(encrypt(wider_ring_keys, [1.0]).data)
    with pytest.raises(IncompatibleCiphertext, match="ring dimension"):
        check_compatible(view, _retagged(meta, view.key_tag))


def test_wrong_moduli_are_incompatible(other_moduli_keys: KeySet, meta: KeyMeta) -> None:
    view = parse_ciphertext(encrypt(other_moduli_keys, [1.0]).data)
    assert view.ring_dim == meta.ring_dim
    with pytest.raises(IncompatibleCiphertext, match="moduli"):
        check_compatible(view, _retagged(meta, view.key_tag))


def test_foreign_key_tag_is_refused(other_keys: KeySet, meta: KeyMeta) -> None:
    view = parse_ciphertext(encrypt(other_keys, [1.0]).data)
    with pytest.raises(ForeignCiphertext):
        check_compatible(view, meta)


def test_product_is_not_a_fresh_ciphertext(encrypt: Callable[[Any], bytes], meta: KeyMeta) -> None:
    view = parse_ciphertext(encrypt([1.0]))
    out = parse_ciphertext(write_ciphertext(view, np.array(view.limbs), noise_scale_degree=2))
    with pytest.raises(IncompatibleCiphertext):
        check_compatible(out, meta)


def _retagged(meta: KeyMeta, tag: str) -> KeyMeta:
    return KeyMeta.from_dict({**meta.to_dict(), "key_tag": tag})


def test_secret_key_detection(keys: KeySet, encrypt: Callable[[Any], bytes]) -> None:
    secret = keys.require_secret().data
    assert holds_secret_key(secret)
    assert holds_secret_key(keys.bundle.public_key.data + secret)
    for name, blob in keys.bundle.blobs().items():
        assert not holds_secret_key(blob), name
    assert not holds_secret_key(encrypt([1.0]))


def test_parse_public_key(keys: KeySet, meta: KeyMeta) -> None:
    block = codec.parse_public_key(keys.bundle.public_key.data)
    assert (block.key_tag, block.moduli, block.n_elements) == (meta.key_tag, meta.moduli, 2)
    with pytest.raises(MalformedCiphertext):
        codec.parse_public_key(keys.require_secret().data)
