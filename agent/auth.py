"""Thread ownership for the LangGraph server (``langgraph dev``, Studio, the SDK).

``langgraph.json`` always names this module's ``auth`` (through ``agent.server_auth``,
which checks the settings as the server starts); the setting ``MEMAGENT_AUTH``
decides what it does. Off (the default) it lets every request through unchanged, as if
no auth were configured, so a developer on their own machine needs no token. On, every
request needs a token, and each user sees and changes only the threads (and runs,
crons, assistants, store items) they created: the standard langgraph_sdk pattern of
an ``owner`` metadata stamp on create and an ``owner`` filter on everything else. A
thread that is not yours answers 404, exactly like one that does not exist.

Tokens are standard JWTs (checked by PyJWT), sent as ``Authorization: Bearer <token>``;
the user is the ``sub`` claim, and every token must carry an expiry (``exp``). Where
they come from is one of two modes:

- **Shared secret** (the default): HS256 under ``MEMAGENT_AUTH_SECRET``. The server
  keeps no user list; whoever holds the secret issues tokens with
  ``python -m agent.auth <user-id> --days N``, and rotating the secret revokes them all.
- **Identity provider**: with ``MEMAGENT_AUTH_JWKS_URL`` set, tokens are checked
  against the provider's published keys, and must name ``MEMAGENT_AUTH_ISSUER`` and
  ``MEMAGENT_AUTH_AUDIENCE``.

Each mode accepts only its own algorithms, so a token cannot pick a weaker check
(``alg: none``, or an HS256 token "signed" with the provider's public key).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import jwt
from langgraph_sdk import Auth

from agent.settings import Settings, SettingsError

SECRET_VARIABLE = "MEMAGENT_AUTH_SECRET"
"""Environment variable holding the shared secret that signs tokens."""

MIN_SECRET_CHARS = 32
"""A shorter secret could be guessed from a token; refuse it rather than run weakly."""

SHARED_SECRET_ALGORITHM = "HS256"
"""The only algorithm accepted in shared-secret mode."""

PROVIDER_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""Public-key algorithms an identity provider may sign with; never HS* (its key would
be the public one) and never ``none``."""

DEFAULT_DAYS = 30
"""How long a token from ``python -m agent.auth`` lasts unless ``--days`` says otherwise."""

CLOCK_SKEW = timedelta(seconds=30)
"""Tolerated difference between the issuer's clock and the server's."""

OWNER_KEY = "owner"
"""The metadata key that records who created a thread, run, cron or assistant."""

ANONYMOUS = "anonymous"
"""The identity every request gets while auth is off."""

_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+|:-]{0,127}")
_STAMPED_ACTIONS = frozenset({"create", "update", "create_run"})

auth = Auth()


def check_auth_settings(settings: Settings) -> None:
    """Refuses auth settings that could not check a single token, or would check weakly.

    Raises:
        SettingsError: With what to set instead.
    """
    if settings.auth_jwks_url is None:
        shared_secret(settings)
        return
    if settings.auth_secret is not None:
        raise SettingsError(
            f"Set either {SECRET_VARIABLE} (tokens from `python -m agent.auth`) or "
            "MEMAGENT_AUTH_JWKS_URL (tokens from your identity provider), not both."
        )
    if not settings.auth_jwks_url.startswith(("https://", "http://")):
        raise SettingsError(
            f"MEMAGENT_AUTH_JWKS_URL must be an http(s) URL, got {settings.auth_jwks_url!r}."
        )
    if settings.auth_issuer is None or settings.auth_audience is None:
        raise SettingsError(
            "With MEMAGENT_AUTH_JWKS_URL, set MEMAGENT_AUTH_ISSUER and MEMAGENT_AUTH_AUDIENCE "
            "too (your identity provider's issuer, and the audience its tokens carry for "
            "this server): without them any token the provider signs would be accepted."
        )
    unsupported = sorted(set(settings.auth_algorithms) - PROVIDER_ALGORITHMS)
    if unsupported:
        raise SettingsError(
            f"MEMAGENT_AUTH_ALGORITHMS may name only {', '.join(sorted(PROVIDER_ALGORITHMS))};"
            f" got {', '.join(unsupported)}."
        )


