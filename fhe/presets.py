"""CKKS parameter presets: named, fixed parameter sets with their security level.

Plain data (no OpenFHE import) so the server and docs can list them anywhere.
All presets use FIXEDMANUAL scaling: a fresh ciphertext has scale 2^scaling_mod_size
and noise scale degree 1, which the limb kernels (ct x pt) rely on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """One CKKS parameter set."""

    name: str
    ring_dim: int
    depth: int
    scaling_mod_size: int
    first_mod_size: int
    slots: int
    security: str
    rotation_steps: tuple[int, ...]
    num_large_digits: int
    purpose: str
    #: OpenFHE's ScalingTechnique name; the server accepts FIXEDMANUAL, FIXEDAUTO,
    #: FLEXIBLEAUTO and FLEXIBLEAUTOEXT (fhe.bundle).
    scaling_technique: str = "FIXEDMANUAL"


def _powers_of_two_below(n: int) -> tuple[int, ...]:
    return tuple(1 << i for i in range(n.bit_length() - 1))


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="aggregation",
            ring_dim=1 << 14,
            depth=2,
            scaling_mod_size=50,
            first_mod_size=60,
            slots=1 << 13,
            security="HEStd_128_classic",
            rotation_steps=(),
            num_large_digits=1,
            purpose="slot-wise sums and means of contributions (no rotations)",
        ),
        Preset(
            name="scoring",
            ring_dim=1 << 15,
            depth=2,
            scaling_mod_size=50,
            first_mod_size=60,
            slots=256,
            security="HEStd_128_classic",
            rotation_steps=_powers_of_two_below(256),
            num_large_digits=1,
            purpose="linear scores w.x + b over up to 256 features (rotation keys for the sum)",
        ),
        Preset(
            name="test",
            ring_dim=1 << 12,
            depth=2,
            scaling_mod_size=40,
            first_mod_size=50,
            slots=64,
            security="HEStd_NotSet",
            rotation_steps=_powers_of_two_below(64),
            num_large_digits=1,
            purpose="unit tests only: NOT secure (ring too small for any security level)",
        ),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called `name`; KeyError names the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown FHE preset {name!r}; known: {sorted(PRESETS)}") from None
