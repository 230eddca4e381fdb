"""The consumer core on its own: coalescing, overflow, and gap-free subscription."""

from __future__ import annotations

import asyncio
import threading

import pytest

from realtime.log import read_after
from realtime.publish import publish_now
from realtime.streams import ClientStream, Outgoing, StreamClosed


def item(type_, n, topic="job:x"):
    return Outgoing(topic=topic, type=type_, id=f"{n}-0", data=f'{{"n": {n}}}')


def drain(stream):
    out = []
    while stream.queue:
        out.append(stream.queue.popitem(last=False)[1])
    return out


class Counted:
    """Stands in for ``realtime.streams.metrics``: what the stream counted."""

    def __init__(self):
        self.counts = {}

    def inc(self, name, label="", n=1):
        self.counts[(name, label)] = self.counts.get((name, label), 0) + n


def test_slow_client_gets_latest_progress_and_every_stage_and_terminal_event(monkeypatch):
    counted = Counted()
    monkeypatch.setattr("realtime.streams.metrics", counted)
    stream = ClientStream(max_queue=100)
    stream.backed_up = True  # its socket has not taken what was written
    stream.offer(item("job.started", 1))
    for n in range(2, 50):
        stream.offer(item("job.progress", n))
    stream.offer(item("job.stage", 50))
    for n in range(51, 90):
        stream.offer(item("job.progress", n))
    stream.offer(item("job.completed", 90))
    sent = drain(stream)
    assert [(i.type, i.id) for i in sent] == [
        ("job.started", "1-0"),
        ("job.stage", "50-0"),
        ("job.progress", "89-0"),  # the newest progress, behind the stage event: ids stay ordered
        ("job.completed", "90-0"),
    ]
    assert counted.counts[("events_coalesced", "job.progress")] == 48 + 38  # each one replaced


def test_a_client_that_keeps_up_gets_every_progress_event():
    """Events queue for a moment while a write is in flight; that is no reason to drop any."""
    stream = ClientStream(max_queue=100)
    for n in range(1, 6):
        stream.offer(item("job.progress", n))
    assert [i.id for i in drain(stream)] == [f"{n}-0" for n in range(1, 6)]


@pytest.mark.django_db(transaction=True)
def test_a_resume_after_missing_two_progress_events_gets_both():
    topic = "job:00000000-0000-0000-0000-000000000002"
    body = {"job": {"id": "00000000-0000-0000-0000-000000000002"}}
    seen = publish_now("job.stage", topics=[topic], body=body)[0]["id"]
    missed = [publish_now("job.progress", topics=[topic], body=body)[0]["id"] for _ in range(2)]

    async def resume():
        stream = ClientStream(max_queue=1)  # the replay is not cut to the live queue's size
        stream.backed_up = True  # nor coalesced, even for a client that is behind
        await stream.subscribe(topic, seen, snapshot=lambda t: None)
        await stream.close()
        return [(i.type, i.id) for i in drain(stream)]

    assert asyncio.run(resume()) == [("job.progress", missed[0]), ("job.progress", missed[1])]


def test_duplicates_and_older_events_are_dropped():
    stream = ClientStream()
    stream.offer(item("job.stage", 5))
    stream.offer(item("job.stage", 5))
    stream.offer(item("job.stage", 4))
    assert len(drain(stream)) == 1


def test_a_client_too_slow_for_stage_events_is_closed():
    stream = ClientStream(max_queue=3)
    for n in range(1, 5):
        stream.offer(item("job.stage", n))

    async def read():
        await stream.next(1)  # the first still goes out
        stream.queue.clear()
        await stream.next(1)

    with pytest.raises(StreamClosed):
        asyncio.run(read())


@pytest.mark.django_db(transaction=True)
def test_subscribe_while_publishing_loses_nothing_and_repeats_nothing():
    topic = "job:00000000-0000-0000-0000-000000000001"
    first = publish_now("job.stage", topics=[topic], body={"n": 0})[0]["id"]
    done = threading.Event()

    def publisher():
        for n in range(1, 200):
            publish_now("job.stage", topics=[topic], body={"n": n})
        done.set()

    async def scenario():
        stream = ClientStream(max_queue=10_000)
        thread = threading.Thread(target=publisher)
        thread.start()
        await stream.subscribe(topic, first, snapshot=lambda t: None)
        while not done.is_set():
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the last live messages
        await stream.close()
        thread.join()
        return [i.id for i in drain(stream)]

    received = asyncio.run(scenario())
    logged = [e["id"] for e in read_after(topic, first).events]
    assert len(logged) == 199
    assert received == logged


