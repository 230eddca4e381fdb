"""What happens to a job whose worker was lost, or whose queue entry vanished.

A job's row is the truth; RQ's view of it can be lost (a killed work horse, a killed worker,
a Redis restart that forgets its queues). Workers started with their scheduler run
``check_jobs()`` every ``JOB_CHECK_SECONDS`` (``imports.worker.IntakeWorker``), and a worker
whose work horse died runs ``horse_lost()`` at once (its job ``processing``, or still
``queued`` when the horse died before starting it):

- a ``processing`` job whose heartbeat is older than ``WORKER_LOST_AFTER_SECONDS`` and that no
  live worker runs is resumed as its next attempt, after its checkpoint (``job.resumed``), up
  to ``JOB_MAX_ATTEMPTS``; after the last one it fails with ``reason: "worker_lost"``;
- a ``queued`` job with nothing behind it in RQ is queued again;
- a ``processing`` job that a live worker runs but that has not moved for
  ``JOB_STALLED_AFTER_SECONDS`` is announced again, with ``stalled: true`` in its snapshot.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import django_rq
import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError, StopRequested
from rq.job import Job
from rq.job import JobStatus as RQStatus

from realtime.metrics import metrics

from .models import ImportJob, JobStatus
from .progress import ProgressReporter, publish_job_event

log = logging.getLogger(__name__)

# one worker checks per period: the others see the key and skip
_CHECK_LOCK = "intake:job-check"
# RQ states in which an RQ job will still run by itself
_WAITING = {RQStatus.QUEUED, RQStatus.SCHEDULED, RQStatus.DEFERRED}


@dataclass
class CheckResult:
    resumed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    stalled: list[str] = field(default_factory=list)


def _lost_after() -> timedelta:
    return timedelta(seconds=settings.REALTIME["WORKER_LOST_AFTER_SECONDS"])


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def running_rq_job_ids() -> set[str]:
    """RQ job ids that a worker with a fresh heartbeat is working on right now."""
    conn = django_rq.get_connection("default")
    horizon = timezone.now() - _lost_after()
    running = set()
    for worker in Worker.all(connection=conn):
        beat = _aware(worker.last_heartbeat)
        job_id = worker.get_current_job_id()
        if job_id and beat is not None and beat >= horizon:
            running.add(job_id)
    return running


def check_jobs(*, exclusive: bool = False) -> CheckResult:
    """Resume or fail lost jobs, queue again orphaned ones, announce stalled ones.

    With ``exclusive``, skip the check when another worker ran it within the period.
    """
    result = CheckResult()
    conn = django_rq.get_connection("default")
    if exclusive:
        seconds = max(1, int(settings.JOB_CHECK_SECONDS) - 1)
        if not conn.set(_CHECK_LOCK, "1", nx=True, ex=seconds):
            return result
    running = running_rq_job_ids()
    _recover_lost(running, result)
    _requeue_orphans(running, result)
    return result


def _recover_lost(running: set[str], result: CheckResult) -> None:
    now = timezone.now()
    horizon = now - _lost_after()
    stalled_horizon = now - timedelta(seconds=settings.JOB_STALLED_AFTER_SECONDS)
    processing = ImportJob.objects.filter(
        status=JobStatus.PROCESSING, heartbeat_at__lt=max(horizon, stalled_horizon)
    )
    for job in processing.order_by("heartbeat_at")[:200]:
        if job.rq_job_id in running:
            if job.heartbeat_at < stalled_horizon:
                # alive but not moving: say so (the snapshot carries ``stalled``)
                publish_job_event(job, "job.progress")
                result.stalled.append(str(job.id))
            continue
        if job.heartbeat_at >= horizon:
            continue
        seconds = int((now - job.heartbeat_at).total_seconds()) if job.heartbeat_at else 0
        outcome = job_lost(
            job_id=job.id,
            why=f"no heartbeat for {seconds} s",
            stale_before=horizon,
        )
        if outcome == "resumed":
            result.resumed.append(str(job.id))
        elif outcome in ("failed", "cancelled"):
            result.failed.append(str(job.id))


def horse_lost(*, rq_job_id: str, detail: str) -> str | None:
    """The work horse running ``rq_job_id`` died (its worker saw it): resume its job now."""
    # services.job_enqueue names RQ jobs "<job id>-<attempt>"
    try:
        job_id = uuid.UUID(rq_job_id.rsplit("-", 1)[0])
    except ValueError:
        return None  # not one of ours (the periodic check itself, for one)
    return job_lost(job_id=job_id, why=detail, rq_job_id=rq_job_id)


def job_lost(
    *,
    job_id: object,
    why: str,
    rq_job_id: str | None = None,
    stale_before: datetime | None = None,
    reason: str = "worker_lost",
) -> str | None:
    """End the lost attempt of a ``processing`` job: resume it after its checkpoint, or fail it
    after ``JOB_MAX_ATTEMPTS``. Returns "resumed", "failed", "cancelled" or None (not lost
    after all: it moved on, or a newer attempt runs).

    Given the attempt's ``rq_job_id`` (its worker saw the horse die), a job still ``queued``
    is lost too: the horse died after taking it and before marking it ``processing``. Left
    queued, it would wait for the orphan check and go again as the same attempt, so a horse
    that dies at every start would loop for good instead of failing after its last attempt.
    """
    from .services import job_enqueue, job_next_attempt

    with transaction.atomic():
        job = ImportJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status not in (JobStatus.PROCESSING, JobStatus.QUEUED):
            return None
        if rq_job_id is not None and job.rq_job_id != rq_job_id:
            return None
        if job.status == JobStatus.QUEUED and rq_job_id is None:
            return None  # waiting its turn, not lost: only a horse's own worker knows better
        if stale_before is not None and job.heartbeat_at and job.heartbeat_at >= stale_before:
            return None
        metrics.inc("worker_lost_jobs")
        reporter = ProgressReporter(job)
        if job.cancel_requested_at is not None:
            reporter.cancelled()  # it was asked to stop anyway
            return "cancelled"
        if job.attempt >= settings.JOB_MAX_ATTEMPTS:
            reporter.failed(
                f"The worker running this job was lost ({why}) on each of its {job.attempt} "
                "attempts; retry the job to run it again, and if it is lost again, give its id "
                "to an administrator.",
                reason=reason,
            )
            return "failed"
        lost_attempt = job.attempt
        job_next_attempt(job)
        job_enqueue(job, event="job.resumed", attempt=job.attempt, reason=reason)
    log.warning(
        "job %s: attempt %s lost (%s); resumed as attempt %s",
        job_id,
        lost_attempt,
        why,
        lost_attempt + 1,
    )
    return "resumed"


def _rq_job_waits_or_runs(job: ImportJob, running: set[str]) -> bool:
    if job.rq_job_id in running:
        return True
    conn = django_rq.get_connection(job.priority)
    try:
        rq_job = Job.fetch(job.rq_job_id, connection=conn)
    except NoSuchJobError:
        return False
    status = rq_job.get_status(refresh=False)
    if status == RQStatus.QUEUED and not _in_its_queue(conn, rq_job):
        return not _taken_and_dropped(conn, rq_job.id)
    return status in _WAITING


# A worker takes a job off its queue's list (BLPOP) before it marks it started: stopped or
# killed in between, it leaves the job "queued" in RQ and in no list, and nothing would ever
# run it. A worker between the two for the usual few milliseconds looks the same, so such a
# job counts as dropped only once checks have seen it so for ``JOB_TAKEN_GRACE_SECONDS`` (and
# even then a worker that did start it finds its row no longer queued: ``jobs.run_job``).
# The first sighting is kept in Redis, by Redis's clock (checks run on several hosts), for a
# few check periods: long enough for the next check to see it, short enough that a later drop
# of the same RQ job (a requeue keeps its id) is judged afresh.
_TAKEN = "intake:job-check:taken:"


def _in_its_queue(conn: redis.Redis, rq_job: Job) -> bool:
    """Whether a ``queued`` RQ job is still in its queue's list, or in the list RQ moves it
    to while a worker of a single queue takes it (RQ's own clean-up ends one stuck there)."""
    queue = Queue(rq_job.origin, connection=conn)
    return any(_listed(conn, key, rq_job.id) for key in (queue.key, queue.intermediate_queue_key))


def _listed(conn: redis.Redis, key: str, rq_job_id: str) -> bool:
    try:
        return conn.lpos(key, rq_job_id) is not None
    except redis.ResponseError:  # LPOS is Redis 6.0.6's; RQ runs on 5
        return rq_job_id.encode() in conn.lrange(key, 0, -1)


def _taken_and_dropped(conn: redis.Redis, rq_job_id: str) -> bool:
    key = _TAKEN + rq_job_id
    seconds, micros = conn.time()
    now = seconds + micros / 1e6
    keep = int(4 * settings.JOB_CHECK_SECONDS + settings.JOB_TAKEN_GRACE_SECONDS) + 1
    if conn.set(key, now, nx=True, ex=keep):
        return False  # first seen so now
    first_seen = float(conn.get(key) or now)
    return now - first_seen >= settings.JOB_TAKEN_GRACE_SECONDS


def _requeue_orphans(running: set[str], result: CheckResult) -> None:
    """Queue again a ``queued`` job that RQ no longer holds (lost with a Redis restart, or
    with a worker stopped or killed between taking it and starting it), as the same attempt."""
    from .services import job_enqueue

    horizon = timezone.now() - _lost_after()
    waiting = ImportJob.objects.filter(status=JobStatus.QUEUED, updated_at__lt=horizon)
    for job in waiting.order_by("updated_at")[:200]:
        if _rq_job_waits_or_runs(job, running):
            continue
        with transaction.atomic():
            job = ImportJob.objects.select_for_update().get(pk=job.pk)
            if job.status != JobStatus.QUEUED or job.updated_at >= horizon:
                continue
            job_enqueue(job, requeued=True)
        metrics.inc("orphaned_jobs_requeued")
        django_rq.get_connection(job.priority).delete(_TAKEN + job.rq_job_id)
        log.warning("job %s was queued with nothing behind it in RQ: queued again", job.id)
        result.requeued.append(str(job.id))


def resume_after_outage(*, job_id: object, rq_job_id: str, error: BaseException) -> str | None:
    """An attempt stopped on a database outage: once the database answers again, resume the
    job after its checkpoint at once (the periodic check would, but only after
    ``WORKER_LOST_AFTER_SECONDS``)."""
    from .outages import drop_connection, retrying

    drop_connection()
    return retrying(
        lambda: job_lost(
            job_id=job_id,
            why=f"its database connection was lost: {str(error).strip()[:200]}",
            rq_job_id=rq_job_id,
            reason="database_outage",
        ),
        what="resuming the job",
    )


def check_jobs_safely() -> CheckResult | None:
    """``check_jobs`` for a worker's periodic tick: an outage is logged, never raised.

    A stop signal that reaches an idle worker mid-check (RQ raises ``StopRequested`` from its
    signal handler, inside whatever query runs) is a stop, not a failed check: it goes on up to
    RQ's work loop, which stops the worker."""
    try:
        return check_jobs(exclusive=True)
    except StopRequested:  # a stop signal while idle lands wherever the worker is: it stops
        raise
    except redis.RedisError as exc:
        log.warning("job check skipped: Redis is not reachable (%s)", exc)
    except Exception:  # a database outage, among others: the next tick tries again
        log.exception("job check failed")
    return None
