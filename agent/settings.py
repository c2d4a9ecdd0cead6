"""Every setting memagent reads from the environment, parsed and typed in one place.

Settings are read when asked for (``Settings.from_env()``), not at import time, so a
test that changes the environment with ``monkeypatch`` sees its change.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from agent.errors import SettingsError

OFFLINE_MODEL = "offline"
"""The value of ``MEMAGENT_MODEL`` that selects the built-in deterministic model."""
OFFLINE_LABEL = "offline demo model (no LLM; set MEMAGENT_MODEL or OPENAI_API_KEY for a real one)"
DEFAULT_OPENAI_MODEL = "openai:gpt-4o-mini"


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _optional_int(env: Mapping[str, str], name: str) -> int | None:
    """``_int`` for a setting whose absence means "work it out elsewhere": ``None``."""
    return _int(env, name, 0) or None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _names(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())
    return names or default


def _type_names(env: Mapping[str, str], name: str) -> tuple[tuple[str, str], ...]:
    """A comma-separated list of ``module.Class`` names, as ``(module, class)`` pairs."""
    names = []
    for item in env.get(name, "").split(","):
        dotted = item.strip()
        if not dotted:
            continue
        module, _, cls = dotted.rpartition(".")
        if not module or not cls.isidentifier():
            raise SettingsError(f"{name} lists module.Class names, got {dotted!r}")
        names.append((module, cls))
    return tuple(names)


_METADATA_KEY = re.compile(r"[A-Za-z0-9_.:-]+")


def _metadata_keys(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Run-config keys to copy into checkpoint metadata, checked so a typo is loud.

    A key with a space or a quote in it is far likelier a slip in the variable than a
    key a deployment passes; a ``__`` key is langgraph's own (it holds objects, and
    langgraph never copies it), so naming one would silently do nothing.
    """
    keys = _names(env, name, ())
    for key in keys:
        if not _METADATA_KEY.fullmatch(key) or key.startswith("__"):
            raise SettingsError(
                f"{name} lists run-config keys (letters, digits, _ . : -, not starting "
                f"with __), comma-separated; got {key!r}"
            )
    return keys


