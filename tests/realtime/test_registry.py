"""The topic registry: the core knows no app, and a new topic kind is one registration."""

from __future__ import annotations

import ast
import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from django.apps import apps
from rest_framework.authtoken.models import Token
from websockets.sync.client import connect as ws_connect

from realtime import topics
from realtime.access import Principal, topic_allowed_sync
from realtime.publish import publish_now
from realtime.streams import outgoing_from_envelope
from tests.realtime import widgets

ROOT = Path(__file__).resolve().parents[2]


def _project_apps() -> set[str]:
    """Every installed app whose code lives in this repository, but the stream core."""
    return {
        config.name.split(".")[0]
        for config in apps.get_app_configs()
        if _in_repository(Path(config.path).resolve()) and config.name != "realtime"
    }


def _in_repository(path: Path) -> bool:
    # the virtualenv lives inside the checkout (.venv): its packages are not the project's
    return path.is_relative_to(ROOT) and "site-packages" not in path.parts


def _imported_modules(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value))
    return names


def test_the_stream_core_imports_no_app():
    project = _project_apps()
    assert {"imports", "enrichment"} <= project  # the scan knows what it looks for
    offending = {}
    for path in sorted((ROOT / "realtime").rglob("*.py")):
        found = {m for m in _imported_modules(path.read_text()) if m.split(".")[0] in project}
        if found:
            offending[str(path.relative_to(ROOT))] = sorted(found)
    assert offending == {}, f"realtime/ must reach apps only through realtime.topics: {offending}"


def test_the_scan_sees_every_way_of_importing():
    source = "import imports.models\nfrom enrichment import x\nimport_module('imports.tenancy')"
    assert _imported_modules(source) == {"imports.models", "enrichment", "imports.tenancy"}


@pytest.fixture
def widget_kind():
    widgets.register()
    yield
    topics.unregister("widget")


def test_access_asks_the_topics_kind_and_answers_unknown_and_foreign_alike(widget_kind):
    mine = Principal(user_id=1, organization_id=7, role="viewer")
    assert topic_allowed_sync(mine, "widget:7-1")
    assert not topic_allowed_sync(mine, "widget:8-1")  # another tenant's
    assert not topic_allowed_sync(mine, "gadget:7-1")  # no such kind
    assert not topic_allowed_sync(mine, "widget:7 1")  # malformed
    scoped = Principal(1, 7, "viewer", topics=frozenset({"widget:7-1"}))
    assert topic_allowed_sync(scoped, "widget:7-1")
    assert not topic_allowed_sync(scoped, "widget:7-2")  # outside the stream token's scope
    topics.unregister("widget")
    assert not topic_allowed_sync(mine, "widget:7-1")


def test_a_kinds_terminal_events_and_end_decide_when_its_streams_close(widget_kind):
    assert topics.terminal_events_of("widget:7-1") == widgets.TERMINAL
    assert "widget.finished" in topics.terminal_event_types()
    assert "job.completed" not in topics.terminal_events_of("widget:7-1")
    done = {"id": "1-0", "type": "snapshot", "topic": "widget:7-done", "ts": "", "widget": {}}
    done["widget"] = {"id": "7-done", "done": True}
    assert outgoing_from_envelope(done).terminal
    running = dict(done, topic="widget:7-1", widget={"id": "7-1", "done": False})
    assert not outgoing_from_envelope(running).terminal
    gone = {"id": "1-0", "type": "reset", "topic": "widget:7-1", "ts": "", "reason": "x"}
    assert not outgoing_from_envelope(gone).terminal  # no snapshot: not an end


@pytest.mark.django_db
def test_a_kind_registered_by_an_app_is_what_the_registry_has():
    assert {"job", "org"} <= set(topics.registered())
    assert topics.membership(-1) is None  # imports' lookup: no such user, no organization
    assert topics.summary_provider() is not None


# ----------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def widget_daphne(daphne_env):
    from tests.fixtures.services import Daphne

    server = Daphne(daphne_env, app="tests.realtime.widgets_asgi:application")
    server.start()
    yield server
    server.stop()


def _headers(user):
    return {"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}"}


def _read_sse(url, headers, out, **kwargs):
    from httpx_sse import connect_sse

    with (
        httpx.Client(timeout=20) as http,
        connect_sse(http, "GET", url, headers=headers, **kwargs) as source,
    ):
        out.append(source.response.status_code)
        for sse in source.iter_sse():
            if sse.event != "heartbeat" and sse.data:
                out.append((sse.event, sse.id, json.loads(sse.data)))


