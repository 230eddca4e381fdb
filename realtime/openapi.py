"""The streams in the OpenAPI schema (``/api/schema/``, ``/api/docs/``).

The SSE endpoints and the WebSocket are ASGI routes (``realtime.routing``), not DRF views, so
drf-spectacular cannot see them: this post-processing hook (``SPECTACULAR_SETTINGS``) adds them
by hand, with the event envelope and its types as components, so that an integrator finds them
beside the REST API.
"""

from __future__ import annotations

from typing import Any

TAG = "realtime"

# type -> what it means (the envelope's ``type``; SSE's ``event:`` line)
EVENT_TYPES: dict[str, str] = {
    "snapshot": "The current state, first on a stream opened without a cursor.",
    "reset": "The cursor is older than the log (`reason: cursor_expired`), more than 10,000 "
    "events behind (`reason: replay_limit`), or the client read too slowly (`reason: too_slow`, "
    "then the stream closes): the current state; resume from here.",
    "job.queued": "A job was queued.",
    "job.started": "A worker started the job.",
    "job.stage": "The job entered a stage (`job.stage`); never dropped or coalesced.",
    "job.progress": "Rows processed; a few per second at most, coalesced for a slow client.",
    "job.resumed": "A retried job resumed at its failed stage.",
    "job.completed": "Terminal: the job finished.",
    "job.failed": "Terminal: the job failed (`job.error_message`; `reason: worker_lost` when "
    "its worker died).",
    "job.cancelled": "Terminal: the job was cancelled.",
    "enrichment.started": "A BOM enrichment run started.",
    "enrichment.progress": "BOM enrichment progress (`state`).",
    "enrichment.completed": "Terminal: the enrichment run finished.",
    "enrichment.failed": "Terminal: the enrichment run failed.",
    "workflow.stage": "A purchase order's workflow entered a stage.",
    "workflow.progress": "A purchase order's workflow progress.",
    "workflow.completion": "A purchase order's workflow completed.",
    "workflow.error": "A purchase order's workflow failed.",
    "status": "An import-status summary (counts by status, last jobs).",
    "heartbeat": 'Every 15 s when nothing else is sent: `{"timestamp": <ms>}`, no id.',
}

ENVELOPE = {
    "type": "object",
    "description": "One event, the same on SSE (the `data:` line) and WebSocket (one text "
    "message). `id` is the event's cursor in its topic's log: send it back as `Last-Event-ID` "
    "(or `last_event_id`) to resume with every later event exactly once.",
    "required": ["type", "topic", "ts"],
    "properties": {
        "id": {"type": "string", "example": "1732280000000-0", "pattern": r"^\d+-\d+$"},
        "type": {"$ref": "#/components/schemas/StreamEventType"},
        "topic": {"type": "string", "example": "job:7b1e5b8e-2a53-4bd4-9d7f-3a3bd0d2f1a0"},
        "ts": {"type": "string", "format": "date-time"},
        "job": {
            "type": "object",
            "additionalProperties": True,
            "description": "The job's full snapshot (status, stage, progress, rows, errors).",
        },
        "status": {
            "type": "object",
            "additionalProperties": True,
            "description": "An import-status summary (`status` events, `snapshot` of `org:`).",
        },
        "reason": {"type": "string", "example": "cursor_expired"},
    },
    "additionalProperties": True,
}

SSE_FRAME = {
    "type": "object",
    "description": "One SSE frame: `event:` is the type, `data:` the `StreamEvent` as JSON "
    '(`heartbeat`: `{"timestamp": <ms>}`).',
    "required": ["event", "data"],
    "properties": {
        "event": {"$ref": "#/components/schemas/StreamEventType"},
        "data": {"type": "string", "description": "JSON: a `StreamEvent`."},
        "id": {"type": "string", "description": "The event's cursor (`<ms>-<seq>`)."},
        "retry": {"type": "integer", "minimum": 0},
    },
}

