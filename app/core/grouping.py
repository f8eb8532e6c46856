"""Grouped notifications: one outbox row per Alertmanager group, change and destination.

An integration with ``grouping: group`` gets no row per alert. The notices
one webhook (or one sweep) causes for the alerts of one Alertmanager group
become one row per destination, whose payload lists the group as it is
then: the alerts of the group that fire, and those that resolved during the
group's current *occurrence*, firing first.

The occurrence is the group's firing period: it starts when the group goes
from no firing alert to one (at that moment's time) and ends when its last
alert resolves; the resolve message still belongs to it. It names the
message a destination shows for it (``message_key``: email threads on it,
and sinks that edit messages edit that one). :class:`GroupState` is what is
stored per group to know it.

Keys are deterministic, as for per-alert rows:

* ``idempotency_key`` = sha256(group, destination, every notice's alert and
  identity): a repeat of the same webhook finds no transition and writes
  nothing; a replica deciding the same change writes the same key;
* ``ordering_key`` = sha256(group, destination): a group's messages to one
  destination are sent in the order they were decided.
"""

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from app.config.compiled import CompiledConfig, Integration
from app.core.ack import ackable, is_acked
from app.core.acklink import LinkClaims, ack_url, signer_for
from app.core.domain import AlertRecord, NoticeKind, NotificationRow, Status, isoformat
from app.core.fanout import READ_BY_PEOPLE, would_send
from app.core.lifecycle import RouteOptions
from app.core.notices import Notice
from app.core.payload import GroupAlertPayload, GroupPayload, NoticePayload
from app.core.routing import RouteResult

# When several kinds of change share a message, the row is of the first
# present here (it colours the message and names it in the delivery log).
_KIND_ORDER = (
    NoticeKind.FIRING,
    NoticeKind.FLAPPING,
    NoticeKind.STABLE,
    NoticeKind.REMINDER,
    NoticeKind.RESOLVED,
    NoticeKind.ACK,
    NoticeKind.UNACK,
)
_SEVERITY_RANK = {"critical": 0, "page": 0, "error": 1, "warning": 2, "info": 3}


def _sha(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def group_id(group_key: str) -> str:
    return _sha("group", group_key)[:32]


@dataclass(frozen=True)
class GroupState:
    """What is stored per Alertmanager group (table ``alert_groups``)."""

    group_id: str
    group_key: str
    labels: dict[str, str]
    occurrence: datetime | None  # start of the current (or last) occurrence
    open: bool  # some alert of the group fires


def advance(
    state: GroupState | None,
    group_key: str,
    labels: Mapping[str, str],
    firing: int,
    now: datetime,
) -> tuple[GroupState, bool]:
    """The group after a change that leaves ``firing`` of its alerts firing.

    Returns the new state and whether this change opened an occurrence.
    """
    if state is None:
        state = GroupState(group_id(group_key), group_key, dict(labels), None, False)
    elif labels and labels != state.labels:
        state = replace(state, labels=dict(labels))
    if firing and not state.open:
        return replace(state, occurrence=now, open=True), True
    if not firing and state.open:
        return replace(state, open=False), False
    if state.occurrence is None:  # a group first seen already resolved
        return replace(state, occurrence=now), False
    return state, False


@dataclass(frozen=True)
class Change:
    """One notice of one alert, waiting to be grouped."""

    record: AlertRecord
    notice: Notice
    routed: RouteResult[RouteOptions]


def is_grouped(integration: Integration, rec: AlertRecord) -> bool:
    """The alert's notices reach ``integration`` as part of a group message.

    An alert without a group key (a webhook that named none) is its own
    message, whatever the integration's grouping.
    """
    return integration.grouped and bool(rec.group_key)


def reaches_grouped(
    rec: AlertRecord, routed: RouteResult[RouteOptions], runtime: CompiledConfig
) -> bool:
    return bool(rec.group_key) and any(
        i.grouped for r in routed.receivers for i in runtime.receivers.get(r, ())
    )


def message_key(integration: Integration, group_key: str, occurrence: datetime) -> str:
    """Names the message of one group occurrence on one destination (≤ 128 chars)."""
    digest = _sha(integration.receiver, integration.key, group_key)[:16]
    return f"g:{digest}:{isoformat(occurrence)}"


def _severity_rank(severity: str) -> int:
    return _SEVERITY_RANK.get(severity.strip().lower(), 4)


def firing_count(members: Mapping[str, AlertRecord]) -> int:
    return sum(1 for r in members.values() if r.status is Status.FIRING)


def _in_occurrence(rec: AlertRecord, since: datetime | None, changed: bool) -> bool:
    if rec.status is Status.FIRING or changed:
        return True
    return since is not None and rec.last_changed >= since


def _detail(rec: AlertRecord, group_labels: Mapping[str, str]) -> str:
    return " ".join(
        f"{k}={v}"
        for k, v in sorted(rec.labels.items())
        if k != "alertname" and group_labels.get(k) != v and k != "severity"
    )


def common_labels(members: Iterable[AlertRecord]) -> dict[str, str]:
    """The labels every alert shares (the title when the webhook named no group labels)."""
    common: dict[str, str] | None = None
    for rec in members:
        if common is None:
            common = dict(rec.labels)
        else:
            common = {k: v for k, v in common.items() if rec.labels.get(k) == v}
    return common or {}


AckLinkFor = Callable[[AlertRecord], str | None]


def ack_link_maker(
    runtime: CompiledConfig, integration: Integration, now: datetime
) -> AckLinkFor | None:
    """Makes each listed alert's acknowledge link for ``integration``'s receiver
    (None when links are off or nobody reads this integration).

    A token names the alert, its occurrence and the receiver, as the link of
    a per-alert message does; only the lines a message lists get one (at most
    ``max_alerts_per_message``), so a big group signs a bounded number.
    """
    links = runtime.config.ack_links()
    auth = runtime.config.auth
    if links is None or auth is None or integration.name not in READ_BY_PEOPLE:
        return None
    base, secret = links
    signer = signer_for(secret)
    expires = now + auth.link_ttl

    def make(rec: AlertRecord) -> str | None:
        if not ackable(rec) or is_acked(rec, now):
            return None  # nothing to ack, or already acked (its line says by whom)
        claims = LinkClaims(rec.fingerprint, rec.starts_at, integration.receiver, expires)
        return ack_url(base, signer.token(claims))

    return make


def acked_text(rec: AlertRecord, now: datetime) -> str:
    """``acknowledged by alice (on it)`` while an ack is in force, else ""."""
    if not is_acked(rec, now):
        return ""
    text = f"acknowledged by {rec.ack_by or 'someone'}"
    return f"{text} ({rec.ack_comment})" if rec.ack_comment else text


def _line_payload(
    r: AlertRecord,
    labels: Mapping[str, str],
    changed: Mapping[str, Notice],
    link_for: AckLinkFor | None,
    now: datetime,
) -> GroupAlertPayload:
    line: GroupAlertPayload = {
        "fingerprint": r.fingerprint,
        "alertname": r.alertname,
        "detail": _detail(r, labels),
        "status": r.status.value,
        "severity": r.severity,
        "summary": r.annotations.get("summary", ""),
        "runbook_url": r.runbook_url,
        "changed": changed[r.fingerprint].kind.value if r.fingerprint in changed else "",
        "note": _note(changed[r.fingerprint]) if r.fingerprint in changed else "",
    }
    acked = acked_text(r, now)
    if acked:
        line["acked"] = acked
    elif link_for is not None and (url := link_for(r)) is not None:
        line["ack_url"] = url
    return line


def group_view_payload(
    state: GroupState,
    members: Mapping[str, AlertRecord],
    changed: Mapping[str, Notice],
    integration: Integration,
    *,
    opened: bool,
    console_url: str | None,
    now: datetime,
    link_for: AckLinkFor | None = None,
) -> GroupPayload:
    """The group's alerts as this message lists them (firing first), each
    firing one with its acknowledge link when ``link_for`` makes them."""
    occurrence = state.occurrence or now
    labels = state.labels or common_labels(members.values())
    listed = [
        r for r in members.values() if _in_occurrence(r, state.occurrence, r.fingerprint in changed)
    ]
    listed.sort(
        key=lambda r: (
            r.status is not Status.FIRING,
            r.fingerprint not in changed,
            _severity_rank(r.severity),
            r.alertname,
            sorted(r.labels.items()),
        )
    )
    cap = integration.config.max_alerts_per_message
    alerts = [_line_payload(r, labels, changed, link_for, now) for r in listed[:cap]]
    counts: dict[str, int] = {}
    for notice in changed.values():
        counts[notice.kind.value] = counts.get(notice.kind.value, 0) + 1
    firing = sum(1 for r in listed if r.status is Status.FIRING)
    return {
        "id": state.group_id,
        "key": state.group_key,
        "labels": labels,
        "occurrence": isoformat(occurrence),
        "message_key": message_key(integration, state.group_key, occurrence),
        "opened": opened,
        "changes": counts,
        "firing": firing,
        "resolved": len(listed) - firing,
        "alerts": alerts,
        "more": max(len(listed) - cap, 0),
        "console_url": console_url,
    }


def _note(notice: Notice) -> str:
    if notice.kind in (NoticeKind.FLAPPING, NoticeKind.STABLE) and notice.transitions:
        plural = "s" if notice.transitions != 1 else ""
        return f"{notice.transitions} transition{plural}"
    return ""


def _row_kind(kinds: Iterable[NoticeKind]) -> NoticeKind:
    present = set(kinds)
    return next(k for k in _KIND_ORDER if k in present)


def group_payload(
    view: GroupPayload,
    kind: NoticeKind,
    notices: Sequence[Notice],
    members: Mapping[str, AlertRecord],
    now: datetime,
    *,
    external_url: str = "",
    am_receiver: str = "",
    source: str = "",
) -> NoticePayload:
    """The whole row payload: the group view, and the group as one alert-like summary."""
    firing = [r for r in members.values() if r.status is Status.FIRING]
    severity = min((r.severity for r in firing), key=_severity_rank, default="")
    title = ", ".join(f"{k}={v}" for k, v in sorted(view["labels"].items()))
    stamp = datetime.fromisoformat(view["occurrence"]).astimezone(UTC)
    flaps = [n for n in notices if n.kind in (NoticeKind.FLAPPING, NoticeKind.STABLE)]
    return {
        "kind": kind.value,
        "status": (Status.FIRING if view["firing"] else Status.RESOLVED).value,
        "fingerprint": "",
        "alertname": title[:255],
        "labels": view["labels"],
        "annotations": {},
        "severity": severity,
        "starts_at": view["occurrence"],
        "ends_at": None,
        "generator_url": "",
        "runbook_url": None,
        "dedup_key": f"alertrelay/group/{view['id']}/{stamp.strftime('%Y%m%dT%H%M%S.%fZ')}",
        "group_key": view["key"],
        "external_url": external_url,
        "am_receiver": am_receiver,
        "source": source,
        "group_firing": view["firing"],
        "duplicates": 0,
        # The flap of the busiest flapping alert, for sinks that show one.
        "flap": {
            "score": round(max((n.flap_score for n in flaps), default=0.0), 3),
            "flapping": kind is NoticeKind.FLAPPING,
            "transitions": max((n.transitions for n in flaps), default=0),
        },
        "decided_at": isoformat(now),
        "ack": None,  # acks belong to an alert's occurrence, not to a group
        "group": view,
    }


def group_rows(
    changes: Sequence[Change],
    state: GroupState,
    members: Mapping[str, AlertRecord],
    runtime: CompiledConfig,
    now: datetime,
    *,
    opened: bool,
    external_url: str = "",
    am_receiver: str = "",
) -> list[NotificationRow]:
    """One row per grouped destination that ``changes`` reach.

    ``members`` are the group's alerts as they are after the change.
    """
    reached: dict[str, tuple[Integration, dict[str, Change]]] = {}
    for change in changes:
        if change.notice.escalation is not None:
            continue  # an escalation pages its step's receiver alert by alert
        for receiver in change.routed.receivers:
            for integration in runtime.receivers.get(receiver, ()):
                if not is_grouped(integration, change.record):
                    continue
                if would_send(change.notice.kind, integration) is not None:
                    continue
                _, chosen = reached.setdefault(integration.key, (integration, {}))
                # An alert's latest notice of this change is the one it shows.
                chosen[change.record.fingerprint] = change
    source = changes[0].record.source if changes else ""
    return [
        group_row(
            integration,
            {fp: c.notice for fp, c in chosen.items()},
            state,
            members,
            runtime,
            now,
            opened=opened,
            external_url=external_url,
            am_receiver=am_receiver,
            source=source,
        )
        for integration, chosen in reached.values()
    ]


def group_row(
    integration: Integration,
    notices: Mapping[str, Notice],
    state: GroupState,
    members: Mapping[str, AlertRecord],
    runtime: CompiledConfig,
    now: datetime,
    *,
    opened: bool = False,
    external_url: str = "",
    am_receiver: str = "",
    source: str = "",
) -> NotificationRow:
    """The row of one grouped destination for the alerts' ``notices`` (by fingerprint)."""
    view = group_view_payload(
        state,
        members,
        notices,
        integration,
        opened=opened,
        console_url=runtime.console_url,
        now=now,
        link_for=ack_link_maker(runtime, integration, now),
    )
    kind = _row_kind(n.kind for n in notices.values())
    payload = group_payload(
        view,
        kind,
        list(notices.values()),
        members,
        now,
        external_url=external_url,
        am_receiver=am_receiver,
        source=source,
    )
    identity = sorted(f"{fp}|{n.identity}" for fp, n in notices.items())
    key = integration.key
    return NotificationRow(
        idempotency_key=_sha("group", state.group_id, key, *identity),
        fingerprint=state.group_id[:16],
        ordering_key=_sha("group", state.group_id, key)[:32],
        receiver=integration.receiver,
        integration=integration.name,
        integration_index=integration.index,
        kind=kind,
        dedup_key=payload["dedup_key"],
        payload=payload,
        created_at=now,
        message_key=view["message_key"],
        # The alerts this message changed or lists (not every alert of a big
        # group: links stay bounded by the change and max_alerts_per_message),
        # for the alert's page and for an ack that must find the message.
        alerts=tuple(sorted({a["fingerprint"] for a in view["alerts"]} | set(notices))),
    )


@dataclass
class GroupChange:
    """The grouped notices one webhook (or sweep) caused for one group."""

    group_key: str
    labels: dict[str, str]  # the webhook's group labels; empty from the sweeper
    changes: list[Change]
    # The group's alerts this batch touched, as they were right after this
    # change (the rest of the group is read from the database).
    touched: dict[str, AlertRecord]
    external_url: str = ""
    am_receiver: str = ""
    result_index: int = 0  # which webhook of the batch caused it


def plan_groups(
    pending: Sequence[GroupChange],
    states: Mapping[str, GroupState],
    stored: Mapping[str, Mapping[str, AlertRecord]],
    runtime: CompiledConfig,
    now: datetime,
) -> tuple[list[list[NotificationRow]], list[GroupState]]:
    """Rows for each pending change (in order) and the groups' new states.

    ``stored`` holds each group's alerts as the database had them before
    this batch; the batch's own records replace theirs.
    """
    current = dict(states)
    out: list[list[NotificationRow]] = []
    touched: dict[str, GroupState] = {}
    for item in pending:
        members = {
            fp: rec
            for fp, rec in {**stored.get(item.group_key, {}), **item.touched}.items()
            if rec.group_key == item.group_key  # an alert may have moved to another group
        }
        state, opened = advance(
            current.get(item.group_key), item.group_key, item.labels, firing_count(members), now
        )
        current[item.group_key] = touched[item.group_key] = state
        out.append(
            group_rows(
                item.changes,
                state,
                members,
                runtime,
                now,
                opened=opened,
                external_url=item.external_url,
                am_receiver=item.am_receiver,
            )
        )
    return out, list(touched.values())
