"""The words of a grouped message: one message for an Alertmanager group's change.

A grouped notification (``grouping: group``) carries a :class:`GroupView`:
the group's labels, what changed in this message, how many of the group's
alerts fire and resolved, and the alerts themselves (firing first) up to the
integration's ``max_alerts_per_message``. This module turns it into a title
and a text. Notifiers pass their own escaping for alert data and their own
link markup, and a character budget: the list then shows as many alerts as
fit and counts the rest in its "and N more" line, so a sink's size limit is
met by listing fewer alerts, never by cutting the count off.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from app.core.runbooks import is_http_url

Escape = Callable[[str], str]
Link = Callable[[str, str], str]  # (url, label) -> markup

# What one alert's change is called in the list and in the summary.
_CHANGE_WORDS = {
    "firing": "firing",
    "resolved": "resolved",
    "flapping": "flapping",
    "stable": "stopped flapping",
    "reminder": "still firing",
    "ack": "acknowledged",
    "unack": "unacknowledged",
}
_LINE_MARK = {
    "firing": "new",
    "resolved": "just resolved",
    "flapping": "flapping",
    "stable": "stopped flapping",
    "reminder": "still firing",
    "ack": "acknowledged",
    "unack": "ack taken back",
}
_DETAIL_LIMIT = 160  # characters of an alert's distinguishing labels in its line
_SUMMARY_LIMIT = 300  # characters of an alert's summary in its line


@dataclass(frozen=True)
class GroupLine:
    """One alert of the group, as its line in the message shows it."""

    fingerprint: str
    alertname: str
    detail: str  # the labels that tell it from the group's other alerts
    status: str  # firing or resolved
    severity: str
    summary: str
    runbook_url: str | None
    changed: str  # the notice kind when it changed in this message, else ""
    note: str = ""  # more on the change (a flap's transitions)
    ack_url: str | None = None  # one-click acknowledge of this alert's occurrence
    acked: str = ""  # "acknowledged by … (comment)" while an ack is in force


@dataclass(frozen=True)
class GroupView:
    """A grouped message's content (stored in the outbox row's payload)."""

    key: str  # Alertmanager's groupKey
    labels: dict[str, str]  # the group's labels: the title
    occurrence: str  # when the group started firing (RFC 3339)
    message_key: str  # names the message of this occurrence on one destination
    opened: bool  # this message opened the occurrence (the first of it)
    changes: dict[str, int]  # notice kind -> alerts, in this message
    firing: int  # alerts of the group firing now
    resolved: int  # alerts of the group resolved during this occurrence
    alerts: tuple[GroupLine, ...]  # firing first, at most max_alerts_per_message
    more: int  # alerts of the group not in ``alerts``
    console_url: str | None  # where the rest are listed, when external_url is set

    @property
    def total(self) -> int:
        return len(self.alerts) + self.more


def change_mark(kind: str) -> str:
    """How a line names its alert's change ("new", "just resolved", …)."""
    return _LINE_MARK.get(kind, kind)


def plain_link(url: str, label: str) -> str:
    return f"{label}: {url}"


def _same(text: str) -> str:
    return text


def changes_text(changes: Mapping[str, int]) -> str:
    """``3 firing, 2 resolved`` (in a fixed order)."""
    parts = [f"{changes[k]} {word}" for k, word in _CHANGE_WORDS.items() if changes.get(k)]
    return ", ".join(parts) or "no change"


def group_name(v: GroupView) -> str:
    if v.labels:
        return ", ".join(f"{k}={val}" for k, val in sorted(v.labels.items()))
    return v.key or "alerts"


def group_title(v: GroupView, esc: Escape = _same) -> str:
    state = f"FIRING:{v.firing}" if v.firing else "RESOLVED"
    if v.firing and v.resolved:
        state += f", RESOLVED:{v.resolved}"
    return f"[{state}] {esc(group_name(v))}: {changes_text(v.changes)}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _line(a: GroupLine, esc: Escape, link: Link, marked: bool) -> str:
    # ``esc`` sees alert data only (it may trim), the spacing stays ours.
    mark = _LINE_MARK.get(a.changed, "") if marked else ""
    if a.note:
        mark = f"{mark}: {a.note}" if mark else a.note
    parts = [f"- ({mark})" if mark else "-", esc(a.alertname or a.fingerprint)]
    if a.detail:
        parts.append(esc(_cut(a.detail, _DETAIL_LIMIT)))
    if a.severity:
        parts.append(f"[{esc(a.severity)}]")
    text = " ".join(parts)
    if a.summary:
        text += f": {esc(_cut(a.summary, _SUMMARY_LIMIT))}"
    if a.runbook_url:
        text += " · " + link(a.runbook_url, "Runbook")
    # The link is part of the line, so the fitting below counts its characters.
    if a.acked:
        text += f" · {esc(_cut(a.acked, _SUMMARY_LIMIT))}"
    elif a.ack_url:
        text += " · " + link(a.ack_url, "Ack")
    return text