SSE_EXAMPLE = (
    "retry: 3000\n\n"
    "id: 1732280000000-0\nevent: snapshot\n"
    'data: {"id":"1732280000000-0","type":"snapshot","topic":"job:…","ts":"…","job":{…}}\n\n'
    "id: 1732280000120-0\nevent: job.progress\n"
    'data: {"id":"1732280000120-0","type":"job.progress","topic":"job:…","ts":"…","job":{…}}\n\n'
    'event: heartbeat\ndata: {"timestamp":1732280015000}\n\n'
)


def _param(name: str, where: str, text: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": text,
        "schema": schema or {"type": "string"},
    }


# what realtime.log.valid_cursor takes: 19 digits stay below 2**64, as Redis needs
CURSOR_PATTERN = r"^[0-9]{1,19}(-[0-9]{1,19})?$"

CURSOR_PARAMS = [
    _param(
        "Last-Event-ID",
        "header",
        "Resume after this event id (EventSource sends it on reconnect by itself).",
        type="string",
        pattern=CURSOR_PATTERN,
    ),
    _param(
        "last_event_id",
        "query",
        "The same as `Last-Event-ID`, for clients that cannot set headers.",
        type="string",
        pattern=CURSOR_PATTERN,
    ),
]
TOKEN_PARAM = _param(
    "token",
    "query",
    "A short-lived stream token from `POST /api/v1/realtime/tokens`, scoped to its topics "
    "(EventSource cannot send an Authorization header). Never an API token.",
)
SUMMARY_PARAMS = [
    _param(
        "poll_interval",
        "query",
        "Seconds between summaries (0.5 to 30, default 2).",
        type="number",
        minimum=0.5,
        maximum=30,
    ),
    _param(
        "limit",
        "query",
        "Last jobs in each summary (0 to 50, default 5).",
        type="integer",
        minimum=0,
        maximum=50,
    ),
]


def _error(text: str) -> dict[str, Any]:
    return {
        "description": text,
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"detail": {"type": "string"}}}
            }
        },
    }


def _sse(
    summary: str,
    description: str,
    parameters: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "get": {
            "operationId": summary.lower().replace(" ", "_").replace("'", ""),
            "summary": summary,
            "description": description
            + "\n\nServer-Sent Events: each frame has `id:`, `event:` (the type) and `data:` "
            "(the envelope, `StreamEvent`); the first frame sets `retry:`. Authenticate with "
            "the session cookie, `Authorization: Token …`, or `?token=`.",
            "tags": [TAG],
            "parameters": parameters,
            "responses": {
                "200": {
                    "description": "An endless event stream (until the client leaves).",
                    "content": {
                        "text/event-stream": {
                            # OpenAPI 3.0 has no itemSchema: the schema of an event stream
                            # describes one event (its fields), as clients parse them
                            "schema": SSE_FRAME,
                            "example": SSE_EXAMPLE,
                        }
                    },
                },
                "400": _error("A parameter is out of range or not an event id."),
                "401": _error("Not authenticated, or the stream token expired."),
                "404": _error("No such job or topic (another organization's looks the same)."),
                "429": _error("Too many open streams for this user; close one first."),
                **(extra or {}),
            },
        }
    }


WEBSOCKET_DESCRIPTION = """\
**WebSocket** (`ws://` or `wss://`; this entry documents the protocol, it is not a plain GET).
Authenticate with the session cookie, `Authorization: Token …` or `?token=` (a stream token).

Client → server, JSON text messages (`WebSocketClientMessage`):

- `{"action": "subscribe", "topics": ["job:<id>", "org:<id>"]}`: follow topics. Each starts with
  a `snapshot` of its current state.
- `{"action": "subscribe", "topics": [...], "last_event_id": "<id>" | {"<topic>": "<id>"}}`:
  resume after a cursor: every later event still in the log exactly once, then live ones;
  `reset` when the cursor is older than the log.
- `{"action": "unsubscribe", "topics": [...]}`.

Server → client: one `StreamEvent` per text message (the SSE `data:`), `heartbeat` every 15 s,
and `{"type": "error", "detail": "…"}` for a bad message.

Close codes: 1008 not authenticated; 1012 server restart (reconnect with your cursors);
4404 no such topic; 4408 too slow (after a `reset`); 4429 too many streams for this user.
"""


