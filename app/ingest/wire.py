"""The Alertmanager (and Grafana) webhook on the wire → domain values.

Lenient where Alertmanager may grow (unknown fields are ignored) and strict
where a wrong answer would hurt: every malformed body is a 400 and never a
500 (a 5xx makes Alertmanager retry it forever), an
envelope that is not a webhook is a 422 naming the field, and a bad alert
inside a good envelope is rejected alone so the others are still stored.
"""

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any

from app.core.domain import Alert, Source, Status, Webhook, content_hash
from app.core.fingerprint import fingerprint


class PayloadError(Exception):
    """The request as a whole is refused with ``status_code``."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True, slots=True)
class RejectedAlert:
    index: int
    reason: str
    raw: Any


@dataclass(frozen=True, slots=True)
class FingerprintMismatch:
    index: int
    sent: str
    computed: str


@dataclass(frozen=True, slots=True)
class ParsedWebhook:
    webhook: Webhook
    rejected: list[RejectedAlert]
    mismatches: list[FingerprintMismatch]


# ---------------------------------------------------------------- JSON


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(f"duplicate key {key!r}")
            seen.add(key)
    return out


# A webhook carries no numbers but ``truncatedAlerts`` (and Grafana's sample
# values): anything longer than this is an attack, not data. Without the cap
# a 10**6-digit fraction is accepted as a float.
MAX_NUMBER_CHARS = 100
# An Alertmanager webhook nests 4 deep and Grafana's a little more. The cap
# is checked on the raw bytes, so a deep body is refused by a limit of ours
# instead of by wherever the interpreter's recursion limit happens to fall.
MAX_DEPTH = 64

_STEP = [0] * 256
for _c in b"[{":
    _STEP[_c] = 1
for _c in b"]}":
    _STEP[_c] = -1
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'[]{}"')))


def _too_deep(body: bytes) -> bool:
    """Whether ``body`` nests more than :data:`MAX_DEPTH` containers deep.

    Brackets inside strings do not count. Everything runs in C: escaped
    backslashes and quotes are dropped (so every quote left delimits a
    string), all but brackets and quotes are deleted, the string contents
    are cut out, and the running depth stops at the first level over the cap.
    """
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:  # every small webhook
        return False
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = b"".join(body.translate(None, _NOT_STRUCTURE).split(b'"')[::2])
    depths = accumulate(map(_STEP.__getitem__, structure))
    return next(filter(MAX_DEPTH.__lt__, depths), None) is not None


class _TooLong(ValueError):
    def __init__(self, text: str) -> None:
        super().__init__(
            f"number too long: {len(text)} characters, over the limit of {MAX_NUMBER_CHARS}"
        )


def _bounded_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:  # before int(), which is quadratic in the digits
        raise _TooLong(text)
    return int(text)


def _finite_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _TooLong(text)
    value = float(text)
    if not math.isfinite(value):  # 1e999999 silently becomes inf otherwise
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.loads with hooks builds a decoder on every call, which
# cost a few percent of a small webhook's CPU.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_no_duplicates,
    parse_int=_bounded_int,
    parse_float=_finite_float,
    parse_constant=_no_constants,
)


def parse_json(body: bytes) -> Any:
    """Decode a JSON body or raise ``PayloadError(400)``.

    Rejects invalid UTF-8, a BOM, NaN/Infinity, numbers that overflow or are
    longer than :data:`MAX_NUMBER_CHARS`, nesting deeper than
    :data:`MAX_DEPTH`, and duplicate keys (which JSON leaves undefined and
    Python would silently resolve to the last one).
    """
    if not body.strip():
        raise PayloadError(400, "empty body: expected a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError(400, "body is not valid UTF-8") from None
    if _too_deep(body):
        raise PayloadError(400, f"JSON nested too deeply: more than {MAX_DEPTH} levels")
    if text.startswith("\ufeff"):  # json.loads's own check, which decode() skips
        raise PayloadError(400, "malformed JSON: unexpected UTF-8 byte order mark at position 0")
    try:
        return _DECODER.decode(text)
    except RecursionError:  # unreachable under the depth cap; a backstop
        raise PayloadError(400, "JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise PayloadError(400, f"malformed JSON: {exc.msg} at position {exc.pos}") from None
    except ValueError as exc:  # duplicate keys, NaN, numbers too long or too large
        raise PayloadError(400, f"malformed JSON: {str(exc)[:200]}") from None


# ---------------------------------------------------------------- normalizing

_NEEDS_SCRUB = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


def _scrub(text: str) -> str:
    # Lone surrogates cannot be stored or sent (SQLite, psycopg and httpx all
    # raise) and PostgreSQL rejects NUL; Go's encoder would have written
    # U+FFFD for invalid text, so both become U+FFFD here, on every backend.
    return _BAD_CHARS.sub("\ufffd", text)


_ZERO_YEAR = 1


def parse_time(value: Any, field: str) -> datetime | None:
    """RFC 3339 → aware UTC datetime; Go's zero time → None."""
    if not isinstance(value, str):
        raise ValueError(f"{field}: must be an RFC 3339 timestamp string")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{field}: invalid RFC 3339 timestamp {value[:40]!r}") from None
    if ts.tzinfo is None:  # Go never sends these; UTC is the only sane reading
        ts = ts.replace(tzinfo=UTC)
    if ts.year <= _ZERO_YEAR:
        return None
    try:
        return ts.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is in the year 10000 in UTC
        raise ValueError(
            f"{field}: timestamp {value[:40]!r} is out of range (after 9999-12-31 in UTC)"
        ) from None


