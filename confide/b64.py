"""Strict standard base64 (RFC 4648 §4, padded), for megabyte ciphertexts.

pybase64 (SIMD) decodes a 1 MB ciphertext in about 0.05 ms where the standard library's
validating decoder takes 2.4 ms (a regular expression, then the decoding): py-spy showed
that decoding cost a gateway replica a fifth of its time per contribution.
"""

from __future__ import annotations

import pybase64

from confide.errors import InvalidMessage


def decode(text: str | bytes) -> bytes:
    """The bytes of padded standard base64; ValueError for anything else (the error
    never quotes the input)."""
    try:
        return pybase64.b64decode(text, validate=True)
    except (ValueError, TypeError):  # binascii.Error is a ValueError
        raise ValueError("not valid base64") from None


def encode(data: bytes) -> str:
    """Padded standard base64 of `data`."""
    return pybase64.b64encode_as_string(data)


def decode_ciphertext(text: str, frame_id: str | int | None = None) -> bytes:
    """A frame's base64 ciphertext field; `invalid_message` (with the frame's id) when it
    is not base64."""
    try:
        return decode(text)
    except ValueError:
        raise InvalidMessage("ciphertext is not valid base64", frame_id=frame_id) from None
