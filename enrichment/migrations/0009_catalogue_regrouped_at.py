"""When the last grouping of an organization's whole catalogue began: an import that finds
another import unsettled since then (failed or lost before its flagging) groups everything
again instead of only the groups of the parts it added."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("enrichment", "0008_component_one_unique_index_by_norm")]

    operations = [
        migrations.AddField(
            model_name="catalogue",
            name="regrouped_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
    ]
