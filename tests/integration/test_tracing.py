"""OpenTelemetry: off unless OTEL_* asks; then one span per request and per delivery attempt."""

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from app.ops.tracing import tracer_from_env
from tests.conftest import running_app
from tests.e2e.harness import alertrelay, wait_until
from tests.helpers import JSON, am_alert, am_webhook, body
from tests.sinks import Sink, WebhookSink, serve

pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra is not installed")

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
SECRET_PATH = "/hooks/T0000/B0000/s3cr3t-path"


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        (
            {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
            False,
        ),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, False),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, False),  # not shipped: off, with a warning
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, True),
    ],
)
def test_tracing_switches_on_only_when_the_environment_asks(env: dict[str, str], on: bool) -> None:
    tracer = tracer_from_env(env, "1.0")
    try:
        assert tracer.enabled is on
    finally:
        tracer.shutdown()


def _spans(text: str) -> list[dict[str, Any]]:
    """The console exporter's output: JSON objects one after another."""
    decoder = json.JSONDecoder()
    spans, i = [], 0
    while (start := text.find("{", i)) != -1:
        obj, i = decoder.raw_decode(text, start)
        if isinstance(obj, dict) and "context" in obj:
            spans.append(obj)
    return spans


async def test_request_and_delivery_spans_join_the_callers_trace_and_carry_no_secret(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    sink = WebhookSink()
    with serve(sink) as url:
        config = (
            "auth: {webhook_token: tok-do-not-leak}\n"
            "route: {receiver: r}\n"
            f"receivers: [{{name: r, webhook_configs: [{{url: '{url}{SECRET_PATH}'}}]}}]\n"
        )
        async with running_app(sqlite_url, config) as (app, client):
            r = await client.post(
                "/webhook/alertmanager",
                content=body(am_webhook([am_alert({"alertname": "Traced"})])),
                headers={
                    **JSON,
                    "Authorization": "Bearer tok-do-not-leak",
                    "traceparent": TRACEPARENT,
                },
            )
            assert r.status_code == 200, r.text
            r = await client.get("/api/v1/alerts/0000000000000000")
            assert r.status_code == 404
            await app.state.services.delivery.drain()
        assert len(sink.requests()) == 1
    out = capsys.readouterr().out
    spans = {s["name"]: s for s in _spans(out)}
    webhook = spans["POST /webhook/alertmanager"]
    assert webhook["kind"] == "SpanKind.SERVER"
    assert webhook["context"]["trace_id"] == "0x" + TRACE_ID  # joined the caller's trace
    assert webhook["attributes"]["http.response.status_code"] == 200
    assert webhook["attributes"]["http.route"] == "/webhook/alertmanager"
    assert webhook["resource"]["attributes"]["service.name"] == "alertrelay"
    detail = spans["GET /api/v1/alerts/{fingerprint}"]  # the route, not the raw path, names it
    assert detail["attributes"]["http.response.status_code"] == 404
    deliver = spans["deliver webhook"]
    assert deliver["kind"] == "SpanKind.CLIENT"
    assert deliver["attributes"]["alertrelay.outcome"] == "sent"
    assert deliver["attributes"]["alertrelay.receiver"] == "r"
    assert deliver["attributes"]["alertrelay.attempt"] == 1
    assert "tok-do-not-leak" not in out and "s3cr3t" not in out


class OtlpCollector(Sink):
    """An OTLP/HTTP traces endpoint: decodes what the exporter posts."""

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        found = []
        for received in self.requests():
            if received.path != "/v1/traces":
                continue
            request = ExportTraceServiceRequest()
            request.ParseFromString(received.body)
            for rs in request.resource_spans:
                resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    found.extend((resource, span) for span in ss.spans)
        return found


def test_serve_exports_spans_over_otlp_http(tmp_path: Path) -> None:
    collector = OtlpCollector()
    sink = WebhookSink()
    with serve(collector) as otlp_url, serve(sink) as sink_url:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_url,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_SERVICE_NAME": "relay-under-test",
        }
        config = f"route: {{receiver: r}}\nreceivers: [{{name: r, webhook_configs: [{{url: '{sink_url}/hook'}}]}}]\n"
        with alertrelay(tmp_path, config, env=env) as proc:
            import urllib.request

            req = urllib.request.Request(
                proc.url + "/webhook/alertmanager",
                data=body(am_webhook([am_alert({"alertname": "Otlp"})])),
                headers=JSON,
                method="POST",
            )
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                assert resp.status == 200
            wait_until(lambda: len(sink.requests()) == 1, 20, what="the notification")
            names = lambda: {span.name for _, span in collector.spans()}  # noqa: E731
            wait_until(
                lambda: {"POST /webhook/alertmanager", "deliver webhook"} <= names(),
                20,
                what=lambda: f"spans at the collector: {names()}",
            )
            proc.kill(signal.SIGTERM)
    resources = {r.get("service.name") for r, _ in collector.spans()}
    assert resources == {"relay-under-test"}


class GrpcCollector:
    """An OTLP/gRPC traces endpoint on 127.0.0.1: the TraceService, recording each export."""

    def __init__(self) -> None:
        import threading
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        collector = self
        self.lock = threading.Lock()
        self.requests: list[Any] = []

        class TraceService(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC method name
                with collector.lock:
                    collector.requests.append(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def span_names(self) -> set[str]:
        with self.lock:
            return {
                span.name
                for r in self.requests
                for rs in r.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
            }

    def stop(self) -> None:
        self.server.stop(grace=None)


def test_serve_exports_spans_over_otlp_grpc_when_asked(tmp_path: Path) -> None:
    """OTEL_EXPORTER_OTLP_PROTOCOL=grpc is honoured, not turned into HTTP."""
    collector = GrpcCollector()
    try:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
        with alertrelay(
            tmp_path, "route: {receiver: r}\nreceivers: [{name: r, log_configs: [{}]}]\n", env=env
        ) as proc:
            import urllib.request

            req = urllib.request.Request(
                proc.url + "/webhook/alertmanager",
                data=body(am_webhook([am_alert({"alertname": "Grpc"})])),
                headers=JSON,
                method="POST",
            )
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                assert resp.status == 200
            wait_until(
                lambda: "POST /webhook/alertmanager" in collector.span_names(),
                20,
                what=lambda: f"spans over gRPC: {collector.span_names()}",
            )
            proc.kill(signal.SIGTERM)
    finally:
        collector.stop()


def test_an_unknown_otlp_protocol_turns_tracing_off_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from app.ops.tracing import tracer_from_env

    tracer = tracer_from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        },
        "0",
    )
    assert not tracer.enabled
    assert "must be grpc or http/protobuf" in caplog.text