def test_latency_histogram_is_cumulative_and_counts_every_delivery():
    import time

    from realtime.metrics import KEY, Metrics
    from realtime.redis import client

    client().delete(KEY)
    m = Metrics()
    now = time.time()
    sent = [
        Outgoing(topic="job:x", type="job.progress", id=None, data="{}", sent_at=now - age)
        for age in (0.001, 0.02, 0.02, 3.0, 60.0)
    ]
    m.delivered(sent)
    m.delivered([Outgoing(topic="job:x", type="job.stage", id=None, data="{}")])  # no timestamp
    m.flush()
    raw = {k.decode(): float(v) for k, v in client().hgetall(KEY).items()}
    assert raw["events_delivered|job.progress"] == 5 and raw["events_delivered|job.stage"] == 1
    assert raw["latency_bucket|0.005"] == 1
    assert raw["latency_bucket|0.025"] == 3
    assert raw["latency_bucket|2.5"] == 3
    assert raw["latency_bucket|5.0"] == 4
    assert raw["latency_bucket|10.0"] == 4
    assert raw["latency_bucket|+Inf"] == raw["latency_count|"] == 5
    assert 63.0 < raw["latency_sum|"] < 63.1


def test_a_delivery_is_noted_without_an_object_per_delivery():
    """A fan-out notes a thousand deliveries of one event: one record for the event, one float
    per delivery (nothing the garbage collector tracks), every one counted at the flush."""
    import time

    from realtime.metrics import KEY, Metrics
    from realtime.redis import client

    client().delete(KEY)
    m = Metrics()
    item = Outgoing(topic="job:x", type="job.progress", id=None, data="{}", sent_at=time.time())
    for _ in range(1000):
        m.delivered_one(item)
    assert len(m._sent) == 1
    m.flush()
    assert not m._sent
    raw = {k.decode(): float(v) for k, v in client().hgetall(KEY).items()}
    assert raw["events_delivered|job.progress"] == 1000
    assert raw["latency_count|"] == 1000


def test_a_flush_from_another_thread_while_the_loop_delivers():
    """/metrics flushes from a view's thread while the loop's thread notes deliveries: no
    error, and every delivery noted before the last flush is counted once."""
    import sys
    import threading
    import time

    from realtime.metrics import KEY, Metrics
    from realtime.redis import client

    client().delete(KEY)
    m = Metrics()
    m.flush_soon = lambda: None  # only the other thread flushes here
    items = [
        Outgoing(topic="job:x", type="job.progress", id=None, data="{}", sent_at=time.time())
        for _ in range(20_000)
    ]
    done, failures = threading.Event(), []

    def flusher():
        while not done.is_set():
            try:
                m.flush()
            except Exception as exc:  # what a /metrics request would have turned into a 500
                failures.append(exc)
                return

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython will
    thread = threading.Thread(target=flusher)
    thread.start()
    try:
        for item in items:
            m.delivered_one(item)
            m.delivered_one(item)
    finally:
        done.set()
        thread.join()
        sys.setswitchinterval(switch)
    m.flush()
    assert failures == []
    raw = {k.decode(): float(v) for k, v in client().hgetall(KEY).items()}
    assert 0.99 * 40_000 <= raw["events_delivered|job.progress"] <= 40_000


