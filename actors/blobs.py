"""Large payloads (contributions' ciphertexts) passed by reference through Ray's object
store: the gateway replica that decoded one puts it once, the host queues only the
reference and its size, and the FHE worker that sums it fetches it. No copy of the bytes
goes through the host actor, whose one thread every contribution of a stream shares.

A reference nested in a dataclass is not resolved by Ray on the way (a top-level
argument would be), and stays valid while anyone holds it. Its owner is the gateway
replica that made it, so it is lost only with that replica, and with it the connection
that was waiting for the contribution's ack.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("confide.fhe")


@dataclass(frozen=True)
class Blob:
    #: ray.ObjectRef of the bytes.
    ref: Any
    size: int

    @classmethod
    def put(cls, data: bytes) -> Blob:
        import ray

        return cls(ray.put(data), len(data))


async def fetch(items: tuple[bytes | Blob, ...]) -> list[bytes | None]:
    """The bytes of each item (blobs fetched concurrently); None where a blob was lost."""
    blobs = [item.ref for item in items if isinstance(item, Blob)]
    got = iter(await asyncio.gather(*blobs, return_exceptions=True))
    out: list[bytes | None] = []
    for item in items:
        if isinstance(item, Blob):
            value = next(got)
            if not isinstance(value, bytes):  # its owner (a gateway replica) is gone
                log.warning("a contribution could not be fetched: %s", type(value).__name__)
                value = None
            out.append(value)
        else:
            out.append(item)
    return out
