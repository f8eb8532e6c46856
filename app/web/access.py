"""Who may call what, who they are, and how fast they may guess.

Three kinds of credential guard the HTTP interface: the webhook credential
(bearer tokens or basic auth, what Alertmanager's ``http_config`` sends), the
admin credential (the admin token or a named admin user) for writes, and
``auth.read`` for every read except the probes. The admin credential also
reads. A request that passes is tagged with its *actor* — a named user's
name, ``admin``, ``read``, ``webhook`` or ``anonymous`` when nothing is
configured — in ``request.state.actor``, which is what an audit log records.

Every comparison is constant-time over bytes. A client that keeps sending
wrong credentials is answered 429 for a growing while (:class:`AuthBackoff`),
and every wrong credential is counted in
``alertrelay_auth_failures_total{endpoint}``.
"""

import base64
import binascii
import hmac
import ipaddress
import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config.sections import AuthConfig, NamedUser
from app.web.guards import HTTPError, error_response

Endpoint = Literal["webhook", "admin", "read"]

# Paths anyone may GET: probes, build info and the API description (no data).
OPEN_PATHS = frozenset(
    {"/health", "/live", "/ready", "/version", "/openapi.json", "/-/healthy", "/-/ready"}
)


def credentials(conn: HTTPConnection) -> tuple[str, bytes]:
    header = conn.headers.get("authorization")
    if not header:
        return "", b""
    scheme, _, value = header.partition(" ")
    # Starlette decodes headers as latin-1, so this recovers the raw bytes.
    return scheme.lower(), value.strip().encode("latin-1")


def _basic(value: bytes) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _equal(given: bytes, secret: str) -> bool:
    return hmac.compare_digest(given, secret.encode())


def _user(users: list[NamedUser], scheme: str, value: bytes) -> str | None:
    # Every user is compared (constant time each), so the timing does not
    # reveal which one matched or how many there are.
    found = None
    decoded = _basic(value) if scheme == "basic" else b""
    for user in users:
        ok = False
        if scheme == "bearer" and user.token is not None:
            ok = _equal(value, user.token.get_secret_value())
        elif scheme == "basic" and user.password is not None:
            ok = _equal(decoded, f"{user.name}:{user.password.get_secret_value()}")
        if ok and found is None:
            found = user.name
    return found


def webhook_actor(auth: AuthConfig, scheme: str, value: bytes) -> str | None:
    if scheme == "bearer":
        found = False
        for secret in auth.webhook_secrets:
            found |= hmac.compare_digest(value, secret)
        return "webhook" if found else None
    if scheme == "basic" and auth.basic_auth is not None:
        return auth.basic_auth.username if auth.basic_auth.matches(_basic(value)) else None
    return None


def admin_actor(auth: AuthConfig, scheme: str, value: bytes) -> str | None:
    named = _user(auth.admin_users, scheme, value)
    if named is not None:
        return named
    if scheme == "bearer" and auth.admin_token is not None:
        return "admin" if _equal(value, auth.admin_token.get_secret_value()) else None
    return None


def read_actor(auth: AuthConfig, scheme: str, value: bytes) -> str | None:
    found = admin_actor(auth, scheme, value)
    read = auth.read
    if found is not None or read is None:
        return found
    named = _user(read.users, scheme, value)
    if named is not None:
        return named
    if scheme == "bearer" and read.token is not None:
        return "read" if _equal(value, read.token.get_secret_value()) else None
    if scheme == "basic" and read.basic_auth is not None:
        return read.basic_auth.username if read.basic_auth.matches(_basic(value)) else None
    return None


@dataclass
class _Client:
    failures: int = 0
    blocked_until: datetime | None = None
    last: datetime | None = None


class AuthBackoff:
    """Per-client backoff after repeated wrong credentials.

    The first ``free`` wrong credentials in a row are answered 401. Each one
    after that closes the door to that client for twice as long as the
    previous (1 s, 2 s, 4 s … up to ``max_s``); meanwhile every request of
    that client that needs a credential is answered 429 *without* checking
    it, so the answers leak nothing and guessing runs at the backoff's pace.
    A success resets the client. Clients are keyed by address and at most
    ``max_clients`` are remembered (the oldest forgotten first), so spraying
    addresses cannot grow memory.
    """

    def __init__(self, *, free: int = 5, max_s: float = 300.0, forget_s: float = 900.0) -> None:
        self.free = free
        self.max_s = max_s
        self.forget_s = forget_s
        self.max_clients = 10_000
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    def knows(self, client: str) -> bool:
        """Whether ``client`` has wrong credentials on record."""
        return client in self._clients

    def retry_after(self, client: str, now: datetime) -> int | None:
        """Seconds the client must wait, or None when it may try."""
        state = self._clients.get(client)
        if state is None or state.blocked_until is None or now >= state.blocked_until:
            return None
        return max(1, math.ceil((state.blocked_until - now).total_seconds()))

    def failure(self, client: str, now: datetime) -> None:
        state = self._clients.pop(client, None) or _Client()
        if state.last is not None and (now - state.last).total_seconds() > self.forget_s:
            state = _Client()
        state.failures += 1
        state.last = now
        beyond = state.failures - self.free
        if beyond > 0:
            seconds = min(self.max_s, 2.0 ** (beyond - 1))
            state.blocked_until = now + timedelta(seconds=seconds)
        self._clients[client] = state
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)

    def success(self, client: str) -> None:
        self._clients.pop(client, None)