@dataclass(frozen=True, slots=True)
class Settings:
    """memagent's configuration.

    Attributes:
        database_url: The PostgreSQL server to use; ``None`` starts the embedded one.
        home: Where memagent keeps its own files (the embedded database lives in
            ``home / "pgdata"``).
        model: An ``init_chat_model`` spec such as ``openai:gpt-4o-mini``, or
            ``"offline"``; ``None`` means "a real model if an OpenAI key is set".
        openai_api_key: Passed to OpenAI-compatible models.
        openai_base_url: For OpenAI-compatible servers (Ollama, vLLM, ...).
        pool_max_size: Upper bound of the connection pool.
        pool_timeout: Seconds a caller waits for a pooled connection.
        thread_busy_timeout: Seconds a turn or memory operation waits for another
            turn on the same thread before it is refused.
        lease_seconds: How long a thread's lease outlives a holder that stopped
            renewing it (a crashed process); a running turn renews it every third of
            that (``MEMAGENT_LEASE_SECONDS``).
        auth_enabled: Whether the server's thread-ownership handler is active.
        auth_secret: The shared secret that signs and checks HS256 tokens
            (``MEMAGENT_AUTH_SECRET``).
        auth_issuer: The ``iss`` every token must carry (``MEMAGENT_AUTH_ISSUER``).
        auth_audience: The ``aud`` every token must carry (``MEMAGENT_AUTH_AUDIENCE``).
        auth_jwks_url: Where an identity provider publishes its signing keys
            (``MEMAGENT_AUTH_JWKS_URL``); set, tokens are checked against those keys
            instead of the shared secret.
        auth_algorithms: The signature algorithms accepted from the identity
            provider (``MEMAGENT_AUTH_ALGORITHMS``, comma-separated).
        serde_allow: ``(module, class)`` of the types besides langgraph's safe ones
            that state values may hold (``MEMAGENT_SERDE_ALLOW=module.Class,...``).
        prepared_statements: Whether connections prepare statements; off
            (``MEMAGENT_PREPARED_STATEMENTS=false``) behind a pooler in transaction mode.
        context_tokens: The most tokens one model call may receive
            (``MEMAGENT_CONTEXT_TOKENS``); ``None`` derives it from the model
            (``agent.memory.budget.resolve_context_tokens``).
        pseudonym_key: The secret behind the audit log's pseudonyms of erased users
            (``MEMAGENT_PSEUDONYM_KEY``); ``None``: a key memagent keeps in ``home``
            (``agent.store.pseudonym``).
        server_url: The ``langgraph dev`` server whose threads ``erase-user`` also
            removes (``MEMAGENT_SERVER_URL``); ``None``: no server.
        retention: The retention the web page's process (``memagent web``, and
            ``langgraph dev``, which runs the page) applies to every thread
            (``MEMAGENT_RETENTION``: ``"200 turns"`` or an age such as ``"90d"``;
            read by ``tools.admin.retention_policy``); ``None``: none.
        retention_interval: Seconds between two such sweeps
            (``MEMAGENT_RETENTION_INTERVAL``).
        metadata_keys: Run-config keys (a run's ``configurable`` or ``metadata``)
            copied into checkpoint metadata besides memagent's own allow-list
            (``MEMAGENT_METADATA_KEYS=user_id,...``), so ``alist(filter=...)`` finds
            them as it does on the stock saver; none by default, for privacy.
    """

    database_url: str | None
    home: Path
    model: str | None
    openai_api_key: str | None
    openai_base_url: str | None
    pool_max_size: int = 10
    pool_timeout: float = 30.0
    thread_busy_timeout: float = 30.0
    lease_seconds: float = 600.0
    auth_enabled: bool = False
    auth_secret: str | None = field(default=None, repr=False)
    auth_issuer: str | None = None
    auth_audience: str | None = None
    auth_jwks_url: str | None = None
    auth_algorithms: tuple[str, ...] = ("RS256",)
    serde_allow: tuple[tuple[str, str], ...] = ()
    prepared_statements: bool = True
    context_tokens: int | None = None
    pseudonym_key: str | None = field(default=None, repr=False)
    server_url: str | None = None
    retention: str | None = None
    retention_interval: float = 3600.0
    metadata_keys: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Reads the settings from ``env`` (default: ``os.environ``).

        Raises:
            SettingsError: A variable is set to a value that cannot be used.
        """
        env = os.environ if env is None else env
        home = env.get("MEMAGENT_HOME", "").strip()
        return cls(
            database_url=env.get("DATABASE_URL", "").strip() or None,
            home=Path(home).expanduser() if home else Path(platformdirs.user_data_dir("memagent")),
            model=env.get("MEMAGENT_MODEL", "").strip() or None,
            openai_api_key=env.get("OPENAI_API_KEY", "").strip() or None,
            openai_base_url=env.get("OPENAI_BASE_URL", "").strip() or None,
            pool_max_size=_int(env, "MEMAGENT_POOL_MAX_SIZE", 10),
            pool_timeout=_float(env, "MEMAGENT_POOL_TIMEOUT", 30.0),
            thread_busy_timeout=_float(env, "MEMAGENT_THREAD_BUSY_TIMEOUT", 30.0),
            lease_seconds=_float(env, "MEMAGENT_LEASE_SECONDS", 600.0),
            auth_enabled=_bool(env, "MEMAGENT_AUTH", False),
            auth_secret=env.get("MEMAGENT_AUTH_SECRET", "").strip() or None,
            auth_issuer=env.get("MEMAGENT_AUTH_ISSUER", "").strip() or None,
            auth_audience=env.get("MEMAGENT_AUTH_AUDIENCE", "").strip() or None,
            auth_jwks_url=env.get("MEMAGENT_AUTH_JWKS_URL", "").strip() or None,
            auth_algorithms=_names(env, "MEMAGENT_AUTH_ALGORITHMS", ("RS256",)),
            serde_allow=_type_names(env, "MEMAGENT_SERDE_ALLOW"),
            prepared_statements=_bool(env, "MEMAGENT_PREPARED_STATEMENTS", True),
            context_tokens=_optional_int(env, "MEMAGENT_CONTEXT_TOKENS"),
            pseudonym_key=env.get("MEMAGENT_PSEUDONYM_KEY", "").strip() or None,
            server_url=env.get("MEMAGENT_SERVER_URL", "").strip() or None,
            retention=env.get("MEMAGENT_RETENTION", "").strip() or None,
            retention_interval=_float(env, "MEMAGENT_RETENTION_INTERVAL", 3600.0),
            metadata_keys=_metadata_keys(env, "MEMAGENT_METADATA_KEYS"),
        )

    @property
    def embedded_data_dir(self) -> Path:
        """The embedded PostgreSQL's data directory (used only without ``DATABASE_URL``)."""
        return self.home / "pgdata"


def model_label(settings: Settings) -> str:
    """Which model ``load_model`` picks: its ``init_chat_model`` spec, or the offline label.

    A reading of the settings, so the server (whose storage layer opens first) can name
    its model without importing or building one.
    """
    spec = settings.model
    if spec == OFFLINE_MODEL or (spec is None and not settings.openai_api_key):
        return OFFLINE_LABEL
    return spec or DEFAULT_OPENAI_MODEL
