"""Product-export throughput and memory: Intake's streamed export vs django-import-export.

    python -m config.devservers exec -- .venv/bin/python bench/export_throughput.py
        # 1,000,000 products, CSV and XLSX, 3 runs each
    python -m config.devservers exec -- .venv/bin/python bench/export_throughput.py \
        --rows 20000 --runs 3                    # small, on a shared machine

The products are put in once (COPY) for a benchmark organization and kept for later runs of
the same size. Each export runs in a fresh spawned process, so its peak memory is its own:
  intake   ``imports.exports.export_stream`` (server-side cursor in chunks → CSV text, or
           openpyxl write-only → temp file → blocks), the bytes a client would receive
  die      django-import-export 4 ``ModelResource.export(queryset)`` → tablib → ``.csv`` /
           ``.xlsx`` (what its admin export action does), the same rows and fields
Printed: rows/s and the process's peak RSS above its baseline (Django loaded, before the
export), medians over --runs, side by side from one run of this script.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

SLUG = "bench-export"


def _django() -> None:
    import django

    django.setup()


def _rss_mb() -> float:
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ensure_products(rows: int) -> int:
    """The benchmark organization with exactly ``rows`` products (made once by COPY)."""
    from django.db import connection

    from imports.models import Organization, Product

    org, _ = Organization.objects.get_or_create(slug=SLUG, defaults={"name": "Bench export"})
    if Product.objects.filter(organization=org).count() == rows:
        return org.id
    Product.objects.filter(organization=org).delete()
    columns = "organization_id, sku, name, description, price, currency, quantity, barcode, "
    columns += "category, brand, status, created_at, updated_at"
    with (
        connection.cursor() as wrapper,
        wrapper.cursor.copy(f"COPY imports_product ({columns}) FROM STDIN") as copy,
    ):
        for i in range(rows):
            copy.write_row(
                (
                    org.id,
                    f"EXP-{i:08d}",
                    f"Exported product {i}",
                    f'A plain description of product {i}, with a comma and "quotes".',
                    f"{i % 1000}.{i % 100:02d}",
                    "EUR",
                    i % 500,
                    "",
                    "Home > Kitchen",
                    "Acme",
                    "active" if i % 7 else "draft",
                    "2026-01-01T00:00:00Z",
                    "2026-01-01T00:00:00Z",
                )
            )
    with connection.cursor() as cur:
        cur.execute("ANALYZE imports_product")
    return org.id


def _measure(tool: str, fmt: str, org_id: int, out: multiprocessing.Queue) -> None:
    """In a spawned child: one export, its rows/s and its peak RSS above the baseline."""
    _django()
    from imports.models import Organization, Product
    from imports.pipeline.validation import FIELDS

    org = Organization.objects.get(pk=org_id)
    rows = Product.objects.filter(organization=org).count()
    baseline = _rss_mb()
    start = time.perf_counter()
    size = 0
    if tool == "intake":
        from imports.exports import export_stream

        options = {"format": fmt, "layout": "intake", "filters": {}}
        for piece in export_stream(organization=org, options=options):
            size += len(piece)
    else:
        from import_export import resources

        class ProductResource(resources.ModelResource):
            class Meta:
                model = Product
                fields = FIELDS
                export_order = FIELDS

        dataset = ProductResource().export(
            queryset=Product.objects.filter(organization=org).order_by("sku")
        )
        data = dataset.csv if fmt == "csv" else dataset.xlsx
        size = len(data.encode() if isinstance(data, str) else data)
    elapsed = time.perf_counter() - start
    out.put({"rows": rows, "seconds": elapsed, "peak_mb": _rss_mb() - baseline, "bytes": size})


def run_once(tool: str, fmt: str, org_id: int) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(tool, fmt, org_id, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["intake", "die"], default=None)
    parser.add_argument("--formats", default="csv,xlsx")
    args = parser.parse_args()
    _django()
    t0 = time.perf_counter()
    org_id = ensure_products(args.rows)
    print(f"{args.rows:,} products ready in {time.perf_counter() - t0:.1f} s")
    tools = [args.only] if args.only else ["intake", "die"]
    results: dict[tuple[str, str], list[dict]] = {}
    for run in range(args.runs):
        for fmt in args.formats.split(","):
            for tool in tools:
                r = run_once(tool, fmt, org_id)
                results.setdefault((tool, fmt), []).append(r)
                print(
                    f"run {run + 1} {tool:6} {fmt:4} {r['rows'] / r['seconds']:>10,.0f} rows/s "
                    f"{r['seconds']:7.2f} s  peak +{r['peak_mb']:7.1f} MB  {r['bytes']:,} bytes",
                    flush=True,
                )
    print()
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(f"machine: {platform.node()} {os.cpu_count()} cpus, python {platform.python_version()}")
    print(f"medians of {args.runs} runs, {args.rows:,} rows:")
    print("| tool | format | rows/s | seconds | peak RSS above baseline |")
    print("| --- | --- | ---: | ---: | ---: |")
    for (tool, fmt), rs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        rate = statistics.median(r["rows"] / r["seconds"] for r in rs)
        secs = statistics.median(r["seconds"] for r in rs)
        peak = statistics.median(r["peak_mb"] for r in rs)
        print(f"| {tool} | {fmt} | {rate:,.0f} | {secs:.2f} | {peak:.1f} MB |")


if __name__ == "__main__":
    main()
