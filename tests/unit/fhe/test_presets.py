"""Presets: stated security levels, and OpenFHE accepts the secure ones as such."""

from __future__ import annotations

import pytest

from fhe import native
from fhe.presets import PRESETS, get_preset


def test_presets_state_their_security() -> None:
    assert get_preset("aggregation").security == "HEStd_128_classic"
    assert get_preset("scoring").security == "HEStd_128_classic"
    assert get_preset("test").security == "HEStd_NotSet"
    assert get_preset("aggregation").ring_dim == 1 << 14
    assert get_preset("scoring").ring_dim == 1 << 15
    assert get_preset("scoring").rotation_steps == (1, 2, 4, 8, 16, 32, 64, 128)
    with pytest.raises(KeyError, match="known"):
        get_preset("nope")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_openfhe_builds_each_preset(name: str) -> None:
    preset = get_preset(name)
    cc = native.new_context(preset)
    assert cc.GetRingDimension() == preset.ring_dim
    assert cc.GetBatchSize() == preset.slots
