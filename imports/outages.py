"""A database outage is never a row error.

When PostgreSQL restarts (or a connection is cut), every statement on the old connection fails
with an ``OperationalError``/``InterfaceError``, and the session's temp tables and ``SET``s are
gone with it. Such an error says nothing about the row being written: the work is done again
on a fresh connection — a batch by its writer, a job-row write by its reporter — with backoff,
for at most ``DB_OUTAGE_RETRY_SECONDS``; after that the attempt stops, and the job resumes after
its checkpoint as its next attempt.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import psycopg
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

log = logging.getLogger(__name__)

T = TypeVar("T")

# Connection lost, server shutting down, statement or lock timeout, deadlock: none of them is
# about the data. (Constraint and data errors are IntegrityError / DataError.)
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, OUTAGE_ERRORS)


def backoff_delays() -> Iterator[float]:
    """Sleeps between tries: 0.5 s doubling to 8 s, for ``DB_OUTAGE_RETRY_SECONDS`` in all."""
    budget = settings.DB_OUTAGE_RETRY_SECONDS
    delay, spent = 0.5, 0.0
    while spent < budget:
        step = min(delay, budget - spent)
        yield step
        spent += step
        delay = min(delay * 2, 8.0)


def drop_connection() -> None:
    """Forget this thread's connection so that the next query opens a new one."""
    with contextlib.suppress(Exception):
        connection.close()


def retrying(work: Callable[[], T], *, what: str) -> T:
    """Run ``work``; after a database outage, on a new connection again, with backoff.

    Only outside a transaction: inside one, the whole transaction is what has to be redone,
    so the error goes up to whoever owns it.
    """
    if connection.in_atomic_block:
        return work()
    delays = backoff_delays()
    while True:
        try:
            return work()
        except OUTAGE_ERRORS as exc:
            delay = next(delays, None)
            if delay is None:
                raise
            log.warning("database outage while %s (%s); again in %.1f s", what, exc, delay)
            drop_connection()
            time.sleep(delay)
