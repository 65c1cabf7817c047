"""Any OpenFHE CKKS client: every scaling technique, OpenFHE's example parameters and its
defaults; limb sums byte-identical to OpenFHE where the limb path is used, and sums,
means and scores that decrypt right whichever path serves the key."""

from __future__ import annotations

from typing import Any

import numpy as np
import openfhe
import pytest

from fhe import client, evaluator, native, ops
from fhe.bundle import validate_bundle
from fhe.client import KeySet, decrypt, encrypt
from fhe.errors import MalformedKeyBundle
from fhe.keys import KeyMeta
from fhe.security import NOT_SET

TECHNIQUES = ["FIXEDMANUAL", "FIXEDAUTO", "FLEXIBLEAUTO", "FLEXIBLEAUTOEXT"]


def openfhe_context(technique: str | None, *, depth: int = 1, scale: int = 50, batch: int = 8,
                    ring_dim: int | None = 1 << 12, secure: bool = False) -> Any:
    """Built as OpenFHE's examples do (simple-real-numbers: depth 1, scale 50, batch 8);
    small ring and HEStd_NotSet unless `secure`."""
    p = openfhe.CCParamsCKKSRNS()
    p.SetMultiplicativeDepth(depth)
    p.SetScalingModSize(scale)
    p.SetBatchSize(batch)
    if technique is not None:
        p.SetScalingTechnique(getattr(openfhe, technique))
    if not secure:
        p.SetSecurityLevel(openfhe.HEStd_NotSet)
        if ring_dim:
            p.SetRingDim(ring_dim)
    cc = openfhe.GenCryptoContext(p)
    for feature in (openfhe.PKE, openfhe.KEYSWITCH, openfhe.LEVELEDSHE):
        cc.Enable(feature)
    return cc


@pytest.fixture(scope="module", params=TECHNIQUES)
def tech_keys(request: pytest.FixtureRequest) -> tuple[str, KeySet, KeyMeta]:
    keys = client.keys_from_context(openfhe_context(request.param), (1, 2, 4))
    return request.param, keys, validate_bundle(keys.bundle, min_security=NOT_SET)


def server_sum(cts: list[bytes], keys: KeySet, meta: KeyMeta) -> bytes:
    """What a worker does: the limb path where proven, else OpenFHE's EvalAdd."""
    if meta.limb_add:
        return ops.aggregate(cts, template=native.output_template(keys.bundle))
    return evaluator.add(cts, keys.bundle, meta)


def test_technique_accepted_and_recorded(tech_keys: tuple[str, KeySet, KeyMeta]) -> None:
    technique, _, meta = tech_keys
    assert meta.scaling_technique == technique
    assert meta.limb_mult == (technique == "FIXEDMANUAL")
    # FLEXIBLEAUTOEXT encrypts at noise scale degree 2 (its extra modulus); others at 1.
    assert meta.noise_scale_degree == (2 if technique == "FLEXIBLEAUTOEXT" else 1)


def test_limb_sum_byte_identical_to_openfhe(tech_keys: tuple[str, KeySet, KeyMeta]) -> None:
    technique, keys, meta = tech_keys
    assert meta.limb_add, f"the limb sum should be proven under {technique}"
    cc = native.context(keys.bundle.context)
    pk = native.public_key(keys.bundle.public_key)
    cts = [cc.Encrypt(pk, cc.MakeCKKSPackedPlaintext([float(i), -0.5 * i])) for i in range(5)]
    expected = cts[0]
    for ct in cts[1:]:
        expected = cc.EvalAdd(expected, ct)
    got = ops.aggregate([native.serialize(c) for c in cts],
                        template=native.output_template(keys.bundle))
    assert got == native.serialize(expected)


