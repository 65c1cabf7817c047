"""Strict JSON in (refuse non-finite numbers) and out (never send one)."""

from __future__ import annotations

import json
import math

import pytest

from confide import strictjson

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E+999", "1" + "0" * 400]


@pytest.mark.parametrize("literal", NON_FINITE)
def test_loads_refuses_non_finite_numbers(literal: str) -> None:
    for text in (literal, f'{{"v":{literal}}}', f'{{"a":[1,{{"b":[{literal}]}}]}}'):
        with pytest.raises(ValueError):
            strictjson.loads(text)
        with pytest.raises(ValueError):
            strictjson.loads(text.encode())


@pytest.mark.parametrize("literal", ["1e308", "-1.7976931348623157e308", "1e-400", "0",
                                     "123456789012345678901234567890", "0.5", "-0"])
def test_loads_keeps_finite_numbers(literal: str) -> None:
    assert strictjson.loads(f'{{"v":{literal}}}') == json.loads(f'{{"v":{literal}}}')


def test_strings_that_spell_the_constants_are_fine() -> None:
    assert strictjson.loads('{"v":"NaN Infinity 1e400"}') == {"v": "NaN Infinity 1e400"}


def test_dumps_never_writes_non_finite_numbers() -> None:
    frame = {"type": "message", "body": {"a": math.inf, "b": [math.nan, 1.5], "c": -math.inf}}
    text = strictjson.dumps(frame)
    assert strictjson.loads(text) == {"type": "message",
                                      "body": {"a": None, "b": [None, 1.5], "c": None}}
    assert strictjson.dumps({"a": 1, "b": "x"}) == '{"a":1,"b":"x"}'  # compact


def test_loads_stored_serves_old_poisoned_rows_as_valid_json() -> None:
    assert strictjson.loads_stored('{"v":Infinity,"w":[NaN,-Infinity],"s":"ok"}') == {
        "v": None, "w": [None, None], "s": "ok"}
    assert strictjson.loads_stored(b'{"v":-Infinity}') == {"v": None}
    assert strictjson.loads_stored('{"v":1.5}') == {"v": 1.5}


@pytest.mark.parametrize("literal", ["9" * 250 + "e99", "9" * 250 + ".5e99", "1e0400",
                                     "0.1e310", "-" + "9" * 320])
def test_every_shape_of_overflow_is_refused(literal: str) -> None:
    assert math.isinf(float(literal)) or abs(int(literal)) > 1.8e308
    with pytest.raises(ValueError):
        strictjson.loads(f'{{"v":{literal}}}')
