"""Server-side validation of an uploaded key bundle (`POST /api/fhe/keys`); uses OpenFHE.

A bundle is accepted only when no blob holds a secret key (structural scan, before any
OpenFHE parsing) and every blob is exactly what its field names: the context and the
evaluation keys are OpenFHE's own serializations (deserialized and serialized again they
give back the same bytes), and the public key parses, by fhe.codec, as a key tag and two
ring elements that end the blob, and OpenFHE reads it. So what is stored is a context,
a public key and evaluation keys for that key's tag, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import openfhe

from fhe import native
from fhe.codec import holds_secret_key, parse_ciphertext, parse_public_key
from fhe.errors import MalformedCiphertext, MalformedKeyBundle, SecretKeyRefused
from fhe.keys import KeyMeta, PublicBundle

MAX_BYTES = {
    "context": 1 << 20,
    "public_key": 1 << 25,
    "eval_mult_key": 1 << 26,
    "rotation_keys": 1 << 28,
}

_T = TypeVar("_T")


def _single_map_tag(data: bytes, name: str) -> str:
    """The one key tag of a serialized evaluation-key map (u8 1, u64 count, string)."""
    count = int.from_bytes(data[1:9], "little")
    length = int.from_bytes(data[9:17], "little")
    if data[:1] != b"\x01" or count != 1 or not 1 <= length <= 256 or len(data) < 17 + length:
        raise MalformedKeyBundle(f"{name}: must hold keys for exactly one key tag")
    return data[17 : 17 + length].decode("ascii", errors="replace")


def _openfhe(name: str, load: Callable[[], _T]) -> _T:
    try:
        return load()
    except RuntimeError:
        raise MalformedKeyBundle(f"{name}: OpenFHE could not read it") from None


def _canonical(name: str, reserialized: bytes, data: bytes) -> None:
    if reserialized != data:
        raise MalformedKeyBundle(f"{name}: not a canonical OpenFHE serialization")


def _rotation_steps(cc: Any, key_tag: str, slots: int) -> tuple[int, ...]:
    indices = set(openfhe.CryptoContext.GetExistingEvalAutomorphismKeyIndices(key_tag))
    return tuple(s for s in range(1, slots) if cc.FindAutomorphismIndex(s) in indices)


def validate_bundle(bundle: PublicBundle) -> KeyMeta:
    """Check an uploaded bundle and describe its key; typed FheError when refused.

    SecretKeyRefused when any blob holds a secret key; MalformedKeyBundle otherwise.
    Side effect: the evaluation keys are left loaded in OpenFHE's static maps.
    """
    blobs = bundle.blobs()
    for name, data in blobs.items():
        if len(data) > MAX_BYTES[name]:
            raise MalformedKeyBundle(f"{name}: larger than {MAX_BYTES[name]} bytes")
        if holds_secret_key(data):
            raise SecretKeyRefused(f"{name}: holds a secret key; refused and not stored")
    try:
        block = parse_public_key(bundle.public_key.data)
    except MalformedCiphertext:
        raise MalformedKeyBundle("public_key: not a serialized public key") from None
    tag = block.key_tag
    for name in ("eval_mult_key", "rotation_keys"):
        if name in blobs and _single_map_tag(blobs[name], name) != tag:
            raise MalformedKeyBundle(f"{name}: keys are not for this public key")

    cc = _openfhe("context", lambda: native.context(bundle.context))
    _canonical("context", native.serialize(cc), bundle.context.data)
    if cc.getSchemeId() != openfhe.SCHEME.CKKSRNS_SCHEME:
        raise MalformedKeyBundle("context: not a CKKS context")
    if cc.GetScalingTechnique() != openfhe.FIXEDMANUAL:
        raise MalformedKeyBundle("context: scaling technique must be FIXEDMANUAL")
    pk = _openfhe("public_key", lambda: native.public_key(bundle.public_key))
    if pk.GetKeyTag() != tag or cc.GetRingDimension() != block.ring_dim:
        raise MalformedKeyBundle("public_key: does not belong to the context")

    try:
        native.load_eval_keys(bundle, tag)
        mult = openfhe.SerializeEvalMultKeyString(native.BINARY, tag)
        _canonical("eval_mult_key", mult, blobs["eval_mult_key"])
        if "rotation_keys" in blobs:
            _canonical(
                "rotation_keys",
                openfhe.SerializeEvalAutomorphismKeyString(native.BINARY, tag),
                blobs["rotation_keys"],
            )
        probe = native.output_template(bundle)
    except RuntimeError:
        native.distrust_eval_keys(tag)
        raise MalformedKeyBundle(
            "evaluation keys or public key unusable with the context"
        ) from None
    except MalformedKeyBundle:
        native.distrust_eval_keys(tag)
        raise

    fresh = parse_ciphertext(probe)
    slots = fresh.slots
    return KeyMeta(
        key_id=bundle.key_id,
        key_tag=tag,
        ring_dim=fresh.ring_dim,
        slots=slots,
        depth=int(cc.GetMultiplicativeDepth()),
        moduli=fresh.moduli,
        scaling_technique="FIXEDMANUAL",
        scaling_factor=fresh.scaling_factor,
        noise_scale_degree=fresh.noise_scale_degree,
        level=fresh.level,
        rotation_steps=_rotation_steps(cc, tag, slots) if "rotation_keys" in blobs else (),
    )