_ONLY_STR = frozenset({str})
_REMEMBER_UP_TO = 1000


def _string_map(value: Any, field: str, scrub: bool) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{field}: must be an object of strings")
    # The common case checked in C (the parser makes exact str, never a
    # subclass); the loop below only runs to name what is wrong.
    if "" in value or not _ONLY_STR.issuperset(map(type, value.values())):
        for key, item in value.items():
            if not isinstance(item, str):
                raise ValueError(f"{field}.{key}: must be a string")
            if not key:
                raise ValueError(f"{field}: empty label name")
    if scrub:
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    return value


def _parse_alert(
    raw: Any, index: int, scrub: bool, received_at: datetime, remember: bool = True
) -> tuple[Alert, str | None]:
    where = f"alerts[{index}]"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: must be an object")
    labels = _string_map(raw.get("labels"), f"{where}.labels", scrub)
    if "labels" not in raw or raw["labels"] is None:
        raise ValueError(f"{where}.labels: required")
    annotations = _string_map(raw.get("annotations"), f"{where}.annotations", scrub)
    status_raw = raw.get("status")
    if status_raw == "firing":
        status = Status.FIRING
    elif status_raw == "resolved":
        status = Status.RESOLVED
    else:
        raise ValueError(f'{where}.status: must be "firing" or "resolved"')
    if "startsAt" not in raw:
        raise ValueError(f"{where}.startsAt: required")
    starts_at = parse_time(raw["startsAt"], f"{where}.startsAt")
    if starts_at is None:
        starts_at = datetime(1, 1, 1, tzinfo=UTC)
    ends_at = None
    if raw.get("endsAt") not in (None, ""):
        ends_at = parse_time(raw["endsAt"], f"{where}.endsAt")
    if status is Status.FIRING:
        ends_at = None  # Grafana sends a future expiry here; it is not an end
    generator = raw.get("generatorURL") or ""
    if not isinstance(generator, str):
        raise ValueError(f"{where}.generatorURL: must be a string")
    sent = raw.get("fingerprint")
    if sent is not None and not isinstance(sent, str):
        raise ValueError(f"{where}.fingerprint: must be a string")
    generator = _scrub(generator) if scrub else generator
    alert = Alert(
        fingerprint=fingerprint(labels, remember=remember),
        labels=labels,
        annotations=annotations,
        status=status,
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=generator,
        content_hash=content_hash(annotations, generator, remember=remember),
    )
    del received_at
    return alert, sent or None


def _optional_str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PayloadError(422, f"{key}: must be a string")
    return value


def parse_webhook(
    body: bytes,
    source: Source,
    received_at: datetime,
    max_alerts: int,
) -> ParsedWebhook:
    """Parse and validate one webhook body; raises :class:`PayloadError`."""
    data = parse_json(body)
    if not isinstance(data, dict):
        raise PayloadError(422, "(body): must be a JSON object (an Alertmanager webhook)")
    version = data.get("version")
    if source is Source.ALERTMANAGER:
        if version is None:
            raise PayloadError(422, 'version: required (Alertmanager sends "4")')
        if version != "4":
            raise PayloadError(
                422, f'version: unsupported webhook version {str(version)[:20]!r}, expected "4"'
            )
    if "alerts" not in data:
        raise PayloadError(422, "alerts: required")
    alerts_raw = data["alerts"]
    if not isinstance(alerts_raw, list):
        raise PayloadError(422, "alerts: must be a list")
    if len(alerts_raw) > max_alerts:
        raise PayloadError(
            413, f"alerts: {len(alerts_raw)} alerts is over the limit of {max_alerts}"
        )
    receiver = _optional_str(data, "receiver")
    group_key = _optional_str(data, "groupKey")
    external_url = _optional_str(data, "externalURL")
    truncated = data.get("truncatedAlerts") or 0
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        raise PayloadError(422, "truncatedAlerts: must be a non-negative integer")
    # Text to scrub can only come from an escape (JSON forbids a raw NUL, and
    # UTF-8 a raw surrogate), so one search of the body says whether any is due.
    scrub = _NEEDS_SCRUB.search(body) is not None
    try:
        group_labels = _string_map(data.get("groupLabels"), "groupLabels", scrub)
    except ValueError as exc:
        raise PayloadError(422, str(exc)) from None

    alerts: list[Alert] = []
    rejected: list[RejectedAlert] = []
    mismatches: list[FingerprintMismatch] = []
    # The memos pay for a fleet's repeating groups; a webhook bigger than this
    # (a storm of new alerts) would only pay for them and flush them (measured:
    # 10,000 new alerts parsed 25% slower through them).
    remember = len(alerts_raw) <= _REMEMBER_UP_TO
    for index, raw in enumerate(alerts_raw):
        try:
            alert, sent = _parse_alert(raw, index, scrub, received_at, remember)
        except ValueError as exc:
            rejected.append(RejectedAlert(index, str(exc)[:500], raw))
            continue
        if sent is not None and sent != alert.fingerprint:
            mismatches.append(FingerprintMismatch(index, sent[:64], alert.fingerprint))
        alerts.append(alert)
    webhook = Webhook(
        source=source,
        alerts=alerts,
        received_at=received_at,
        receiver=_scrub(receiver) if scrub else receiver,
        group_key=_scrub(group_key) if scrub else group_key,
        external_url=_scrub(external_url) if scrub else external_url,
        group_labels=group_labels,
        truncated_alerts=truncated,
    )
    return ParsedWebhook(webhook, rejected, mismatches)
