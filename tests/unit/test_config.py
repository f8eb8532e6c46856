"""The strict config loader: every error named by its YAML path."""

from pathlib import Path

import pytest

from app.config.compiled import compile_config
from app.config.model import (
    BUILTIN_CONFIG,
    ConfigError,
    example_config_text,
    load_config,
    parse_config,
)

MINIMAL = "route: {receiver: r}\nreceivers: [{name: r, log_configs: [{}]}]\n"


def errors(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.yml", env or {})
    return info.value.errors


def test_minimal_and_builtin_load() -> None:
    assert parse_config(MINIMAL, "t", {}).config.receivers[0].name == "r"
    builtin = load_config(None, {})
    assert builtin.source == "built-in"
    assert builtin.config.receivers[0].log_configs
    assert BUILTIN_CONFIG.strip()


def test_example_config_is_valid_with_its_variables() -> None:
    env = {
        "ALERTRELAY_WEBHOOK_TOKEN": "t0k",
        "ALERTRELAY_ADMIN_TOKEN": "adm",
        "PAGERDUTY_ROUTING_KEY": "0123456789abcdef0123456789abcdef",
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X",
        "TEAMS_WEBHOOK_URL": "https://example.logic.azure.com/workflows/1",
    }
    loaded = parse_config(example_config_text(), "example", env)
    rt = compile_config(loaded)
    assert rt.route({"alertname": "X", "severity": "critical"}).receivers == ("page",)
    assert rt.route({"alertname": "Watchdog", "severity": "none"}).receivers == ("blackhole",)
    assert rt.route({"alertname": "X"}).receivers == ("chat",)


def test_the_spec_example_paths() -> None:
    got = errors(
        """
route: {receiver: a}
receivers:
  - {name: a, log_configs: [{}]}
  - {name: b}
  - name: c
    pagerduty_configs: [{}]
"""
    )
    assert got == ["receivers[2].pagerduty_configs[0].routing_key: required (or routing_key_file)"]


def test_every_model_error_is_listed_at_once() -> None:
    got = errors(
        """
server: {port: "eighty", bogus: 1}
flapping: {half_life: 10 parsecs}
route:
  receiver: r
  group_by: [alertname]
  routes:
    - matchers: ['severity=~"(crit"']
receivers:
  - name: r
    slack_configs: [{api_url: "ftp://hooks.example/secret-path"}]
    email_configs: [{to: ops@example.com, bogus: 1}]
    webhook_configs: [{}]
"""
    )
    assert (
        "server.port: Input should be a valid integer, unable to parse string as an integer" in got
    )
    assert "server.bogus: unknown key" in got
    assert any(e.startswith("flapping.half_life: invalid duration") for e in got)
    assert "route.group_by: grouping and timing belong to Alertmanager; remove this key here" in got
    assert any(e.startswith("route.routes[0].matchers[0]: invalid regular expression") for e in got)
    assert (
        "receivers[0].slack_configs[0].api_url: the URL must be an absolute http:// or https:// URL"
        in got
    )
    assert "receivers[0].email_configs[0].bogus: unknown key" in got
    assert "receivers[0].webhook_configs[0].url: required (or url_file)" in got
    # A secret URL never appears in an error.
    assert not any("secret-path" in e for e in got)


def test_cross_checks() -> None:
    got = errors(
        """
flapping: {enter_score: 2, exit_score: 3}
delivery: {timeout: 30s, lease: 40s}
route:
  receiver: nope
  matchers: ['a="b"']
  routes: [{receiver: missing, flapping: {max_score: 1}}]
receivers:
  - {name: r, email_configs: [{to: x@example.com}]}
  - {name: r}
"""
    )
    assert got == [
        "receivers[1].name: duplicate receiver 'r' (also receivers[0])",
        "route.matchers: the root route must match everything; move matchers to a child",
        "route.receiver: no receiver named 'nope'",
        "route.routes[0].receiver: no receiver named 'missing'",
        "route.routes[0].flapping.exit_score: must be above 0 and below enter_score",
        "route.routes[0].flapping.max_score: must be at least enter_score",
        "flapping.exit_score: must be above 0 and below enter_score",
        "delivery.lease: must be at least twice delivery.timeout",
        "receivers[0].email_configs[0].smarthost: required (or set global.smtp_smarthost)",
        "receivers[0].email_configs[0].from: required (or set global.smtp_from)",
    ]


def test_yaml_syntax_and_duplicate_keys() -> None:
    assert errors("route: {receiver: r\n")[0].startswith("line ")
    dup = errors("route: {receiver: r}\nroute: {receiver: r}\nreceivers: [{name: r}]\n")
    assert "duplicate key 'route'" in dup[0]
    assert errors("- a\n- b\n") == ["(top level): the file must be a YAML mapping"]


def test_env_substitution() -> None:
    text = "route: {receiver: '${RECV}'}\nreceivers: [{name: '${RECV}', webhook_configs: [{url: '${URL:-http://127.0.0.1:1/x}'}]}]\n"
    loaded = parse_config(text, "t", {"RECV": "ops"})
    assert loaded.config.route.receiver == "ops"
    assert (
        loaded.config.receivers[0].webhook_configs[0].url.get_secret_value()
        == "http://127.0.0.1:1/x"
    )
    assert errors(text, {}) == [
        "route.receiver: environment variable RECV is not set",
        "receivers[0].name: environment variable RECV is not set",
    ]
    # A value cannot inject YAML structure, and $${ is a literal.
    loaded = parse_config(
        "route: {receiver: r}\nreceivers: [{name: r, log_configs: [{title: 'a $${X} ${Y}'}]}]\n",
        "t",
        {"Y": "}\nbogus: 1"},
    )
    assert loaded.config.receivers[0].log_configs[0].title == "a ${X} }\nbogus: 1"


def test_secret_files(tmp_path: Path) -> None:
    key = tmp_path / "pd.key"
    key.write_text("  0123456789abcdef0123456789abcdef\n")
    text = f"route: {{receiver: r}}\nreceivers: [{{name: r, pagerduty_configs: [{{routing_key_file: {key}}}]}}]\n"
    cfg = parse_config(text, "t", {}).config.receivers[0].pagerduty_configs[0]
    assert cfg.routing_key.get_secret_value() == "0123456789abcdef0123456789abcdef"
    assert "0123456789abcdef" not in repr(cfg)

    missing = tmp_path / "nope"
    got = errors(text.replace(str(key), str(missing)))
    assert got == [
        f"receivers[0].pagerduty_configs[0].routing_key_file: cannot read {missing}: No such file or directory"
    ]

    both = f"route: {{receiver: r}}\nreceivers: [{{name: r, pagerduty_configs: [{{routing_key: k, routing_key_file: {key}}}]}}]\n"
    assert errors(both) == [
        "receivers[0].pagerduty_configs[0].routing_key: set either routing_key or routing_key_file, not both"
    ]


def test_every_integration_kind_parses() -> None:
    text = """
global: {smtp_smarthost: "localhost:25", smtp_from: a@example.com}
route: {receiver: all}
receivers:
  - name: all
    pagerduty_configs: [{routing_key: k, dedup_by: group, url: "http://127.0.0.1:1/pd"}]
    opsgenie_configs: [{api_key: k, priority: P2}]
    email_configs: [{to: "a@example.com, b@example.com", require_tls: false}]
    slack_configs: [{api_url: "https://hooks.slack.com/services/T/B/X", channel: "#ops"}]
    msteams_configs: [{webhook_url: "https://x.logic.azure.com/workflows/1"}]
    googlechat_configs: [{url: "https://chat.googleapis.com/v1/spaces/S/messages?key=K&token=T"}]
    discord_configs: [{webhook_url: "https://discord.com/api/webhooks/1/t"}]
    mattermost_configs: [{webhook_url: "https://mm.example.com/hooks/x", channel: ops}]
    webhook_configs: [{url: "http://127.0.0.1:1/hook", token: s3cret}]
    log_configs: [{stream: stderr}]
"""
    rt = compile_config(parse_config(text, "t", {}))
    names = [i.name for i in rt.receivers["all"]]
    assert names == [
        "pagerduty",
        "opsgenie",
        "email",
        "slack",
        "msteams",
        "googlechat",
        "discord",
        "mattermost",
        "webhook",
        "log",
    ]
    sr = {i.name: i.send_resolved for i in rt.receivers["all"]}
    assert sr["email"] is False and sr["pagerduty"] is True  # Alertmanager's defaults


def test_bad_enum_and_template() -> None:
    base = "route: {receiver: r}\nreceivers:\n  - name: r\n"
    got = errors(
        base + "    pagerduty_configs:\n      - routing_key: k\n        dedup_by: fingerprint\n"
    )
    assert got[0].startswith(
        "receivers[0].pagerduty_configs[0].dedup_by: Input should be 'alert' or 'group'"
    )
    got = errors(base + "    log_configs:\n      - title: '{{ x'\n")
    assert got[0].startswith("receivers[0].log_configs[0].title: template error:")


def test_route_inheritance_and_overrides() -> None:
    text = """
dedup: {renotify_interval: 2h}
flapping: {half_life: 10m}
route:
  receiver: root
  routes:
    - matchers: ['team="db"']
      flapping: {enter_score: 6, max_score: 10}
      renotify_interval: 0
      routes:
        - matchers: ['alertname="Watchdog"']
          flapping: {enabled: false}
receivers: [{name: root}]
"""
    rt = compile_config(parse_config(text, "t", {}))
    child = rt.route({"team": "db"}).options
    assert (
        child is not None
        and child.flap.enter_score == 6
        and child.flap.half_life_s == 600
        and child.renotify_s == 0
    )
    grandchild = rt.route({"team": "db", "alertname": "Watchdog"})
    assert grandchild.receivers == ("root",)  # receiver inherited from the parent
    assert grandchild.options is not None and grandchild.options.flap.enabled is False
    assert grandchild.options.flap.enter_score == 6  # the rest inherited
    root = rt.route({"x": "y"}).options
    assert root is not None and root.renotify_s == 7200 and root.flap.enabled


@pytest.mark.parametrize(
    ("timeout", "alerts", "deadline_s"),
    [("5s", 1, 5.0005), ("5s", 10_000, 10.0), ("2s", 0, 2.0), ("1s", 4_000, 3.0)],
)
def test_ingest_deadline_grows_with_the_webhook(
    timeout: str, alerts: int, deadline_s: float
) -> None:
    """A big group gets 0.5 ms an alert on top: its size is work, not a busy database."""
    config = parse_config(MINIMAL + f"server: {{ingest_timeout: {timeout}}}\n", "t", {}).config
    assert config.server.ingest_deadline_s(alerts) == pytest.approx(deadline_s)


# Snippets as Alertmanager's configuration documentation writes them.
_AM_SNIPPETS = [
    (
        "global:\n  resolve_timeout: 5m\n",
        "global.resolve_timeout: alertrelay takes each alert's endsAt",
    ),
    (
        "global:\n  slack_api_url: 'https://hooks.slack.com/services/XXX/YYY/ZZZ'\n",
        "global.slack_api_url: set api_url (or api_url_file) on each slack_configs entry",
    ),
    (
        "global:\n  opsgenie_api_key: 'key'\n",
        "global.opsgenie_api_key: set api_key on each opsgenie_configs entry",
    ),
    (
        "templates:\n- '/etc/alertmanager/template/*.tmpl'\n",
        "templates: Alertmanager's Go templates do not apply: alertrelay's templates are Jinja2",
    ),
    (
        'inhibit_rules:\n- source_matchers: [ severity="critical" ]\n  target_matchers: [ severity="warning" ]\n  equal: [ alertname, cluster, service ]\n',
        "inhibit_rules: inhibition stays in Alertmanager",
    ),
    (
        "time_intervals:\n- name: offhours\n  time_intervals:\n  - times:\n    - start_time: '17:00'\n      end_time: '24:00'\n",
        "time_intervals: muting by time stays in Alertmanager",
    ),
]


@pytest.mark.parametrize(
    "snippet,message", _AM_SNIPPETS, ids=[m.split(":")[0] for _, m in _AM_SNIPPETS]
)
def test_alertmanager_keys_are_refused_with_what_to_use_instead(snippet: str, message: str) -> None:
    base = "route: {receiver: r}\nreceivers: [{name: r, log_configs: [{}]}]\n"
    with pytest.raises(ConfigError) as err:
        parse_config(snippet + base, "am.yml", {})
    (error,) = err.value.errors
    assert error.startswith(message), error
    assert error.endswith("(see docs/alertmanager-config.md)")


def test_alertmanager_http_config_in_an_integration_says_where_credentials_go() -> None:
    snippet = """
route: {receiver: hook}
receivers:
- name: hook
  webhook_configs:
  - url: 'http://127.0.0.1:5001/'
    http_config:
      authorization:
        type: Bearer
        credentials_file: /etc/alertmanager/token
"""
    with pytest.raises(ConfigError) as err:
        parse_config(snippet, "am.yml", {})
    assert err.value.errors == [
        "receivers[0].webhook_configs[0].http_config: credentials go in the integration's own key "
        "(for webhook_configs: token or token_file, sent as a bearer token); a proxy is global.proxy_url "
        "(see docs/alertmanager-config.md)"
    ]


def test_alertmanager_route_match_is_read_as_matchers() -> None:
    snippet = """
route:
  receiver: default
  routes:
  - match:
      service: database
    receiver: db
  - match_re:
      service: ^(foo1|foo2|baz)$
    receiver: foo
receivers: [{name: default, log_configs: [{}]}, {name: db, log_configs: [{}]}, {name: foo, log_configs: [{}]}]
"""
    loaded = parse_config(snippet, "am.yml", {})
    assert [r.matcher_strings() for r in loaded.config.route.routes] == [
        ['service="database"'],
        ['service=~"^(foo1|foo2|baz)$"'],
    ]


def test_escalation_and_heartbeat_checks() -> None:
    got = errors(
        """
heartbeats:
  - {name: prod, matchers: ['alertname="Watchdog"'], interval: 10m, receiver: nobody}
  - {name: prod, matchers: ['alertname="Watchdog"'], interval: 5m}
route:
  receiver: page
  routes:
    - matchers: ['severity="critical"']
      escalate:
        - {after: 15m, receiver: ghost}
        - {after: 10m, receiver: page}
        - {after: 20m, receiver: second}
        - {after: 30m, receiver: second}
receivers:
  - {name: page}
  - {name: second}
"""
    )
    assert got == [
        "route.routes[0].escalate[0].receiver: no receiver named 'ghost'",
        "route.routes[0].escalate[1].receiver: 'page' is the route's own receiver, "
        "which is notified already; escalate to someone else",
        "route.routes[0].escalate[1].after: must be later than step [0]'s after",
        "route.routes[0].escalate[3].receiver: 'second' is escalated to already (step [2]); "
        "a receiver is told once per occurrence",
        "heartbeats[0].receiver: no receiver named 'nobody'",
        "heartbeats[1].name: duplicate heartbeat 'prod' (also heartbeats[0])",
    ]
    got = errors(
        """
heartbeats:
  - {name: "has space", matchers: [], interval: 0s}
route:
  receiver: page
  routes: [{escalate: [{after: 0s, receiver: page}, {receiver: page}]}]
receivers: [{name: page}]
"""
    )
    assert got == [
        "route.routes[0].escalate[0].after: must be more than 0",
        "route.routes[0].escalate[1].after: required",
        "heartbeats[0].name: letters, digits and _ . : - only (up to 128, starting with a "
        "letter or digit)",
        "heartbeats[0].matchers: at least one matcher (without any, every alert would prove it)",
        "heartbeats[0].interval: must be at least 1s",
    ]


def test_escalation_steps_are_inherited_until_a_route_turns_them_off() -> None:
    runtime = compile_config(
        parse_config(
            """
route:
  receiver: chat
  escalate: [{after: 1h, receiver: boss}]
  routes:
    - matchers: ['severity="critical"']
      receiver: page
      escalate: [{after: 5m, receiver: second}]
    - matchers: ['severity="info"']
      escalate: []
receivers: [{name: chat}, {name: page}, {name: second}, {name: boss}]
""",
            "t.yml",
            {},
        )
    )
    from app.core.lifecycle import escalation_steps

    def steps(**labels: str) -> list[tuple[float, str]]:
        return [(s.after_s, s.receiver) for s in escalation_steps(runtime.route(labels))]

    assert steps(severity="critical") == [(300.0, "second")]
    assert steps(severity="warning") == [(3600.0, "boss")]
    assert steps(severity="info") == []


def test_shutdown_grace_is_process_wide() -> None:
    base = "route: {receiver: r}\nreceivers:\n  - name: r\n    log_configs: [{}]\n"
    loaded = parse_config("delivery: {shutdown_grace: 5s}\n" + base, "t.yml", {})
    assert loaded.config.delivery.shutdown_grace.total_seconds() == 5
    got = errors(base + "    delivery: {shutdown_grace: 5s}\n")
    assert len(got) == 1 and "shutdown_grace" in got[0], got
