"""Parts whose MPN ends with a packaging suffix added to ``matching.PACKAGING_SUFFIXES`` after
they were catalogued (TI's ``/NOPB``, Analog Devices' ``#TRMPBF`` and ``#TRM``) get the
packaging key an import now gives them, so the packaging tier finds them from the MPN without
the suffix. A scan of the catalogue per suffix (no index serves an ending), then an update of
the few parts concerned."""

import re

from django.db import migrations

SUFFIXES = ("#TRMPBF", "-TRMPBF", "/NOPB", "#TRM")
NOT_ALNUM = re.compile(r"[^0-9A-Za-z]+")


def rebase(apps, schema_editor):
    Component = apps.get_model("enrichment", "Component")
    for suffix in SUFFIXES:
        batch = []
        for part in Component.objects.filter(mpn_key__endswith=suffix).only("id", "mpn_key"):
            if len(part.mpn_key) > len(suffix):
                part.mpn_base = NOT_ALNUM.sub("", part.mpn_key[: -len(suffix)])
                batch.append(part)
            if len(batch) >= 1000:
                Component.objects.bulk_update(batch, ["mpn_base"])
                batch = []
        Component.objects.bulk_update(batch, ["mpn_base"])


class Migration(migrations.Migration):
    dependencies = [("enrichment", "0010_component_mpn_rev_column")]

    operations = [migrations.RunPython(rebase, migrations.RunPython.noop)]
