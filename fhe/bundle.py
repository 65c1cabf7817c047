"""Server-side validation of an uploaded key bundle (`POST /api/fhe/keys`); uses OpenFHE.

A bundle is accepted only when no blob holds a secret key (structural scan, before any
OpenFHE parsing) and every blob is exactly what its field names: the context and the
evaluation keys are OpenFHE's own serializations (deserialized and serialized again they
give back the same bytes), and the public key parses, by fhe.codec, as a key tag and two
ring elements that end the blob, and OpenFHE reads it. So what is stored is a context,
a public key and evaluation keys for that key's tag, nothing else.

Any CKKS scaling technique is accepted. Whether the limb path may add this key's
ciphertexts is proven per key: two probe encryptions are added by OpenFHE's EvalAdd and
by the limb path, and only byte-identical results set `KeyMeta.limb_add`; otherwise the
workers add with OpenFHE itself. The limb ct x pt path is used under FIXEDMANUAL only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import openfhe

from fhe import native
from fhe.codec import holds_secret_key, parse_ciphertext, parse_public_key
from fhe.errors import FheError, MalformedCiphertext, MalformedKeyBundle, SecretKeyRefused
from fhe.keys import KeyMeta, PublicBundle
from fhe.security import check_security

MAX_BYTES = {
    "context": 1 << 20,
    "public_key": 1 << 25,
    "eval_mult_key": 1 << 26,
    "rotation_keys": 1 << 28,
}

_T = TypeVar("_T")

_TECHNIQUES = (openfhe.FIXEDMANUAL, openfhe.FIXEDAUTO, openfhe.FLEXIBLEAUTO,
               openfhe.FLEXIBLEAUTOEXT)


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


def _limb_add_proven(cc: Any, bundle: PublicBundle, template: bytes) -> bool:
    """Two probe encryptions summed by OpenFHE's EvalAdd and by the limb path agree byte
    for byte (same level, noise scale degree and scaling factor under this technique)."""
    from fhe.ops import aggregate

    pk = native.public_key(bundle.public_key)
    a = cc.Encrypt(pk, cc.MakeCKKSPackedPlaintext([0.25, -1.5, 3.0]))
    b = cc.Encrypt(pk, cc.MakeCKKSPackedPlaintext([1.0, 2.0, -0.125]))
    expected = native.serialize(cc.EvalAdd(a, b))
    try:
        got = aggregate([native.serialize(a), native.serialize(b)], backend="numpy",
                        template=template)
    except FheError:
        return False
    return got == expected


def validate_bundle(bundle: PublicBundle, *, min_security: str = "HEStd_128_classic") -> KeyMeta:
    """Check an uploaded bundle and describe its key; typed FheError when refused.

    SecretKeyRefused when any blob holds a secret key; MalformedKeyBundle otherwise
    (naming the field or parameter and why). `min_security`: an OpenFHE security level
    name (fhe.security.LEVELS); the ring must be large enough for the context's modulus.
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
    check_security(block.ring_dim, block.moduli, min_security)
    for name in ("eval_mult_key", "rotation_keys"):
        if name in blobs and _single_map_tag(blobs[name], name) != tag:
            raise MalformedKeyBundle(f"{name}: keys are not for this public key")

    cc = _openfhe("context", lambda: native.context(bundle.context))
    _canonical("context", native.serialize(cc), bundle.context.data)
    if cc.getSchemeId() != openfhe.SCHEME.CKKSRNS_SCHEME:
        raise MalformedKeyBundle("context: not a CKKS context")
    technique = cc.GetScalingTechnique()
    if technique not in _TECHNIQUES:
        raise MalformedKeyBundle(
            f"context: scaling technique {technique.name} is not one of "
            f"{', '.join(t.name for t in _TECHNIQUES)}"
        )
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

    try:
        fresh = parse_ciphertext(probe)
    except MalformedCiphertext:
        native.distrust_eval_keys(tag)
        raise MalformedKeyBundle(
            f"context: its ciphertexts ({technique.name}) are not ones this server can check"
        ) from None
    slots = fresh.slots
    fixed = technique == openfhe.FIXEDMANUAL and fresh.noise_scale_degree == 1
    return KeyMeta(
        key_id=bundle.key_id,
        key_tag=tag,
        ring_dim=fresh.ring_dim,
        slots=slots,
        depth=int(cc.GetMultiplicativeDepth()),
        moduli=fresh.moduli,
        scaling_technique=technique.name,
        scaling_factor=fresh.scaling_factor,
        noise_scale_degree=fresh.noise_scale_degree,
        level=fresh.level,
        rotation_steps=_rotation_steps(cc, tag, slots) if "rotation_keys" in blobs else (),
        limb_add=_limb_add_proven(cc, bundle, probe),
        limb_mult=fixed,
    )
