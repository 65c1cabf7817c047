"""Client helpers: encrypt/decrypt round trip, saving keys without the secret."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest

from fhe import client
from fhe.client import KeySet


def test_encrypt_decrypt_round_trip(keys: KeySet, rng: np.random.Generator) -> None:
    x = rng.uniform(-100, 100, 64)
    assert np.max(np.abs(client.decrypt(keys, client.encrypt(keys, list(x)), 64) - x)) < 1e-6
    assert client.decrypt(keys, client.encrypt(keys.bundle, [1.0])).shape == (64,)


def test_encrypt_refuses_too_many_values(keys: KeySet) -> None:
    with pytest.raises(ValueError):
        client.encrypt(keys, [0.0] * 65)


def test_save_keys_never_writes_the_secret(keys: KeySet, tmp_path: Path) -> None:
    client.save_keys(keys, tmp_path)
    assert not (tmp_path / "secret_key.bin").exists()
    loaded = client.load_keys(tmp_path)
    assert loaded.bundle == keys.bundle
    assert loaded.secret_key is None
    with pytest.raises(ValueError):
        client.decrypt(loaded, client.encrypt(loaded, [1.0]))


def test_save_secret_key_is_explicit_and_private(
    keys: KeySet, tmp_path: Path, rng: np.random.Generator
) -> None:
    target = client.save_secret_key(keys, tmp_path)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    loaded = client.load_keys(tmp_path)
    assert loaded.secret_key == keys.secret_key
    x = rng.uniform(-1, 1, 8)
    assert np.max(np.abs(client.decrypt(loaded, client.encrypt(loaded, list(x)), 8) - x)) < 1e-6


def test_load_keys_detects_mixed_files(keys: KeySet, other_keys: KeySet, tmp_path: Path) -> None:
    client.save_keys(keys, tmp_path)
    (tmp_path / "public_key.bin").write_bytes(other_keys.bundle.public_key.data)
    with pytest.raises(ValueError):
        client.load_keys(tmp_path)
