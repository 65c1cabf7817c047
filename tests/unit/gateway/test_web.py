"""gateway/web.py: built files under web/dist only, development tokens only in dev mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from confide.auth import TokenVerifier
from confide.config import Settings
from confide.errors import Forbidden, InvalidMessage, NotFound
from gateway.web import dev_tokens_enabled, mint_dev_token, static_file


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "vendor").mkdir(parents=True)
    (root / "confide-client.js").write_text("export {};")
    (root / "vendor" / "react.js").write_text("export {};")
    (root / "index.html").write_text("<!doctype html>")
    (root / "notes.txt").write_text("x")
    (tmp_path / "secret.js").write_text("nope")
    return root


def test_serves_built_files_with_their_media_type(dist: Path) -> None:
    path, media = static_file(dist, "confide-client.js")
    assert path == (dist / "confide-client.js").resolve()
    assert media.startswith("text/javascript")
    assert static_file(dist, "vendor/react.js")[0].name == "react.js"
    assert static_file(dist, "index.html")[1].startswith("text/html")


@pytest.mark.parametrize(
    "name", ["../secret.js", "vendor/../../secret.js", "notes.txt", "missing.js", "vendor", ""]
)
def test_nothing_else(dist: Path, name: str) -> None:
    with pytest.raises(NotFound):
        static_file(dist, name)


def test_dev_tokens_only_with_the_generated_secret(tmp_path: Path) -> None:
    dev = Settings(data_dir=tmp_path)
    assert dev_tokens_enabled(dev)
    answer = mint_dev_token(dev, {"sub": "alice", "role": "therapist", "sessions": ["s1"]})
    who = TokenVerifier(dev).verify(answer["token"])
    assert (who.user, who.role) == ("alice", "therapist")
    assert who.may_join("s1") and not who.may_join("s2")
    assert TokenVerifier(dev).verify(mint_dev_token(dev, {"sub": "bob"})["token"]).may_join("x")

    configured = Settings(data_dir=tmp_path, jwt_secret="a-configured-secret-0123456789")
    assert not dev_tokens_enabled(configured)
    with pytest.raises(Forbidden):
        mint_dev_token(configured, {"sub": "alice"})


@pytest.mark.parametrize(
    "body", [None, [], {}, {"sub": ""}, {"sub": "a b"}, {"sub": "a", "role": "root"},
             {"sub": "a", "extra": 1}, {"sub": "a", "sessions": "s1"}]
)
def test_bad_requests(tmp_path: Path, body: object) -> None:
    with pytest.raises(InvalidMessage):
        mint_dev_token(Settings(data_dir=tmp_path), body)
