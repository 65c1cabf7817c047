"""Actor arguments carry no secrets; actors read them from their environment or a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from confide.config import REDACTED, Settings, actor_config, settings_from_actor_config

SECRET = "s3cret-value-0123456789abcdef-xyz"


def test_actor_config_has_no_jwt_secret() -> None:
    config = actor_config(Settings(jwt_secret=SECRET, hosts=3))
    assert "jwt_secret" not in config
    assert SECRET not in json.dumps(config)
    assert config["hosts"] == 3


def test_actor_reads_jwt_secret_from_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config = actor_config(Settings(jwt_secret=SECRET, port=8123))
    monkeypatch.setenv("CONFIDE_JWT_SECRET", SECRET)
    rebuilt = settings_from_actor_config(config)
    assert rebuilt.signing_secret() == SECRET
    assert rebuilt.port == 8123


def test_jwt_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    settings = Settings(jwt_secret_file=path, data_dir=tmp_path / "data")
    assert settings.signing_secret() == SECRET
    assert not (tmp_path / "data").exists()  # no dev secret generated
    assert settings_from_actor_config(actor_config(settings)).signing_secret() == SECRET


def test_store_password_stays_out_of_actor_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://confide:pa55word@db.example:5432/confide"
    config = actor_config(Settings(store=url))
    assert "pa55word" not in json.dumps(config)
    assert config["store"] == f"postgresql://confide:{REDACTED}@db.example:5432/confide"
    monkeypatch.setenv("CONFIDE_STORE", url)
    assert settings_from_actor_config(config).store == url


def test_store_password_missing_on_the_node_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    config = actor_config(Settings(store="postgresql://u:pw@h/db"))
    with pytest.raises(RuntimeError, match="CONFIDE_STORE"):
        settings_from_actor_config(config)
    monkeypatch.setenv("CONFIDE_STORE", "postgresql://u:pw@other/db")
    with pytest.raises(RuntimeError, match="CONFIDE_STORE"):
        settings_from_actor_config(config)


def test_store_without_password_passes_unchanged() -> None:
    url = "postgresql://confide@127.0.0.1:5544/confide"
    assert actor_config(Settings(store=url))["store"] == url
