"""Delivery attempts stored the store URL as it was, credentials and query tokens included
(``https://key:pass@shop.example/hook?token=…``), and the admin showed them to staff. They now
store it redacted (``outbound.redacted``); this redacts the rows stored before."""

from django.db import migrations

BATCH = 1000


def redact(apps, schema_editor):
    from django.db.models import Q

    from imports.purchasing.outbound import redacted

    attempt = apps.get_model("imports", "DeliveryAttempt")
    rows = attempt.objects.filter(Q(url__contains="@") | Q(url__contains="?")).only("id", "url")
    changed = []
    for row in rows.iterator(chunk_size=BATCH):
        shown = redacted(row.url)[:500]
        if shown != row.url:
            row.url = shown
            changed.append(row)
        if len(changed) >= BATCH:
            attempt.objects.bulk_update(changed, ["url"])
            changed = []
    attempt.objects.bulk_update(changed, ["url"])


class Migration(migrations.Migration):
    dependencies = [
        ("imports", "0007_product_timestamp_db_defaults"),
    ]

    # irreversible in substance: the hidden parts are gone (reversing leaves the rows as they are)
    operations = [migrations.RunPython(redact, migrations.RunPython.noop)]
