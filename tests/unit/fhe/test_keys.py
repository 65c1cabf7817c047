"""Typed blobs, the public bundle's JSON form and key metadata (no OpenFHE needed)."""

from __future__ import annotations

import pytest

from fhe.client import KeySet
from fhe.errors import MalformedKeyBundle
from fhe.keys import (
    CiphertextBlob,
    KeyMeta,
    PublicBundle,
    PublicKeyBlob,
    SecretKeyBlob,
)


def test_blobs_are_distinct_types_and_hide_their_bytes() -> None:
    pk, ct = PublicKeyBlob(b"same"), CiphertextBlob(b"same")
    assert pk != ct  # type: ignore[comparison-overlap]
    assert repr(pk) == "PublicKeyBlob(<4 bytes>)"
    assert "hidden" in repr(SecretKeyBlob(b"secret"))
    assert not hasattr(SecretKeyBlob(b"secret"), "b64")
    with pytest.raises(TypeError):
        PublicKeyBlob("text")  # type: ignore[arg-type]


def test_key_set_repr_hides_the_secret(keys: KeySet) -> None:
    assert "secret" not in repr(keys)


def test_bundle_json_round_trip(keys: KeySet) -> None:
    body = keys.bundle.to_json()
    assert set(body) == {"context", "public_key", "eval_mult_key", "rotation_keys"}
    assert PublicBundle.from_json(body) == keys.bundle


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"context": "AA==", "public_key": "AA=="},
        {"context": "AA==", "public_key": "not base64!", "eval_mult_key": "AA=="},
        {"context": "AA==", "public_key": "AA==", "eval_mult_key": 3},
        {"context": "AA==", "public_key": "AA==", "eval_mult_key": "AA==", "rotation_keys": 1},
    ],
)
def test_bad_json_bodies_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(MalformedKeyBundle):
        PublicBundle.from_json(body)


def test_key_meta_round_trip(meta: KeyMeta) -> None:
    assert KeyMeta.from_dict(meta.to_dict()) == meta
    assert set(meta.public_info()) == {"key_id", "scheme", "ring_dim", "slots", "depth"}
