"""The OpenAPI 3.1 document of the API, its message schemas taken from the wire contract.

The request and response bodies are the pydantic models of :mod:`stream_rec.events`, so
the document cannot drift from what the decoders accept.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from stream_rec import __version__
from stream_rec.events import Interaction, Profile, RecommendationMessage

_REF = "#/components/schemas/{model}"


def _schema(kind: Any, name: str, defs: dict[str, Any]) -> dict[str, Any]:
    schema = TypeAdapter(kind).json_schema(ref_template=_REF)
    defs.update(schema.pop("$defs", {}))
    defs[name] = schema
    return {"$ref": _REF.format(model=name)}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}},
    }


def _post(kind: str, summary: str, ref: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": summary,
        "description": (
            f"One {kind} message or a JSON array of them (Content-Type: application/json), "
            "validated by the worker's own decoder. Any invalid message refuses the whole "
            "request (422, naming the first bad field) and nothing of it is produced; else "
            "every message is produced to its topic and acknowledged by Kafka before 202."
        ),
        "security": [{}, {"bearer": []}],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"oneOf": [ref, {"type": "array", "items": ref}]}}
            },
        },
        "responses": {
            "202": {
                "description": "Produced and acknowledged.",
                "content": {
                    "application/json": {"schema": {"$ref": _REF.format(model="Accepted")}}
                },
            },
            "401": _error("A token is set and the request lacks it (Bearer)."),
            "413": _error("The body is over STREAM_REC_HTTP__MAX_BODY_BYTES."),
            "415": _error("The body is not declared as application/json."),
            "422": {
                "description": "A message is invalid; nothing was produced.",
                "content": {"application/json": {"schema": {"$ref": _REF.format(model="Invalid")}}},
            },
            "503": _error("Kafka did not acknowledge in time (retrying is safe)."),
        },
    }


def _sse(summary: str, description: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "description": description,
        "responses": {
            "200": {
                "description": "A server-sent-event stream.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        },
    }


def openapi_document() -> dict[str, Any]:
    """The document served at ``/openapi.json``."""
    defs: dict[str, Any] = {}
    event = _schema(Annotated[Interaction, Field(discriminator="type")], "Interaction", defs)
    profile = _schema(Annotated[Profile, Field(discriminator="type")], "Profile", defs)
    recommendation = _schema(RecommendationMessage, "RecommendationMessage", defs)
    text = {"type": "string"}
    defs |= {
        "Error": {
            "type": "object",
            "required": ["error", "detail"],
            "properties": {"error": text, "detail": text},
        },
        "Invalid": {
            "type": "object",
            "required": ["error", "reason", "detail"],
            "properties": {
                "error": {"enum": ["invalid_event", "invalid_profile"]},
                "index": {
                    "type": ["integer", "null"],
                    "description": "Position of the bad message in the array (null: the body).",
                },
                "field": {"type": ["string", "null"], "description": "The bad field, dotted."},
                "reason": {"type": "string", "description": "A dead-letter reason code."},
                "detail": text,
            },
        },
        "Accepted": {
            "type": "object",
            "required": ["accepted"],
            "properties": {"accepted": {"type": "integer", "minimum": 1}},
        },
        "Health": {
            "type": "object",
            "required": ["status", "broker", "redis", "lists"],
            "properties": {
                "status": {"enum": ["ok", "unavailable"]},
                "broker": {"type": "object"},
                "redis": {"type": "object"},
                "lists": {"type": "object"},
                "newest_event_age_seconds": {"type": ["number", "null"]},
                "worker_snapshot_age_seconds": {"type": ["number", "null"]},
            },
        },
    }
    user_id = {"name": "user_id", "in": "path", "required": True, "schema": text}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "stream-rec",
            "version": __version__,
            "description": "Real-time recommendations: read the lists, send events and "
            "profiles, watch the model learn.",
        },
        "paths": {
            "/v1/recommendations/{user_id}": {
                "get": {
                    "summary": "The user's current list",
                    "description": "The recommendation message of the wire contract, as "
                    "last published (from the server's memory, else Redis), scored for the "
                    "context of the user's newest event (its `context` field). `context.NAME` "
                    "parameters are refused (400): the server holds lists, not the model; "
                    "`stream-rec recommend USER --context NAME=VALUE` scores another context.",
                    "parameters": [
                        user_id,
                        {
                            "name": "k",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1},
                            "description": "Only the first k items.",
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "The list.",
                            "content": {"application/json": {"schema": recommendation}},
                        },
                        "400": _error("A bad or unsupported query parameter."),
                        "404": _error("No list for this user (unknown, or no event yet)."),
                        "503": _error("Redis was needed and is unreachable."),
                    },
                }
            },
            "/v1/streams/recommendations/{user_id}": {
                "get": {
                    **_sse(
                        "The user's lists as they are published",
                        "Event `list` (data: the recommendation message) with the current "
                        "list at once, then each newer version as the worker publishes it.",
                    ),
                    "parameters": [user_id],
                }
            },
            "/v1/users": {
                "get": {
                    "summary": "Users whose lists changed last",
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "Newest first.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {"users": {"type": "array", "items": text}},
                                    }
                                }
                            },
                        }
                    },
                }
            },
            "/v1/events": {"post": _post("interaction event", "Send interaction events", event)},
            "/v1/profiles": {
                "post": _post("profile", "Send user profiles or item metadata", profile)
            },
            "/v1/health": {
                "get": {
                    "summary": "Broker and Redis reachable; the newest applied event's age",
                    "responses": {
                        status: {
                            "description": description,
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": _REF.format(model="Health")}
                                }
                            },
                        }
                        for status, description in (
                            ("200", "Both reachable."),
                            ("503", "The broker or Redis is not."),
                        )
                    },
                }
            },
            "/v1/streams/metrics": {
                "get": _sse(
                    "The live panel's figures",
                    "Event `points` (data: a JSON array) with the last minutes at once, then "
                    "one point per worker metrics snapshot: events_per_s, freshness_p50_s, "
                    "freshness_p99_s, hit_ratio.",
                )
            },
            "/metrics": {
                "get": {
                    "summary": "This server's Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format.",
                            "content": {"text/plain": {"schema": text}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1."}},
                }
            },
            "/": {
                "get": {
                    "summary": "The live page",
                    "responses": {
                        "200": {
                            "description": "HTML.",
                            "content": {"text/html": {"schema": text}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": defs,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Required by the POST endpoints when STREAM_REC_HTTP__TOKEN "
                    "is set.",
                }
            },
        },
    }
