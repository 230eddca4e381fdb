"""Sample what PostgreSQL's backends wait on, beside a benchmark, to explain a slow run.

    python -m config.devservers exec -- sh -c \\
        '.venv/bin/python bench/pg_wait_sampler.py waits.txt & S=$!;
         .venv/bin/python bench/enrichment_throughput.py --runs 10; kill $S'

Every ``--every`` seconds (default 0.05) it writes one line per active backend that waits
(time of day in UTC, pid, backend type, wait event type and event, seconds into its statement,
the statement's start), leaving out a client's own wait for its next command and the server's
background processes. Once a second it writes the WAL's writes and fsyncs from ``pg_stat_io``
(their times need ``track_wal_io_timing``). The enrichment benchmark prints each run's time of
day; ``grep`` the file for those seconds. One query each time: about 1-2 ms of one core per
sample.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime

import psycopg

WAITING = """
SELECT pid, backend_type, wait_event_type, wait_event,
       round(extract(epoch FROM clock_timestamp() - query_start)::numeric, 3),
       left(regexp_replace(query, '\\s+', ' ', 'g'), 60)
FROM pg_stat_activity
WHERE pid <> pg_backend_pid() AND state = 'active' AND wait_event IS NOT NULL
  AND backend_type IN ('client backend', 'autovacuum worker', 'parallel worker')
"""
WAL_IO = """
SELECT backend_type, context, writes, write_time, fsyncs, fsync_time
FROM pg_stat_io WHERE object = 'wal' AND (writes > 0 OR fsyncs > 0)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("out", help="the file to append to")
    ap.add_argument("--every", type=float, default=0.05, help="seconds between samples")
    args = ap.parse_args()
    with (
        open(args.out, "a", buffering=1) as out,
        psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn,
    ):
        last_io = 0.0
        while True:
            at = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
            for row in conn.execute(WAITING).fetchall():
                out.write(f"{at} {row}\n")
            if time.monotonic() - last_io >= 1:
                last_io = time.monotonic()
                out.write(f"{at} wal {conn.execute(WAL_IO).fetchall()}\n")
            time.sleep(args.every)


if __name__ == "__main__":
    main()