@pytest.mark.django_db(transaction=True)
def test_a_throwaway_kind_streams_end_to_end(widget_daphne, widget_kind, operator, outsider, org):
    topic = f"widget:{org.id}-42"
    url = f"{widget_daphne.url}/api/v1/realtime/topics/{topic}/events"
    sse: list = []
    reader = threading.Thread(target=_read_sse, args=(url, _headers(operator), sse), daemon=True)
    reader.start()
    ws_seen = []
    with ws_connect(
        f"ws://127.0.0.1:{widget_daphne.port}/ws/v1/stream/",
        additional_headers=_headers(operator),
        origin=f"http://127.0.0.1:{widget_daphne.port}",
    ) as ws:
        ws.send(json.dumps({"action": "subscribe", "topics": [topic]}))
        ws_seen.append(json.loads(ws.recv(timeout=10)))
        time.sleep(0.5)  # the SSE reader has its snapshot too
        publish_now("widget.step", topics=[topic], body={"widget": {"id": "42", "n": 1}})
        publish_now("widget.step", topics=[topic], body={"widget": {"id": "42", "n": 2}})
        publish_now("widget.finished", topics=[topic], body={"widget": {"id": "42"}}, terminal=True)
        while ws_seen[-1]["type"] != "widget.finished":
            message = json.loads(ws.recv(timeout=10))
            if message["type"] != "heartbeat":
                ws_seen.append(message)
    reader.join(20)
    assert not reader.is_alive(), "the SSE stream did not close after the terminal event"
    assert sse[0] == 200
    assert [e[0] for e in sse[1:]] == ["snapshot", "widget.step", "widget.step", "widget.finished"]
    assert sse[1][2]["widget"] == {"id": f"{org.id}-42", "done": False}  # the kind's snapshot
    assert [e["type"] for e in ws_seen] == [e[0] for e in sse[1:]]
    assert [e.get("id") for e in ws_seen[1:]] == [e[1] for e in sse[2:]]

    # resuming at its terminal event: 204, nothing more will come
    resumed = httpx.get(url, headers={**_headers(operator), "Last-Event-ID": sse[-1][1]})
    assert resumed.status_code == 204
    # a widget whose snapshot shows the end: the snapshot, then the stream closes
    ended: list = []
    _read_sse(url.replace("-42/", "-done/"), _headers(operator), ended)
    assert [e[0] for e in ended[1:]] == ["snapshot"]
    # another tenant: 404, like a kind that does not exist
    assert httpx.get(url, headers=_headers(outsider)).status_code == 404
    missing = url.replace("widget:", "gadget:")
    assert httpx.get(missing, headers=_headers(operator)).status_code == 404


def test_a_resume_at_a_terminal_event_ends_only_when_the_state_agrees():
    """204 at a terminal event asks the kind's state: the same job as the event's, and ended.
    A kind that registered no ``ended`` is taken at its terminal event, as before."""
    import asyncio

    from realtime.consumers import snapshot
    from realtime.streams import job_id_of, state_shows_end

    def _has_ended(topic, last):  # as the stream asks at a resume on ``last``
        return state_shows_end(topic, job_id_of(last), snapshot)

    state = {"job": {"id": "B"}, "done": True}
    topics.register(
        "gizmo",
        authorize=lambda ident, org: True,
        snapshot=lambda ident: dict(state),
        ended=lambda body: body["done"],
        terminal_events={"gizmo.done"},
    )
    topics.register(
        "gadget",
        authorize=lambda ident, org: True,
        snapshot=lambda ident: {"done": False},
        terminal_events={"gadget.done"},
    )
    try:
        assert asyncio.run(_has_ended("gizmo:1", {"type": "gizmo.done", "job": {"id": "B"}}))
        # a newer job than the one the event ended (queued, or run since): not ended
        assert not asyncio.run(_has_ended("gizmo:1", {"type": "gizmo.done", "job": {"id": "A"}}))
        state["done"] = False  # the same job, begun again (a retry)
        assert not asyncio.run(_has_ended("gizmo:1", {"type": "gizmo.done", "job": {"id": "B"}}))
        assert not topics.ends_by_state("gadget:1")
        assert asyncio.run(_has_ended("gadget:1", {"type": "gadget.done"}))
        # which events may end a topic: its kind's, or another kind's where the state can say
        assert topics.may_end("gadget:1", "gadget.done")
        assert not topics.may_end("gadget:1", "gizmo.done")
        assert topics.may_end("gizmo:1", "gadget.done")
    finally:
        topics.unregister("gizmo")
        topics.unregister("gadget")
