"""Settings: defaults match PROTOCOL.md, `CONFIDE_*` environment, the dev signing secret."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from confide.config import Settings


def test_defaults_match_protocol() -> None:
    s = Settings()
    assert s.port == 8000
    assert s.heartbeat_s == 25
    assert s.hello_timeout_s == 10
    assert s.max_frame_bytes == 64 * 1024
    assert s.max_large_frame_bytes == 8 * 1024 * 1024
    assert (s.rate_per_s, s.rate_burst, s.rate_abuse_s) == (20, 40, 10)
    assert s.jwt_public_key is None and s.jwt_audience is None and s.jwt_issuer is None


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONFIDE_RATE_PER_S", "5.5")
    monkeypatch.setenv("CONFIDE_RATE_BURST", "7")
    monkeypatch.setenv("CONFIDE_JWT_AUDIENCE", "confide")
    monkeypatch.setenv("CONFIDE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CONFIDE_JWT_PUBLIC_KEY", str(tmp_path / "k.pem"))
    s = Settings()
    assert (s.rate_per_s, s.rate_burst, s.jwt_audience) == (5.5, 7, "confide")
    assert s.data_dir == tmp_path
    assert s.jwt_public_key == tmp_path / "k.pem"


def test_environment_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFIDE_RATE_BURST", "0")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    "bad",
    [{"rate_per_s": 0}, {"rate_burst": 0}, {"heartbeat_s": 0}, {"hosts": 0},
     {"retention_messages": 0}, {"send_queue": 7}],
)
def test_invalid_values_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)  # type: ignore[arg-type]


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.port = 1  # type: ignore[misc]


def test_store_url(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).store_url() == f"sqlite:///{tmp_path.resolve()}/confide.db"
    assert Settings(store="postgresql://db/x").store_url() == "postgresql://db/x"


def test_configured_secret_wins(tmp_path: Path) -> None:
    s = Settings(jwt_secret="configured", data_dir=tmp_path)
    assert s.signing_secret() == "configured"
    assert not (tmp_path / "dev-jwt-secret").exists()


def test_dev_secret_generated_once_private_and_stable(tmp_path: Path) -> None:
    data = tmp_path / "nested" / "data"
    first = Settings(data_dir=data).signing_secret()
    path = data / "dev-jwt-secret"
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert Settings(data_dir=data).signing_secret() == first  # another process agrees
    assert [p.name for p in data.iterdir()] == ["dev-jwt-secret"]  # no temp file left behind
    assert Settings(data_dir=tmp_path / "other").signing_secret() != first
