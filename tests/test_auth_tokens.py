"""Server tokens: what ``agent.auth`` accepts, what it refuses, and how tokens are issued.

No database: these call ``authenticate`` (the server's auth hook) directly, with the
settings in the environment as the server reads them, and the web page's API in
process, which must answer every bad token as the server does. The identity-provider cases
run against a real JWKS endpoint, a local HTTP server this module starts on
127.0.0.1 with an RSA key generated here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from agent import auth as memagent_auth
from agent.settings import Settings, SettingsError
from agent.web import create_app
from tests.helpers import (
    AUDIENCE,
    ISSUER,
    NO_KEYS_PATH,
    IdentityProvider,
    claims,
    new_rsa_key,
    serving_jwks,
)

SECRET = "k" * 64


def use_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """Auth on, with exactly these auth settings (any others the shell had are gone)."""
    for name in (
        "MEMAGENT_AUTH_SECRET",
        "MEMAGENT_AUTH_ISSUER",
        "MEMAGENT_AUTH_AUDIENCE",
        "MEMAGENT_AUTH_JWKS_URL",
        "MEMAGENT_AUTH_ALGORITHMS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MEMAGENT_AUTH", "true")
    for name, value in env.items():
        monkeypatch.setenv(name, value)


async def status_of(token: str) -> int:
    """The HTTP status ``authenticate`` answers a bearer token with (200 if accepted)."""
    try:
        await memagent_auth.authenticate(f"Bearer {token}")
    except memagent_auth.Auth.exceptions.HTTPException as error:
        return error.status_code
    return 200


async def user_of(token: str) -> str:
    """The identity ``authenticate`` gives a bearer token."""
    return str((await memagent_auth.authenticate(f"Bearer {token}"))["identity"])


def b64(data: dict[str, Any]) -> str:
    """One base64url JWT segment."""
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any], **header: str) -> str:
    """A token with ``alg: none`` and no signature, made by hand as an attacker would."""
    return f"{b64({'alg': 'none', 'typ': 'JWT', **header})}.{b64(claims)}."


def hmac_signed(claims: dict[str, Any], key: bytes, kid: str) -> str:
    """An HS256 token made by hand (PyJWT itself refuses to key HMAC with a PEM key)."""
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{b64(claims)}"
    digest = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def tampered(token: str) -> str:
    """``token`` with its payload changed to another user and the signature kept."""
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{header}.{b64({**body, 'sub': 'mallory'})}.{signature}"


# --- shared secret ------------------------------------------------------------------


async def test_auth_off_lets_everyone_in_as_anonymous(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off (the default), no token is needed and nobody is told apart."""
    monkeypatch.delenv("MEMAGENT_AUTH", raising=False)
    assert (await memagent_auth.authenticate(None))["identity"] == memagent_auth.ANONYMOUS


async def test_issued_token_names_its_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token from ``issue_token`` under the server's secret authenticates its user."""
    use_env(monkeypatch, MEMAGENT_AUTH_SECRET=SECRET)
    assert await user_of(memagent_auth.issue_token("alice@example.com", SECRET)) == (
        "alice@example.com"
    )
    assert await user_of(memagent_auth.issue_token("auth0|5f7c-1", SECRET, days=0.5)) == (
        "auth0|5f7c-1"
    )


async def test_issuer_and_audience_are_enforced_when_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With an issuer and audience configured, tokens must carry exactly those."""
    use_env(
        monkeypatch,
        MEMAGENT_AUTH_SECRET=SECRET,
        MEMAGENT_AUTH_ISSUER=ISSUER,
        MEMAGENT_AUTH_AUDIENCE=AUDIENCE,
    )
    good = memagent_auth.issue_token("alice", SECRET, issuer=ISSUER, audience=AUDIENCE)
    assert await user_of(good) == "alice"
    for wrong in (
        memagent_auth.issue_token("alice", SECRET, issuer="https://evil/", audience=AUDIENCE),
        memagent_auth.issue_token("alice", SECRET, issuer=ISSUER, audience="other-api"),
        memagent_auth.issue_token("alice", SECRET),  # neither
    ):
        assert await status_of(wrong) == 401


def shared_secret_forgeries() -> dict[str, str]:
    """Tokens a shared-secret server must refuse, by what is wrong with them."""
    long_ago = datetime.now(UTC) - timedelta(days=10)
    good = memagent_auth.issue_token("alice", SECRET)
    return {
        "expired": memagent_auth.issue_token("alice", SECRET, days=1, now=long_ago),
        "wrong secret": memagent_auth.issue_token("alice", "s" * 40),
        "tampered payload": tampered(good),
        "tampered signature": good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        "alg none": unsigned(claims(iss=None, aud=None)),
        "alg none, no signature dot": unsigned(claims(iss=None, aud=None))[:-1],
        "no expiry": jwt.encode(claims(exp=None, iss=None, aud=None), SECRET, "HS256"),
        "no subject": jwt.encode(claims(sub=None, iss=None, aud=None), SECRET, "HS256"),
        "unusable subject": jwt.encode(claims(sub="a b", iss=None, aud=None), SECRET, "HS256"),
        "other HMAC algorithm": jwt.encode(claims(iss=None, aud=None), SECRET, "HS512"),
        "the old HMAC scheme": "alice." + "0" * 64,
        "garbage": "not-a-token",
    }


@pytest.mark.parametrize("case", sorted(shared_secret_forgeries()))
async def test_shared_secret_refuses(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Expired, forged, tampered, unsigned or incomplete tokens get 401."""
    use_env(monkeypatch, MEMAGENT_AUTH_SECRET=SECRET)
    assert await status_of(shared_secret_forgeries()[case]) == 401


