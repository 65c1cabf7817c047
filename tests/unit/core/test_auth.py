"""JWT verification (PROTOCOL.md, Authentication and authorization)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from confide.auth import Principal, TokenVerifier, mint_token
from confide.config import Settings
from confide.errors import CloseCode, CloseConnection, Unauthorized

from .conftest import SECRET

OTHER_SECRET = "another-secret-that-is-also-long-enough-for-hs"


def hs(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "alice", "exp": int(time.time()) + 600, **extra}


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(Settings(jwt_secret=SECRET))


def rejected(verifier: TokenVerifier, token: str) -> Unauthorized:
    with pytest.raises(Unauthorized) as err:
        verifier.verify(token)
    assert err.value.close_code == CloseCode.UNAUTHORIZED == 4401
    if token:
        assert token not in err.value.reason  # never echoes the token
    return err.value


# ------------------------------------------------------------------ HS256


def test_valid_hs256_defaults(verifier: TokenVerifier) -> None:
    exp = int(time.time()) + 600
    p = verifier.verify(hs({"sub": "alice", "exp": exp}))
    assert p == Principal("alice", "client", frozenset(), float(exp))
    assert not p.may_join("s1")
    assert p.role == "client"


def test_valid_hs256_with_role_and_sessions(verifier: TokenVerifier) -> None:
    p = verifier.verify(hs(claims(role="therapist", sessions=["s1", "s2"])))
    assert p.role == "therapist"
    assert p.sessions == frozenset({"s1", "s2"})
    assert p.may_join("s1") and p.may_join("s2") and not p.may_join("s3")


def test_wildcard_sessions(verifier: TokenVerifier) -> None:
    p = verifier.verify(hs(claims(sessions=["*"])))
    assert p.may_join("anything")


@pytest.mark.parametrize("role", ["client", "therapist", "admin", "service"])
def test_every_protocol_role_accepted(verifier: TokenVerifier, role: str) -> None:
    assert verifier.verify(hs(claims(role=role))).role == role


def test_expired_token(verifier: TokenVerifier) -> None:
    err = rejected(verifier, hs({"sub": "alice", "exp": int(time.time()) - 60}))
    assert err.reason == "token expired"


def test_bad_signature(verifier: TokenVerifier) -> None:
    err = rejected(verifier, hs(claims(), OTHER_SECRET))
    assert err.reason != "token expired"


def test_tampered_payload(verifier: TokenVerifier) -> None:
    good = hs(claims(role="client"))
    forged_payload = hs(claims(role="admin"), OTHER_SECRET).split(".")[1]
    header, _, sig = good.split(".")
    rejected(verifier, f"{header}.{forged_payload}.{sig}")


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "x" * 500])
def test_malformed_tokens(verifier: TokenVerifier, token: str) -> None:
    rejected(verifier, token)


def test_alg_none_refused(verifier: TokenVerifier) -> None:
    rejected(verifier, jwt.encode(claims(), None, algorithm="none"))


def test_missing_exp(verifier: TokenVerifier) -> None:
    rejected(verifier, hs({"sub": "alice"}))


def test_missing_sub(verifier: TokenVerifier) -> None:
    rejected(verifier, hs({"exp": int(time.time()) + 600}))


@pytest.mark.parametrize("sub", ["", "u" * 129])
def test_bad_sub(verifier: TokenVerifier, sub: str) -> None:
    rejected(verifier, hs(claims(sub=sub)))


def test_non_string_sub(verifier: TokenVerifier) -> None:
    rejected(verifier, hs({"sub": 42, "exp": int(time.time()) + 600}))


@pytest.mark.parametrize("role", ["root", "", "Admin", 1, None, ["admin"], {"r": "admin"}])
def test_bad_role(verifier: TokenVerifier, role: Any) -> None:
    rejected(verifier, hs(claims(role=role)))


@pytest.mark.parametrize("sessions", ["*", "s1", [1], [["s1"]], {"s1": True}, None])
def test_bad_sessions_claim(verifier: TokenVerifier, sessions: Any) -> None:
    rejected(verifier, hs(claims(sessions=sessions)))


def test_not_yet_valid(verifier: TokenVerifier) -> None:
    rejected(verifier, hs(claims(nbf=int(time.time()) + 600)))


def test_unauthorized_is_a_close() -> None:
    assert isinstance(Unauthorized(), CloseConnection)


# ------------------------------------------------------------------ audience and issuer


def test_audience_ignored_when_not_configured(verifier: TokenVerifier) -> None:
    assert verifier.verify(hs(claims(aud="whatever"))).user == "alice"


def test_audience_checked_when_configured() -> None:
    v = TokenVerifier(Settings(jwt_secret=SECRET, jwt_audience="confide"))
    assert v.verify(hs(claims(aud="confide"))).user == "alice"
    assert v.verify(hs(claims(aud=["other", "confide"]))).user == "alice"
    rejected(v, hs(claims(aud="other")))
    rejected(v, hs(claims()))


def test_issuer_checked_when_configured() -> None:
    v = TokenVerifier(Settings(jwt_secret=SECRET, jwt_issuer="https://idp"))
    assert v.verify(hs(claims(iss="https://idp"))).user == "alice"
    rejected(v, hs(claims(iss="https://evil")))
    rejected(v, hs(claims()))


def test_issuer_ignored_when_not_configured(verifier: TokenVerifier) -> None:
    assert verifier.verify(hs(claims(iss="anyone"))).user == "alice"


# ------------------------------------------------------------------ RS256 / ES256


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _pem(private_key: Any, tmp: Path, name: str) -> Path:
    path = tmp / name
    path.write_bytes(
        private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_rs256_with_pem_public_key(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    v = TokenVerifier(Settings(jwt_public_key=_pem(rsa_key, tmp_path, "rsa.pem")))
    token = jwt.encode(claims(role="admin"), rsa_key, algorithm="RS256")
    p = v.verify(token)
    assert (p.user, p.role) == ("alice", "admin")


def test_rs256_wrong_key(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    v = TokenVerifier(Settings(jwt_public_key=_pem(rsa_key, tmp_path, "rsa.pem")))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rejected(v, jwt.encode(claims(), other, algorithm="RS256"))


def test_rs256_expired(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    v = TokenVerifier(Settings(jwt_public_key=_pem(rsa_key, tmp_path, "rsa.pem")))
    token = jwt.encode({"sub": "a", "exp": int(time.time()) - 60}, rsa_key, algorithm="RS256")
    assert rejected(v, token).reason == "token expired"


def test_es256_with_pem_public_key(ec_key: ec.EllipticCurvePrivateKey, tmp_path: Path) -> None:
    v = TokenVerifier(Settings(jwt_public_key=_pem(ec_key, tmp_path, "ec.pem")))
    assert v.verify(jwt.encode(claims(), ec_key, algorithm="ES256")).user == "alice"


def test_hs256_refused_when_public_key_configured(
    rsa_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    """Algorithm confusion: an HS256 token 'signed' with the public PEM must not pass."""
    path = _pem(rsa_key, tmp_path, "rsa.pem")
    v = TokenVerifier(Settings(jwt_public_key=path, jwt_secret=SECRET))
    rejected(v, hs(claims(), SECRET))
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{_b64(json.dumps(claims()).encode())}"
    sig = hmac.new(path.read_bytes(), signing_input.encode(), hashlib.sha256).digest()
    rejected(v, f"{signing_input}.{_b64(sig)}")


def test_es256_token_against_rsa_key_is_unauthorized(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    """The header picks an algorithm whose key type differs from the server's key: a 4401,
    not an internal error (PyJWT raises InvalidKeyError, which is no InvalidTokenError)."""
    v = TokenVerifier(Settings(jwt_public_key=_pem(rsa_key, tmp_path, "rsa.pem")))
    rejected(v, jwt.encode(claims(), ec_key, algorithm="ES256"))
    v_ec = TokenVerifier(Settings(jwt_public_key=_pem(ec_key, tmp_path, "ec.pem")))
    rejected(v_ec, jwt.encode(claims(), rsa_key, algorithm="RS256"))


# ------------------------------------------------------------------ dev tokens


def test_mint_token_round_trip(verifier: TokenVerifier) -> None:
    token = mint_token(SECRET, "bob", role="therapist", sessions=["s1"], ttl_s=60,
                       extra={"aud": "x"})
    p = verifier.verify(token)
    assert (p.user, p.role, p.sessions) == ("bob", "therapist", frozenset({"s1"}))
    assert time.time() + 50 < p.expires_at <= time.time() + 61
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "x"


def test_mint_token_without_sessions_claim(verifier: TokenVerifier) -> None:
    token = mint_token(SECRET, "bob")
    assert "sessions" not in jwt.decode(token, options={"verify_signature": False})
    assert verifier.verify(token).sessions == frozenset()


def test_mint_token_refuses_unknown_role() -> None:
    with pytest.raises(ValueError):
        mint_token(SECRET, "bob", role="root")


def test_verifier_uses_dev_secret_without_config(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    v = TokenVerifier(s)
    assert v.verify(mint_token(s.signing_secret(), "carol")).user == "carol"
    rejected(v, mint_token(SECRET, "carol"))


def test_jwks_file_picks_the_key_by_kid(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    keys = []
    for kid, private in (("r1", rsa_key), ("e1", ec_key)):
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[
            "RS256" if kid == "r1" else "ES256"].to_jwk(private.public_key()))
        jwk["kid"] = kid
        keys.append(jwk)
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": keys}))
    v = TokenVerifier(Settings(jwt_jwks=path, jwt_secret="unused-because-jwks-wins-0123456789"))
    ok_rsa = jwt.encode(claims(sub="r"), rsa_key, algorithm="RS256", headers={"kid": "r1"})
    ok_ec = jwt.encode(claims(sub="e"), ec_key, algorithm="ES256", headers={"kid": "e1"})
    assert v.verify(ok_rsa).user == "r" and v.verify(ok_ec).user == "e"
    wrong_kid = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "e1"})
    unknown = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "zz"})
    no_kid = jwt.encode(claims(), rsa_key, algorithm="RS256")
    hs_token = hs(claims())
    for token in (wrong_kid, unknown, no_kid, hs_token):
        rejected(v, token)


# ------------------------------------------------------------------ clock skew (leeway)


def test_leeway_defaults_to_30_seconds() -> None:
    assert Settings(jwt_secret=SECRET).jwt_leeway_s == 30.0


@pytest.mark.parametrize("skew", [1, 10, 29])
def test_identity_provider_clock_ahead_within_leeway(verifier: TokenVerifier, skew: int) -> None:
    """A token minted by a clock `skew` s ahead: iat and nbf are in our future."""
    now = int(time.time())
    p = verifier.verify(hs(claims(iat=now + skew, nbf=now + skew)))
    assert p.user == "alice"


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_clock_ahead_beyond_leeway_refused(verifier: TokenVerifier, claim: str) -> None:
    rejected(verifier, hs(claims(**{claim: int(time.time()) + 120})))


def test_expired_within_leeway_accepted(verifier: TokenVerifier) -> None:
    exp = int(time.time()) - 10
    assert verifier.verify(hs({"sub": "alice", "exp": exp})).expires_at == exp


def test_leeway_is_configurable() -> None:
    now = int(time.time())
    strict = TokenVerifier(Settings(jwt_secret=SECRET, jwt_leeway_s=0))
    rejected(strict, hs(claims(iat=now + 5)))
    assert rejected(strict, hs({"sub": "alice", "exp": now - 2})).reason == "token expired"
    loose = TokenVerifier(Settings(jwt_secret=SECRET, jwt_leeway_s=300))
    assert loose.verify(hs({"sub": "alice", "exp": now - 200})).user == "alice"
    assert loose.verify(hs(claims(nbf=now + 200))).user == "alice"
