"""The one module that talks to OpenFHE: contexts from presets, (de)serialization, and
the process-wide evaluation-key cache.

Set OMP_NUM_THREADS before this module is first imported: OpenFHE reads it once.
OpenFHE keeps evaluation keys in static maps keyed by key tag; `ensure_eval_keys`
records which registered key filled each tag, so a later upload that reuses a tag
can never make another key's keys stand in silently.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import openfhe

from fhe.errors import MalformedCiphertext
from fhe.keys import CryptoContextBlob, PublicBundle, PublicKeyBlob, SecretKeyBlob
from fhe.presets import Preset

BINARY = openfhe.BINARY
MAX_LOADED_KEYS = 8

_loaded: dict[str, str] = {}


def new_context(preset: Preset) -> Any:
    """A fresh CKKS CryptoContext for `preset`, with PKE, key switching and leveled SHE."""
    params = openfhe.CCParamsCKKSRNS()
    params.SetRingDim(preset.ring_dim)
    params.SetMultiplicativeDepth(preset.depth)
    params.SetScalingModSize(preset.scaling_mod_size)
    params.SetFirstModSize(preset.first_mod_size)
    params.SetBatchSize(preset.slots)
    params.SetSecurityLevel(getattr(openfhe, preset.security))
    params.SetScalingTechnique(getattr(openfhe, preset.scaling_technique))
    params.SetNumLargeDigits(preset.num_large_digits)
    cc = openfhe.GenCryptoContext(params)
    for feature in (openfhe.PKE, openfhe.KEYSWITCH, openfhe.LEVELEDSHE):
        cc.Enable(feature)
    return cc


def serialize(obj: Any) -> bytes:
    data: bytes = openfhe.Serialize(obj, BINARY)
    return data


@lru_cache(maxsize=16)
def context(blob: CryptoContextBlob) -> Any:
    """The CryptoContext in `blob` (RuntimeError from OpenFHE when it is not one)."""
    return openfhe.DeserializeCryptoContextString(blob.data, BINARY)


@lru_cache(maxsize=16)
def public_key(blob: PublicKeyBlob) -> Any:
    return openfhe.DeserializePublicKeyString(blob.data, BINARY)


def secret_key(blob: SecretKeyBlob) -> Any:
    return openfhe.DeserializePrivateKeyString(blob.data, BINARY)


def ciphertext(data: bytes) -> Any:
    """Deserialize a ciphertext; MalformedCiphertext when OpenFHE refuses it."""
    try:
        return openfhe.DeserializeCiphertextString(data, BINARY)
    except RuntimeError:
        raise MalformedCiphertext("OpenFHE could not read the ciphertext") from None


def output_template(bundle: PublicBundle) -> bytes:
    """A fresh ciphertext under the bundle's key (an encryption of zeros): the frame the
    limb operations write results into, so no contributor-made bytes reach OpenFHE."""
    return _encrypted_zeros(bundle.context, bundle.public_key)


@lru_cache(maxsize=16)
def _encrypted_zeros(context_blob: CryptoContextBlob, key: PublicKeyBlob) -> bytes:
    cc = context(context_blob)
    return serialize(cc.Encrypt(public_key(key), cc.MakeCKKSPackedPlaintext([0.0])))


def load_eval_keys(bundle: PublicBundle, key_tag: str) -> None:
    """Put the bundle's evaluation keys into OpenFHE's static maps under `key_tag`.

    OpenFHE refuses to load over keys it holds for the tag and cannot drop one tag, so
    then (or when MAX_LOADED_KEYS are loaded) every key is dropped; others reload on use.
    The tag counts as unloaded until this returns: a failure leaves it untrusted.
    """
    if _held_by_openfhe(key_tag) or (len(_loaded) >= MAX_LOADED_KEYS):
        forget_eval_keys()
    _loaded.pop(key_tag, None)
    openfhe.DeserializeEvalMultKeyString(bundle.eval_mult_key.data, BINARY)
    if bundle.rotation_keys is not None:
        openfhe.DeserializeEvalAutomorphismKeyString(bundle.rotation_keys.data, BINARY)
    _loaded[key_tag] = bundle.key_id


def _held_by_openfhe(key_tag: str) -> bool:
    cls = openfhe.CryptoContext
    return key_tag in cls.GetAllEvalMultKeys() or bool(
        cls.GetExistingEvalAutomorphismKeyIndices(key_tag)
    )


def ensure_eval_keys(bundle: PublicBundle, key_tag: str) -> None:
    """Make sure the keys under `key_tag` are this bundle's (reload them otherwise)."""
    if _loaded.get(key_tag) != bundle.key_id:
        load_eval_keys(bundle, key_tag)


def distrust_eval_keys(key_tag: str) -> None:
    """Mark the keys under `key_tag` as not belonging to any registered key."""
    _loaded.pop(key_tag, None)


def forget_eval_keys() -> None:
    """Empty OpenFHE's static evaluation-key maps (OpenFHE cannot drop a single tag)."""
    openfhe.ClearEvalMultKeys()
    openfhe.CryptoContext.ClearEvalAutomorphismKeys()
    _loaded.clear()
