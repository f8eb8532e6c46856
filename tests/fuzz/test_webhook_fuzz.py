"""The webhook body fuzzed with hypothesis: valid, almost valid and hostile
envelopes against a real `alertrelay serve`, on SQLite and PostgreSQL.

Invariants: never a 5xx; a 200 stores every valid alert it carried (and
quarantines exactly the ones it names as rejected); a 4xx stores nothing.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.fingerprint import fingerprint
from tests.conftest import PG_URL, create_pg_database, drop_pg_database
from tests.e2e.harness import alertrelay
from tests.helpers import LOG_CONFIG

pytestmark = pytest.mark.slow

TABLES = ("alerts", "alert_transitions", "notifications", "quarantined_alerts")

label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,10}", fullmatch=True)
label_values = st.text(max_size=20)
times = st.sampled_from(
    [
        "2026-11-21T19:16:43Z",
        "2026-11-21T19:16:43.123456+02:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "2026-02-30T00:00:00Z",
        "yesterday",
        "",
        None,
        17,
    ]
)


@st.composite
def alerts(draw: st.DrawFn) -> dict[str, Any]:
    labels = draw(st.dictionaries(label_names, label_values, min_size=1, max_size=4))
    alert: dict[str, Any] = {
        "status": draw(st.sampled_from(["firing", "resolved", "firing", "pending", None])),
        "labels": labels,
        "annotations": draw(st.dictionaries(label_names, label_values, max_size=3)),
        "startsAt": draw(times),
        "endsAt": draw(times),
        "generatorURL": draw(st.sampled_from(["http://prom:9090/graph", "", None, 5])),
        "fingerprint": fingerprint(labels) if draw(st.booleans()) else draw(st.text(max_size=16)),
    }
    for key in draw(st.lists(st.sampled_from(sorted(alert)), max_size=2)):
        alert.pop(key, None)  # almost valid: a field missing
    if draw(st.integers(0, 9)) == 0:
        alert["labels"] = draw(st.sampled_from([None, [], "x", {"a": 1}, {"": "v"}]))
    return alert


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["valid", "valid", "almost", "hostile"]))
    if kind == "hostile":
        return draw(
            st.one_of(
                json_values.map(lambda v: json.dumps(v).encode()),
                st.binary(max_size=200),
                st.integers(1, 200).map(
                    lambda n: b'{"alerts":' + b"[" * n * 10 + b"]" * n * 10 + b"}"
                ),
                st.sampled_from(
                    [
                        b'{"version":"4","alerts":[],"x":1e999999}',
                        b'{"version":"4","version":"4","alerts":[]}',
                        b"\xef\xbb\xbf{}",
                        b'{"version":"4","alerts":[NaN]}',
                    ]
                ),
            )
        )
    envelope: dict[str, Any] = {
        "version": "4",
        "groupKey": draw(st.text(max_size=30)),
        "status": "firing",
        "receiver": draw(st.text(max_size=10)),
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "truncatedAlerts": 0,
        "alerts": draw(st.lists(alerts(), max_size=6)),
    }
    if kind == "almost":
        key = draw(
            st.sampled_from(
                ["version", "alerts", "groupKey", "truncatedAlerts", "groupLabels", "receiver"]
            )
        )
        envelope[key] = draw(st.sampled_from([None, "3", -1, [], {"": "x"}, 4.5]))
    return json.dumps(envelope).encode()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    tmp: Path = tmp_path_factory.mktemp("webhook-fuzz")
    if request.param == "sqlite":
        db_url = f"sqlite:///{tmp}/fuzz.db"
    else:
        if not PG_URL:
            pytest.skip("ALERTRELAY_TEST_POSTGRES_URL is not set")
        db_url = create_pg_database("alertrelay_fuzz")
    try:
        with alertrelay(tmp, LOG_CONFIG, db_url=db_url) as proc:
            yield proc.url, db_url
    finally:
        if request.param == "postgres":
            drop_pg_database(db_url)


@pytest.mark.timeout(600)
def test_webhook_envelopes_keep_the_invariants(server: tuple[str, str]) -> None:
    import sqlalchemy as sa

    from app.store.engine import sync_url

    url, db_url = server
    seen: dict[str, int] = {}
    engine = sa.create_engine(sync_url(db_url))

    def rows() -> dict[str, int]:
        with engine.connect() as conn:
            return {
                t: int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one())
                for t in TABLES
            }

    def stored(fp: str) -> bool:
        with engine.connect() as conn:
            return (
                conn.execute(
                    sa.text("SELECT 1 FROM alerts WHERE fingerprint = :fp"), {"fp": fp}
                ).first()
                is not None
            )

    @settings(
        max_examples=100,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(payload=envelopes())
    def check(payload: bytes) -> None:
        before = rows()
        r = httpx.post(
            url + "/webhook/alertmanager",
            content=payload,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        seen[str(r.status_code)] = seen.get(str(r.status_code), 0) + 1
        assert r.status_code < 500, (r.status_code, r.text, payload[:300])
        after = rows()
        if r.status_code != 200:
            assert 400 <= r.status_code < 500
            assert after == before, (r.status_code, r.text, payload[:300])
            return
        answer = r.json()
        assert (
            after["quarantined_alerts"] - before["quarantined_alerts"] == answer["rejected_total"]
        )
        assert answer["accepted"] + answer["rejected_total"] == len(json.loads(payload)["alerts"])
        # Every accepted alert is stored: its fingerprint is a row now.
        sent = json.loads(payload)["alerts"]
        rejected = {r["index"] for r in answer["rejected"]}
        for index, alert in enumerate(sent):
            if index in rejected or not isinstance(alert.get("labels"), dict):
                continue
            fp = fingerprint({str(k): str(v) for k, v in alert["labels"].items()})
            assert stored(fp), (alert, answer)
        assert after["alerts"] >= before["alerts"]

    try:
        check()
    finally:
        engine.dispose()
    print(f"webhook fuzz: {sum(seen.values())} requests, answers {dict(sorted(seen.items()))}")
    assert "200" in seen and any(code.startswith("4") for code in seen)
