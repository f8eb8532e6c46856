"""The one-click acknowledge link: a signed, expiring token naming what it acks.

A token names one alert (fingerprint), one occurrence (its startsAt), the
receiver whose notification carried it, and when it stops working. It is
``<claims>.<signature>``, both base64url without padding: the claims are a
compact JSON list, the signature HMAC-SHA256 over them with
``auth.link_secret`` (under a label of its own, so a MAC made for another
purpose with the same secret cannot pass as a link). Anyone holding a valid
link may acknowledge that occurrence and nothing else; the link names the
receiver so the ack and the audit log can say whose message it came from.

Checking a token here proves only that we made it and that it has not
expired; whether its occurrence is still the alert's current one (and the
alert still fires) is the use case's question, answered against the stored
alert.
"""

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from app.core.domain import isoformat

_LABEL = b"alertrelay ack link v1\x00"
MAX_TOKEN = 1024  # longer is no token of ours; refused before any work


class LinkError(Exception):
    """The token is not one we made, is damaged, or has expired (``reason``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "invalid" or "expired"


@dataclass(frozen=True, slots=True)
class LinkClaims:
    fingerprint: str
    occurrence: datetime
    receiver: str
    expires: datetime


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, claims: str) -> bytes:
    return hmac.new(secret, _LABEL + claims.encode(), hashlib.sha256).digest()


class Signer:
    """Makes tokens with one secret; the keyed HMAC state is built once and
    copied per token (fan-out signs one link per alert and receiver)."""

    def __init__(self, secret: bytes) -> None:
        self._keyed = hmac.new(secret, _LABEL, hashlib.sha256)

    def token(self, claims: LinkClaims) -> str:
        encoded = _b64(_claims_text(claims).encode())
        mac = self._keyed.copy()
        mac.update(encoded.encode())
        return f"{encoded}.{_b64(mac.digest())}"


@lru_cache(maxsize=4)
def signer_for(secret: bytes) -> Signer:
    return Signer(secret)


def _claims_text(claims: LinkClaims) -> str:
    return json.dumps(
        [
            claims.fingerprint,
            isoformat(claims.occurrence),
            claims.receiver,
            int(claims.expires.timestamp()),
        ],
        separators=(",", ":"),
        ensure_ascii=True,
    )


def make_token(secret: bytes, claims: LinkClaims) -> str:
    return signer_for(secret).token(claims)


def read_token(secret: bytes, token: str, now: datetime) -> LinkClaims:
    """The claims of a token we signed that has not expired; else :class:`LinkError`."""
    if len(token) > MAX_TOKEN or token.count(".") != 1:
        raise LinkError("invalid")
    encoded, _, signature = token.partition(".")
    try:
        given = _unb64(signature)
    except (binascii.Error, ValueError):
        raise LinkError("invalid") from None
    if not hmac.compare_digest(given, _mac(secret, encoded)):
        raise LinkError("invalid")
    try:
        fp, occurrence, receiver, expires = json.loads(_unb64(encoded))
        claims = LinkClaims(
            str(fp),
            datetime.fromisoformat(str(occurrence)).astimezone(UTC),
            str(receiver),
            datetime.fromtimestamp(int(expires), UTC),
        )
    except (binascii.Error, ValueError, TypeError, OverflowError):
        # Signed by us but unreadable: only a change of format does this.
        raise LinkError("invalid") from None
    if claims.expires <= now:
        raise LinkError("expired")
    return claims


def ack_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/ack/{token}"
