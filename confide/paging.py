"""Pages of frames under a byte budget (issue 9: memory bounded in bytes, not items).

A page holds at least one frame (a client must always make progress), then as many more
as fit in the budget, counted as the frames' encoded JSON.
"""

from __future__ import annotations

from typing import Any

from confide import strictjson


def encoded_size(frame: dict[str, Any]) -> int:
    return len(strictjson.dumps(frame))


def oldest_within(frames: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """The longest prefix of `frames` (oldest first) within `budget` bytes, at least one."""
    total = 0
    for i, frame in enumerate(frames):
        total += encoded_size(frame)
        if total > budget and i > 0:
            return frames[:i]
    return frames


def newest_within(frames: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """The longest suffix of `frames` (oldest first) within `budget` bytes, at least one."""
    total = 0
    for i in range(len(frames) - 1, -1, -1):
        total += encoded_size(frames[i])
        if total > budget and i < len(frames) - 1:
            return frames[i + 1:]
    return frames
