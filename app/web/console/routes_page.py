"""The routes page: the tree as configured, and what a given label set would do."""

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app.core.escalation import EscalationStep, format_duration
from app.core.lifecycle import RouteOptions, escalation_steps
from app.core.routing import Route
from app.delivery.preview import render_routed
from app.web.console.pages import page
from app.web.console.view import render
from app.web.guards import HTTPError
from app.web.state import services_of

KINDS = ("firing", "resolved", "flapping", "stable", "reminder", "escalation", "ack")
MAX_LABELS = 64


@dataclass(frozen=True)
class TreeNode:
    path: str
    receiver: str
    matchers: list[str]
    continue_: bool
    children: list["TreeNode"]
    # The route's escalation steps, shown where they are set (children inherit them).
    escalate: list[str] = field(default_factory=list)


def _steps(route: Route[Any]) -> tuple[EscalationStep, ...]:
    options = route.options
    return options.escalate if isinstance(options, RouteOptions) else ()


def describe_step(step: EscalationStep) -> str:
    return f"after {format_duration(step.after_s)} unacknowledged → {step.receiver}"


def _tree(route: Route[Any], inherited: tuple[EscalationStep, ...] = ()) -> TreeNode:
    steps = _steps(route)
    return TreeNode(
        route.path,
        route.receiver,
        [str(m) for m in route.matchers],
        route.continue_,
        [_tree(child, steps) for child in route.routes],
        [describe_step(s) for s in steps] if steps != inherited else [],
    )


def parse_pairs(text: str, what: str) -> dict[str, str]:
    """``NAME=VALUE`` per line (or separated by spaces on one line)."""
    out: dict[str, str] = {}
    for raw in text.replace("\r", "").split("\n"):
        line = raw.strip()
        if not line:
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name:
            raise HTTPError(400, f"{what}: {line[:80]!r} is not NAME=VALUE")
        out[name] = value.strip().strip('"')
        if len(out) > MAX_LABELS:
            raise HTTPError(400, f"{what}: at most {MAX_LABELS}")
    return out


@page
async def routes_page(request: Request, started: float) -> Response:
    services = services_of(request)
    runtime = services.runtime()
    params = request.query_params
    labels_text = params.get("labels", "")[:8000]
    annotations_text = params.get("annotations", "")[:8000]
    kind = params.get("kind") or "firing"
    if kind not in KINDS:
        raise HTTPError(400, f"kind: must be one of {', '.join(KINDS)}")
    result: dict[str, Any] | None = None
    if labels_text.strip():
        labels = parse_pairs(labels_text, "labels")
        annotations = parse_pairs(annotations_text, "annotations")
        routed = runtime.route(labels)
        runbook = runtime.runbook(labels, annotations)
        result = {
            "labels": labels,
            "receivers": list(routed.receivers),
            "routes": [r.path for r in routed.routes],
            "escalate": [describe_step(step) for step in escalation_steps(routed)],
            "runbook": runbook,
            "requests": render_routed(runtime, labels, annotations, services.http, kind=kind),
        }
    return render(
        request,
        "routes.html",
        started,
        title="Routes",
        tree=_tree(runtime.tree),
        labels_text=labels_text,
        annotations_text=annotations_text,
        kind=kind,
        kinds=KINDS,
        result=result,
    )
