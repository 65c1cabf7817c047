"""Typed wrappers for serialized FHE objects, the public bundle and key metadata.

Each wrapper carries OpenFHE BINARY bytes and is its own class, so a public key cannot be
passed where a ciphertext or a secret key is expected. No OpenFHE import here: the server
core can hold, store and ship these anywhere. reprs show sizes only, never bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from confide import b64
from fhe.errors import MalformedKeyBundle

_B = TypeVar("_B", bound="_Blob")


def b64decode_strict(text: str, *, field_name: str) -> bytes:
    """Decode standard base64, refusing anything else (typed error names the field)."""
    try:
        return b64.decode(text)
    except ValueError:
        raise MalformedKeyBundle(f"{field_name}: not valid base64") from None


@dataclass(frozen=True, repr=False)
class _Blob:
    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes):
            raise TypeError(f"{type(self).__name__} holds bytes")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<{len(self.data)} bytes>)"

    def b64(self) -> str:
        return b64.encode(self.data)

    @classmethod
    def from_b64(cls: type[_B], text: str, *, field_name: str = "blob") -> _B:
        return cls(b64decode_strict(text, field_name=field_name))


@dataclass(frozen=True, repr=False)
class CryptoContextBlob(_Blob):
    """A serialized CryptoContext (parameters only, no keys)."""


@dataclass(frozen=True, repr=False)
class PublicKeyBlob(_Blob):
    """A serialized PublicKey."""

    @cached_property
    def key_id(self) -> str:
        """Hex sha256 of the serialized public key: the key's id on the server."""
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True, repr=False)
class EvalMultKeyBlob(_Blob):
    """Serialized relinearization keys (SerializeEvalMultKeyString)."""


@dataclass(frozen=True, repr=False)
class RotationKeysBlob(_Blob):
    """Serialized rotation (automorphism) keys (SerializeEvalAutomorphismKeyString)."""


@dataclass(frozen=True, repr=False)
class CiphertextBlob(_Blob):
    """A serialized CKKS Ciphertext."""


@dataclass(frozen=True, repr=False)
class SecretKeyBlob:
    """A serialized PrivateKey. No base64 export: saving it is an explicit, named call."""

    data: bytes

    def __repr__(self) -> str:
        return "SecretKeyBlob(<hidden>)"


@dataclass(frozen=True)
class PublicBundle:
    """What a key owner uploads: context, public key and evaluation keys (no secret)."""

    context: CryptoContextBlob
    public_key: PublicKeyBlob
    eval_mult_key: EvalMultKeyBlob
    rotation_keys: RotationKeysBlob | None = None

    @property
    def key_id(self) -> str:
        return self.public_key.key_id

    def blobs(self) -> dict[str, bytes]:
        """Serialized bytes by field name; `rotation_keys` only when present."""
        blobs = {
            "context": self.context.data,
            "public_key": self.public_key.data,
            "eval_mult_key": self.eval_mult_key.data,
        }
        if self.rotation_keys is not None:
            blobs["rotation_keys"] = self.rotation_keys.data
        return blobs

    def to_json(self) -> dict[str, str]:
        """The `POST /api/fhe/keys` body fields (base64), without `label`."""
        return {name: b64.encode(data) for name, data in self.blobs().items()}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> PublicBundle:
        """Decode the base64 fields; typed error on a missing or non-string field."""

        def blob(name: str) -> str:
            value = body.get(name)
            if not isinstance(value, str) or not value:
                raise MalformedKeyBundle(f"{name}: required base64 string")
            return value

        rotation = body.get("rotation_keys")
        if rotation is not None and not isinstance(rotation, str):
            raise MalformedKeyBundle("rotation_keys: must be a base64 string")
        return cls(
            context=CryptoContextBlob.from_b64(blob("context"), field_name="context"),
            public_key=PublicKeyBlob.from_b64(blob("public_key"), field_name="public_key"),
            eval_mult_key=EvalMultKeyBlob.from_b64(
                blob("eval_mult_key"), field_name="eval_mult_key"
            ),
            rotation_keys=(
                RotationKeysBlob.from_b64(rotation, field_name="rotation_keys")
                if rotation
                else None
            ),
        )


