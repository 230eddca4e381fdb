"""/metrics through prometheus-client, summed over processes in Redis, right after a crash."""

from __future__ import annotations

import json
import signal
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.authtoken.models import Token
from websockets.sync.client import connect as ws_connect

from realtime.events import job_topic
from realtime.exposition import quantile
from realtime.metrics import KEY, Metrics
from realtime.publish import publish_now
from realtime.redis import client as redis_client
from realtime.streams import Outgoing
from tests.fixtures.files import csv_bytes, product_rows, upload
from tests.fixtures.services import Daphne

pytestmark = pytest.mark.django_db(transaction=True)


def scrape(client) -> dict[str, dict[tuple, float]]:
    """/metrics as a staff member sees it, parsed by prometheus-client's own parser:
    {sample name: {labels as sorted tuples: value}}."""
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp["Content-Type"].startswith("text/plain")
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(resp.content.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def wait_for(predicate, timeout=12.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def staff_client(client, django_user_model):
    staff = django_user_model.objects.create_user("root", password="pw-123456", is_staff=True)
    client.force_login(staff)
    return client


def _headers(user):
    return {"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}"}


def _open_streams(page) -> float:
    return page.get("intake_open_streams", {}).get((("transport", "sse"),), 0) + page.get(
        "intake_open_streams", {}
    ).get((("transport", "websocket"),), 0)


def test_metrics_parse_and_counters_move_when_streams_open_and_events_publish(
    live, staff_client, operator, api
):
    resp = api.post(
        "/api/v1/products/import", {"file": upload(csv_bytes(product_rows(5)))}, format="multipart"
    )
    job_id = resp.json()["id"]
    before = wait_for(  # the streams of tests before this one have closed
        lambda: (
            (p := scrape(staff_client))["intake_open_streams"][(("transport", "sse"),)] == 0 and p
        ),
        what="no open streams",
    )
    assert "intake_publish_to_send_seconds_bucket" in before
    with (
        httpx.Client(timeout=10) as http,
        http.stream(
            "GET", f"{live.url}/api/v1/jobs/{job_id}/events", headers=_headers(operator)
        ) as resp,
    ):
        assert resp.status_code == 200
        lines = resp.iter_lines()
        while "event: snapshot" not in next(lines):
            pass
        publish_now("job.stage", topics=[job_topic(job_id)], body={"job": {"id": job_id}})
        while "event: job.stage" not in next(lines):
            pass
        page = wait_for(
            lambda: (
                (p := scrape(staff_client))["intake_open_streams"][(("transport", "sse"),)] == 1
                and p.get("intake_events_delivered_total", {}).get((("type", "job.stage"),))
                and p
            ),
            what="the open stream and the delivery in /metrics",
        )

    def moved(name, labels):  # other tests' processes may still flush counts of their own
        return page[name].get(labels, 0) - before.get(name, {}).get(labels, 0)

    assert moved("intake_streams_opened_total", (("transport", "sse"),)) >= 1
    assert moved("intake_events_published_total", (("type", "job.stage"),)) == 1
    assert page["intake_publish_to_send_seconds_count"][()] >= 1
    assert page["intake_stream_processes"][()] == 1
    # closed: the gauge goes back down, the counters stay
    after = wait_for(
        lambda: (
            (p := scrape(staff_client))["intake_open_streams"][(("transport", "sse"),)] == 0 and p
        ),
        what="the stream to close",
    )
    closed = after["intake_streams_closed_total"][(("transport", "sse"),)]
    assert closed - before.get("intake_streams_closed_total", {}).get((("transport", "sse"),), 0)


def test_open_streams_drop_out_after_a_daphne_process_is_killed(
    daphne_env, staff_client, operator, org
):
    server = Daphne({**daphne_env, "REALTIME_METRICS_PROCESS_TTL": "3"})
    server.start()
    request = httpx.Request(
        "GET", f"{server.url}/api/v1/realtime/events", headers=_headers(operator)
    )
    try:
        with (
            httpx.Client(timeout=10) as http,
            ws_connect(
                f"ws://127.0.0.1:{server.port}/ws/v1/stream/",
                additional_headers=_headers(operator),
                origin=f"http://127.0.0.1:{server.port}",
            ) as ws,
        ):
            sse = http.send(request, stream=True)
            assert sse.status_code == 200
            ws.send(json.dumps({"action": "subscribe", "topics": [f"org:{org.id}"]}))
            wait_for(lambda: _open_streams(scrape(staff_client)) == 2, what="two open streams")
            processes = scrape(staff_client)["intake_stream_processes"][()]
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(10)
            killed = time.monotonic()
            # no disconnect handler ran: only the expired heartbeat takes them out of the gauge
            wait_for(lambda: _open_streams(scrape(staff_client)) == 0, timeout=8, what="gauge")
            assert time.monotonic() - killed < 3 + 2 + 1  # the TTL, a flush interval, a poll
            page = scrape(staff_client)
            assert page["intake_stream_processes"][()] == processes - 1
            sse.close()
    finally:
        server.stop()


def test_events_published_by_a_worker_are_counted(api, staff_client, run_worker):
    resp = api.post(
        "/api/v1/products/import", {"file": upload(csv_bytes(product_rows(20)))}, format="multipart"
    )
    assert resp.status_code == 202
    before = scrape(staff_client).get("intake_events_published_total", {})
    run_worker()
    published = scrape(staff_client)["intake_events_published_total"]
    # one per topic (the job's and the organization's) for each event
    for kind in ("job.started", "job.completed"):
        labels = (("type", kind),)
        assert published[labels] - before.get(labels, 0) == 2


def test_histogram_quantile_interpolates_within_the_bucket():
    cumulative = [(0.01, 50.0), (0.02, 90.0), (0.05, 99.0), (0.1, 100.0), (float("inf"), 100.0)]
    assert quantile(0.5, cumulative) == pytest.approx(0.01)
    assert quantile(0.7, cumulative) == pytest.approx(0.015)
    assert quantile(0.99, cumulative) == pytest.approx(0.05)
    assert quantile(0.5, [(0.01, 0.0), (float("inf"), 0.0)]) is None


def test_windows_give_the_staff_page_rates_and_percentiles():
    from realtime.exposition import overview

    redis_client().flushdb()
    m = Metrics()
    now = time.time()
    fast = Outgoing(topic="job:x", type="job.progress", id=None, data="{}", sent_at=now - 0.004)
    slow = Outgoing(topic="job:x", type="job.stage", id=None, data="{}", sent_at=now - 0.4)
    for _ in range(98):
        m.delivered_one(fast)
    m.delivered_one(slow)
    m.delivered_one(slow)
    m.inc("events_published", "job.progress", 3)
    m.inc("resets", "too_slow")
    m.inc("events_coalesced", "job.progress", 7)
    m.flush()
    # the slot being filled is left out of the chart: move the counts one slot back
    from realtime.metrics import WINDOW_KEY, WINDOW_SECONDS

    slot = int(time.time()) // WINDOW_SECONDS
    redis_client().rename(f"{WINDOW_KEY}{slot}", f"{WINDOW_KEY}{slot - 1}")
    data = overview(seconds=60)
    point = data["series"][-1]
    assert point["delivered_per_s"] == 100 / WINDOW_SECONDS
    assert point["published_per_s"] == 3 / WINDOW_SECONDS
    assert 2.5 <= point["p50_ms"] <= 5
    assert 300 <= point["p99_ms"] <= 500  # the slowest 2 %
    assert (
        data["coalesced"] == 7 and data["resets"] == {"too_slow": 1} and data["resets_total"] == 1
    )
    assert data["lost_workers"] == 0
    assert redis_client().hget(KEY, "events_delivered|job.progress") == b"98"
