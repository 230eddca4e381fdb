"""Less for the component import to maintain per row: the unique (organization, MPN key,
manufacturer key) index also serves the exact tier's lookups by (organization, MPN key), so the
index on those two columns alone goes; and the organization foreign key is Django's only (no
deferred check trigger per inserted row), as for products."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("enrichment", "0002_component_mpn_norm_reverse")]

    operations = [
        migrations.RemoveConstraint(model_name="component", name="component_unique_per_org"),
        migrations.AddConstraint(
            model_name="component",
            constraint=models.UniqueConstraint(
                fields=["organization", "mpn_key", "manufacturer_key"],
                name="component_unique_per_org",
            ),
        ),
        migrations.RemoveIndex(model_name="component", name="component_mpn_key"),
        migrations.AlterField(
            model_name="component",
            name="organization",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="components",
                to="imports.organization",
            ),
        ),
    ]
