"""The catalogue's normalized part numbers backwards, byte-wise: the trigram proposals read the
parts whose number ends as a line's does from it (enrichment/enrich.py)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("enrichment", "0001_catalogue_boms")]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX component_mpn_norm_rev ON enrichment_component "
            "(organization_id, reverse(mpn_norm::text) text_pattern_ops)",
            "DROP INDEX component_mpn_norm_rev",
        ),
    ]