def test_daphne_processes_freeze_the_loaded_app_out_of_collections():
    import gc

    from realtime import daphne_compat

    before = gc.get_threshold()
    try:
        daphne_compat.tune_gc()
        assert gc.get_freeze_count() > 1000  # Django and the app, never walked again
        assert gc.get_threshold() == (daphne_compat.GC_YOUNG_THRESHOLD, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


class FakeConnection:
    TLS = False
    connected = True
    disconnecting = False
    _writeDisconnected = False

    def __init__(self, takes):
        self.takes = list(takes)  # what each send takes: a byte count or an exception
        self.dataBuffer, self.offset, self._tempDataLen = b"", 0, 0
        self.on_wire, self.buffered = b"", []

    def writeSomeData(self, data):
        took = self.takes.pop(0)
        if isinstance(took, Exception):
            return took
        self.on_wire += bytes(data[:took])
        return took


def buffer(conn, data):
    conn.buffered.append(data)
    conn._tempDataLen += len(data)


def test_write_through_sends_at_once_and_buffers_only_the_rest():
    from realtime.daphne_compat import write_through

    whole = FakeConnection([10])
    write_through(whole, b"0123456789", buffer)
    assert whole.on_wire == b"0123456789" and whole.buffered == []

    partial = FakeConnection([4])
    write_through(partial, b"0123456789", buffer)
    assert partial.on_wire == b"0123" and partial.buffered == [b"456789"]
    # something is buffered now: later writes queue behind it, never overtake it
    write_through(partial, b"abc", buffer)
    assert partial.on_wire == b"0123" and partial.buffered == [b"456789", b"abc"]

    lost = FakeConnection([ConnectionError("gone")])
    write_through(lost, b"xyz", buffer)  # Twisted's own write path reports the lost connection
    assert lost.on_wire == b"" and lost.buffered == [b"xyz"]

    tls = FakeConnection([])
    tls.TLS = True
    write_through(tls, b"secret", buffer)
    assert tls.buffered == [b"secret"]


def test_an_idle_sender_gets_events_written_at_once_and_a_busy_one_queued():
    """``direct`` writes while the sender is parked with nothing queued (the client keeps
    up); otherwise, or when the writer declines, events queue and keep their order."""

    async def scenario():
        written, accept = [], [True]
        stream = ClientStream()

        def direct(events):
            if accept[0]:
                written.extend(e.id for e in events)
            return accept[0]

        stream.direct = direct
        stream.offer(item("job.stage", 1))  # the sender is not waiting yet: queued
        assert written == [] and len(stream.queue) == 1
        assert (await stream.next(1)).id == "1-0"

        waiting = asyncio.create_task(stream.next(5))
        await asyncio.sleep(0)  # parked in next()
        stream.offer(item("job.stage", 2))
        stream.offer(item("job.progress", 3))
        assert written == ["2-0", "3-0"] and not stream.queue

        accept[0] = False  # e.g. the socket has bytes waiting: the writer declines
        stream.offer(item("job.stage", 4))
        accept[0] = True
        stream.offer(item("job.stage", 5))  # behind a queued event: queued too, in order
        assert written == ["2-0", "3-0"]
        assert (await waiting).id == "4-0" and stream.next_nowait().id == "5-0"

        waiting = asyncio.create_task(stream.next(5))
        await asyncio.sleep(0)
        stream.end()  # the last event is out: the sender is woken, nothing more is written
        assert await waiting is None
        stream.offer(item("job.stage", 6))
        assert written == ["2-0", "3-0"] and not stream.queue

    asyncio.run(scenario())


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536])
def test_websocket_text_frames_are_whole_unmasked_frames(size):
    from realtime.daphne_compat import text_frame

    payload = b"x" * size
    frame = text_frame(payload)
    assert frame[0] == 0x81  # FIN, text
    assert not frame[1] & 0x80  # a server does not mask
    length = frame[1]
    offset = 2
    if length == 126:
        length, offset = int.from_bytes(frame[2:4], "big"), 4
    elif length == 127:
        length, offset = int.from_bytes(frame[2:10], "big"), 10
    assert length == size and frame[offset:] == payload