async def test_missing_or_foreign_scheme_gets_401(monkeypatch: pytest.MonkeyPatch) -> None:
    """No header, an empty bearer, or another scheme: 401 with the expected form."""
    use_env(monkeypatch, MEMAGENT_AUTH_SECRET=SECRET)
    token = memagent_auth.issue_token("alice", SECRET)
    for header in (None, "", "Bearer ", "Bearer", f"Basic {token}"):
        with pytest.raises(memagent_auth.Auth.exceptions.HTTPException) as caught:
            await memagent_auth.authenticate(header)
        assert caught.value.status_code == 401
        assert "Bearer <token>" in str(caught.value.detail)


async def test_expired_token_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 401 tells the client why, so it knows to get a new token."""
    use_env(monkeypatch, MEMAGENT_AUTH_SECRET=SECRET)
    old = memagent_auth.issue_token("alice", SECRET, days=1, now=datetime(2020, 1, 1, tzinfo=UTC))
    with pytest.raises(memagent_auth.Auth.exceptions.HTTPException) as caught:
        await memagent_auth.authenticate(f"Bearer {old}")
    assert "expired" in str(caught.value.detail)


def test_bad_user_ids_and_lifetimes_are_refused() -> None:
    """No token is issued for an unusable id or a lifetime that is not positive."""
    for bad_id in ("", "a b", "-x", "x" * 129, "é"):
        with pytest.raises(ValueError, match="user id"):
            memagent_auth.issue_token(bad_id, SECRET)
    for days in (0, -1):
        with pytest.raises(ValueError, match="positive"):
            memagent_auth.issue_token("alice", SECRET, days=days)


# --- settings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({}, "MEMAGENT_AUTH_SECRET must be a random string of at least 32"),
        ({"MEMAGENT_AUTH_SECRET": "short"}, "at least 32"),
        (
            {"MEMAGENT_AUTH_SECRET": SECRET, "MEMAGENT_AUTH_JWKS_URL": "https://id/jwks"},
            "not both",
        ),
        ({"MEMAGENT_AUTH_JWKS_URL": "https://id/jwks"}, "MEMAGENT_AUTH_ISSUER and"),
        (
            {"MEMAGENT_AUTH_JWKS_URL": "https://id/jwks", "MEMAGENT_AUTH_ISSUER": ISSUER},
            "MEMAGENT_AUTH_AUDIENCE",
        ),
        (
            {
                "MEMAGENT_AUTH_JWKS_URL": "file:///etc/passwd",
                "MEMAGENT_AUTH_ISSUER": ISSUER,
                "MEMAGENT_AUTH_AUDIENCE": AUDIENCE,
            },
            "http",
        ),
        (
            {
                "MEMAGENT_AUTH_JWKS_URL": "https://id/jwks",
                "MEMAGENT_AUTH_ISSUER": ISSUER,
                "MEMAGENT_AUTH_AUDIENCE": AUDIENCE,
                "MEMAGENT_AUTH_ALGORITHMS": "RS256, HS256, none",
            },
            "got HS256, none",
        ),
    ],
)
def test_unusable_auth_settings_are_refused(env: dict[str, str], complaint: str) -> None:
    """Settings that could not check a token, or would check it weakly, say what to fix."""
    with pytest.raises(SettingsError, match=complaint):
        memagent_auth.check_auth_settings(Settings.from_env({"MEMAGENT_AUTH": "true", **env}))


def test_secret_stays_out_of_the_settings_repr() -> None:
    """Printing the settings (a log line, a traceback) does not reveal the secret."""
    assert SECRET not in repr(Settings.from_env({"MEMAGENT_AUTH_SECRET": SECRET}))


# --- the token command ----------------------------------------------------------------


def test_token_command_prints_expiring_tokens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m agent.auth alice bob --days 7``: tokens the server accepts, for 7 days."""
    use_env(monkeypatch, MEMAGENT_AUTH_SECRET=SECRET, MEMAGENT_AUTH_AUDIENCE=AUDIENCE)
    assert memagent_auth.main(["alice", "bob", "--days", "7"]) == 0
    out = capsys.readouterr()
    lines = [line.split("\t") for line in out.out.strip().splitlines()]
    assert [user for user, _ in lines] == ["alice", "bob"]
    for user, token in lines:
        payload = jwt.decode(token, SECRET, algorithms=["HS256"], audience=AUDIENCE)
        assert payload["sub"] == user
        assert payload["exp"] - payload["iat"] == 7 * 24 * 3600
    assert "valid until" in out.err


