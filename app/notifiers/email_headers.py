"""Addresses and headers of a mail, made safe: one line each, no control
characters, nothing that overrides the MIME structure alertrelay builds.

Shared by the email config's validation and by the message it sends.
"""

import email.policy
import unicodedata
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr

from app.config.fields import FieldError

# Headers alertrelay sets itself: the MIME structure (``MIME-Version`` and
# every ``Content-*``, which describe the parts it builds), and the identity
# and date a retry must keep. ``Bcc`` would only disclose (the envelope is ``to``).
RESERVED_HEADERS = frozenset({"message-id", "date", "mime-version", "bcc"})
RESERVED_PREFIX = "content-"


def header_safe(value: str) -> str:
    """``value`` on one line: control characters and line breaks become spaces.

    The standard library refuses some and encodes others, and has had bugs
    here (CVE-2024-6923); a header built from alert data is cleaned first.
    """
    return "".join(
        " " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in value
    ).strip()


def parse_recipients(value: str) -> list[str]:
    """The addresses of a comma-separated RFC 5322 list (one RCPT each)."""
    out = []
    for _, addr in getaddresses([header_safe(value)]):
        if not plausible_address(addr):
            raise ValueError(f"{addr or value!r} is not an email address")
        out.append(addr)
    if not out:
        raise ValueError("needs at least one address")
    return out


def parse_sender(value: str) -> str:
    _, addr = parseaddr(header_safe(value))
    if not plausible_address(addr) or len(getaddresses([value])) != 1:
        raise ValueError(f"{value!r} must be exactly one email address")
    return addr


def plausible_address(addr: str) -> bool:
    local, at, domain = addr.rpartition("@")
    return bool(at and local and domain) and not any(
        ch.isspace() or ch in "<>," or unicodedata.category(ch) == "Cc" for ch in addr
    )


def check_headers(headers: dict[str, str]) -> None:
    scratch = EmailMessage(policy=email.policy.SMTP)
    for name, value in headers.items():
        lower = name.lower()
        if lower in RESERVED_HEADERS or lower.startswith(RESERVED_PREFIX):
            raise FieldError(
                f"headers.{name}", f"{name} is set by alertrelay and cannot be configured"
            )
        try:
            scratch[name] = header_safe(value)
        except (ValueError, TypeError, IndexError) as exc:
            raise FieldError("headers", f"{name}: {exc}") from None
