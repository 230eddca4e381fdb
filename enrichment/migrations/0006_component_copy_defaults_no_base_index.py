"""A first load COPYs its batches straight into the catalogue: the columns it leaves out get
database defaults. The packaging tier reads the ``mpn_norm`` index (a part's key without
packaging begins its normalized key), so ``mpn_base`` loses its own index, which cost the import
1.6 s a million parts."""

import django.db.models.functions.datetime
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("enrichment", "0005_component_no_trigram_index"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="component",
            name="component_mpn_base",
        ),
        migrations.AlterField(
            model_name="component",
            name="alternates",
            field=models.JSONField(
                blank=True, db_default=[], default=list, help_text="Alternate MPNs."
            ),
        ),
        migrations.AlterField(
            model_name="component",
            name="created_at",
            field=models.DateTimeField(
                auto_now_add=True, db_default=django.db.models.functions.datetime.Now()
            ),
        ),
        migrations.AlterField(
            model_name="component",
            name="mpn_norm_shared",
            field=models.BooleanField(
                db_default=False,
                default=False,
                editable=False,
                help_text="Another part of the catalogue has the same normalized MPN: never auto-matched on it.",
            ),
        ),
        migrations.AlterField(
            model_name="component",
            name="updated_at",
            field=models.DateTimeField(
                auto_now=True, db_default=django.db.models.functions.datetime.Now()
            ),
        ),
    ]
