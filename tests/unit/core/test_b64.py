"""confide.b64: the same bytes as the standard library's validating decoder for every
input it takes, and refusals for everything outside padded standard base64."""

from __future__ import annotations

import base64
import binascii

import pytest
from hypothesis import given
from hypothesis import strategies as st

from confide import b64

_CHARS = st.sampled_from(list("ABCXYZabcxyz0189+/=-_ \n\té"))


@given(st.binary(max_size=200))
def test_round_trip(data: bytes) -> None:
    assert b64.encode(data) == base64.b64encode(data).decode()
    assert b64.decode(b64.encode(data)) == data
    assert b64.decode(base64.b64encode(data)) == data


@given(st.text(_CHARS, max_size=24))
def test_takes_only_what_the_standard_validating_decoder_takes(text: str) -> None:
    try:
        expected: bytes | None = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        expected = None
    try:
        got: bytes | None = b64.decode(text)
    except ValueError:
        got = None
    if got is not None:
        assert got == expected
    elif expected is not None:  # stricter only on padding the standard decoder forgives
        assert len(text) % 4 or len(text) - len(text.rstrip("=")) > 2


@given(st.binary(min_size=1, max_size=60), st.integers(min_value=0), _CHARS)
def test_one_changed_character_is_refused_unless_still_valid(
    data: bytes, at: int, char: str
) -> None:
    text = base64.b64encode(data).decode()
    i = at % len(text)
    changed = text[:i] + char + text[i + 1 :]
    try:
        expected: bytes | None = base64.b64decode(changed, validate=True)
    except (binascii.Error, ValueError):
        expected = None
    if expected is None:
        with pytest.raises(ValueError, match="not valid base64"):
            b64.decode(changed)
    else:
        assert b64.decode(changed) == expected


@pytest.mark.parametrize("text", ["QUJD=", "QUJ", "QQ===", "QQ==QUFB", "QU JD", "QUJD\n",
                                  "QUJ\u00e9", "-_-_"])
def test_refusals(text: str) -> None:
    with pytest.raises(ValueError, match="not valid base64"):
        b64.decode(text)


def test_a_frame_s_ciphertext_that_is_not_base64_is_invalid_message_with_its_id() -> None:
    from confide.errors import InvalidMessage

    assert b64.decode_ciphertext("QUJD") == b"ABC"
    with pytest.raises(InvalidMessage) as err:
        b64.decode_ciphertext("QUJD=", frame_id="c-7")
    assert err.value.frame_id == "c-7" and "QUJD" not in err.value.message
