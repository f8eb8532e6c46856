"""The web console at ``/``: server-rendered pages to look at alerts and repair delivery."""

from starlette.routing import BaseRoute, Route

from app.web.console import (
    ack_link,
    assets,
    audit_page,
    heartbeats_page,
    pages,
    repair,
    routes_page,
)

routes: list[BaseRoute] = [
    Route("/", pages.overview, methods=["GET"]),
    Route("/alerts", pages.alert_list, methods=["GET"]),
    Route("/alerts/{fingerprint}", pages.alert_detail, methods=["GET"]),
    Route("/alerts/{fingerprint}/ack", repair.ack, methods=["POST"]),
    Route("/alerts/{fingerprint}/unack", repair.unack, methods=["POST"]),
    Route("/dead-letters", repair.dead_letters, methods=["GET"]),
    Route("/dead-letters/replay-all", repair.replay_all, methods=["POST"]),
    Route("/dead-letters/{id}/replay", repair.replay_one, methods=["POST"]),
    Route("/routes", routes_page.routes_page, methods=["GET"]),
    Route("/audit", audit_page.audit_page, methods=["GET"]),
    Route("/heartbeats", heartbeats_page.heartbeats_page, methods=["GET"]),
    Route("/console/sign-in", repair.sign_in, methods=["POST"]),
    Route("/console/sign-out", repair.sign_out, methods=["POST"]),
    Route("/static/{name}", assets.static_file, methods=["GET"]),
    Route("/ack/{token}", ack_link.show, methods=["GET"]),
    Route("/ack/{token}", ack_link.act, methods=["POST"]),
]