@dataclass(frozen=True)
class EncryptionKey:
    """What a contributor needs to encrypt for someone's key: its context and public key
    (`GET /api/fhe/keys/{key_id}/public`). No evaluation keys, no secret."""

    context: CryptoContextBlob
    public_key: PublicKeyBlob

    @property
    def key_id(self) -> str:
        return self.public_key.key_id

    @classmethod
    def from_json(cls, body: Mapping[str, Any], key_id: str | None = None) -> EncryptionKey:
        """Decode the `/public` answer; MalformedKeyBundle when a field is missing, not
        base64, or (given `key_id`) the public key is not the one asked for (the key_id is
        the public key's sha256, so a swapped key cannot pass)."""
        fields = {}
        for name in ("context", "public_key"):
            value = body.get(name)
            if not isinstance(value, str) or not value:
                raise MalformedKeyBundle(f"{name}: required base64 string")
            fields[name] = value
        key = cls(CryptoContextBlob.from_b64(fields["context"], field_name="context"),
                  PublicKeyBlob.from_b64(fields["public_key"], field_name="public_key"))
        if key_id is not None and key.key_id != key_id:
            raise MalformedKeyBundle("public_key: its sha256 is not the key_id asked for")
        return key


@dataclass(frozen=True)
class KeyMeta:
    """What the server knows about a registered key; JSON-able for the store.

    `moduli`, `slots`, `scaling_factor`, `noise_scale_degree` and `level` describe a fresh
    ciphertext under this key: every contribution must match them.
    """

    key_id: str
    key_tag: str
    ring_dim: int
    slots: int
    depth: int
    moduli: tuple[int, ...]
    scaling_technique: str
    scaling_factor: float
    noise_scale_degree: int
    level: int
    rotation_steps: tuple[int, ...] = field(default=())
    scheme: str = "CKKS"
    #: Proven at registration: the limb sum is byte-identical to OpenFHE's EvalAdd here.
    limb_add: bool = True
    #: The limb ct x pt (+ OpenFHE Rescale) path applies (FIXEDMANUAL, fresh degree 1).
    limb_mult: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "key_tag": self.key_tag,
            "scheme": self.scheme,
            "ring_dim": self.ring_dim,
            "slots": self.slots,
            "depth": self.depth,
            "moduli": list(self.moduli),
            "scaling_technique": self.scaling_technique,
            "scaling_factor": self.scaling_factor,
            "noise_scale_degree": self.noise_scale_degree,
            "level": self.level,
            "rotation_steps": list(self.rotation_steps),
            "limb_add": self.limb_add,
            "limb_mult": self.limb_mult,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> KeyMeta:
        return cls(
            key_id=str(d["key_id"]),
            key_tag=str(d["key_tag"]),
            scheme=str(d.get("scheme", "CKKS")),
            ring_dim=int(d["ring_dim"]),
            slots=int(d["slots"]),
            depth=int(d["depth"]),
            moduli=tuple(int(q) for q in d["moduli"]),
            scaling_technique=str(d["scaling_technique"]),
            scaling_factor=float(d["scaling_factor"]),
            noise_scale_degree=int(d["noise_scale_degree"]),
            level=int(d["level"]),
            rotation_steps=tuple(int(s) for s in d.get("rotation_steps", ())),
            limb_add=bool(d.get("limb_add", True)),
            limb_mult=bool(d.get("limb_mult", d["scaling_technique"] == "FIXEDMANUAL")),
        )

    def public_info(self) -> dict[str, Any]:
        """The fields `GET /api/fhe/keys/{key_id}` shows (besides owner and created_at)."""
        return {
            "key_id": self.key_id,
            "scheme": self.scheme,
            "ring_dim": self.ring_dim,
            "slots": self.slots,
            "depth": self.depth,
        }