def console_link(v: GroupView) -> str | None:
    """The console's alert list, narrowed to the group's first label value."""
    if not v.console_url:
        return None
    first = sorted(v.labels.items())[:1]
    query = f"?state=active&q={quote(first[0][1], safe='')}" if first else "?state=active"
    return f"{v.console_url}/alerts{query}"


def _text(v: GroupView, shown: int, esc: Escape, link: Link) -> str:
    head = changes_text(v.changes)
    now = f"{v.firing} firing" + (f", {v.resolved} resolved" if v.resolved else "")
    lines = [f"{head}. Now {now} in this group."]
    listed = v.alerts[:shown]
    # When every alert changed alike ("30 firing"), marking each says nothing.
    marked = len({a.changed for a in v.alerts}) > 1 or v.more > 0
    firing = [a for a in listed if a.status == "firing"]
    resolved = [a for a in listed if a.status != "firing"]
    if firing:
        lines += ["", "Firing:"] + [_line(a, esc, link, marked) for a in firing]
    if resolved:
        lines += ["", "Resolved:"] + [_line(a, esc, link, marked) for a in resolved]
    more = v.more + len(v.alerts) - len(listed)
    if more:
        where = console_link(v)
        tail = f"…and {more} more"
        lines += ["", f"{tail}: " + link(where, "see all in the console") if where else tail]
    return "\n".join(lines)


def group_text(
    v: GroupView,
    esc: Escape = _same,
    link: Link = plain_link,
    limit: int | None = None,
) -> str:
    """The message body; within ``limit`` characters by listing fewer alerts."""
    text = _text(v, len(v.alerts), esc, link)
    if limit is None or len(text) <= limit:
        return text
    lo, hi = 0, len(v.alerts) - 1  # the most alerts whose text fits
    if len(_text(v, 0, esc, link)) > limit:
        return _text(v, 0, esc, link)  # the notifier's own cut is the last resort
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(_text(v, mid, esc, link)) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return _text(v, lo, esc, link)


def view_from_payload(data: Any) -> GroupView | None:
    """The view stored in a row's ``group`` payload key (None when absent or unreadable)."""
    if not isinstance(data, dict):
        return None
    lines = []
    for item in data.get("alerts") or []:
        if not isinstance(item, dict):
            continue
        runbook = item.get("runbook_url")
        ack = item.get("ack_url")
        lines.append(
            GroupLine(
                fingerprint=str(item.get("fingerprint", "")),
                alertname=str(item.get("alertname", "")),
                detail=str(item.get("detail", "")),
                status=str(item.get("status", "")),
                severity=str(item.get("severity", "")),
                summary=str(item.get("summary", "")),
                runbook_url=runbook if isinstance(runbook, str) and is_http_url(runbook) else None,
                changed=str(item.get("changed", "")),
                note=str(item.get("note", "")),
                ack_url=ack if isinstance(ack, str) and is_http_url(ack) else None,
                acked=str(item.get("acked", "")),
            )
        )
    labels = data.get("labels") or {}
    changes = data.get("changes") or {}
    console = data.get("console_url")
    return GroupView(
        key=str(data.get("key", "")),
        labels={str(k): str(val) for k, val in labels.items()} if isinstance(labels, dict) else {},
        occurrence=str(data.get("occurrence", "")),
        message_key=str(data.get("message_key", "")),
        opened=bool(data.get("opened")),
        changes={str(k): int(n) for k, n in changes.items()} if isinstance(changes, dict) else {},
        firing=int(data.get("firing") or 0),
        resolved=int(data.get("resolved") or 0),
        alerts=tuple(lines),
        more=int(data.get("more") or 0),
        console_url=console if isinstance(console, str) and is_http_url(console) else None,
    )
