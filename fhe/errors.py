"""Typed errors of the FHE library.

Every error here is the client's fault and maps to protocol error `invalid_message`
(HTTP 400). Messages name fields and sizes only, never key or ciphertext bytes.
"""

from __future__ import annotations


class FheError(Exception):
    """Base class: a blob or ciphertext the library refuses."""

    code: str = "invalid_message"
    http_status: int = 400


class MalformedCiphertext(FheError):
    """Not a well-formed OpenFHE BINARY CKKS ciphertext (truncated, corrupt, unsupported)."""


class IncompatibleCiphertext(FheError):
    """A well-formed ciphertext that does not fit the key's context (ring, moduli, level)."""


class ForeignCiphertext(IncompatibleCiphertext):
    """A ciphertext encrypted under another key: its key tag differs."""


class MalformedKeyBundle(FheError):
    """An uploaded key blob that is not the serialization its field names."""


class SecretKeyRefused(MalformedKeyBundle):
    """An uploaded blob holds a secret key; it is refused and never stored."""


class UnsupportedKey(FheError):
    """The registered key lacks what the operation needs (rotation keys, a spare level)."""
