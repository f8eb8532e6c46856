"""Keyset paging: the opaque cursor every list hands out and takes back.

A cursor names the last row a page showed (its sort key), so the next page
starts right after it with an index walk, however deep it is. It is base64
JSON, not a secret and not signed: a damaged or foreign one is refused with
``BadCursor`` (a 400), never trusted further than its shape.
"""

import base64
import json
from datetime import datetime
from typing import Any

from app.core.domain import isoformat


class BadCursor(ValueError):
    pass


def encode_cursor(*parts: Any) -> str:
    """The cursor of a row whose sort key is ``parts`` (datetimes as ISO text)."""
    raw = json.dumps([p.isoformat() if isinstance(p, datetime) else p for p in parts])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[Any]:
    """The ``size`` parts of a cursor ``encode_cursor`` made, or ``BadCursor``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError):
        raise BadCursor("cursor: not a cursor this API returned") from None
    if not isinstance(parts, list) or len(parts) != size:
        raise BadCursor("cursor: not a cursor this API returned")
    return parts


def decode_id_cursor(cursor: str) -> int:
    """The id of a cursor over a list ordered by id."""
    (last_id,) = decode_cursor(cursor, 1)
    if not isinstance(last_id, int) or isinstance(last_id, bool):
        raise BadCursor("cursor: not a cursor this API returned")
    return last_id


def decode_change_cursor(cursor: str) -> tuple[datetime, str]:
    """(last_changed, fingerprint) of a cursor over alerts, newest change first."""
    changed, fp = decode_cursor(cursor, 2)
    try:
        changed_at = datetime.fromisoformat(changed)
    except (TypeError, ValueError):
        raise BadCursor("cursor: not a cursor this API returned") from None
    if not isinstance(fp, str):
        raise BadCursor("cursor: not a cursor this API returned")
    return changed_at, fp


def timestamp(value: datetime | None) -> str | None:
    """A stored time as the API shows it (ISO 8601, UTC), or None."""
    return isoformat(value) if value is not None else None
