"""The OpenAPI 3.1 description of alertrelay's HTTP interface."""

from typing import Any

from app.web.openapi_components import COMPONENTS, STRING_MAP

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(description: str) -> dict[str, Any]:
    return _json(_ERROR, description)


_WEBHOOK_RESPONSES = {
    "200": _json({"$ref": "#/components/schemas/IngestResult"}, "Stored and committed"),
    "400": _err("Malformed JSON"),
    "401": _err("Missing or wrong credentials"),
    "413": _err("Body or alert count over the limit"),
    "415": _err("Not JSON"),
    "422": _err("JSON that is not a webhook envelope; the error names the field"),
    "503": _err("Database unavailable or busy; retry"),
}

_FINGERPRINT = {"name": "fingerprint", "in": "path", "required": True, "schema": {"type": "string"}}
_HTML = {"200": {"description": "HTML", "content": {"text/html": {}}}}
_ACTION = {
    "303": {"description": "Done; redirects to the page that shows the result"},
    "401": {"description": "Not signed in with the admin token", "content": {"text/html": {}}},
    "403": {
        "description": "No CSRF token, or posted from another site",
        "content": {"text/html": {}},
    },
}
_PAGE: dict[str, Any] = {"text/html": {}}
_LINK_REFUSALS = {
    "400": {"description": "A bad 'for' duration", "content": _PAGE},
    "403": {"description": "Not a token of ours (or damaged), or no CSRF token", "content": _PAGE},
    "404": {"description": "Links are off, or the alert is no longer stored", "content": _PAGE},
    "409": {"description": "Its occurrence is over, or the alert resolved", "content": _PAGE},
    "410": {"description": "The link has expired", "content": _PAGE},
}
_FORM = {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}
# The web console: HTML pages for people, and the form posts behind its buttons.
_CONSOLE: dict[str, Any] = {
    "/": {"get": {"summary": "Console: overview", "responses": _HTML}},
    "/alerts": {"get": {"summary": "Console: alerts, filtered and paged", "responses": _HTML}},
    "/alerts/{fingerprint}": {"get": {"summary": "Console: one alert", "responses": _HTML}},
    "/alerts/{fingerprint}/ack": {
        "post": {"summary": "Console: acknowledge", "requestBody": _FORM, "responses": _ACTION}
    },
    "/alerts/{fingerprint}/unack": {
        "post": {"summary": "Console: un-acknowledge", "requestBody": _FORM, "responses": _ACTION}
    },
    "/dead-letters": {"get": {"summary": "Console: dead letters", "responses": _HTML}},
    "/dead-letters/{id}/replay": {
        "post": {"summary": "Console: replay one", "requestBody": _FORM, "responses": _ACTION}
    },
    "/dead-letters/replay-all": {
        "post": {"summary": "Console: replay all", "requestBody": _FORM, "responses": _ACTION}
    },
    "/routes": {"get": {"summary": "Console: route tree and label test", "responses": _HTML}},
    "/audit": {"get": {"summary": "Console: audit log", "responses": _HTML}},
    "/heartbeats": {"get": {"summary": "Console: heartbeats", "responses": _HTML}},
    "/console/sign-in": {
        "post": {"summary": "Console: sign in", "requestBody": _FORM, "responses": _ACTION}
    },
    "/console/sign-out": {
        "post": {"summary": "Console: sign out", "requestBody": _FORM, "responses": _ACTION}
    },
    "/static/{name}": {
        "get": {
            "summary": "Console stylesheet and script",
            "responses": {"200": {"description": "CSS or JavaScript"}},
        }
    },
    "/ack/{token}": {
        "get": {
            "summary": "Acknowledge link: shows what it would acknowledge, and a button "
            "(never acknowledges: previews and mail scanners only GET)",
            "responses": {**_HTML, **_LINK_REFUSALS},
        },
        "post": {
            "summary": "Acknowledge link: acknowledges the occurrence the token names, "
            "as the receiver whose message carried it",
            "requestBody": _FORM,
            "responses": {**_HTML, **_LINK_REFUSALS},
        },
    },
}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "alertrelay",
        "version": "1",
        "description": "Alertmanager webhook relay: dedup, flapping, runbooks, delivery.",
    },
    "paths": {
        "/webhook/alertmanager": {
            "post": {
                "summary": "Alertmanager webhook (payload version 4)",
                "security": [{"bearer": []}, {"basic": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Webhook"}}
                    },
                },
                "responses": _WEBHOOK_RESPONSES,
            }
        },
        "/webhook/grafana": {
            "post": {
                "summary": "Grafana alerting webhook (Alertmanager-shaped, extra fields tolerated)",
                "security": [{"bearer": []}, {"basic": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Webhook"}}
                    },
                },
                "responses": _WEBHOOK_RESPONSES,
            }
        },
        "/api/v1/alerts": {
            "get": {
                "summary": "Current alert states, most recently changed first",
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["firing", "resolved", "flapping"]},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "alerts": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Alert"},
                                },
                                "next_cursor": {"type": ["string", "null"]},
                            },
                        },
                        "A page of alerts",
                    ),
                    "400": _err("Bad parameter"),
                    "503": _err("Database unavailable"),
                },
            }
        },
        "/api/v1/alerts/{fingerprint}": {
            "get": {
                "summary": "One alert with its transitions and notifications",
                "parameters": [
                    {
                        "name": "fingerprint",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/AlertDetail"}, "The alert"),
                    "404": _err("Unknown fingerprint"),
                },
            }
        },
        "/api/v1/alerts/{fingerprint}/ack": {
            "post": {
                "summary": "Acknowledge the alert's current occurrence (admin credential): "
                "reminders and escalation stop; PagerDuty incidents it opened are acknowledged",
                "security": [{"admin": []}],
                "parameters": [_FINGERPRINT],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/AckRequest"}}
                    },
                },
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/AckResult"}, "Acknowledged"),
                    "400": _err("Bad JSON or a bad 'for' duration"),
                    "401": _err("Missing or wrong admin credential"),
                    "403": _err("No admin credential configured"),
                    "404": _err("Unknown fingerprint"),
                    "409": _err("The alert is resolved and not flapping"),
                    "413": _err("Body over 16 KiB"),
                    "415": _err("Not JSON"),
                    "422": _err("Not an object of by, comment, for"),
                    "503": _err("Database unavailable"),
                },
            },
            "delete": {
                "summary": "Take the acknowledgement back (admin credential); reminders and "
                "escalation resume (PagerDuty has no un-acknowledge)",
                "security": [{"admin": []}],
                "parameters": [_FINGERPRINT],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/AckResult"}, "Taken back"),
                    "401": _err("Missing or wrong admin credential"),
                    "403": _err("No admin credential configured"),
                    "404": _err("Unknown fingerprint"),
                    "409": _err("Not acknowledged"),
                    "503": _err("Database unavailable"),
                },
            },
        },
        "/api/v1/notifications": {
            "get": {
                "summary": "The delivery log, newest first",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": ["pending", "in_flight", "sent", "dead"],
                        },
                    },
                    {"name": "fingerprint", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "notifications": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Notification"},
                                },
                                "next_cursor": {"type": ["string", "null"]},
                            },
                        },
                        "A page of notifications",
                    ),
                    "400": _err("Bad parameter"),
                },
            }
        },
        "/api/v1/notifications/{id}": {
            "get": {
                "summary": "One notification with its payload and delivery attempts",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
                ],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Notification"}, "The notification"),
                    "404": _err("Unknown id"),
                },
            }
        },
        "/api/v1/notifications/{id}/replay": {
            "post": {
                "summary": "Re-queue a dead notification (admin token); replaying twice sends once",
                "security": [{"admin": []}],
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
                ],
                "responses": {
                    "200": _json({"type": "object"}, "Re-queued"),
                    "401": _err("Missing or wrong admin token"),
                    "403": _err("No admin token configured"),
                    "404": _err("Unknown id"),
                    "409": _err("Not dead, or superseded by a later notification"),
                },
            }
        },
        "/api/v1/audit": {
            "get": {
                "summary": "Who did what (replays, reloads, prunes), newest first",
                "parameters": [
                    {
                        "name": "action",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": ["replay", "reload", "prune", "ack", "unack"],
                        },
                    },
                    {"name": "actor", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "since",
                        "in": "query",
                        "description": "RFC 3339 time with a zone; entries at or after it",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {
                        "name": "until",
                        "in": "query",
                        "description": "RFC 3339 time with a zone; entries before it",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "entries": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/AuditEntry"},
                                },
                                "next_cursor": {"type": ["string", "null"]},
                            },
                        },
                        "A page of audit entries",
                    ),
                    "400": _err("Bad parameter"),
                },
            }
        },
        "/api/v1/heartbeats": {
            "get": {
                "summary": "Each configured heartbeat: last proof of life, age, missing or not",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "heartbeats": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "name": {"type": "string"},
                                            "matchers": {
                                                "type": "array",
                                                "items": {"type": "string"},
                                            },
                                            "interval_s": {"type": "number"},
                                            "receiver": {"type": ["string", "null"]},
                                            "watched_since": {
                                                "type": "string",
                                                "format": "date-time",
                                            },
                                            "last_seen": {
                                                "type": ["string", "null"],
                                                "format": "date-time",
                                            },
                                            "age_s": {"type": "number"},
                                            "missing": {"type": "boolean"},
                                            "missing_since": {
                                                "type": ["string", "null"],
                                                "format": "date-time",
                                            },
                                        },
                                    },
                                }
                            },
                        },
                        "The heartbeats, in config order",
                    )
                },
            }
        },
        "/api/v1/runbooks/resolve": {
            "get": {
                "summary": "Runbook lookup: every query parameter is a label",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "url": {"type": ["string", "null"]},
                                "source": {"type": "string"},
                                "labels": STRING_MAP,
                            },
                        },
                        "The runbook URL and the rule that produced it",
                    )
                },
            }
        },
        "/api/v1/quarantine": {
            "get": {
                "summary": "Invalid alerts kept for inspection, newest first",
                "responses": {"200": _json({"type": "object"}, "Quarantined alerts")},
            }
        },
        "/-/reload": {
            "post": {
                "summary": "Re-read the config file (also on SIGHUP); an invalid file is refused",
                "security": [{"admin": []}],
                "responses": {
                    "200": _json({"type": "object"}, "Reloaded"),
                    "400": _err("Config refused; the old one stays"),
                    "401": _err("Missing or wrong admin token"),
                    "403": _err("No admin token configured"),
                },
            }
        },
        "/health": {
            "get": {
                "summary": "Health; ?detailed=true adds database, backlog, dead letters, config",
                "parameters": [{"name": "detailed", "in": "query", "schema": {"type": "boolean"}}],
                "responses": {
                    "200": _json({"type": "object"}, "healthy"),
                    "503": _json({"type": "object"}, "unhealthy"),
                },
            }
        },
        "/live": {
            "get": {"summary": "Liveness", "responses": {"200": _json({"type": "object"}, "alive")}}
        },
        "/ready": {
            "get": {
                "summary": "Readiness: database reachable, migrations at head, config loaded",
                "responses": {
                    "200": _json({"type": "object"}, "ready"),
                    "503": _json({"type": "object"}, "not ready"),
                },
            }
        },
        "/-/healthy": {
            "get": {
                "summary": "Alias of /live, the path Alertmanager and Prometheus use",
                "responses": {"200": _json({"type": "object"}, "alive")},
            }
        },
        "/-/ready": {
            "get": {
                "summary": "Alias of /ready, the path Alertmanager and Prometheus use",
                "responses": {
                    "200": _json({"type": "object"}, "ready"),
                    "503": _json({"type": "object"}, "not ready"),
                },
            }
        },
        "/version": {
            "get": {
                "summary": "Build information",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "version": {"type": "string"},
                                "git_commit": {"type": "string"},
                                "build_time": {"type": "string"},
                            },
                        },
                        "Version",
                    )
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {"description": "Text exposition format", "content": {"text/plain": {}}}
                },
            }
        },
        **_CONSOLE,
    },
    "components": COMPONENTS,
}