def shared_secret(settings: Settings) -> str:
    """The token-signing secret from ``MEMAGENT_AUTH_SECRET``.

    Raises:
        SettingsError: It is unset or shorter than ``MIN_SECRET_CHARS``, or tokens
            come from an identity provider instead.
    """
    if settings.auth_jwks_url is not None:
        raise SettingsError(
            "Tokens come from your identity provider (MEMAGENT_AUTH_JWKS_URL is set); "
            f"{SECRET_VARIABLE} tokens are not accepted."
        )
    secret = settings.auth_secret or ""
    if len(secret) < MIN_SECRET_CHARS:
        raise SettingsError(
            f"{SECRET_VARIABLE} must be a random string of at least {MIN_SECRET_CHARS} "
            "characters (it signs the tokens MEMAGENT_AUTH=true asks for), e.g. the output "
            'of `python -c "import secrets; print(secrets.token_urlsafe(32))"`.'
        )
    return secret


def check_user_id(user_id: str) -> str:
    """Returns ``user_id`` if it can be an identity, else raises ``ValueError``.

    Identities end up in thread metadata and logs, so they are kept to a short,
    printable alphabet without spaces (which still fits providers' subjects such as
    ``auth0|5f7c...`` or a UUID).
    """
    if not _USER_ID.fullmatch(user_id):
        raise ValueError(
            f"{user_id!r} is not a usable user id: use 1-128 letters, digits or _.@+|:- "
            "(starting with a letter or digit)."
        )
    return user_id


def issue_token(
    user_id: str,
    secret: str,
    *,
    days: float = DEFAULT_DAYS,
    issuer: str | None = None,
    audience: str | None = None,
    now: datetime | None = None,
) -> str:
    """A shared-secret bearer token for ``user_id`` that expires after ``days``.

    Args:
        user_id: Becomes the token's ``sub``.
        secret: The server's ``MEMAGENT_AUTH_SECRET``.
        days: Lifetime; must be positive.
        issuer: Written as ``iss`` (the server then requires it).
        audience: Written as ``aud`` (the server then requires it).
        now: The issue time (default: the current time).

    Raises:
        ValueError: ``user_id`` is not a usable identity, or ``days`` is not positive.
    """
    if not days > 0:
        raise ValueError(f"A token must last a positive number of days, got {days}.")
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": check_user_id(user_id),
        "iat": issued,
        "exp": issued + timedelta(days=days),
    }
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm=SHARED_SECRET_ALGORITHM)


@functools.cache
def _provider_keys(jwks_url: str) -> jwt.PyJWKClient:
    """One key client per URL for the process, so its key cache outlives a request."""
    return jwt.PyJWKClient(jwks_url, timeout=10)


async def verify_token(token: str, settings: Settings) -> str:
    """The user id a token was issued for.

    Raises:
        SettingsError: The auth settings are unusable (see ``check_auth_settings``).
        jwt.InvalidTokenError: The token is malformed, expired, not signed by the
            configured key, uses another algorithm, or names another issuer or
            audience, or its subject is not a usable user id.
        jwt.PyJWKClientError: No key of the provider matches the token;
            ``jwt.PyJWKClientConnectionError`` if the provider's keys cannot be fetched.
        jwt.PyJWKSetError: The provider published no usable key.
    """
    check_auth_settings(settings)
    key: str | jwt.PyJWK
    if settings.auth_jwks_url is None:
        key, algorithms = shared_secret(settings), [SHARED_SECRET_ALGORITHM]
    else:
        # PyJWKClient fetches over blocking urllib (cached for five minutes).
        client = _provider_keys(settings.auth_jwks_url)
        key = await asyncio.to_thread(client.get_signing_key_from_jwt, token)
        algorithms = list(settings.auth_algorithms)
    claims = jwt.decode(
        token,
        key,
        algorithms=algorithms,
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        leeway=CLOCK_SKEW,
        options={"require": ["exp", "sub"]},
    )
    try:
        return check_user_id(claims["sub"])
    except ValueError as error:
        raise jwt.InvalidTokenError(str(error)) from None


def _unauthorized(detail: str) -> Auth.exceptions.HTTPException:
    return Auth.exceptions.HTTPException(
        status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def bearer_user(authorization: str | None, settings: Settings) -> str:
    """The user an ``Authorization`` header names: the one check of the server and the page.

    Both call this, so the same header gets the same status and the same sentence
    from either.

    Raises:
        Auth.exceptions.HTTPException: 401 when the token is missing or not valid (the
            detail says why, e.g. "Signature has expired"); 503 when the identity
            provider's keys cannot be fetched or none of them is usable.
    """
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("Sign in: send 'Authorization: Bearer <token>'.")
    try:
        return await verify_token(token.strip(), settings)
    except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError):
        raise Auth.exceptions.HTTPException(
            status_code=503, detail="The identity provider's signing keys are unavailable."
        ) from None
    except (jwt.InvalidTokenError, jwt.PyJWKClientError) as error:
        raise _unauthorized(f"Invalid token: {error}") from None


