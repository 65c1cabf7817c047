"""Fixtures of every unit test."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No `CONFIDE_*` variable of the outer environment leaks into `Settings`."""
    for name in list(os.environ):
        if name.startswith("CONFIDE_"):
            monkeypatch.delenv(name)
