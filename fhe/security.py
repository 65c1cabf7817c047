"""Which CKKS parameters the server accepts: the HE standard's security table (no OpenFHE).

The table is the HomomorphicEncryption.org standard's largest log2 of the ciphertext
modulus for each ring dimension at each classical security level, ternary secrets (the
values OpenFHE checks when it builds a context). The server sees a context's ciphertext
modulus Q (its fresh ciphertexts' towers) but not the key-switching modulus P, so this is
a necessary check: a ring too small for Q alone is refused; P is the client's part.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fhe.errors import MalformedKeyBundle

#: Security level name (OpenFHE's) -> {ring dimension: largest log2 Q}.
MAX_LOG_Q: dict[str, dict[int, int]] = {
    "HEStd_128_classic": {
        1 << 10: 27, 1 << 11: 54, 1 << 12: 109, 1 << 13: 218, 1 << 14: 438,
        1 << 15: 881, 1 << 16: 1747, 1 << 17: 3523,
    },
    "HEStd_192_classic": {
        1 << 10: 19, 1 << 11: 37, 1 << 12: 75, 1 << 13: 152, 1 << 14: 305,
        1 << 15: 611, 1 << 16: 1224, 1 << 17: 2454,
    },
    "HEStd_256_classic": {
        1 << 10: 14, 1 << 11: 29, 1 << 12: 58, 1 << 13: 118, 1 << 14: 237,
        1 << 15: 476, 1 << 16: 956, 1 << 17: 1910,
    },
}
#: Accept any ring: tests and benchmarks only.
NOT_SET = "HEStd_NotSet"
LEVELS = (*MAX_LOG_Q, NOT_SET)


def bits(level: str) -> str:
    return level.removeprefix("HEStd_").replace("_classic", "-bit")


def check_security(ring_dim: int, moduli: Sequence[int], level: str) -> None:
    """Refuse a ring dimension too small for the modulus at `level` (MalformedKeyBundle
    naming the ring dimension, the modulus size and the smallest ring that would do)."""
    if level == NOT_SET:
        return
    table = MAX_LOG_Q[level]
    log_q = round(sum(math.log2(q) for q in moduli))
    if log_q <= table.get(ring_dim, -1):
        return
    needed = next((n for n in sorted(table) if table[n] >= log_q), None)
    hint = f" (needs ring dimension {needed} or more)" if needed else ""
    raise MalformedKeyBundle(
        f"context: ring dimension {ring_dim} is below the {bits(level)} security level for "
        f"its {log_q}-bit ciphertext modulus{hint}"
    )
