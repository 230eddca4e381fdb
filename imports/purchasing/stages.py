"""The six stages. Each takes a ``StageContext`` and returns a ``StageResult`` (or raises
``StageError`` with a message for the user); the runner (workflow.py) does the bookkeeping."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from ..models import Product
from ..pipeline.readers import FileReadError
from . import selectors
from .images import stage_image_attachment
from .models import POStatus, PurchaseOrder, PurchaseOrderLine, Supplier
from .parsing import ParsedOrder, ParseError, parse_document
from .parsing.confidence import review_reasons
from .sync import stage_sync
from .workflow import StageContext, StageError, StageResult

LINE_BATCH = 1000


def apply_parsed_header(order: PurchaseOrder, parsed: ParsedOrder, reasons: list[str]) -> None:
    """Copy the parse result's header onto the order (the page and the API show it at once,
    also while the order waits for review)."""
    order.po_number = (parsed.value("po_number") or "")[:100]
    order.supplier_name = (parsed.value("supplier") or "")[:200]
    order.order_date = parsed.value("order_date")
    order.expected_date = parsed.value("expected_date")
    order.currency = (parsed.value("currency") or "")[:3]
    order.subtotal = parsed.value("subtotal")
    order.tax = parsed.value("tax")
    order.total = parsed.value("total")
    order.confidence = parsed.confidence
    order.field_confidence = {
        name: {"score": f.score, "reasons": f.reasons} for name, f in parsed.fields.items()
    }
    order.checks = parsed.checks
    order.review_reasons = reasons
    order.template_name = parsed.template
    order.source_format = parsed.source_format[:16]
    order.line_count = len(parsed.lines)
    order.warnings = list(dict.fromkeys([*order.warnings, *parsed.warnings]))


HEADER_UPDATE_FIELDS = [
    "po_number",
    "supplier_name",
    "order_date",
    "expected_date",
    "currency",
    "subtotal",
    "tax",
    "total",
    "confidence",
    "field_confidence",
    "checks",
    "review_reasons",
    "template_name",
    "source_format",
    "line_count",
    "warnings",
    "updated_at",
]


def stage_parsing(ctx: StageContext) -> StageResult:
    order = ctx.order
    if not order.source_file:
        raise StageError("The order's file is no longer stored; upload it again.")
    ctx.progress(0, 1, f"Reading {order.original_filename}")
    try:
        parsed = parse_document(
            Path(order.source_file.path),
            order.original_filename,
            selectors.parsing_templates(organization_id=order.organization_id),
            max_lines=settings.PO_MAX_LINES,
        )
    except ParseError as exc:
        raise StageError(str(exc)) from exc
    except FileNotFoundError as exc:
        raise StageError("The order's file is no longer stored; upload it again.") from exc
    except FileReadError as exc:  # the workbook reader's own (a broken XLSX part)
        raise StageError(str(exc)) from exc
    parsed.make_storable()
    reasons = review_reasons(parsed, settings.PO_MIN_CONFIDENCE)
    apply_parsed_header(order, parsed, reasons)
    ctx.progress(1, 1, f"{len(parsed.lines)} lines read")
    message = (
        f"{len(parsed.lines):,} lines read ({parsed.template}), confidence {parsed.confidence:.2f}"
    )
    if reasons:
        message += " — needs review"
    return StageResult(
        message=message,
        summary={
            "lines": len(parsed.lines),
            "template": parsed.template,
            "format": parsed.source_format,
            "confidence": parsed.confidence,
            "needs_review": bool(reasons),
            "review_reasons": reasons,
        },
        output=parsed.to_json(),
        pause=bool(reasons),
        commit=lambda: order.save(update_fields=HEADER_UPDATE_FIELDS),
    )


def resolve_supplier(organization_id: int, name: str) -> Supplier | None:
    """The organization's supplier by name or alias (case-insensitive), created if new."""
    name = name.strip()[:200]
    if not name:
        return None
    for supplier in Supplier.objects.filter(organization_id=organization_id):
        names = [supplier.name, *supplier.aliases]
        if any(n.strip().lower() == name.lower() for n in names if isinstance(n, str)):
            return supplier
    supplier, _ = Supplier.objects.get_or_create(organization_id=organization_id, name=name)
    return supplier


def stage_database_save(ctx: StageContext) -> StageResult:
    order = ctx.order
    parsed = ParsedOrder.from_json(ctx.stage_output("parsing"))
    supplier = resolve_supplier(order.organization_id, parsed.value("supplier") or "")
    order.supplier = supplier
    warnings = list(order.warnings)
    earlier = (
        PurchaseOrder.objects.filter(
            organization_id=order.organization_id,
            supplier=supplier,
            po_number=order.po_number,
            id__lt=order.id,
        )
        .exclude(po_number="")
        .exclude(status=POStatus.FAILED)
        .order_by("id")
        .first()
    )
    if earlier is not None:
        order.duplicate_of = earlier
        warnings.append(
            f"Purchase order {order.po_number} from {order.supplier_name} was already received "
            f"on {earlier.created_at:%Y-%m-%d} (order #{earlier.id}); saved as a duplicate of it."
        )
    order.warnings = list(dict.fromkeys(warnings))
    # a review may have changed them: the stored parse result is the truth
    order.line_count = len(parsed.lines)
    order.save(update_fields=["supplier", "duplicate_of", "warnings", "line_count", "updated_at"])
    total = len(parsed.lines)
    for start in range(0, total, LINE_BATCH):
        chunk = parsed.lines[start : start + LINE_BATCH]
        PurchaseOrderLine.objects.bulk_create(
            [
                PurchaseOrderLine(
                    order=order,
                    line_number=ln.line_number,
                    sku=ln.sku[:64],
                    supplier_sku=ln.supplier_sku[:64],
                    description=ln.description,
                    quantity=ln.quantity,
                    unit_cost=ln.unit_cost,
                    line_total=ln.line_total,
                    image_url=ln.image_url[:1000],
                    confidence=round(ln.confidence, 3),
                    reasons=ln.reasons,
                )
                for ln in chunk
            ],
            ignore_conflicts=True,
        )
        ctx.progress(min(start + LINE_BATCH, total), total, "Saving lines")
    message = f"Order and {total:,} lines saved"
    if earlier is not None:
        message += f" (duplicate of order #{earlier.id})"
    return StageResult(
        message=message,
        summary={
            "lines": total,
            "supplier": supplier.name if supplier else "",
            "duplicate_of": earlier.id if earlier else None,
        },
    )


