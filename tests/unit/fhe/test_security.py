"""The security table check (no OpenFHE)."""

from __future__ import annotations

import pytest

from fhe.errors import MalformedKeyBundle
from fhe.security import NOT_SET, check_security

Q50 = (1 << 50) + 1  # size only matters here


def test_within_the_table_passes() -> None:
    check_security(1 << 14, [Q50] * 8, "HEStd_128_classic")  # 400 bits <= 438


def test_past_the_table_names_ring_modulus_and_needed_ring() -> None:
    with pytest.raises(MalformedKeyBundle, match=r"ring dimension 16384 is below the 192-bit "
                       r"security level for its 350-bit ciphertext modulus \(needs ring "
                       r"dimension 32768 or more\)"):
        check_security(1 << 14, [Q50] * 7, "HEStd_192_classic")


def test_beyond_every_ring_has_no_hint() -> None:
    with pytest.raises(MalformedKeyBundle) as info:
        check_security(1 << 10, [Q50] * 80, "HEStd_256_classic")
    assert "needs" not in str(info.value)


def test_not_set_accepts_anything() -> None:
    check_security(1 << 10, [Q50] * 80, NOT_SET)