# Answers any operation can give besides its own, added to each one that
# does not describe them itself, so the document lists every status code
# the service sends (the fuzzing tests hold it to that).
_OPEN = {"/health", "/live", "/ready", "/version", "/openapi.json", "/-/healthy", "/-/ready"}


def _error(description: str, console: bool) -> dict[str, Any]:
    return (
        {"description": description, "content": {"text/html": {}}} if console else _err(description)
    )


def _common_responses(spec: dict[str, Any]) -> None:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            console = "text/html" in str(responses) or path.startswith(
                ("/console", "/dead-letters")
            )
            extra: dict[str, dict[str, Any]] = {}
            if path not in _OPEN:
                extra["401"] = _err("Missing or wrong credentials (auth.read for reads)")
                extra["429"] = _err("Too many wrong credentials from this client; see Retry-After")
            if method != "get" and path not in _OPEN:
                extra["403"] = _err("Refused: admin credential not configured, or a forged form")
            if path.startswith("/static/"):
                extra["404"] = {"description": "No such file", "content": {"text/plain": {}}}
            elif "{" in path:
                extra["404"] = _error("No such resource", console)
            if operation.get("parameters") or method != "get":
                extra["400"] = _error("Invalid parameter or body", console)
            if "requestBody" in operation or (console and method == "post"):
                extra["415"] = _error("Not the expected content type", console)
            for code, response in extra.items():
                responses.setdefault(code, response)


_common_responses(OPENAPI)
