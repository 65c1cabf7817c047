"""Key bundle validation: metadata of a good bundle, refusal of anything else."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from fhe import codec
from fhe.bundle import validate_bundle
from fhe.client import KeySet
from fhe.errors import MalformedKeyBundle, SecretKeyRefused
from fhe.keys import (
    CryptoContextBlob,
    EvalMultKeyBlob,
    KeyMeta,
    PublicBundle,
    PublicKeyBlob,
    RotationKeysBlob,
)
from fhe.presets import get_preset
from fhe.security import NOT_SET


def test_valid_bundle_metadata(keys: KeySet, meta: KeyMeta) -> None:
    preset = get_preset("test")
    assert meta.key_id == keys.key_id == keys.bundle.public_key.key_id
    assert len(meta.key_id) == 64
    assert (meta.scheme, meta.ring_dim, meta.slots, meta.depth) == ("CKKS", 4096, 64, 2)
    assert len(meta.moduli) == preset.depth + 1
    assert meta.moduli == codec.parse_public_key(keys.bundle.public_key.data).moduli
    assert meta.rotation_steps == preset.rotation_steps
    assert (meta.noise_scale_degree, meta.level, meta.scaling_factor) == (1, 0, 2.0**40)


def test_validation_is_repeatable(keys: KeySet, meta: KeyMeta) -> None:
    assert validate_bundle(keys.bundle, min_security=NOT_SET) == meta


def test_bundle_without_rotation_keys(keys: KeySet) -> None:
    meta = validate_bundle(replace(keys.bundle, rotation_keys=None), min_security=NOT_SET)
    assert meta.rotation_steps == ()


@pytest.mark.parametrize("field", ["context", "public_key", "eval_mult_key", "rotation_keys"])
def test_secret_key_in_any_field_is_refused(keys: KeySet, field: str) -> None:
    secret, b = keys.require_secret().data, keys.bundle
    bad = {
        "context": replace(b, context=CryptoContextBlob(secret)),
        "public_key": replace(b, public_key=PublicKeyBlob(secret)),
        "eval_mult_key": replace(b, eval_mult_key=EvalMultKeyBlob(secret)),
        "rotation_keys": replace(b, rotation_keys=RotationKeysBlob(secret)),
    }[field]
    with pytest.raises(SecretKeyRefused, match=field):
        validate_bundle(bad, min_security=NOT_SET)


def test_secret_key_appended_to_a_public_key_is_refused(keys: KeySet) -> None:
    smuggled = PublicKeyBlob(keys.bundle.public_key.data + keys.require_secret().data)
    with pytest.raises(SecretKeyRefused):
        validate_bundle(replace(keys.bundle, public_key=smuggled), min_security=NOT_SET)


def test_secret_key_in_the_json_body_is_refused(keys: KeySet) -> None:
    body = keys.bundle.to_json()
    body["public_key"] = base64.b64encode(keys.require_secret().data).decode()
    with pytest.raises(SecretKeyRefused):
        validate_bundle(PublicBundle.from_json(body), min_security=NOT_SET)


def test_mismatched_parts_are_refused(keys: KeySet, other_keys: KeySet) -> None:
    mine, theirs = keys.bundle, other_keys.bundle
    for bad in (
        replace(mine, eval_mult_key=theirs.eval_mult_key),
        replace(mine, rotation_keys=theirs.rotation_keys),
        replace(mine, public_key=PublicKeyBlob(mine.context.data)),
        replace(mine, context=CryptoContextBlob(mine.public_key.data)),
        replace(mine, context=CryptoContextBlob(mine.context.data + b"\x00")),
        replace(mine, eval_mult_key=EvalMultKeyBlob(mine.eval_mult_key.data[:-10])),
    ):
        with pytest.raises(MalformedKeyBundle):
            validate_bundle(bad, min_security=NOT_SET)


def test_public_key_from_another_context_is_refused(
    keys: KeySet, other_moduli_keys: KeySet
) -> None:
    with pytest.raises(MalformedKeyBundle):
        validate_bundle(
            replace(other_moduli_keys.bundle, context=keys.bundle.context), min_security=NOT_SET
        )


def test_original_keys_still_validate_after_refusals(keys: KeySet, meta: KeyMeta) -> None:
    assert validate_bundle(keys.bundle, min_security=NOT_SET) == meta