def client_key(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client is not None else "unknown"


_CHALLENGE = {
    "webhook": 'Bearer realm="alertrelay"',
    "admin": 'Bearer realm="alertrelay-admin"',
    "read": 'Bearer realm="alertrelay-read"',
}


def authorize(conn: HTTPConnection, endpoint: Endpoint) -> str:
    """Check ``conn``'s credential for ``endpoint``; return and record its actor.

    Raises 401 (wrong or missing), 403 (admin endpoints with no admin
    credential configured) or 429 (this client is backing off).
    """
    services = conn.app.state.services
    auth: AuthConfig | None = services.runtime().config.auth
    actor = _open_actor(auth, endpoint)
    if actor is not None:
        conn.state.actor = actor
        return actor
    assert auth is not None
    backoff: AuthBackoff = conn.app.state.auth_backoff
    client = client_key(conn)
    # The clock is read only for a client with wrong credentials on record:
    # every other request (nearly all of them) skips it.
    now = services.clock.now() if backoff.knows(client) else None
    wait = backoff.retry_after(client, now) if now is not None else None
    if wait is not None:
        raise HTTPError(429, "too many wrong credentials; retry later", {"Retry-After": str(wait)})
    scheme, value = credentials(conn)
    if endpoint == "webhook":
        actor = webhook_actor(auth, scheme, value)
    elif endpoint == "admin":
        actor = admin_actor(auth, scheme, value)
    else:
        actor = read_actor(auth, scheme, value)
    if actor is None:
        backoff.failure(client, now or services.clock.now())
        services.metrics.child(services.metrics.auth_failures, endpoint).inc()
        challenge = _CHALLENGE[endpoint]
        if endpoint == "webhook" and not auth.webhook_secrets:
            challenge = 'Basic realm="alertrelay"'
        if endpoint == "read" and auth.read is not None and _basic_capable(auth):
            # A browser opening the console can answer a Basic challenge.
            challenge = 'Basic realm="alertrelay-read"'
        what = {"webhook": "credentials", "admin": "admin credentials", "read": "read credentials"}
        raise HTTPError(
            401, f"missing or invalid {what[endpoint]}", {"WWW-Authenticate": challenge}
        )
    if now is not None:
        backoff.success(client)
    conn.state.actor = actor
    return actor


def _basic_capable(auth: AuthConfig) -> bool:
    read = auth.read
    return read is not None and (
        read.basic_auth is not None or any(u.password is not None for u in read.users)
    )


def _open_actor(auth: AuthConfig | None, endpoint: Endpoint) -> str | None:
    """The actor when ``endpoint`` needs no credential, else None."""
    if auth is None:
        return "anonymous"  # no auth section: everything is open (loopback default)
    if endpoint == "webhook" and not auth.has_webhook_credential():
        return "anonymous"
    if endpoint == "read" and auth.read is None:
        return "anonymous"
    if endpoint == "admin" and not auth.has_admin_credential():
        raise HTTPError(
            403, "admin endpoints are disabled: set auth.admin_token or admin_token_file"
        )
    return None


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def exposure_warnings(host: str, auth: AuthConfig | None) -> list[str]:
    """What ``/health?detailed=true`` and the start-up log warn about."""
    if is_loopback(host) or (auth is not None and auth.has_webhook_credential()):
        return []
    return [
        f"listening on {host} with no webhook credential: anyone who can reach this "
        "address can post alerts (set auth.webhook_token, webhook_token_file or basic_auth)"
    ]


def needs_read(method: str, path: str, auth: AuthConfig | None) -> bool:
    """Is this request a read that ``auth.read`` guards?"""
    if auth is None or auth.read is None or method not in ("GET", "HEAD"):
        return False
    if path in OPEN_PATHS or path.startswith(("/ack/", "/static/")):
        # Probes; the one-click ack link carries its own signed token; the
        # console's stylesheet and script hold no data.
        return False
    if path == "/metrics":
        return auth.read.metrics
    return True


class ReadGuard:
    """ASGI middleware: every read but the probes needs ``auth.read`` when set.

    A middleware rather than a check in each handler, so a read endpoint
    added later is guarded without anyone remembering to.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            conn = HTTPConnection(scope)
            auth = conn.app.state.services.runtime().config.auth
            if needs_read(scope["method"], scope["path"], auth):
                try:
                    authorize(conn, "read")
                except HTTPError as exc:
                    await error_response(exc)(scope, receive, send)
                    return
        await self.app(scope, receive, send)
