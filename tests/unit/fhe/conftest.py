"""Fixtures for the FHE unit tests: small-ring keys (preset `test`), every kernel backend.

OpenFHE reads OMP_NUM_THREADS once, when it is first imported: set it first.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from fhe import bundle, client, native
from fhe.kernels import Kernels, available_backends, get_backend
from fhe.keys import KeyMeta
from fhe.presets import Preset, get_preset

TEST = get_preset("test")


_NO_GPU = "cupy backend: no CUDA device here (needs CuPy and a GPU; benchmarks/gpu_check.sh)"


@pytest.fixture(params=[
    "numpy",
    pytest.param("cupy", marks=pytest.mark.skipif("cupy" not in available_backends(),
                                                  reason=_NO_GPU)),
])
def backend(request: pytest.FixtureRequest) -> Kernels:
    """Every kernel backend: numpy always; cupy runs with a GPU and shows as skipped,
    with the reason, without one."""
    return get_backend(request.param)


@pytest.fixture(scope="session")
def keys() -> client.KeySet:
    return client.generate_keys(TEST)


@pytest.fixture(scope="session")
def meta(keys: client.KeySet) -> KeyMeta:
    return bundle.validate_bundle(keys.bundle, min_security="HEStd_NotSet")


@pytest.fixture(scope="session")
def other_keys() -> client.KeySet:
    """A second key pair with the same parameters: its key tag differs."""
    return client.generate_keys(TEST)


@pytest.fixture(scope="session")
def wider_ring_keys() -> client.KeySet:
    return client.generate_keys(replace(TEST, name="test-8192", ring_dim=1 << 13))


@pytest.fixture(scope="session")
def other_moduli_keys() -> client.KeySet:
    return client.generate_keys(replace(TEST, name="test-41", scaling_mod_size=41))


@pytest.fixture(scope="session")
def live() -> dict[str, Any]:
    """A context and key pair kept as OpenFHE objects (never serialized in between)."""
    preset: Preset = TEST
    cc = native.new_context(preset)
    pair = cc.KeyGen()
    return {"cc": cc, "pair": pair}


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


@pytest.fixture()
def encrypt(keys: client.KeySet) -> Callable[[Any], bytes]:
    """Encrypt a vector under `keys` and return the serialized ciphertext."""

    def run(values: Any) -> bytes:
        return client.encrypt(keys, [float(v) for v in values]).data

    return run