def test_the_hub_returns_from_subscribe_only_once_events_reach_it():
    """The pub/sub layer's group_add only sends SUBSCRIBE: here it takes effect 300 ms late.
    Hub.subscribe still returns only when the topic's events are delivered, so an event
    published right after it (the moment a subscriber reads the log) is not lost."""
    from realtime.hub import Hub

    topic = "job:00000000-0000-0000-0000-0000000000aa"

    async def scenario():
        hub = Hub()
        real_group_add = hub.layer.group_add

        async def late_group_add(group, channel):
            async def later():
                await asyncio.sleep(0.3)
                await real_group_add(group, channel)

            asyncio.get_running_loop().create_task(later())

        hub.layer.group_add = late_group_add
        got = []
        try:
            await hub.subscribe(topic, lambda messages: got.extend(m["id"] for m in messages))
            published = await asyncio.to_thread(
                publish_now, "job.stage", topics=[topic], body={"n": 1}
            )
            for _ in range(100):
                if got:
                    break
                await asyncio.sleep(0.01)
        finally:
            hub.layer.group_add = real_group_add
            await hub.unsubscribe(topic, got.append)
            if hub._task is not None:
                hub._task.cancel()
        return got, published[0]["id"]

    got, published = asyncio.run(scenario())
    assert got == [published]


def _message(topic, event_id, event_type):
    return {"topic": topic, "id": event_id, "event_type": event_type, "json": "{}"}


def test_events_that_arrive_together_reach_each_client_in_one_write():
    """A job's start and its first stage are published together and read together: the hub
    hands them over together and an idle client gets both in one write, not one pass over
    every connection each. One it already has is left out; a busy client queues them."""
    from realtime.hub import Hub
    from realtime.log import cursor_key

    async def scenario():
        hub = Hub()
        idle, busy, writes = ClientStream(), ClientStream(), []
        idle.direct = busy.direct = lambda items: writes.append([i.id for i in items]) or True
        idle.cursors["job:x"] = cursor_key("1-0")  # it has event 1 already (a replay)
        hub.listeners["job:x"] = {idle._listener, busy._listener}
        parked = asyncio.create_task(idle.next(5))
        await asyncio.sleep(0)  # the idle stream's sender waits: the direct path
        hub.dispatch(
            _message("job:x", "1-0", "job.stage"),
            _message("job:x", "2-0", "job.started"),
            _message("org:y", "2-1", "job.started"),  # a topic nobody here follows
            _message("job:x", "3-0", "job.stage"),
        )
        assert writes == [["2-0", "3-0"]]
        assert [i.id for i in drain(busy)] == ["1-0", "2-0", "3-0"]
        parked.cancel()

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_a_job_starts_in_its_first_stage_with_both_events_published_together(org, monkeypatch):
    """``started(first_stage=...)`` records both stages and publishes ``job.started`` and
    ``job.stage`` in one batch (one Redis round trip for the log, one for the fan-out)."""
    from imports import progress
    from imports.models import ImportJob
    from realtime.events import job_topic

    batches = []
    real = progress.publish_together
    monkeypatch.setattr(
        progress, "publish_together", lambda b: (batches.append([e.type for e in b]), real(b))
    )
    job = ImportJob.objects.create(organization=org, kind="product_import")
    progress.ProgressReporter(job).started(first_stage="reading")
    job.refresh_from_db()
    assert job.status == "processing" and job.stage == "reading"
    assert [s["stage"] for s in job.stages] == ["started", "reading"]
    assert batches == [["job.started", "job.stage"]]
    logged = read_after(job_topic(job.id), None).events
    assert [(e["type"], e["job"]["stage"]) for e in logged] == [
        ("job.started", "started"),
        ("job.stage", "reading"),
    ]


def test_the_hub_takes_what_the_pub_sub_layer_has_already_read():
    """``Hub._ready`` reads the Pub/Sub layer's own per-channel queue: with the real layer and
    real Redis, messages already read come out at once, in order, and nothing waits."""
    from realtime.hub import Hub

    async def scenario():
        hub = Hub()
        hub.channel = await hub.layer.new_channel(prefix="hub.")
        for n in (1, 2, 3):
            await hub.layer.send(hub.channel, _message("job:x", f"{n}-0", "job.progress"))
        queue = hub.layer._get_layer().channels[hub.channel]
        for _ in range(200):  # until the layer's reader has all three
            if queue.qsize() == 3:
                break
            await asyncio.sleep(0.01)
        first = await hub.layer.receive(hub.channel)
        assert [first["id"], *(m["id"] for m in hub._ready())] == ["1-0", "2-0", "3-0"]
        assert hub._ready() == []

    asyncio.run(scenario())
