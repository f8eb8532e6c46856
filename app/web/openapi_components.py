"""The OpenAPI document's components: security schemes and the schemas the
operations in :mod:`app.web.openapi` refer to by ``$ref``."""

from typing import Any

STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

COMPONENTS: dict[str, Any] = {
    "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer"},
        "basic": {"type": "http", "scheme": "basic"},
        "admin": {"type": "http", "scheme": "bearer", "description": "auth.admin_token"},
    },
    "schemas": {
        "Error": {
            "type": "object",
            "properties": {"status": {"const": "error"}, "error": {"type": "string"}},
            "required": ["status", "error"],
        },
        "WebhookAlert": {
            "type": "object",
            "required": ["status", "labels", "startsAt"],
            "properties": {
                "status": {"type": "string", "enum": ["firing", "resolved"]},
                "labels": STRING_MAP,
                "annotations": STRING_MAP,
                "startsAt": {"type": "string", "format": "date-time"},
                "endsAt": {"type": "string"},
                "generatorURL": {"type": "string"},
                "fingerprint": {"type": "string"},
            },
        },
        "Webhook": {
            "type": "object",
            "required": ["version", "alerts"],
            "properties": {
                "version": {"type": "string", "const": "4"},
                "groupKey": {"type": "string"},
                "truncatedAlerts": {"type": "integer", "minimum": 0},
                "status": {"type": "string"},
                "receiver": {"type": "string"},
                "groupLabels": STRING_MAP,
                "commonLabels": STRING_MAP,
                "commonAnnotations": STRING_MAP,
                "externalURL": {"type": "string"},
                "alerts": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/WebhookAlert"},
                },
            },
        },
        "IngestResult": {
            "type": "object",
            "properties": {
                "status": {"const": "ok"},
                "accepted": {"type": "integer"},
                "duplicates": {"type": "integer"},
                "stale": {"type": "integer"},
                "transitions": {"type": "integer"},
                "notifications": {"type": "integer"},
                "rejected": {"type": "array", "items": {"type": "object"}},
                "rejected_total": {"type": "integer"},
            },
        },
        "Alert": {
            "type": "object",
            "properties": {
                "fingerprint": {"type": "string"},
                "alertname": {"type": "string"},
                "status": {"type": "string", "enum": ["firing", "resolved"]},
                "severity": {"type": "string"},
                "labels": STRING_MAP,
                "annotations": STRING_MAP,
                "starts_at": {"type": "string"},
                "ends_at": {"type": ["string", "null"]},
                "runbook_url": {"type": ["string", "null"]},
                "duplicates": {"type": "integer"},
                "flap": {"type": "object"},
                "ack": {"anyOf": [{"$ref": "#/components/schemas/Ack"}, {"type": "null"}]},
                "clock_skew": {
                    "description": "Set when the occurrence's startsAt or endsAt was "
                    "further ahead than ingest.max_clock_skew",
                    "type": ["object", "null"],
                    "properties": {
                        "fields": {"type": "array", "items": {"type": "string"}},
                        "ordered_at": {"type": ["string", "null"]},
                    },
                },
            },
        },
        "AlertDetail": {
            "allOf": [
                {"$ref": "#/components/schemas/Alert"},
                {
                    "type": "object",
                    "properties": {
                        "transitions": {"type": "array", "items": {"type": "object"}},
                        "acks": {
                            "description": "acks, un-acks, expiries and ends, newest first",
                            "type": "array",
                            "items": {"type": "object"},
                        },
                        "escalation": {
                            "description": "the open incident's escalation clock, next "
                            "step and receivers told; every step taken, newest first",
                            "type": "object",
                            "properties": {
                                "since": {"type": ["string", "null"], "format": "date-time"},
                                "next_step_at": {
                                    "type": ["string", "null"],
                                    "format": "date-time",
                                },
                                "escalated_to": {"type": "array", "items": {"type": "string"}},
                                "steps": {"type": "array", "items": {"type": "object"}},
                            },
                        },
                        "notifications": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Notification"},
                        },
                    },
                },
            ]
        },
        "Ack": {
            "description": "The acknowledgement of the current occurrence",
            "type": "object",
            "properties": {
                "active": {"type": "boolean", "description": "false once 'until' has passed"},
                "by": {"type": "string"},
                "via": {"type": "string", "enum": ["api", "cli", "link", "console"]},
                "at": {"type": "string", "format": "date-time"},
                "comment": {"type": ["string", "null"]},
                "until": {"type": ["string", "null"], "format": "date-time"},
            },
        },
        "AckRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "by": {"type": "string", "description": "who (default: the credential's name)"},
                "comment": {"type": "string"},
                "for": {"type": "string", "description": "a duration such as 30m; default: none"},
            },
        },
        "AckResult": {
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": ["acknowledged", "unacknowledged"]},
                "fingerprint": {"type": "string"},
                "ack": {"anyOf": [{"$ref": "#/components/schemas/Ack"}, {"type": "null"}]},
                "notifications": {"type": "integer", "description": "outbox rows queued"},
            },
        },
        "Notification": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "fingerprint": {"type": "string"},
                "receiver": {"type": "string"},
                "integration": {"type": "string"},
                "kind": {"type": "string"},
                "status": {"type": "string", "enum": ["pending", "in_flight", "sent", "dead"]},
                "dedup_key": {"type": "string"},
                "attempts": {"type": "integer"},
                "last_error": {"type": ["string", "null"]},
                "message_key": {
                    "type": ["string", "null"],
                    "description": "the chat message the notification belongs to "
                    "(a:<fingerprint>:<occurrence> or g:<group>)",
                },
                "message": {
                    "type": ["object", "null"],
                    "description": "what its delivery did with that message (action: posted, "
                    "edited, replied, reposted, skipped) and the sink's reference (ref)",
                },
                "grouped": {
                    "type": "boolean",
                    "description": "a group's message (grouping: group) that changed or listed "
                    "the alert; its fingerprint is the group's id",
                },
            },
        },
        "AuditEntry": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "at": {"type": "string", "format": "date-time"},
                "actor": {
                    "type": "string",
                    "description": "the credential's name, admin, cli, sighup or anonymous",
                },
                "action": {"type": "string"},
                "target": {"type": "string", "description": "e.g. notification/42, config"},
                "outcome": {"type": "string"},
                "details": {"type": "object"},
            },
        },
    },
}