def stage_product_drafts(ctx: StageContext) -> StageResult:
    """Unknown SKUs become draft products, known ones are linked: two statements, no loop."""
    order = ctx.order
    line_table = PurchaseOrderLine._meta.db_table
    product_table = Product._meta.db_table
    key = "COALESCE(NULLIF(l.sku, ''), NULLIF(l.supplier_sku, ''))"
    ctx.progress(0, 2, "Creating draft products")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {product_table} (organization_id, sku, name, description, price,
                currency, quantity, barcode, category, brand, status, created_at, updated_at)
            SELECT DISTINCT ON ({key}) %(org)s, {key},
                LEFT(COALESCE(NULLIF(l.description, ''), {key}), 255), l.description,
                -- a product's price is numeric(12, 2): a unit cost it cannot hold leaves the
                -- draft at 0 (the order's line keeps the cost)
                CASE WHEN ROUND(l.unit_cost, 2) < 1e10
                     THEN GREATEST(ROUND(l.unit_cost, 2), 0) ELSE 0 END,
                %(currency)s, 0, '', '',
                %(brand)s, 'draft', now(), now()
            FROM {line_table} l
            WHERE l.order_id = %(order)s AND {key} IS NOT NULL
            ORDER BY {key}, l.line_number
            ON CONFLICT (organization_id, sku) DO NOTHING
            RETURNING sku
            """,
            {
                "org": order.organization_id,
                "order": order.id,
                "currency": order.currency or "USD",
                "brand": order.supplier_name[:255],
            },
        )
        created = [r[0] for r in cursor.fetchall()]
        ctx.progress(1, 2, "Linking lines to products")
        cursor.execute(
            f"""
            UPDATE {line_table} l
            -- one lookup in the (organization, sku) index a line. Not a join: the order's
            -- lines are always newer than the table's statistics (one row, says the planner),
            -- and the join it then planned read every product of the organization for each
            -- line (a 5,000-line order, 2,500 products: 12.5 million rows, 1.4 s; it grows
            -- with lines x catalogue)
            SET product_id = (
                    SELECT p.id FROM {product_table} p
                    WHERE p.organization_id = %(org)s AND p.sku = {key}
                ),
                product_created = ({key} = ANY(%(created)s))
            WHERE l.order_id = %(order)s AND {key} IS NOT NULL
            """,
            {"org": order.organization_id, "order": order.id, "created": created},
        )
    counts = PurchaseOrderLine.objects.filter(order=order).aggregate(
        linked=Count("id", filter=Q(product__isnull=False, product_created=False)),
        without=Count("id", filter=Q(product__isnull=True)),
    )
    ctx.progress(2, 2, "Products ready")
    message = f"{len(created):,} draft products created, {counts['linked']:,} lines linked"
    if counts["without"]:
        message += f", {counts['without']:,} lines without a SKU"
    return StageResult(
        message=message,
        summary={
            "created": len(created),
            "linked_lines": counts["linked"],
            "lines_without_sku": counts["without"],
        },
    )


def stage_status_update(ctx: StageContext) -> StageResult:
    order = ctx.order
    lines = PurchaseOrderLine.objects.filter(order=order)
    counts = lines.aggregate(
        lines=Count("id"),
        created=Count("id", filter=Q(product_created=True)),
        linked=Count("id", filter=Q(product__isnull=False, product_created=False)),
        images=Count("id", filter=~Q(image="")),
        image_warnings=Count("id", filter=~Q(warnings=[])),
    )
    batches = order.sync_batches.aggregate(
        requests=Count("id", filter=Q(status="delivered")),
    )
    sync_summary = ctx.stage_summary("sync")
    summary = {
        **counts,
        "sync_requests": batches["requests"],
        "synced_products": sync_summary.get("products", 0),
        "duplicate_of": order.duplicate_of_id,
        "warnings": len(order.warnings),
        "completed_at": timezone.now().isoformat(),
    }
    order.status = POStatus.COMPLETED
    order.summary = summary
    order.save(update_fields=["status", "summary", "updated_at"])
    return StageResult(
        message=(
            f"Completed: {counts['lines']:,} lines, {counts['created']:,} new drafts, "
            f"{counts['images']:,} images, {batches['requests']:,} store requests"
        ),
        summary=summary,
    )


STAGE_FUNCTIONS = {
    "parsing": stage_parsing,
    "database_save": stage_database_save,
    "product_drafts": stage_product_drafts,
    "image_attachment": stage_image_attachment,
    "sync": stage_sync,
    "status_update": stage_status_update,
}
