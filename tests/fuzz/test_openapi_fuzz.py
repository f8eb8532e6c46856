"""Every endpoint of /openapi.json driven by schemathesis against a real
`alertrelay serve`: no 5xx, and every answer matches the documented schema.

Bounded for CI: a handful of examples per operation, derandomized, so the
whole run stays well under two minutes.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.harness import alertrelay
from tests.helpers import LOG_CONFIG

pytestmark = pytest.mark.slow

CONFIG = (
    """
auth:
  webhook_token: hook
  admin_token: admin
"""
    + LOG_CONFIG
)

COUNTS = {"requests": 0, "5xx": 0}
# What the service promises about its answers: never a server error, only
# documented status codes and content types, bodies that match their schema.
# (Whether every schema-valid request is *accepted* is not one of them: the
# request schemas describe shapes, and the webhook refuses more than a shape.)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    with alertrelay(tmp, CONFIG) as proc:
        yield schemathesis.openapi.from_url(proc.url + "/openapi.json")
    print(f"schemathesis: {COUNTS['requests']} requests, {COUNTS['5xx']} answered 5xx")


def test_every_operation_answers_per_its_schema_and_never_5xx(api: schemathesis.BaseSchema) -> None:
    # schemathesis' own pytest plugin does not run on this pytest; each
    # operation's strategy is driven by hypothesis directly instead.
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 10
    failures: list[str] = []
    for operation in operations:

        @settings(
            max_examples=15,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            # Credentials that fit the endpoint, so handlers behind auth are reached.
            admin = case.path.startswith(("/api", "/-/"))
            response = case.call(
                headers={"Authorization": "Bearer admin" if admin else "Bearer hook"}
            )
            COUNTS["requests"] += 1
            if response.status_code >= 500:
                COUNTS["5xx"] += 1
            assert response.status_code < 500, (
                case.method,
                case.formatted_path,
                response.status_code,
                response.text[:300],
            )
            case.validate_response(response, checks=CHECKS)

        try:
            run()
        except Exception as exc:
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
