"""The staff page /realtime/ and its JSON: real figures for staff, a login for anyone else."""

from __future__ import annotations

import time

import pytest

from realtime.metrics import WINDOW_KEY, WINDOW_SECONDS, Metrics
from realtime.redis import client as redis_client
from realtime.streams import Outgoing

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(
        "root", password="pw-123456", is_staff=True, is_superuser=True
    )


class _Clock:
    """``time`` as the page sees it: held at ``now``, the rest of the module as it is."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str):
        return getattr(time, name)


@pytest.fixture
def traffic(monkeypatch):
    """What a daphne with 3 SSE and 2 WebSocket clients, and a worker, would have flushed."""
    redis_client().flushdb()
    m = Metrics()
    m.process = "testhost:1"
    m.inc("streams_opened", "sse", 3)
    m.inc("streams_opened", "websocket", 2)
    now = time.time()
    event = Outgoing(topic="job:x", type="job.progress", id=None, data="{}", sent_at=now - 0.012)
    for _ in range(250):
        m.delivered_one(event)
    m.inc("events_published", "job.progress", 5)
    m.inc("events_coalesced", "job.progress", 4)
    m.inc("resets", "too_slow", 2)
    m.inc("worker_lost_jobs")
    m.flush()
    # into the last whole window (the one being filled is not charted yet), and the page's
    # clock held in the window after it: the wall clock may cross into the next one meanwhile
    (key,) = redis_client().keys(f"{WINDOW_KEY}*")
    slot = int((key.decode() if isinstance(key, bytes) else key).removeprefix(WINDOW_KEY))
    redis_client().rename(f"{WINDOW_KEY}{slot}", f"{WINDOW_KEY}{slot - 1}")
    monkeypatch.setattr("realtime.exposition.time", _Clock(slot * WINDOW_SECONDS + 1))


def test_staff_see_real_figures(client, staff, traffic):
    client.force_login(staff)
    resp = client.get("/realtime/")
    assert resp.status_code == 200
    page = resp.content.decode()
    assert 'data-field="open_streams_total">5<' in page
    assert 'data-field="open_streams.sse">3<' in page
    assert 'data-field="open_streams.websocket">2<' in page
    assert 'data-field="coalesced">4<' in page
    assert 'data-field="resets_total">2<' in page and "too_slow 2" in page
    assert 'data-field="lost_workers">1<' in page
    # 250 deliveries 12 ms after publish: p50 and p99 in the 10-15 ms bucket
    p50 = resp.context["data"]["p50_ms"]
    assert 10 <= p50 <= 15
    assert '<path class="s0" d="M' in page  # the latency chart has a line
    data = client.get("/realtime/data").json()
    assert data["open_streams"] == {"sse": 3, "websocket": 2}
    assert data["series"][-1]["delivered_per_s"] == 250 / WINDOW_SECONDS
    assert data["latency_chart"]["paths"][0].startswith("M")


def test_the_admin_index_links_to_it(client, staff):
    client.force_login(staff)
    assert 'href="/realtime/"' in client.get("/admin/").content.decode()


@pytest.mark.parametrize("path", ["/realtime/", "/realtime/data"])
def test_anyone_but_staff_is_sent_to_log_in(client, operator, path):
    resp = client.get(path)
    assert resp.status_code == 302 and resp["Location"].startswith("/admin/login/")
    client.force_login(operator)
    resp = client.get(path)
    assert resp.status_code == 302 and resp["Location"].startswith("/admin/login/")


def test_chart_paths_break_at_empty_slots_and_show_lone_slots_as_dots():
    from realtime.views import CHART_HEIGHT, _path

    path = _path([None, 10.0, 20.0, None, 5.0, None], top=20.0)
    assert path == f"M120.0,{CHART_HEIGHT / 2:.1f} L240.0,0.0 M480.0,{CHART_HEIGHT * 0.75:.1f} h3"
