"""Product-import throughput: Intake's real worker path vs django-import-export vs plain COPY.

    make bench                                   # 1,000,000 rows, 3 runs each, default settings
    make bench BENCH_ARGS=--quick                # 200,000 rows, 1 run: a shared machine
    python -m config.devservers exec -- .venv/bin/python bench/import_throughput.py \
        --rows 5000000 --runs 1 --only intake     # memory at 5M rows

For each pass (new products; the same file again, all unchanged; the file with every price
changed, all updated) it prints rows/s of:
  intake  API service → job row → real `rqworker --burst` process → products (end to end,
          timed from the job's enqueue to its completed state), with the worker's peak memory
  die     django-import-export 4, fastest documented settings (use_bulk, batch_size=1000,
          skip_diff, force_init_instance for new rows), on a sample of --die-rows rows
  copy    plain COPY of the CSV into an empty copy of the products table with the same unique
          index (new rows only: the physical limit)
Medians over --runs runs, measured side by side in one process run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import django
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# the benchmark file is larger than the default upload limit
os.environ.setdefault("IMPORT_MAX_UPLOAD_BYTES", str(1 << 34))
django.setup()

from django.core.files import File  # noqa: E402
from django.db import connection  # noqa: E402

from imports.models import ImportJob, Organization, Product  # noqa: E402
from imports.services import import_job_create  # noqa: E402

OUT = ROOT / "bench" / "out"
HEADER = [
    "sku", "name", "description", "price", "currency", "quantity", "barcode", "category",
    "brand", "status",
]  # fmt: skip


def ean13(n: int) -> str:
    body = f"{400000000000 + n % 99999999999:012d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def generate(rows: int, price_bump: int = 0) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"products_{rows}_{price_bump}.csv"
    if path.exists():
        return path
    rnd = random.Random(42)
    cats = ["Tools", "Garden", "Kitchen", "Office", "Toys", "Sports"]
    partial = path.with_suffix(".part")  # renamed when whole: an interrupted run leaves no file
    with partial.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for i in range(rows):
            cents = rnd.randint(100, 99999) + price_bump
            w.writerow(
                [
                    f"SKU-{i:08d}",
                    f"Product {i} {rnd.choice(cats)}",
                    f"A fine product number {i}, made with care",
                    f"{cents // 100}.{cents % 100:02d}",
                    "EUR",
                    rnd.randint(0, 500),
                    ean13(i) if i % 3 == 0 else "",
                    rnd.choice(cats),
                    f"Brand {i % 97}",
                    "active" if i % 10 else "draft",
                ]
            )
    partial.rename(path)
    return path


class PeakRss(threading.Thread):
    """Peak memory of the worker: at each sample, the PSS of the rqworker, the work horse it
    forks per job and the validator process the horse spawns, summed. PSS counts each page
    once, split among the processes that share it (the forked horse shares most of Django with
    its parent, and every process shares libpython), so the sum is what the job really holds;
    summed RSS would count the shared pages two or three times."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                total = 0
                for p in [self.proc, *self.proc.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_full_info().pss
                self.peak = max(self.peak, total)
            except psutil.Error:
                return
            # Four samples a second: the PSS of each process is the kernel walking its page
            # tables, and at 20 a second the sampling took 3-4 CPU-s of a 1M-row import on
            # two cores (perf: smaps_account), time the import itself then did not get. The
            # job's memory is flat (bounded batches), so the peak does not slip between samples.
            time.sleep(0.25)


def run_intake(
    org: Organization, path: Path, batch_size: int | None
) -> tuple[float, int, ImportJob]:
    with path.open("rb") as fh:
        upload = File(fh, name=path.name)
        upload.size = path.stat().st_size  # type: ignore[misc]
        job = import_job_create(organization=org, user=None, upload=upload, batch_size=batch_size)
    t0 = time.perf_counter()
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "high", "default", "low", "--burst"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    rss = PeakRss(proc.pid)
    rss.start()
    proc.wait()
    elapsed = time.perf_counter() - t0
    rss.stop.set()
    rss.join()
    job.refresh_from_db()
    if job.status != "completed":
        raise SystemExit(f"intake job ended {job.status}: {job.error_message}")
    # the job's own clock excludes the worker's start-up (Django import, fork)
    job_seconds = job.duration_seconds or elapsed
    return job_seconds, rss.peak, job


def run_die(org: Organization, path: Path, sample: int, new: bool) -> float:
    import tablib
    from import_export import resources

    class ProductResource(resources.ModelResource):
        class Meta:
            model = Product
            fields = HEADER
            import_id_fields = ["sku"]
            use_bulk = True
            batch_size = 1000
            skip_diff = True
            force_init_instance = new

        def get_queryset(self):
            return Product.objects.filter(organization=org)

        def init_instance(self, row=None):
            return Product(organization=org)

    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        data = tablib.Dataset(headers=HEADER)
        for i, row in enumerate(reader):
            if i >= sample:
                break
            data.append(row)
    t0 = time.perf_counter()
    result = ProductResource().import_data(data, raise_errors=True)
    elapsed = time.perf_counter() - t0
    assert not result.has_errors()
    return sample / elapsed


def run_copy(org: Organization, path: Path) -> float:
    with connection.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_copy_products")
        cur.execute("CREATE TABLE bench_copy_products (LIKE imports_product INCLUDING ALL)")
        cur.execute(
            "ALTER TABLE bench_copy_products "
            f"ALTER organization_id SET DEFAULT {int(org.id)}, "
            "ALTER created_at SET DEFAULT now(), ALTER updated_at SET DEFAULT now()"
        )
    t0 = time.perf_counter()
    with connection.cursor() as cur, path.open("rb") as fh:
        sql = (
            f"COPY bench_copy_products ({', '.join(HEADER)}) FROM STDIN "
            "WITH (FORMAT csv, HEADER true, FORCE_NOT_NULL (description, barcode, category, brand))"
        )
        with cur.cursor.copy(sql) as copy:
            while chunk := fh.read(1 << 20):
                copy.write(chunk)
    elapsed = time.perf_counter() - t0
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM bench_copy_products")
        count = cur.fetchone()[0]
        cur.execute("DROP TABLE bench_copy_products")
    return count / elapsed


def fresh_org(label: str) -> Organization:
    slug = f"bench-{label}-{time.time_ns()}"
    return Organization.objects.create(name=slug, slug=slug)


def drop_org(org: Organization) -> None:
    with connection.cursor() as cur:
        cur.execute("DELETE FROM imports_product WHERE organization_id = %s", [org.id])
        cur.execute(
            "DELETE FROM imports_importrowerror WHERE job_id IN "
            "(SELECT id FROM imports_importjob WHERE organization_id = %s)",
            [org.id],
        )
        cur.execute("DELETE FROM imports_importjob WHERE organization_id = %s", [org.id])
        cur.execute("DELETE FROM imports_organization WHERE id = %s", [org.id])
        cur.execute("VACUUM ANALYZE imports_product")


def stage_times(job) -> str:
    """Seconds spent in each stage of the job (reading includes the row pre-count)."""
    marks = [(s["stage"], datetime.fromisoformat(s["at"])) for s in job.stages]
    return ", ".join(
        f"{name} {(end - at).total_seconds():.2f} s"
        for (name, at), (_, end) in itertools.pairwise(marks)
        if name != "queued"
    )


def longest_progress_gap(job: ImportJob) -> float:
    """The longest time, in seconds, that a client following the job waited for news while it
    imported: between consecutive events of its log from its first stage to its end (progress
    is published at most every PROGRESS_MIN_INTERVAL, so the floor is that interval)."""
    from realtime.events import job_topic
    from realtime.log import read_after

    events = read_after(job_topic(job.id), None, count=1_000_000).events
    stamps = [
        datetime.fromisoformat(e["ts"].replace("Z", "+00:00"))
        for e in events
        if e["type"] in ("job.stage", "job.progress", "job.completed")
    ]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    return max(gaps, default=float("nan"))


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--die-rows", type=int, default=10_000)
    ap.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="an upload's batch_size option; by default none, as an upload with no options",
    )
    ap.add_argument("--quick", action="store_true", help="200,000 rows, one run")
    ap.add_argument(
        "--only",
        choices=["intake", "intake+copy", "all"],
        default="all",
        help="intake+copy skips django-import-export (for quick intake/COPY ratios)",
    )
    ap.add_argument("--passes", default="new,unchanged,updated", help="which intake passes")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.runs = 200_000, 1

    new_file = generate(args.rows)
    changed_file = generate(args.rows, price_bump=1) if "updated" in args.passes else new_file
    print(f"# command: {' '.join(sys.argv)}")
    print(
        f"# machine: {platform.platform()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )
    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        print(
            f"# PostgreSQL {cur.fetchone()[0]}; file {new_file.stat().st_size / 2**20:.0f} MiB, "
            f"{args.rows:,} rows x 10 columns; intake batch_size "
            f"{args.batch_size or 'default (automatic)'}"
        )

    results: dict[str, dict[str, list[float]]] = {}
    peaks: list[int] = []

    def record(pass_name: str, system: str, rate: float) -> None:
        results.setdefault(pass_name, {}).setdefault(system, []).append(rate)
        print(f"  {pass_name:9s} {system:7s} {rate:>10,.0f} rows/s", flush=True)

    for run in range(args.runs):
        print(f"run {run + 1}/{args.runs}", flush=True)
        org = fresh_org("intake")
        for pass_name, path in (
            ("new", new_file),
            ("unchanged", new_file),
            ("updated", changed_file),
        ):
            if pass_name not in args.passes.split(","):
                continue
            seconds, peak, job = run_intake(org, path, args.batch_size)
            peaks.append(peak)
            expected = {
                "new": job.created_rows,
                "unchanged": job.unchanged_rows,
                "updated": job.updated_rows,
            }[pass_name]
            assert expected == args.rows, (pass_name, expected)
            record(pass_name, "intake", args.rows / seconds)
            print(
                f"            worker peak PSS {peak / 2**20:.0f} MiB, {seconds:.1f} s "
                f"({stage_times(job)}); longest wait for a progress event "
                f"{longest_progress_gap(job):.2f} s"
            )
        drop_org(org)
        if args.only == "intake":
            continue
        if args.only == "all":
            org = fresh_org("die")
            record("new", "die", run_die(org, new_file, args.die_rows, new=True))
            record("unchanged", "die", run_die(org, new_file, args.die_rows, new=False))
            record("updated", "die", run_die(org, changed_file, args.die_rows, new=False))
            drop_org(org)
        org = fresh_org("copy")
        record("new", "copy", run_copy(org, new_file))
        drop_org(org)

    print("\n## medians")
    print(
        "| pass | intake rows/s | django-import-export rows/s | COPY rows/s "
        "| intake/die | intake/COPY |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for pass_name, systems in results.items():
        i = med(systems.get("intake", []))
        d = med(systems.get("die", [])) if systems.get("die") else float("nan")
        c = med(results["new"].get("copy", [])) if "copy" in results["new"] else float("nan")
        print(f"| {pass_name} | {i:,.0f} | {d:,.0f} | {c:,.0f} | {i / d:.1f}x | {i / c:.2f} |")
    print(
        f"\nworker peak PSS (rqworker + horse + validator, max over runs): "
        f"{max(peaks) / 2**20:.0f} MiB; "
        f"django-import-export measured on the first {args.die_rows:,} rows of the file"
    )


if __name__ == "__main__":
    main()
