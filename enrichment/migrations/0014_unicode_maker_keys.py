"""A manufacturer whose name has no ASCII letter or digit (村田製作所, 风华) gets a key of its own
letters (``matching.manufacturer_key``) instead of the empty one every such maker shared.

The parts catalogued under such a name are given their new key, a name at a time (a catalogue
names few makers), and their organization's catalogue a new version; a part whose new key
another part of the same MPN already holds (a full-width TI beside TI) keeps its old one.
A learned choice keeps its key: an empty one was also what a line without a maker gave, and
which of the two it was is not stored. A learned choice may now hold such a key (the check).

Not reversible: the old keys cannot hold two such makers of one MPN, nor the old check a
learned choice made for one, and both may exist once this has run."""

import re
import unicodedata

import django.db.models.lookups
from django.conf import settings
from django.db import IntegrityError, migrations, models, transaction
from django.db.models import F

# matching.manufacturer_key as of this migration (a migration keeps its own copy)
NOT_WORD = re.compile(r"[\W_]+")


NOT_ALNUM = re.compile(r"[^0-9A-Za-z]+")


def maker_key(name):
    """The key of a name with no ASCII letter or digit."""
    own = NOT_WORD.sub("", unicodedata.normalize("NFKC", name).upper())[:200]
    return NOT_ALNUM.sub("", own) or own


def rekey(apps, schema_editor):
    Component = apps.get_model("enrichment", "Component")
    Catalogue = apps.get_model("enrichment", "Catalogue")
    keyless = Component.objects.filter(manufacturer_key="").exclude(manufacturer="")
    names = keyless.values_list("organization_id", "manufacturer").distinct()
    changed = set()
    for org_id, name in names.iterator():
        key = maker_key(name)
        if not key:
            continue
        parts = keyless.filter(organization_id=org_id, manufacturer=name)
        try:
            with transaction.atomic():
                parts.update(manufacturer_key=key)
        except IntegrityError:  # one of them clashes: the others still take their key
            for pk in parts.values_list("pk", flat=True):
                try:
                    with transaction.atomic():
                        Component.objects.filter(pk=pk).update(manufacturer_key=key)
                except IntegrityError:
                    continue
        changed.add(org_id)
    Catalogue.objects.filter(organization_id__in=changed).update(version=F("version") + 1)


class Migration(migrations.Migration):
    dependencies = [
        ("enrichment", "0013_learned_keys_checked"),
        ("imports", "0007_product_timestamp_db_defaults"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(rekey),  # irreversible: see the module's docstring
        migrations.RemoveConstraint(
            model_name="learnedmatch",
            name="learned_maker_key_letters_digits",
        ),
        migrations.AddConstraint(
            model_name="learnedmatch",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("manufacturer_key__regex", "^[0-9A-Z]*$"),
                    models.Q(
                        ("manufacturer_key__regex", "[^\\x01-\\x7f]"),
                        django.db.models.lookups.LessThanOrEqual(
                            models.Func(
                                "manufacturer_key",
                                function="octet_length",
                                output_field=models.IntegerField(),
                            ),
                            800,
                        ),
                    ),
                    _connector="OR",
                ),
                name="learned_maker_key_form",
                violation_error_message="A manufacturer key is the maker's letters and digits in upper case, such as TEXASINSTRUMENTS for Texas Instruments.",
            ),
        ),
    ]
