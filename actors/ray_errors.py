"""Errors across Ray boundaries."""

from __future__ import annotations


def unwrap(exc: BaseException) -> BaseException:
    """The original exception inside a Ray task error (or the exception itself)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc
