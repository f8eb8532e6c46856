"""app.core.grouping and app.core.group_text as tables: occurrences, keys,
which destinations get a group row, and the text's fitting."""

from datetime import UTC, datetime, timedelta

import pytest

from app.config.compiled import CompiledConfig, compile_config
from app.core.domain import AlertRecord, NoticeKind, Status
from app.core.group_text import GroupLine, GroupView, group_text, group_title
from app.core.grouping import Change, GroupState, advance, group_id, group_rows, plan_groups
from app.core.notices import Notice, incident_key
from app.notifiers import CONFIG_MODELS
from tests.conftest import load

T0 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
KEY = '{}:{alertname="DiskFull"}'

CONFIG = """
route: {receiver: ops}
receivers:
  - name: ops
    pagerduty_configs: [{routing_key: R0UT1NGKEY0123456789abcdef012345}]
    slack_configs: [{api_url: "https://hooks.slack.com/services/T/B/X"}]
    email_configs: [{to: a@example.com, smarthost: "mx:25", from: b@example.com}]
"""


def runtime() -> CompiledConfig:
    return compile_config(load(CONFIG))


def rec(i: int, status: Status = Status.FIRING, at: datetime = T0) -> AlertRecord:
    return AlertRecord(
        fingerprint=f"{i:016x}",
        labels={"alertname": "DiskFull", "instance": f"db-{i}"},
        annotations={"summary": f"db-{i} full"},
        status=status,
        starts_at=T0,
        ends_at=None,
        generator_url="",
        source="alertmanager",
        group_key=KEY,
        first_seen=T0,
        last_seen=at,
        last_changed=at,
    )


def change(r: AlertRecord, rt: CompiledConfig) -> Change:
    kind = NoticeKind.FIRING if r.status is Status.FIRING else NoticeKind.RESOLVED
    notice = Notice(kind, r.status, T0, incident_key(r.fingerprint, T0), f"{kind}|x")
    return Change(r, notice, rt.route(r.labels))


@pytest.mark.parametrize(
    ("before", "firing", "after", "opened"),
    [
        (None, 1, (T0, True), True),  # first seen firing: opens at now
        (None, 0, (T0, False), False),  # first seen resolved: named, not open
        ((T0 - timedelta(hours=1), True), 3, (T0 - timedelta(hours=1), True), False),
        ((T0 - timedelta(hours=1), True), 0, (T0 - timedelta(hours=1), False), False),  # ends
        ((T0 - timedelta(hours=1), False), 2, (T0, True), True),  # a new occurrence
    ],
)
def test_occurrences(
    before: tuple[datetime, bool] | None, firing: int, after: tuple[datetime, bool], opened: bool
) -> None:
    state = None if before is None else GroupState(group_id(KEY), KEY, {}, *before)
    new, did_open = advance(state, KEY, {"alertname": "DiskFull"}, firing, T0)
    assert (new.occurrence, new.open, did_open) == (*after, opened)
    assert new.labels == {"alertname": "DiskFull"}


EVERY_KIND = """
global: {smtp_smarthost: "localhost:25", smtp_from: a@example.com}
route: {receiver: all}
receivers:
  - name: all
    pagerduty_configs: [{routing_key: k%(g)s}]
    opsgenie_configs: [{api_key: k%(g)s}]
    email_configs: [{to: a@example.com%(g)s}]
    slack_configs: [{api_url: "https://hooks.slack.com/services/T/B/X"%(g)s}]
    msteams_configs: [{webhook_url: "https://x.logic.azure.com/workflows/1"%(g)s}]
    googlechat_configs: [{url: "https://chat.googleapis.com/v1/spaces/S/messages?key=K"%(g)s}]
    discord_configs: [{webhook_url: "https://discord.com/api/webhooks/1/t"%(g)s}]
    mattermost_configs: [{webhook_url: "https://mm.example.com/hooks/x"%(g)s}]
    webhook_configs: [{url: "http://127.0.0.1:1/hook"%(g)s}]
    log_configs: [{%(bare)s}]
"""
READ_BY_PEOPLE = {"email", "slack", "msteams", "googlechat", "discord", "mattermost"}


@pytest.mark.parametrize("grouping", [None, "group", "alert"])
def test_grouping_defaults_per_integration_and_overrides(grouping: str | None) -> None:
    """Email and chat group by default; PagerDuty, Opsgenie, webhook and log are per
    alert. ``grouping:`` set on an entry overrides the default either way."""
    extra = f", grouping: {grouping}" if grouping else ""
    text = EVERY_KIND % {"g": extra, "bare": extra.lstrip(", ")}
    rt = compile_config(load(text))
    grouped = {i.name: i.grouped for i in rt.receivers["all"]}
    assert set(grouped) == {name for name, _ in CONFIG_MODELS.values()}  # every integration
    if grouping is None:
        assert {name for name, g in grouped.items() if g} == READ_BY_PEOPLE
    else:
        assert set(grouped.values()) == {grouping == "group"}


def test_one_row_per_grouped_destination_with_stable_keys() -> None:
    rt = runtime()
    members = {r.fingerprint: r for r in (rec(i) for i in range(3))}
    changes = [change(r, rt) for r in members.values()]
    state, opened = advance(None, KEY, {}, 3, T0)
    rows = group_rows(changes, state, members, rt, T0, opened=opened)
    # PagerDuty is per alert (fanout's rows); Slack and email one row each.
    assert sorted(r.integration for r in rows) == ["email", "slack"]
    again = group_rows(list(reversed(changes)), state, members, rt, T0, opened=opened)
    assert {r.idempotency_key for r in rows} == {r.idempotency_key for r in again}
    slack = next(r for r in rows if r.integration == "slack")
    assert slack.message_key is not None and slack.message_key.startswith("g:")
    assert slack.payload["group"]["firing"] == 3 and slack.payload["group"]["opened"]
    assert slack.payload["group"]["labels"] == {"alertname": "DiskFull"}  # common labels


def test_resolves_skip_destinations_without_send_resolved() -> None:
    rt = runtime()  # email's send_resolved defaults to false
    gone = rec(0, Status.RESOLVED)
    members = {gone.fingerprint: gone}
    state = GroupState(group_id(KEY), KEY, {}, T0 - timedelta(hours=1), True)
    rows = group_rows([change(gone, rt)], state, members, rt, T0, opened=False)
    assert [r.integration for r in rows] == ["slack"]
    assert rows[0].kind is NoticeKind.RESOLVED and rows[0].payload["status"] == "resolved"


def test_plan_groups_reads_the_stored_group_and_the_batch() -> None:
    rt = runtime()
    stored = {
        KEY: {r.fingerprint: r for r in (rec(i, at=T0 - timedelta(minutes=5)) for i in range(4))}
    }
    new = rec(9)
    from app.core.grouping import GroupChange

    pending = [GroupChange(KEY, {}, [change(new, rt)], {new.fingerprint: new})]
    state = GroupState(group_id(KEY), KEY, {}, T0 - timedelta(minutes=5), True)
    (rows,), states = plan_groups(pending, {KEY: state}, stored, rt, T0)
    group = rows[0].payload["group"]
    assert group["firing"] == 5 and group["changes"] == {"firing": 1}
    assert group["alerts"][0]["fingerprint"] == new.fingerprint  # the change is listed first
    assert states == [state]


def view(n: int, more: int = 0, console: str | None = "https://relay.example") -> GroupView:
    lines = tuple(
        GroupLine(
            f"{i:016x}",
            "DiskFull",
            f"instance=db-{i}",
            "firing",
            "critical",
            "full",
            None,
            "firing",
        )
        for i in range(n)
    )
    return GroupView(
        KEY,
        {"alertname": "DiskFull"},
        "t",
        "g:x:t",
        True,
        {"firing": n},
        n,
        0,
        lines,
        more,
        console,
    )


def test_text_fits_its_limit_by_listing_fewer_and_keeps_the_count() -> None:
    whole = group_text(view(50))
    assert whole.count("\n- ") == 50 and "more" not in whole
    cut = group_text(view(50, more=10), limit=1000)
    assert len(cut) <= 1000
    listed = cut.count("\n- ")
    assert cut.endswith(
        f"…and {50 + 10 - listed} more: see all in the console: https://relay.example/alerts?state=active&q=DiskFull"
    )
    assert group_title(view(3)) == "[FIRING:3] alertname=DiskFull: 3 firing"
    no_console = group_text(view(5, more=2, console=None))
    assert no_console.endswith("…and 2 more")


LINKS = """
external_url: https://alertrelay.example.com
auth: {link_secret: unit-link-secret-0123456789abcdef}
"""


def test_firing_lines_carry_their_own_ack_link_and_acked_lines_say_who() -> None:
    from dataclasses import replace

    from app.core.acklink import read_token
    from app.core.group_text import view_from_payload

    rt = compile_config(load(CONFIG + LINKS))
    acked = replace(rec(1), ack_at=T0, ack_by="alice", ack_via="api", ack_comment="on it")
    members = {r.fingerprint: r for r in (rec(0), acked, rec(2, Status.RESOLVED))}
    changes = [change(r, rt) for r in members.values()]
    state, opened = advance(None, KEY, {}, 2, T0)
    rows = {r.integration: r for r in group_rows(changes, state, members, rt, T0, opened=opened)}
    for name in ("slack", "email"):
        view = view_from_payload(rows[name].payload["group"])
        assert view is not None
        lines = {a.fingerprint: a for a in view.alerts}
        firing = lines[rec(0).fingerprint]
        assert firing.ack_url is not None and firing.acked == ""
        token = firing.ack_url.rsplit("/ack/", 1)[1]
        claims = read_token(b"unit-link-secret-0123456789abcdef", token, T0)
        assert (claims.fingerprint, claims.occurrence, claims.receiver) == (
            rec(0).fingerprint,
            T0,
            "ops",
        )
        # An acked line says who instead; a resolved line has nothing to ack.
        assert lines[acked.fingerprint].ack_url is None
        assert lines[acked.fingerprint].acked == "acknowledged by alice (on it)"
        assert lines[rec(2).fingerprint].ack_url is None
        text = group_text(view)
        assert f"Ack: {firing.ack_url}" in text and "acknowledged by alice (on it)" in text
        # The row names every alert it changed or listed, for notification_alerts.
        assert rows[name].alerts == tuple(sorted(members))
    # Without link_secret there is no link.
    plain = group_rows(changes, state, members, runtime(), T0, opened=opened)
    assert all("ack_url" not in a for r in plain for a in r.payload["group"]["alerts"])