def _websocket() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "realtime_websocket",
            "summary": "Live events over WebSocket",
            "description": WEBSOCKET_DESCRIPTION,
            "tags": [TAG],
            "parameters": [TOKEN_PARAM],
            "responses": {
                "101": {
                    "description": "Switching protocols: the WebSocket is open. Messages: "
                    "`WebSocketClientMessage` in, `StreamEvent` out.",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/StreamEvent"},
                        }
                    },
                },
                "403": {"description": "The Origin sent is not one of this site's."},
            },
        }
    }


def stream_paths() -> dict[str, Any]:
    job_id = _param("job_id", "path", "The job's id.", type="string", format="uuid")
    return {
        "/api/v1/jobs/{job_id}/events": _sse(
            "Follow one job",
            "The job's `snapshot`, then each of its events; the stream ends after the "
            "terminal event. A reconnect whose cursor is the terminal event gets 204, which "
            "stops EventSource from retrying.",
            [job_id, *CURSOR_PARAMS, TOKEN_PARAM],
            extra={"204": {"description": "The client already has the job's last event."}},
        ),
        "/api/v1/realtime/events": _sse(
            "Follow the organization's activity",
            "Every event of the caller's organization (`org:<id>`), or only some jobs'. With "
            "`summary=1` the import-status summaries (`status` events) come in the same "
            "stream, so a dashboard needs one connection.",
            [
                _param(
                    "topics",
                    "query",
                    "Comma-separated `job:<id>` topics: only these jobs' events (another "
                    "kind's topic is a 400 naming `/api/v1/realtime/topics/<topic>/events`, "
                    "where it is streamed).",
                ),
                _param(
                    "summary",
                    "query",
                    "`1` to add `status` summaries (then `poll_interval` and `limit` apply).",
                    type="string",
                    enum=["1", "true", "yes"],
                ),
                *SUMMARY_PARAMS,
                *CURSOR_PARAMS,
                TOKEN_PARAM,
            ],
        ),
        "/api/v1/products/import/stream": _sse(
            "Follow the import-status summary",
            "`status` events: the organization's import counts by status and its last jobs, "
            "at most one per `poll_interval`, shared by every client of the organization.",
            [*SUMMARY_PARAMS, TOKEN_PARAM],
        ),
        "/ws/v1/stream/": _websocket(),
    }


def stream_components() -> dict[str, Any]:
    return {
        "StreamEventType": {
            "type": "string",
            "enum": list(EVENT_TYPES),
            "description": "\n".join(f"- `{t}`: {text}" for t, text in EVENT_TYPES.items()),
        },
        "StreamEvent": ENVELOPE,
        "WebSocketClientMessage": {
            "type": "object",
            "required": ["action", "topics"],
            "properties": {
                "action": {"type": "string", "enum": ["subscribe", "unsubscribe"]},
                "topics": {
                    "type": "array",
                    "items": {"type": "string", "example": "job:7b1e5b8e-…"},
                    "maxItems": 100,
                },
                "last_event_id": {
                    "oneOf": [
                        {"type": "string"},
                        {"type": "object", "additionalProperties": {"type": "string"}},
                    ],
                    "description": "One cursor for every topic, or one per topic.",
                },
            },
        },
    }


def add_stream_paths(result: dict[str, Any], generator: Any, request: Any, public: Any) -> dict:
    """drf-spectacular post-processing hook: the SSE endpoints and the WebSocket."""
    result.setdefault("paths", {}).update(stream_paths())
    result.setdefault("components", {}).setdefault("schemas", {}).update(stream_components())
    tags = result.setdefault("tags", [])
    if not any(t.get("name") == TAG for t in tags):
        tags.append(
            {
                "name": TAG,
                "description": "Live events: Server-Sent Events and WebSocket, with replay "
                "from a cursor. Polling: `GET /api/v1/realtime/poll`.",
            }
        )
    return result