def test_token_command_defaults_to_thirty_days(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without ``--days`` a token lasts ``DEFAULT_DAYS``."""
    use_env(monkeypatch, MEMAGENT_AUTH_SECRET=SECRET)
    assert memagent_auth.main(["alice"]) == 0
    token = capsys.readouterr().out.strip().split("\t")[1]
    payload = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert payload["exp"] - payload["iat"] == memagent_auth.DEFAULT_DAYS * 24 * 3600


@pytest.mark.parametrize(
    ("env", "args", "complaint"),
    [
        ({}, ["alice"], "MEMAGENT_AUTH_SECRET"),
        ({"MEMAGENT_AUTH_SECRET": SECRET}, ["alice", "--days", "0"], "positive"),
        ({"MEMAGENT_AUTH_SECRET": SECRET}, ["a b"], "user id"),
        ({"MEMAGENT_AUTH_JWKS_URL": "https://id/jwks"}, ["alice"], "identity provider"),
    ],
)
def test_token_command_refuses_with_a_reason(
    env: dict[str, str],
    args: list[str],
    complaint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No secret, a bad lifetime or id, or provider mode: exit 2 and why, no token."""
    use_env(monkeypatch, **env)
    assert memagent_auth.main(args) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert complaint in out.err


# --- identity provider (JWKS) -------------------------------------------------------


@pytest.fixture(scope="module")
def provider() -> Iterator[IdentityProvider]:
    """A JWKS endpoint with one RS256 key, for this module."""
    with serving_jwks() as running:
        yield running


@pytest.fixture
def provider_mode(provider: IdentityProvider, monkeypatch: pytest.MonkeyPatch) -> IdentityProvider:
    """Auth on, checking tokens against ``provider``."""
    use_env(
        monkeypatch,
        MEMAGENT_AUTH_JWKS_URL=provider.jwks_url,
        MEMAGENT_AUTH_ISSUER=ISSUER,
        MEMAGENT_AUTH_AUDIENCE=AUDIENCE,
    )
    return provider


async def test_provider_token_names_its_user(provider_mode: IdentityProvider) -> None:
    """A token the provider signed for this audience authenticates its subject."""
    assert await user_of(provider_mode.sign(claims(sub="auth0|64f1c2"))) == "auth0|64f1c2"


ProviderForgery = Callable[[IdentityProvider], str]

PROVIDER_FORGERIES: dict[str, ProviderForgery] = {
    "expired": lambda p: p.sign(claims(exp=int(datetime.now(UTC).timestamp()) - 3600)),
    "wrong issuer": lambda p: p.sign(claims(iss="https://other.example.com/")),
    "no issuer": lambda p: p.sign(claims(iss=None)),
    "wrong audience": lambda p: p.sign(claims(aud="another-api")),
    "no audience": lambda p: p.sign(claims(aud=None)),
    "no expiry": lambda p: p.sign(claims(exp=None)),
    "tampered": lambda p: tampered(p.sign(claims())),
    "alg none": lambda p: unsigned(claims(), kid=p.kid),
    "signed by another key, same kid": lambda p: p.sign(claims(), key=new_rsa_key()),
    "unknown kid": lambda p: p.sign(claims(), key=new_rsa_key(), kid="key-2"),
    "HS256 keyed with the public key": lambda p: hmac_signed(claims(), p.public_pem(), p.kid),
    "shared-secret token": lambda p: memagent_auth.issue_token(
        "alice", SECRET, issuer=ISSUER, audience=AUDIENCE
    ),
}


@pytest.mark.parametrize("case", sorted(PROVIDER_FORGERIES))
async def test_provider_mode_refuses(case: str, provider_mode: IdentityProvider) -> None:
    """Expired, foreign, tampered, unsigned or wrongly signed tokens get 401."""
    assert await status_of(PROVIDER_FORGERIES[case](provider_mode)) == 401


async def test_unreachable_provider_is_503(
    provider: IdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys that cannot be fetched are the server's problem, not a bad token: 503."""
    use_env(
        monkeypatch,
        MEMAGENT_AUTH_JWKS_URL=provider.jwks_url.replace("/.well-known/jwks.json", "/nothing"),
        MEMAGENT_AUTH_ISSUER=ISSUER,
        MEMAGENT_AUTH_AUDIENCE=AUDIENCE,
    )
    assert await status_of(provider.sign(claims())) == 503


async def test_no_usable_provider_key_is_503(
    provider: IdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider that publishes an empty key set is the server's problem too: 503."""
    no_keys = provider.jwks_url.replace("/.well-known/jwks.json", NO_KEYS_PATH)
    use_env(
        monkeypatch,
        MEMAGENT_AUTH_JWKS_URL=no_keys,
        MEMAGENT_AUTH_ISSUER=ISSUER,
        MEMAGENT_AUTH_AUDIENCE=AUDIENCE,
    )
    assert await status_of(provider.sign(claims())) == 503


# --- the web page checks tokens as the server does -------------------------------------


async def server_answer(header: str | None) -> tuple[int, str]:
    """The server's status and detail for an ``Authorization`` header (200 if accepted)."""
    try:
        await memagent_auth.authenticate(header)
    except memagent_auth.Auth.exceptions.HTTPException as error:
        return error.status_code, str(error.detail)
    return 200, ""


async def page_answer(header: str | None) -> tuple[int, str]:
    """The web page's status and error for the same header, from its API.

    The app's session is never opened: the page checks the token before it needs one,
    so this needs no database.
    """
    app = create_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.get("/api/threads", headers={"Authorization": header or ""})
    return response.status_code, str(response.json()["error"])


PAGE_CASES: dict[str, tuple[str, Callable[[IdentityProvider], str | None], int]] = {
    # case: (mode, the Authorization header, the status both answer)
    "no header": ("secret", lambda p: None, 401),
    "another scheme": ("secret", lambda p: f"Basic {memagent_auth.issue_token('a', SECRET)}", 401),
    "garbage": ("secret", lambda p: "Bearer x.y", 401),
    "wrong secret": ("secret", lambda p: f"Bearer {memagent_auth.issue_token('a', 's' * 40)}", 401),
    "alg none": ("secret", lambda p: f"Bearer {unsigned(claims(iss=None, aud=None))}", 401),
    "unknown kid": (
        "provider",
        lambda p: f"Bearer {p.sign(claims(), key=new_rsa_key(), kid='key-2')}",
        401,
    ),
    "wrong audience": ("provider", lambda p: f"Bearer {p.sign(claims(aud='other'))}", 401),
    "provider unreachable": ("unreachable", lambda p: f"Bearer {p.sign(claims())}", 503),
    "provider without keys": ("no keys", lambda p: f"Bearer {p.sign(claims())}", 503),
}


@pytest.mark.parametrize("case", sorted(PAGE_CASES))
async def test_the_page_and_the_server_answer_a_bad_token_alike(
    case: str, provider: IdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same status and the same sentence, whichever of the two is asked."""
    mode, header_of, status = PAGE_CASES[case]
    jwks_url = {
        "provider": provider.jwks_url,
        "unreachable": provider.jwks_url.replace("/.well-known/jwks.json", "/nothing"),
        "no keys": provider.jwks_url.replace("/.well-known/jwks.json", NO_KEYS_PATH),
    }
    if mode == "secret":
        use_env(monkeypatch, MEMAGENT_AUTH_SECRET=SECRET)
    else:
        use_env(
            monkeypatch,
            MEMAGENT_AUTH_JWKS_URL=jwks_url[mode],
            MEMAGENT_AUTH_ISSUER=ISSUER,
            MEMAGENT_AUTH_AUDIENCE=AUDIENCE,
        )
    header = header_of(provider)
    server = await server_answer(header)
    assert server[0] == status, server
    assert await page_answer(header) == server
