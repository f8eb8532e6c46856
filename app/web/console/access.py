"""Who may read and act in the console, and protection against forged requests.

Actions (replay) need the admin credential. Browsers cannot send a bearer
token from a form, so an operator signs in once with the admin token and
gets a cookie: an expiry signed with a key derived from that token. Every
replica derives the same key, and changing the token ends every session.
``curl`` may send ``Authorization: Bearer <admin token>`` instead. With no
``auth`` section at all the API's writes are open, and so are these.

Forged requests: every form carries a token that must equal the
``alertrelay_csrf`` cookie (double submit). The cookie is ``SameSite=Strict``,
so a form posted from another site arrives without it; a request whose
``Origin`` or ``Sec-Fetch-Site`` names another site is refused as well.
"""

import hashlib
import hmac
import secrets
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from app.config.sections import AuthConfig
from app.web.access import admin_actor, credentials
from app.web.guards import HTTPError, read_body
from app.web.state import services_of

CSRF_COOKIE = "alertrelay_csrf"
CSRF_FIELD = "csrf_token"
ADMIN_COOKIE = "alertrelay_admin"
SESSION_SECONDS = 12 * 3600
FORM_LIMIT = 16 * 1024


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def csrf_token(request: Request) -> str:
    """The token this browser's forms carry (a new one when it has none yet)."""
    existing = request.cookies.get(CSRF_COOKIE, "")
    if len(existing) == 43 and existing.replace("-", "").replace("_", "").isalnum():
        return existing
    token: str | None = request.scope.setdefault("alertrelay.csrf", None)
    if token is None:
        token = secrets.token_urlsafe(32)
        request.scope["alertrelay.csrf"] = token
    return token


def set_csrf_cookie(request: Request, response: Response) -> None:
    """Give the browser the token its forms were rendered with, if it is new."""
    token = request.scope.get("alertrelay.csrf")
    if token:
        response.set_cookie(
            CSRF_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=_secure(request),
            path="/",
        )


def _same_origin(request: Request) -> bool:
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    return parts.netloc.lower() == request.headers.get("host", "").lower()


async def check_csrf(request: Request) -> dict[str, str]:
    """Read the posted form and refuse it (403) unless it came from our own page."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    # Our forms are a few short url-encoded fields; the standard library parses
    # them. Anything else cannot carry the token, so it is refused below.
    raw = await read_body(request, FORM_LIMIT)
    if media != "application/x-www-form-urlencoded":
        raw = b""
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise HTTPError(400, "the form could not be read") from None
    fields = dict(pairs)
    given = fields.get(CSRF_FIELD, "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if (
        not _same_origin(request)
        or not given
        or not cookie
        or not hmac.compare_digest(given.encode(), cookie.encode())
    ):
        raise HTTPError(
            403,
            "refused: this form did not come from this console (missing or wrong CSRF token); "
            "reload the page and try again",
        )
    return fields


def _session_key(auth: AuthConfig) -> bytes | None:
    if auth.admin_token is None:
        return None
    token = auth.admin_token.get_secret_value().encode()
    return hmac.new(token, b"alertrelay console session v1", hashlib.sha256).digest()


def _sign(key: bytes, expires: int) -> str:
    mac = hmac.new(key, str(expires).encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{mac}"


def _now(request: Request) -> float:
    return float(services_of(request).clock.now().timestamp())


def admin_state(request: Request, auth: AuthConfig | None) -> str:
    """``open`` (no auth), ``signed-in``, ``signed-out`` or ``disabled`` (no admin token)."""
    if auth is None:
        return "open"
    key = _session_key(auth)
    if key is None and not auth.admin_users:
        return "disabled"
    if request.headers.get("authorization"):
        # Only a look: a read credential on a page is no failed admin attempt.
        # A named admin (auth.admin_users) acts by sending its own credential,
        # e.g. basic auth in the browser; the session cookie needs admin_token.
        scheme, value = credentials(request)
        return "signed-in" if admin_actor(auth, scheme, value) is not None else "signed-out"
    if key is None:
        return "signed-out"
    raw = request.cookies.get(ADMIN_COOKIE, "")
    expires, _, _mac = raw.partition(".")
    if expires.isdigit() and int(expires) > _now(request):
        if hmac.compare_digest(raw.encode(), _sign(key, int(expires)).encode()):
            return "signed-in"
    return "signed-out"


def acting_admin(request: Request, auth: AuthConfig | None) -> str | None:
    """The named admin whose own credential came with this request, if any
    (audit entries and acks name them; a session cookie is ``admin``)."""
    if auth is None or not request.headers.get("authorization"):
        return None
    scheme, value = credentials(request)
    return admin_actor(auth, scheme, value)


def require_admin(request: Request, auth: AuthConfig | None) -> None:
    state = admin_state(request, auth)
    if state == "disabled":
        raise HTTPError(
            403,
            "actions are disabled: set auth.admin_token (or admin_token_file) or auth.admin_users",
        )
    if state == "signed-out":
        raise HTTPError(401, "sign in with the admin token (or a named admin's credential) first")


def sign_in(request: Request, auth: AuthConfig | None, given: str, response: Response) -> bool:
    """Set the session cookie when ``given`` is the admin token."""
    if auth is None or auth.admin_token is None:
        return False
    key = _session_key(auth)
    expected = auth.admin_token.get_secret_value().encode()
    if key is None or not hmac.compare_digest(given.encode(), expected):
        return False
    response.set_cookie(
        ADMIN_COOKIE,
        _sign(key, int(_now(request)) + SESSION_SECONDS),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/",
    )
    return True


def sign_out(response: Response) -> None:
    response.delete_cookie(ADMIN_COOKIE, path="/", httponly=True, samesite="strict")


def require_read(request: Request, auth: AuthConfig | None) -> None:
    """Reads of the console: ``auth.read`` is enforced for every page by the
    ``ReadGuard`` middleware (app/web/access.py) before a handler runs."""
    del request, auth


def safe_next(target: str | None, default: str = "/") -> str:
    """A redirect target on this site only (a path, never ``//host`` or a URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
