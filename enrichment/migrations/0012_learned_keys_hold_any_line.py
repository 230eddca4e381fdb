"""A learned choice's keys hold any line's: a BOM line's MPN upper-cased can be longer than
the 200 characters the columns had, and such a resolution was not remembered. Widening a
varchar rewrites neither the table nor its index."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("enrichment", "0011_component_base_new_packaging_suffixes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="learnedmatch",
            name="manufacturer_key",
            field=models.CharField(blank=True, default="", max_length=600),
        ),
        migrations.AlterField(
            model_name="learnedmatch",
            name="mpn_key",
            field=models.CharField(max_length=600),
        ),
    ]
