"""Linear models are checked when they are configured: finite, and no more weights than
the key has slots."""

from __future__ import annotations

import math

import pytest

from fhe.models import MOOD_RISK_V1, LinearModel


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_weights_or_bias_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        LinearModel.from_dict({"name": "m", "weights": [0.1, bad]})
    with pytest.raises(ValueError, match="finite"):
        LinearModel.from_dict({"name": "m", "weights": [0.1], "bias": bad})


def test_weights_must_fit_the_slots() -> None:
    MOOD_RISK_V1.check_fits(8)
    with pytest.raises(ValueError, match="8 weights but the key has 4 slots"):
        MOOD_RISK_V1.check_fits(4)


def test_non_numbers_refused_without_echoing_them() -> None:
    with pytest.raises(ValueError, match=r"^weights and bias must be numbers$"):
        LinearModel.from_dict({"name": "m", "weights": ["lots"]})
