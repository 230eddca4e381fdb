"""No trigram (GIN) index on the catalogue: proposals come from the B-tree neighbours
(enrichment/enrich.py), and the index cost the component import a third of its time. pg_trgm
stays: proposals are still scored by its similarity()."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("enrichment", "0004_bomline_lighter_writes"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="component",
            name="component_mpn_trgm",
        ),
    ]
