"""Where an entity lives: a stable hash of its id over the fixed set of host actors."""

from __future__ import annotations

import hashlib


def host_index(entity_id: str, hosts: int) -> int:
    """Stable across processes and restarts (unlike `hash()`)."""
    digest = hashlib.blake2b(entity_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % hosts


def host_name(index: int) -> str:
    return f"confide-host-{index}"
