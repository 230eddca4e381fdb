"""Cheaper result writes for an enrichment run: no deferred FK check per matched line at
commit (it locked the catalogue's rows), and no bom-only index beside the unique (bom,
line_number) index that already serves it."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("enrichment", "0003_component_unique_serves_mpn_key"),
    ]

    operations = [
        migrations.AlterField(
            model_name="bomline",
            name="bom",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="lines",
                to="enrichment.bom",
            ),
        ),
        migrations.AlterField(
            model_name="bomline",
            name="component",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="enrichment.component",
            ),
        ),
    ]
