"""Who may call the web page's API: the page itself, never another site.

The page listens on a local address, and every website the user visits can send
requests there. Two kinds of such requests need no CORS preflight and would otherwise
run: a *simple* cross-origin POST (``Content-Type: text/plain``, which Starlette still
parses as JSON), and a request through a name the attacker rebinds to 127.0.0.1 (DNS
rebinding), which the browser then treats as the attacker's own origin, so it may read
the answers. ``PageGuard`` refuses both before any route runs:

- an ``Origin`` other than the page's own, ``null`` included (sandboxed frames, files);
- a ``Host`` that is not an address the server serves: a loopback name, the address the
  connection arrived at, or a host the operator named (``memagent web --host``), each
  with the served port;
- a state-changing request whose body is not declared ``application/json``: a browser
  only sends that type cross-origin after a preflight, which this server never grants.

A client that sends no ``Origin`` (curl, scripts) keeps working; browsers send one with
every cross-origin request that could change something. Refusals are 403 with the
page's one-sentence JSON error, and nothing behind the guard has run.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
"""Names of this machine that no other site can rebind: always served."""

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that read; the API changes nothing on them."""

DEFAULT_PORTS = {"http": 80, "https": 443}

JSON_TYPE = "application/json"


def is_loopback(address: str) -> bool:
    """Whether ``address`` (an IP address or ``localhost``) reaches only this machine."""
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return address.lower() == "localhost"


def _name_and_port(authority: str, scheme: str) -> tuple[str, int] | None:
    """``host[:port]`` as a lower-case name (IPv6 without brackets) and a port; ``None``
    if it does not parse."""
    try:
        parts = urlsplit(f"//{authority}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.username is not None or parts.path:
        return None
    return parts.hostname, port if port is not None else DEFAULT_PORTS.get(scheme, 80)


def refusal(scope: Scope, hosts: frozenset[str]) -> str | None:
    """Why the request in ``scope`` is refused (one sentence), or ``None`` if it may pass.

    Args:
        scope: An ASGI HTTP scope; its ``server`` is the address the connection
            arrived at (``None`` on a Unix socket, where only the name is checked).
        hosts: Names served besides the loopback ones, lower case.
    """
    headers = Headers(scope=scope)
    scheme = scope.get("scheme", "http")
    origin = headers.get("origin")
    if origin is not None and origin.strip().lower() == "null":
        return "Refused: a request from an opaque origin (Origin: null) may not use this page."
    host = headers.get("host")
    if host is not None:
        served = _name_and_port(host, scheme)
        server = scope.get("server")
        names = LOOPBACK_NAMES | hosts | ({str(server[0]).lower()} if server else set())
        port = None if server is None else server[1] or DEFAULT_PORTS.get(scheme, 80)
        if served is None or served[0] not in names or (port is not None and served[1] != port):
            return (
                f"Refused: {host!r} is not an address this server serves, so the request may "
                "come from a page that rebound its name to this machine."
            )
        if origin is not None:
            split = urlsplit(origin.strip())
            if split.scheme != scheme or _name_and_port(split.netloc, split.scheme) != served:
                return f"Refused: a request from another site ({origin}) may not use this page."
    elif origin is not None:
        return f"Refused: a request from another site ({origin}) may not use this page."
    if scope["method"] not in SAFE_METHODS:
        media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != JSON_TYPE:
            return f"Refused: a request that changes something must send Content-Type: {JSON_TYPE}."
    return None


class PageGuard:
    """ASGI middleware that answers 403 to any request ``refusal`` finds a reason for.

    Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, so the chat's streamed
    replies pass through untouched. In ``langgraph dev`` it wraps only memagent's
    own mount (``/memagent/``): the server's API keeps its own rules (``http.cors``).
    """

    def __init__(self, app: ASGIApp, *, hosts: Iterable[str] = ()) -> None:
        """Args:
        app: What the guard lets requests through to.
        hosts: Names served besides the loopback ones (``memagent web --host``).
        """
        self.app = app
        self.hosts = frozenset(name.strip("[]").lower() for name in hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (reason := refusal(scope, self.hosts)) is not None:
            await JSONResponse({"error": reason}, status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)