def test_aggregate_and_mean_decrypt_right(tech_keys: tuple[str, KeySet, KeyMeta],
                                          rng: np.random.Generator) -> None:
    _, keys, meta = tech_keys
    vectors = rng.uniform(-10, 10, size=(12, 8))
    cts = [encrypt(keys, list(v)).data for v in vectors]
    total = server_sum(cts, keys, meta)
    assert np.max(np.abs(decrypt(keys, total, 8) - vectors.sum(axis=0))) < 1e-5
    mean = evaluator.mean(total, len(cts), keys.bundle, meta)
    assert np.max(np.abs(decrypt(keys, mean, 8) - vectors.mean(axis=0))) < 1e-5


def test_openfhe_add_path_decrypts_right(tech_keys: tuple[str, KeySet, KeyMeta],
                                         rng: np.random.Generator) -> None:
    """The fallback for keys the limb path cannot prove: OpenFHE's EvalAdd itself."""
    _, keys, meta = tech_keys
    vectors = rng.uniform(-3, 3, size=(4, 8))
    total = evaluator.add([encrypt(keys, list(v)).data for v in vectors], keys.bundle, meta)
    assert np.max(np.abs(decrypt(keys, total, 8) - vectors.sum(axis=0))) < 1e-6
    again = ops.aggregate([encrypt(keys, list(v)).data for v in vectors],
                          template=native.output_template(keys.bundle))
    assert np.max(np.abs(decrypt(keys, again, 8) - decrypt(keys, total, 8))) < 1e-6


def test_score_decrypts_right(tech_keys: tuple[str, KeySet, KeyMeta],
                              rng: np.random.Generator) -> None:
    _, keys, meta = tech_keys
    x, w = rng.uniform(-1, 1, 8), rng.uniform(-1, 1, 8)
    ct = encrypt(keys, list(x)).data
    got = decrypt(keys, evaluator.score(ct, list(w), 0.75, keys.bundle, meta), 1)
    assert abs(got[0] - (x @ w + 0.75)) < 1e-4


def test_openfhe_default_parameters_end_to_end(rng: np.random.Generator) -> None:
    """OpenFHE's defaults (FLEXIBLEAUTOEXT, 128-bit, ring chosen by OpenFHE) pass the
    default security check and sum and average right."""
    keys = client.keys_from_context(openfhe_context(None, secure=True))
    meta = validate_bundle(keys.bundle)
    assert (meta.scaling_technique, meta.ring_dim) == ("FLEXIBLEAUTOEXT", 1 << 14)
    vectors = rng.uniform(-1, 1, size=(3, 8))
    total = server_sum([encrypt(keys, list(v)).data for v in vectors], keys, meta)
    assert np.max(np.abs(decrypt(keys, total, 8) - vectors.sum(axis=0))) < 1e-6
    mean = evaluator.mean(total, 3, keys.bundle, meta)
    assert np.max(np.abs(decrypt(keys, mean, 8) - vectors.mean(axis=0))) < 1e-6


def test_advanced_example_parameters_accepted() -> None:
    """OpenFHE's advanced-real-numbers example: depth 5, scale 50, batch 8, each technique."""
    for technique in ("FIXEDAUTO", "FLEXIBLEAUTO"):
        keys = client.keys_from_context(openfhe_context(technique, depth=5, ring_dim=1 << 13))
        meta = validate_bundle(keys.bundle, min_security=NOT_SET)
        assert (meta.depth, meta.scaling_technique) == (5, technique)


def test_small_ring_refused_naming_the_parameter(keys: KeySet) -> None:
    """The `test` preset (N = 4096, about 130-bit modulus) is below 128 bits: refused by
    default with the parameter and the reason; accepted when the level is NotSet."""
    with pytest.raises(MalformedKeyBundle, match=r"ring dimension 4096 is below the 128-bit "
                       r"security level for its 13[01]-bit ciphertext modulus \(needs ring "
                       r"dimension 8192"):
        validate_bundle(keys.bundle)
    validate_bundle(keys.bundle, min_security=NOT_SET)
