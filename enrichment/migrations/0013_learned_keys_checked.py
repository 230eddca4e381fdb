"""A learned choice's keys are checked whoever writes them (the admin too): a maker's key in
upper-case letters and digits, an MPN key at most 1,200 bytes, so both stay under the unique
index's entry limit. Every key the service wrote already is."""

import django.db.models.lookups
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("enrichment", "0012_learned_keys_hold_any_line"),
        ("imports", "0007_product_timestamp_db_defaults"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="learnedmatch",
            constraint=models.CheckConstraint(
                condition=models.Q(("manufacturer_key__regex", "^[0-9A-Z]*$")),
                name="learned_maker_key_letters_digits",
                violation_error_message="A manufacturer key is the maker's letters and digits in upper case, such as TEXASINSTRUMENTS for Texas Instruments.",
            ),
        ),
        migrations.AddConstraint(
            model_name="learnedmatch",
            constraint=models.CheckConstraint(
                condition=django.db.models.lookups.LessThanOrEqual(
                    models.Func(
                        "mpn_key", function="octet_length", output_field=models.IntegerField()
                    ),
                    1200,
                ),
                name="learned_mpn_key_bytes",
                violation_error_message="An MPN key is at most 1,200 bytes of UTF-8 (what the longest part number a BOM line holds gives once upper-cased).",
            ),
        ),
    ]
