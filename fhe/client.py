"""Client-side key handling (uses OpenFHE): generate keys, encrypt, decrypt, save, load.

The secret key stays with its owner: `save_keys` never writes it, `save_secret_key`
is the one explicit call that does (file mode 0600), and `public_bundle` holds none.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import openfhe

from fhe import native
from fhe.keys import (
    CiphertextBlob,
    CryptoContextBlob,
    EncryptionKey,
    EvalMultKeyBlob,
    PublicBundle,
    PublicKeyBlob,
    RotationKeysBlob,
    SecretKeyBlob,
)
from fhe.presets import Preset, get_preset

_FILES = {
    "context": "context.bin",
    "public_key": "public_key.bin",
    "eval_mult_key": "eval_mult_key.bin",
    "rotation_keys": "rotation_keys.bin",
}
_SECRET_FILE = "secret_key.bin"
_META_FILE = "keyset.json"


@dataclass(frozen=True)
class KeySet:
    """A key owner's keys as serialized blobs; `secret_key` is None for a public copy."""

    preset: str
    bundle: PublicBundle
    secret_key: SecretKeyBlob | None = field(default=None, repr=False)

    @property
    def key_id(self) -> str:
        return self.bundle.key_id

    def require_secret(self) -> SecretKeyBlob:
        if self.secret_key is None:
            raise ValueError("this key set has no secret key")
        return self.secret_key


def generate_keys(preset: str | Preset = "aggregation") -> KeySet:
    """A new key pair with relinearization keys and the preset's rotation keys."""
    p = get_preset(preset) if isinstance(preset, str) else preset
    return keys_from_context(native.new_context(p), p.rotation_steps, name=p.name)


def keys_from_context(
    cc: object, rotation_steps: Sequence[int] = (), *, name: str = "custom",
    pair: object = None,
) -> KeySet:
    """A new key pair for any OpenFHE CKKS context the caller built (any parameters,
    any scaling technique; PKE, KEYSWITCH and LEVELEDSHE enabled), with relinearization
    keys and rotation keys for `rotation_steps`."""
    from typing import Any, cast

    ctx = cast(Any, cc)
    kp = cast(Any, pair) if pair is not None else ctx.KeyGen()  # or the caller's live pair
    tag = kp.secretKey.GetKeyTag()
    ctx.EvalMultKeyGen(kp.secretKey)
    rotation = None
    if rotation_steps:
        ctx.EvalAtIndexKeyGen(kp.secretKey, list(rotation_steps))
        rotation = RotationKeysBlob(openfhe.SerializeEvalAutomorphismKeyString(native.BINARY, tag))
    bundle = PublicBundle(
        context=CryptoContextBlob(native.serialize(ctx)),
        public_key=PublicKeyBlob(native.serialize(kp.publicKey)),
        eval_mult_key=EvalMultKeyBlob(openfhe.SerializeEvalMultKeyString(native.BINARY, tag)),
        rotation_keys=rotation,
    )
    return KeySet(name, bundle, SecretKeyBlob(native.serialize(kp.secretKey)))


def encrypt(
    keys: KeySet | PublicBundle | EncryptionKey, values: Sequence[float]
) -> CiphertextBlob:
    """Encrypt real values (at most the context's slot count) under the public key."""
    bundle = keys.bundle if isinstance(keys, KeySet) else keys
    cc = native.context(bundle.context)
    slots = int(cc.GetBatchSize())
    if not 1 <= len(values) <= slots:
        raise ValueError(f"encrypt takes 1..{slots} values")
    pt = cc.MakeCKKSPackedPlaintext([float(v) for v in values])
    ct = cc.Encrypt(native.public_key(bundle.public_key), pt)
    return CiphertextBlob(native.serialize(ct))


def decrypt(
    keys: KeySet, ciphertext: CiphertextBlob | bytes, length: int | None = None
) -> npt.NDArray[np.float64]:
    """Decrypt to float64 values: the first `length` slots (default: all slots)."""
    data = ciphertext.data if isinstance(ciphertext, CiphertextBlob) else ciphertext
    cc = native.context(keys.bundle.context)
    ct = native.ciphertext(data)
    pt = cc.Decrypt(native.secret_key(keys.require_secret()), ct)
    pt.SetLength(length if length is not None else int(ct.GetSlots()))
    return np.array(pt.GetRealPackedValue(), dtype=np.float64)


def save_keys(keys: KeySet, directory: str | os.PathLike[str]) -> Path:
    """Write the public parts of `keys` into `directory`; never the secret key."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    blobs = keys.bundle.blobs()
    for name, filename in _FILES.items():
        target = path / filename
        if name in blobs:
            target.write_bytes(blobs[name])
        elif target.exists():
            target.unlink()
    meta = {"preset": keys.preset, "key_id": keys.key_id}
    (path / _META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def save_secret_key(keys: KeySet, directory: str | os.PathLike[str]) -> Path:
    """Write the secret key (owner read/write only) next to the public parts."""
    secret = keys.require_secret()
    target = Path(save_keys(keys, directory)) / _SECRET_FILE
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret.data)
    os.chmod(target, 0o600)
    return target


def load_keys(directory: str | os.PathLike[str]) -> KeySet:
    """Read a key set written by save_keys (and save_secret_key, when it was called)."""
    path = Path(directory)
    meta = json.loads((path / _META_FILE).read_text())
    rotation = path / _FILES["rotation_keys"]
    secret = path / _SECRET_FILE
    bundle = PublicBundle(
        context=CryptoContextBlob((path / _FILES["context"]).read_bytes()),
        public_key=PublicKeyBlob((path / _FILES["public_key"]).read_bytes()),
        eval_mult_key=EvalMultKeyBlob((path / _FILES["eval_mult_key"]).read_bytes()),
        rotation_keys=RotationKeysBlob(rotation.read_bytes()) if rotation.exists() else None,
    )
    if bundle.key_id != meta.get("key_id"):
        raise ValueError("key files do not match their keyset.json")
    return KeySet(
        str(meta["preset"]),
        bundle,
        SecretKeyBlob(secret.read_bytes()) if secret.exists() else None,
    )
