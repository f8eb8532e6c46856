"""Auth never fails open; reads are protected; wrong credentials back off."""

import base64
import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.config.settings import Settings
from app.ops.clock import ManualClock
from app.web.app import create_app
from tests.conftest import load, running_app
from tests.helpers import JSON, LOG_CONFIG, T0, am_alert, am_webhook, body

ROOT = Path(__file__).resolve().parents[2]
ALERTRELAY = str(Path(sys.executable).with_name("alertrelay"))

READ_CONFIG = (
    """
auth:
  webhook_token: hook-secret
  admin_token: admin-secret
  admin_users: [{name: carol, token: carol-admin}]
  read:
    token: read-secret
    basic_auth: {username: viewer, password: view-pass}
    users:
      - {name: alice, token: alice-token}
      - {name: bob, password: bob-pass}
"""
    + LOG_CONFIG
)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ------------------------------------------------------------ fails closed


@pytest.mark.parametrize(
    ("auth", "env", "error"),
    [
        ("  webhook_token: ${HOOK}\n", {"HOOK": ""}, "auth.webhook_token: is empty"),
        ("  webhook_token: ${HOOK:-}\n", {}, "auth.webhook_token: is empty"),
        (
            "  webhook_token: ${HOOK}\n",
            {},
            "auth.webhook_token: environment variable HOOK is not set",
        ),
        ("  webhook_token: '   '\n", {}, "auth.webhook_token: is empty"),
        ("  webhook_tokens: [ok, '${HOOK}']\n", {"HOOK": ""}, "auth.webhook_tokens[1]: is empty"),
        ("  admin_token: ${ADMIN}\n", {"ADMIN": ""}, "auth.admin_token: is empty"),
        (
            "  basic_auth: {username: am, password: '${PW}'}\n",
            {"PW": ""},
            "auth.basic_auth.password: is empty",
        ),
        ("  basic_auth: {username: '', password: x}\n", {}, "auth.basic_auth.username: is empty"),
        ("  read: {token: '${R}'}\n", {"R": " "}, "auth.read.token: is empty"),
        ("  read: {}\n", {}, "auth.read.token: required"),
        ("  read: {users: [{name: alice, token: ''}]}\n", {}, "auth.read.users[0].token: is empty"),
    ],
)
def test_a_credential_that_resolves_to_nothing_is_a_config_error(
    auth: str, env: dict[str, str], error: str, tmp_path: Path
) -> None:
    path = tmp_path / "alertrelay.yml"
    path.write_text("auth:\n" + auth + LOG_CONFIG)
    base_env = {k: v for k, v in os.environ.items() if k not in ("HOOK", "ADMIN", "PW", "R")}
    check = subprocess.run(
        [ALERTRELAY, "check-config", str(path)],
        env={**base_env, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 1, check.stdout
    assert error in check.stderr, check.stderr


@pytest.mark.parametrize("content", ["", "  \n\t\n"])
def test_an_empty_token_file_is_a_config_error_and_serve_refuses(
    content: str, tmp_path: Path
) -> None:
    secret = tmp_path / "token"
    secret.write_text(content)
    path = tmp_path / "alertrelay.yml"
    path.write_text(f"auth:\n  webhook_token_file: {secret}\n" + LOG_CONFIG)
    env = {**os.environ, "ALERTRELAY_DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}
    serve = subprocess.run(
        [ALERTRELAY, "serve", "--config", str(path), "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert serve.returncode == 1
    assert f"auth.webhook_token_file: {secret} is empty" in serve.stderr
    assert not (tmp_path / "a.db").exists()  # refused before touching anything


def test_serve_refuses_the_example_config_with_an_empty_token(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ALERTRELAY_WEBHOOK_TOKEN": "",
        "ALERTRELAY_ADMIN_TOKEN": "x",
        "PAGERDUTY_ROUTING_KEY": "k",
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X",
        "TEAMS_WEBHOOK_URL": "https://teams.example/hook",
        "ALERTRELAY_DATABASE_URL": f"sqlite:///{tmp_path}/a.db",
    }
    example = subprocess.run(
        [ALERTRELAY, "example-config"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    path = tmp_path / "alertrelay.yml"
    path.write_text(example)
    serve = subprocess.run(
        [ALERTRELAY, "serve", "--config", str(path), "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert serve.returncode == 1 and "auth.webhook_token: is empty" in serve.stderr, serve.stderr
    check = subprocess.run(
        [ALERTRELAY, "check-config", str(path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 1 and check.stderr.count("\n  ") == 1, (
        check.stderr
    )  # that error alone


async def test_non_loopback_without_webhook_credential_warns_at_start_and_in_health(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    for host, config, warned in [
        ("0.0.0.0", LOG_CONFIG, True),
        ("::", "auth: {admin_token: a}\n" + LOG_CONFIG, True),
        ("0.0.0.0", "auth: {webhook_token: t}\n" + LOG_CONFIG, False),
        ("127.0.0.1", LOG_CONFIG, False),
        ("localhost", LOG_CONFIG, False),
    ]:
        caplog.clear()
        app = create_app(
            Settings(database_url=sqlite_url, host=host), load(config), background=False
        )
        with caplog.at_level(logging.WARNING):
            async with app.router.lifespan_context(app):
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://t"
                ) as client:
                    detailed = (await client.get("/health?detailed=true")).json()
        logged = [
            r.getMessage() for r in caplog.records if "no webhook credential" in r.getMessage()
        ]
        assert bool(logged) is warned, (host, config)
        assert bool(detailed["warnings"]) is warned, (host, detailed)
        if warned:
            assert f"listening on {host} with no webhook credential" in detailed["warnings"][0]
            assert detailed["status"] == "healthy"


# ------------------------------------------------------------ protected reads

READS = [
    "/api/v1/audit",
    "/alerts",
    "/dead-letters",
    "/routes",
    "/api/v1/alerts",
    "/api/v1/alerts/0123456789abcdef",
    "/api/v1/notifications",
    "/api/v1/notifications/1",
    "/api/v1/quarantine",
    "/api/v1/runbooks/resolve?alertname=x",
    "/",
]
PROBES = ["/health", "/health?detailed=true", "/live", "/ready", "/version", "/openapi.json"]


async def test_every_read_needs_a_read_credential_and_probes_stay_open(db_url: str) -> None:
    async with running_app(db_url, READ_CONFIG) as (_, client):
        r = await client.post(
            "/webhook/alertmanager",
            content=body(am_webhook([am_alert({"alertname": "X"})])),
            headers={**JSON, **bearer("hook-secret")},
        )
        assert r.status_code == 200
        for path in READS:
            r = await client.get(path)
            assert r.status_code == 401, path
            assert (
                r.headers["www-authenticate"] == 'Basic realm="alertrelay-read"'
            )  # a browser can answer it
            assert "X" not in r.text and "labels" not in r.text
            for bad in (
                bearer("wrong"),
                bearer("hook-secret"),
                basic("viewer", "nope"),
                basic("alice", "alice-token"),
            ):
                assert (await client.get(path, headers=bad)).status_code == 401, (path, bad)
            for good in (
                bearer("read-secret"),
                basic("viewer", "view-pass"),
                bearer("alice-token"),
                basic("bob", "bob-pass"),
                bearer("admin-secret"),
                bearer("carol-admin"),
            ):
                assert (await client.get(path, headers=good)).status_code in (200, 404), (
                    path,
                    good,
                )
        for path in PROBES:
            assert (await client.get(path)).status_code == 200, path
        # /metrics stays open for Prometheus unless read.metrics asks otherwise.
        assert (await client.get("/metrics")).status_code == 200
        # the webhook credential reads nothing, the read credential writes nothing
        assert (await client.post("/-/reload", headers=bearer("read-secret"))).status_code == 401
        r = await client.post(
            "/webhook/alertmanager",
            content=body(am_webhook([])),
            headers={**JSON, **bearer("read-secret")},
        )
        assert r.status_code == 401
        metrics = (await client.get("/metrics")).text
        assert 'alertrelay_auth_failures_total{endpoint="read"}' in metrics
        assert 'alertrelay_auth_failures_total{endpoint="admin"} 1.0' in metrics
        assert 'alertrelay_auth_failures_total{endpoint="webhook"} 1.0' in metrics


async def test_metrics_can_be_protected_too(sqlite_url: str) -> None:
    config = "auth:\n  read: {token: r, metrics: true}\n" + LOG_CONFIG
    async with running_app(sqlite_url, config) as (_, client):
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers=bearer("r"))).status_code == 200
        assert (await client.get("/health")).status_code == 200


async def test_the_actor_is_the_named_credential(sqlite_url: str) -> None:
    """The authenticated name rides on the request for whatever records actions."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    seen: list[str] = []

    async def whoami(request: Request) -> JSONResponse:
        seen.append(request.state.actor)
        return JSONResponse({})

    app = create_app(Settings(database_url=sqlite_url), load(READ_CONFIG), background=False)
    app.router.routes.append(Route("/api/v1/whoami", whoami, methods=["GET"]))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            for headers in (
                bearer("alice-token"),
                basic("bob", "bob-pass"),
                bearer("read-secret"),
                basic("viewer", "view-pass"),
                bearer("admin-secret"),
                bearer("carol-admin"),
            ):
                assert (await client.get("/api/v1/whoami", headers=headers)).status_code == 200
            # The audit log records the named admin credential that acted.
            await client.post("/-/reload", headers=bearer("carol-admin"))
            entries = (await client.get("/api/v1/audit", headers=bearer("alice-token"))).json()[
                "entries"
            ]
            assert [(e["action"], e["actor"]) for e in entries] == [("reload", "carol")]
    assert seen == ["alice", "bob", "read", "viewer", "admin", "carol"]


# ------------------------------------------------------------ backoff


async def test_repeated_wrong_credentials_get_429_with_a_growing_backoff(sqlite_url: str) -> None:
    clock = ManualClock(T0)
    config = "auth: {webhook_token: good}\n" + LOG_CONFIG
    async with running_app(sqlite_url, config, clock=clock) as (_, client):
        empty = body(am_webhook([]))

        async def attempt(token: str) -> httpx.Response:
            return await client.post(
                "/webhook/alertmanager", content=empty, headers={**JSON, **bearer(token)}
            )

        for _ in range(5):
            assert (await attempt("wrong")).status_code == 401
        waits = []
        for _ in range(6):
            r = await attempt("wrong")
            assert r.status_code == 401  # counted, then the door closes
            blocked = await attempt("good")  # even the right token waits: answers leak nothing
            assert blocked.status_code == 429
            waits.append(int(blocked.headers["retry-after"]))
            clock.advance(waits[-1])
        assert waits == [1, 2, 4, 8, 16, 32]
        assert (await attempt("good")).status_code == 200  # after the wait, and it resets
        assert (await attempt("wrong")).status_code == 401
        metrics = (await client.get("/metrics")).text
        assert 'alertrelay_auth_failures_total{endpoint="webhook"} 12.0' in metrics
