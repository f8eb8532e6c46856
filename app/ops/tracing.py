"""Tracing: OpenTelemetry spans when the SDK is installed and OTEL_* asks for them.

Off by default, and then every span is a no-op context manager. It switches
on from the standard variables: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or its
``_TRACES_`` form) or ``OTEL_TRACES_EXPORTER=otlp|console``;
``OTEL_SDK_DISABLED=true`` turns it off again. OTLP goes over HTTP/protobuf
(``pip install 'alertrelay[otel]'``). Spans: one per HTTP request (joining
the caller's trace from ``traceparent``) and one per delivery attempt.

Attributes never carry a sink's URL or key: for Slack, Teams or Discord the
URL is the credential, and traces often leave the trust boundary.
"""

import contextlib
import logging
import sys
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

log = logging.getLogger(__name__)

Attribute = str | int | float | bool


class Span:
    """What code may do with a span; this base does nothing."""

    def set(self, key: str, value: Attribute) -> None:
        pass

    def rename(self, name: str) -> None:
        pass

    def error(self, description: str) -> None:
        pass


NOOP_SPAN = Span()


class Tracer:
    """Tracing off: spans cost one context manager and record nothing."""

    enabled = False

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        *,
        kind: str = "internal",
        headers: Mapping[str, str] | None = None,
        attributes: Mapping[str, Attribute] | None = None,
    ) -> Iterator[Span]:
        yield NOOP_SPAN

    def shutdown(self) -> None:
        pass


class _OtelSpan(Span):
    def __init__(self, span: Any, status: Any) -> None:
        self._span = span
        self._status = status

    def set(self, key: str, value: Attribute) -> None:
        self._span.set_attribute(key, value)

    def rename(self, name: str) -> None:
        self._span.update_name(name)

    def error(self, description: str) -> None:
        self._span.set_status(self._status.Status(self._status.StatusCode.ERROR, description))


class _OtelTracer(Tracer):
    enabled = True

    def __init__(self, provider: Any, version: str) -> None:
        from opentelemetry import propagate, trace

        self._provider = provider
        self._tracer = provider.get_tracer("alertrelay", version)
        self._extract = propagate.extract
        self._status = trace
        self._kinds = {
            "internal": trace.SpanKind.INTERNAL,
            "server": trace.SpanKind.SERVER,
            "client": trace.SpanKind.CLIENT,
        }

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        *,
        kind: str = "internal",
        headers: Mapping[str, str] | None = None,
        attributes: Mapping[str, Attribute] | None = None,
    ) -> Iterator[Span]:
        parent = self._extract(dict(headers)) if headers is not None else None
        with self._tracer.start_as_current_span(
            name, context=parent, kind=self._kinds[kind], attributes=dict(attributes or {})
        ) as span:
            yield _OtelSpan(span, self._status)

    def shutdown(self) -> None:
        # Flushes what the batch processor still holds.
        self._provider.shutdown()


def _otlp_exporter(protocol: str) -> Any:
    """The OTLP exporter for the protocol asked for, or None (logged) when it cannot be had.

    The exporter reads its endpoint, headers, timeout and TLS from OTEL_*."""
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError:
            log.warning(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc but the OTLP/gRPC exporter is not installed: "
                "pip install 'alertrelay[otel]'; tracing is off"
            )
            return None
        return GrpcExporter()
    if protocol != "http/protobuf":
        log.warning(
            "OTEL_EXPORTER_OTLP_PROTOCOL must be grpc or http/protobuf; tracing is off",
            extra={"asked": protocol[:50]},
        )
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        log.warning(
            "the OTLP/HTTP exporter is not installed: pip install 'alertrelay[otel]'; "
            "tracing is off"
        )
        return None
    return OTLPSpanExporter()


def tracer_from_env(
    env: Mapping[str, str], version: str, *, console: TextIO | None = None
) -> Tracer:
    """The tracer the environment asks for; the no-op one when it asks for none."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return Tracer()
    exporter_name = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if exporter_name == "none" or (not exporter_name and not endpoint):
        return Tracer()
    if exporter_name not in ("", "otlp", "console"):
        log.warning(
            "OTEL_TRACES_EXPORTER names an exporter alertrelay does not ship; tracing is off",
            extra={"exporter": exporter_name[:50]},
        )
        return Tracer()
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
    except ImportError:
        log.warning(
            "OTEL_* asks for traces but OpenTelemetry is not installed: "
            "pip install 'alertrelay[otel]'; tracing is off"
        )
        return Tracer()
    processor: SimpleSpanProcessor | BatchSpanProcessor
    if exporter_name == "console":
        processor = SimpleSpanProcessor(ConsoleSpanExporter(out=console or sys.stdout))
    else:
        protocol = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        ).strip()
        exporter = _otlp_exporter(protocol)
        if exporter is None:
            return Tracer()
        processor = BatchSpanProcessor(exporter)
    attributes: dict[str, Attribute] = {"service.version": version}
    if not env.get("OTEL_SERVICE_NAME") and "service.name=" not in env.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attributes["service.name"] = "alertrelay"
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(processor)
    log.info("tracing on", extra={"exporter": exporter_name or "otlp"})
    return _OtelTracer(provider, version)
