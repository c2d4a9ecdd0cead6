"""Thread ownership for the LangGraph server (``langgraph dev``, Studio, the SDK).

``langgraph.json`` always names this module's ``auth``; the setting ``MEMAGENT_AUTH``
decides what it does. Off (the default) it lets every request through unchanged, as if
no auth were configured, so a developer on their own machine needs no token. On, every
request needs a token, and each user sees and changes only the threads (and runs,
crons, assistants, store items) they created: the standard langgraph_sdk pattern of
an ``owner`` metadata stamp on create and an ``owner`` filter on everything else. A
thread that is not yours answers 404, exactly like one that does not exist.

Tokens are ``<user-id>.<signature>``, sent as ``Authorization: Bearer <token>``, where
the signature is the hex HMAC-SHA256 of the user id under the shared secret
``MEMAGENT_AUTH_SECRET``. This suits a small deployment without an identity provider:
the server keeps no user list, whoever holds the secret issues tokens with
``python -m agent.auth <user-id>``, and rotating the secret revokes them all. Tokens
do not expire, so hand them out like passwords and serve over HTTPS outside
localhost. A deployment with a real identity provider replaces ``authenticate`` with a
JWT check and keeps the ownership handlers as they are.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, cast

from langgraph_sdk import Auth

from agent.settings import Settings, SettingsError

SECRET_VARIABLE = "MEMAGENT_AUTH_SECRET"
"""Environment variable holding the shared secret that signs tokens."""

MIN_SECRET_CHARS = 32
"""A shorter secret could be guessed from a token; refuse it rather than run weakly."""

OWNER_KEY = "owner"
"""The metadata key that records who created a thread, run, cron or assistant."""

ANONYMOUS = "anonymous"
"""The identity every request gets while auth is off."""

_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}")
_STAMPED_ACTIONS = frozenset({"create", "update", "create_run"})

auth = Auth()


def auth_secret(env: Mapping[str, str] | None = None) -> bytes:
    """The token-signing secret from ``MEMAGENT_AUTH_SECRET``.

    Raises:
        SettingsError: It is unset or shorter than ``MIN_SECRET_CHARS``; with auth on
            the server must not start (or answer) without a usable secret.
    """
    env = os.environ if env is None else env
    secret = env.get(SECRET_VARIABLE, "").strip()
    if len(secret) < MIN_SECRET_CHARS:
        raise SettingsError(
            f"{SECRET_VARIABLE} must be a random string of at least {MIN_SECRET_CHARS} "
            "characters (it signs the tokens MEMAGENT_AUTH=true asks for), e.g. the output "
            'of `python -c "import secrets; print(secrets.token_urlsafe(32))"`.'
        )
    return secret.encode()


def check_user_id(user_id: str) -> str:
    """Returns ``user_id`` if it can be an identity, else raises ``ValueError``.

    Identities end up in thread metadata and logs, so they are kept to a short,
    printable alphabet without spaces.
    """
    if not _USER_ID.fullmatch(user_id):
        raise ValueError(
            f"{user_id!r} is not a usable user id: use 1-128 letters, digits or _.@+- "
            "(starting with a letter or digit)."
        )
    return user_id


def _signature(user_id: str, secret: bytes) -> str:
    return hmac.new(secret, user_id.encode(), hashlib.sha256).hexdigest()


def issue_token(user_id: str, secret: bytes) -> str:
    """The bearer token for ``user_id`` under ``secret``.

    Raises:
        ValueError: ``user_id`` is not a usable identity.
    """
    return f"{check_user_id(user_id)}.{_signature(user_id, secret)}"


def verify_token(token: str, secret: bytes) -> str | None:
    """The user id a token was issued for, or ``None`` if it is not a valid token."""
    user_id, _, signature = token.strip().rpartition(".")
    if not user_id or not _USER_ID.fullmatch(user_id):
        return None
    if not hmac.compare_digest(signature.encode(), _signature(user_id, secret).encode()):
        return None
    return user_id


def _unauthorized(detail: str) -> Auth.exceptions.HTTPException:
    return Auth.exceptions.HTTPException(status_code=401, detail=detail)


@auth.authenticate
async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    """Turns the ``Authorization`` header into the requesting user.

    Settings are read per request (a cheap environment lookup) so that what the server
    enforces is always what its environment says.

    Raises:
        Auth.exceptions.HTTPException: 401 when auth is on and the token is missing,
            malformed or not signed with this server's secret.
    """
    if not Settings.from_env().auth_enabled:
        return {"identity": ANONYMOUS, "is_authenticated": True}
    secret = auth_secret()
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("Send 'Authorization: Bearer <token>'.")
    user_id = verify_token(token, secret)
    if user_id is None:
        raise _unauthorized("Invalid token.")
    return {"identity": user_id, "is_authenticated": True}


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
    """``python -m agent.auth <user-id>...``: prints one token per user id.

    Reads the secret from ``MEMAGENT_AUTH_SECRET``, the same as the server, so the
    tokens it prints are the ones that server accepts.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or any(a in {"-h", "--help"} for a in args):
        print("usage: MEMAGENT_AUTH_SECRET=... python -m agent.auth <user-id> [<user-id>...]")
        return 0 if args else 2
    try:
        secret = auth_secret()
        tokens = [issue_token(user_id, secret) for user_id in args]
    except (SettingsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for user_id, token in zip(args, tokens, strict=True):
        print(f"{user_id}\t{token}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
elif Settings.from_env().auth_enabled:
    auth_secret()  # refuse to start a server that could not check a single token