@auth.authenticate
async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    """Turns the ``Authorization`` header into the requesting user (see ``bearer_user``).

    Settings are read per request (a cheap environment lookup) so that what the server
    enforces is always what its environment says.

    Raises:
        Auth.exceptions.HTTPException: With auth on, as ``bearer_user`` does.
    """
    settings = Settings.from_env()
    if not settings.auth_enabled:
        return {"identity": ANONYMOUS, "is_authenticated": True}
    return {"identity": await bearer_user(authorization, settings), "is_authenticated": True}


@auth.on
async def owner_only(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType | None:
    """Threads, runs, crons and assistant changes: stamp the owner, filter by owner.

    ``create``/``update``/``create_run`` get ``owner`` written into their metadata
    (overwriting whatever the client sent, so nobody can hand a thread to someone
    else); every action gets the filter, so another user's resource is simply not
    found.
    """
    if not Settings.from_env().auth_enabled:
        return None
    owner = {OWNER_KEY: ctx.user.identity}
    if ctx.action in _STAMPED_ACTIONS and isinstance(value, dict):
        if not isinstance(value.get("metadata"), dict):
            value["metadata"] = {}
        value["metadata"].update(owner)  # in place: the server keeps this very dict
    return owner


def shared_or_own(ctx: Auth.types.AuthContext) -> Auth.types.FilterType | None:
    """The filter for reading assistants: the graph's own ones, and the user's.

    The server creates one assistant per graph (metadata ``created_by: system``);
    without it no user could start a run, so it is shared. Assistants a user made in
    Studio carry their ``owner`` like threads do and stay private. (The SDK's
    ``FilterType`` does not spell out ``$or``; the server supports it.)
    """
    if not Settings.from_env().auth_enabled:
        return None
    either = {"$or": [{"created_by": "system"}, {OWNER_KEY: ctx.user.identity}]}
    return cast(Auth.types.FilterType, either)


@auth.on.assistants.read
async def read_assistant(
    ctx: Auth.types.AuthContext, value: Auth.types.AssistantsRead
) -> Auth.types.FilterType | None:
    """See ``shared_or_own``."""
    return shared_or_own(ctx)


@auth.on.assistants.search
async def search_assistants(
    ctx: Auth.types.AuthContext, value: Auth.types.AssistantsSearch
) -> Auth.types.FilterType | None:
    """See ``shared_or_own``."""
    return shared_or_own(ctx)


@auth.on.store
async def own_namespace(ctx: Auth.types.AuthContext, value: Any) -> None:
    """Store items live under the user's id as the first namespace element."""
    if not Settings.from_env().auth_enabled:
        return
    namespace = tuple(value.get("namespace") or ())
    if not namespace or namespace[0] != ctx.user.identity:
        value["namespace"] = (ctx.user.identity, *namespace)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agent.auth <user-id>... [--days N]``: prints one token per user id.

    Reads the secret (and the issuer and audience, if set) from the same settings as
    the server, so the tokens it prints are the ones that server accepts.
    """
    parser = argparse.ArgumentParser(
        prog="python -m agent.auth",
        description=f"Prints a bearer token for each user id, signed with {SECRET_VARIABLE}.",
    )
    parser.add_argument("user_ids", nargs="+", metavar="USER", help="who the token is for")
    parser.add_argument(
        "--days",
        type=float,
        default=DEFAULT_DAYS,
        help=f"how long the tokens last (default: {DEFAULT_DAYS})",
    )
    args = parser.parse_args(argv)
    now = datetime.now(UTC)
    try:
        settings = Settings.from_env()
        secret = shared_secret(settings)
        tokens = [
            issue_token(
                user_id,
                secret,
                days=args.days,
                issuer=settings.auth_issuer,
                audience=settings.auth_audience,
                now=now,
            )
            for user_id in args.user_ids
        ]
    except (SettingsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for user_id, token in zip(args.user_ids, tokens, strict=True):
        print(f"{user_id}\t{token}")
    expiry = (now + timedelta(days=args.days)).isoformat(timespec="minutes")
    print(f"valid until {expiry}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
