"""Shared test helpers that are neither fixtures nor fakes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import psycopg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://id.example.com/"
AUDIENCE = "memagent-api"


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid JWT claims for ``alice`` for an hour from ``ISSUER`` for ``AUDIENCE``.

    An override of ``None`` leaves that claim out.
    """
    now = int(datetime.now(UTC).timestamp())
    base: dict[str, Any] = {"sub": "alice", "iat": now, "exp": now + 3600}
    base.update(iss=ISSUER, aud=AUDIENCE)
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def new_rsa_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class IdentityProvider:
    """A real JWKS endpoint on 127.0.0.1 and the private key behind it, as an IdP has."""

    jwks_url: str
    key: rsa.RSAPrivateKey
    issuer: str = ISSUER
    audience: str = AUDIENCE
    kid: str = "key-1"

    def sign(
        self, claims: dict[str, Any], *, key: rsa.RSAPrivateKey | None = None, kid: str = ""
    ) -> str:
        """A token signed RS256 with the provider's key (or ``key``), naming ``kid``."""
        headers = {"kid": kid or self.kid}
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers=headers)

    def public_pem(self) -> bytes:
        """The public key in PEM, as anyone can derive it from the JWKS."""
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@contextmanager
def serving_jwks() -> Iterator[IdentityProvider]:
    """Serves ``/.well-known/jwks.json`` with one fresh RS256 public key until exit."""
    key = new_rsa_key()
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update(kid="key-1", alg="RS256", use="sig")
    body = json.dumps({"keys": [jwk]}).encode()

    class JwksHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/.well-known/jwks.json":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: requests are not test output."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), JwksHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield IdentityProvider(f"http://{host!s}:{port}/.well-known/jwks.json", key)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def raw_hits(database_url: str, needle: str) -> dict[str, int]:
    """Rows holding ``needle`` (any case) per table.column, over every table.

    Every text, bytea and JSON column found through ``information_schema``, so a
    copy in a table or column added later is found too: "erased" is proven on the
    raw rows, not through memagent's own reading of them.
    """
    hits: dict[str, int] = {}
    with psycopg.connect(database_url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' "
            "AND data_type IN ('text', 'bytea', 'jsonb', 'json', 'character varying')"
        ).fetchall()
        for table, column, data_type in columns:
            value = f"encode({column}, 'escape')" if data_type == "bytea" else f"{column}::text"
            row = conn.execute(
                f"SELECT count(*) FROM {table} WHERE {value} ILIKE %s",
                (f"%{needle}%",),
            ).fetchone()
            if row and row[0]:
                hits[f"{table}.{column}"] = row[0]
    return hits
