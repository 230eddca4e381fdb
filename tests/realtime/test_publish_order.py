"""Concurrent publishers on one topic: the live order is the log's order, nothing is lost."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from realtime import events
from realtime.log import read_after
from realtime.publish import _layer_wire, publish_now
from realtime.redis import client
from realtime.streams import ClientStream

pytestmark = pytest.mark.django_db(transaction=True)

ORG = "org:4242"


def drain(stream):
    out = []
    while stream.queue:
        out.append(stream.queue.popitem(last=False)[1])
    return out


def test_four_publishers_on_one_topic_reach_a_live_client_whole():
    """Four imports publish to the organization feed at once. Each event is appended to the
    log and published in one step, so the live feed is in log order and a client that follows
    it gets every event (it drops only ids it has already passed)."""
    per_thread = 100

    async def scenario():
        stream = ClientStream(max_queue=10_000)
        await stream.subscribe(ORG, None, snapshot=lambda t: None)
        first = read_after(ORG, None).events
        start = first[-1]["id"] if first else None

        def publisher(k):
            for n in range(per_thread):
                publish_now("job.stage", topics=[ORG], body={"job": {"id": f"job-{k}"}, "n": n})

        threads = [threading.Thread(target=publisher, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            await asyncio.sleep(0.05)
        deadline = time.monotonic() + 5
        while len(stream.queue) < 4 * per_thread and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await stream.close()
        return start, [i.id for i in drain(stream)]

    start, received = asyncio.run(scenario())
    logged = [e["id"] for e in read_after(ORG, start).events]
    assert len(logged) == 4 * per_thread
    assert received == logged


def test_the_published_message_is_what_the_channel_layer_would_have_sent():
    pubsub = client().pubsub()
    prefix, serializer = _layer_wire()
    pubsub.subscribe(f"{prefix}__group__{events.group_name('job:abc')}")
    pubsub.get_message(timeout=1)  # the subscription's confirmation
    env = publish_now(
        "job.completed",
        topics=["job:abc"],
        body={"job": {"id": "abc", "status": "completed"}},
        sent_at=1_700_000_000.125,
        terminal=True,
    )[0]
    raw = pubsub.get_message(timeout=2)
    pubsub.close()
    assert serializer.deserialize(raw["data"]) == {
        "type": "realtime.event",
        "topic": "job:abc",
        "id": env["id"],
        "event_type": "job.completed",
        "sent_at": 1_700_000_000.125,
        "json": events.dumps(env),
        "job_id": "abc",
    }
    assert read_after("job:abc", None).events == [env]
    assert client().ttl("intake:log:job:abc") > 0  # a terminal event: the job's log expires
