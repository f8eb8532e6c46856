"""The console's ack and un-ack forms on the alert page, and the ack state in the lists."""

import re

import httpx

from app.ops.clock import ManualClock
from tests.conftest import running_app
from tests.helpers import JSON, T0, am_alert, am_webhook, body
from tests.sinks import FakePagerDuty, serve

ADMIN = "CONSOLE-ACK-ADMIN-0123456789abcd"
KEY = "CONSOLEACKKEY0123456789abcdef012"
LABELS = {"alertname": "QueueStuck", "severity": "warning"}


def config(pd_url: str) -> str:
    return f"""
auth: {{admin_token: {ADMIN}}}
delivery: {{timeout: 2s, lease: 10s}}
route: {{receiver: page}}
receivers:
  - name: page
    pagerduty_configs: [{{routing_key: {KEY}, url: "{pd_url}/v2/enqueue", rate_limit: {{per_second: 0}}}}]
"""


def csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1)


async def signed_in(client: httpx.AsyncClient, path: str) -> str:
    page = await client.get(path)
    r = await client.post(
        "/console/sign-in", data={"csrf_token": csrf(page.text), "admin_token": ADMIN, "next": path}
    )
    assert r.status_code == 303
    return (await client.get(path)).text


async def test_console_ack_comment_and_unack(db_url: str) -> None:
    pd = FakePagerDuty()
    with serve(pd) as pd_url:
        async with running_app(db_url, config(pd_url), clock=ManualClock(T0)) as (app, client):
            alert = am_alert(LABELS)
            r = await client.post(
                "/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON
            )
            assert r.status_code == 200
            path = f"/alerts/{alert['fingerprint']}"
            page = (await client.get(path)).text
            assert "Not acknowledged." in page and 'action="' + path + '/ack"' not in page
            page = await signed_in(client, path)
            assert 'action="' + path + '/ack"' in page

            # Without the CSRF token: refused, nothing acknowledged.
            r = await client.post(f"{path}/ack", data={"comment": "x"})
            assert r.status_code == 403
            r = await client.post(
                f"{path}/ack", data={"csrf_token": csrf(page), "comment": "bad", "for": "soon"}
            )
            assert r.status_code == 303 and r.headers["location"].endswith("?ack=bad_for#ack-h")
            r = await client.post(
                f"{path}/ack",
                data={"csrf_token": csrf(page), "comment": "restarting the consumer", "for": "1h"},
            )
            assert r.status_code == 303
            page = (await client.get(r.headers["location"])).text
            assert "Acknowledged." in page and "restarting the consumer" in page
            assert "Acknowledged by <strong>admin</strong> (console)" in page
            overview = (await client.get("/")).text
            assert "acked by admin" in overview
            assert "acked by admin" in (await client.get("/alerts?state=firing")).text
            api = (await client.get(f"/api/v1/alerts/{alert['fingerprint']}")).json()
            assert api["ack"]["via"] == "console" and api["ack"]["comment"].startswith("restarting")

            r = await client.post(f"{path}/unack", data={"csrf_token": csrf(page)})
            assert r.status_code == 303
            page = (await client.get(r.headers["location"])).text
            assert "Acknowledgement taken back." in page and "Not acknowledged." in page
            assert "acked by" not in (await client.get("/")).text
            metrics = (await client.get("/metrics")).text
            assert 'alertrelay_acks_total{via="console"} 1.0' in metrics


async def test_a_named_admin_acts_with_its_own_credential_without_an_admin_token(
    db_url: str,
) -> None:
    # Only auth.admin_users: no session cookie to sign in to, so the named
    # admin's basic-auth credential on each request is what lets it act.
    cfg = """
auth:
  admin_users: [{name: dana, password: dana-secret-0123456789}]
route: {receiver: log}
receivers: [{name: log, log_configs: [{}]}]
"""
    async with running_app(db_url, cfg, clock=ManualClock(T0)) as (app, client):
        alert = am_alert(LABELS)
        r = await client.post(
            "/webhook/alertmanager", content=body(am_webhook([alert])), headers=JSON
        )
        assert r.status_code == 200
        path = f"/alerts/{alert['fingerprint']}"
        dana = httpx.BasicAuth("dana", "dana-secret-0123456789")
        page = (await client.get(path, auth=dana)).text
        assert 'action="' + path + '/ack"' in page
        # Without the credential the same form post is refused, and nothing is acked.
        anonymous = (await client.get(path)).text
        r = await client.post(f"{path}/ack", data={"csrf_token": csrf(anonymous), "comment": "x"})
        assert r.status_code == 401
        assert (await client.get(f"/api/v1/alerts/{alert['fingerprint']}")).json()["ack"] is None
        r = await client.post(
            f"{path}/ack", data={"csrf_token": csrf(page), "comment": "on it"}, auth=dana
        )
        assert r.status_code == 303
        api = (await client.get(f"/api/v1/alerts/{alert['fingerprint']}")).json()
        assert api["ack"]["by"] == "dana" and api["ack"]["via"] == "console"
