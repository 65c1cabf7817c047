"""Linear models evaluated on encrypted features (chat insights): score = w·x + b.

`mood-risk-v1` is a small, documented screening aid, not a diagnosis: eight features a
client app derives on the device from a PHQ/GAD-style check-in, each scaled to [0, 1]
(0 = not at all, 1 = nearly every day). The score is a weighted sum in [-0.5, 0.7];
higher means the therapist may want to follow up sooner. The weights encode that
thoughts of self-harm and hopelessness matter most. The server never sees the features
nor the score: it computes the score under the therapist's key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LinearModel:
    name: str
    features: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float

    def __post_init__(self) -> None:
        if len(self.features) != len(self.weights) or not self.weights:
            raise ValueError("a model needs one weight per feature")
        if not all(math.isfinite(w) for w in (*self.weights, self.bias)):
            raise ValueError("weights and bias must be finite numbers")

    def check_fits(self, slots: int) -> None:
        """ValueError when the model has more weights than the key has slots."""
        if len(self.weights) > slots:
            raise ValueError(f"{len(self.weights)} weights but the key has {slots} slots")

    def vector(self, values: Mapping[str, float]) -> list[float]:
        """A client's feature values in the model's order (missing ones are 0)."""
        return [float(values.get(f, 0.0)) for f in self.features]

    def plain_score(self, values: Mapping[str, float]) -> float:
        return sum(w * x for w, x in zip(self.weights, self.vector(values), strict=True)) + (
            self.bias
        )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "features": list(self.features),
                "weights": list(self.weights), "bias": self.bias}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LinearModel:
        try:
            weights = tuple(float(w) for w in d["weights"])
            bias = float(d.get("bias", 0.0))
        except (TypeError, ValueError):
            raise ValueError("weights and bias must be numbers") from None
        features = tuple(str(f) for f in d.get("features", [f"x{i}" for i in
                                                            range(len(weights))]))
        return cls(str(d["name"]), features, weights, bias)


MOOD_RISK_V1 = LinearModel(
    name="mood-risk-v1",
    features=(
        "low_mood",
        "anhedonia",
        "sleep_problems",
        "fatigue",
        "anxiety",
        "worry",
        "hopelessness",
        "self_harm_thoughts",
    ),
    weights=(0.12, 0.10, 0.06, 0.05, 0.08, 0.07, 0.22, 0.50),
    bias=-0.5,
)

MODELS: dict[str, LinearModel] = {MOOD_RISK_V1.name: MOOD_RISK_V1}
