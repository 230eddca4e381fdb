"""A manufacturer's key folds accents and compatibility forms to the letters under them
(``matching.manufacturer_key``): ``Würth`` is ``WURTH`` as ``Wurth`` is, where it was ``WRTH``,
so a line naming Wurth Elektronik eiSos never found the parts of Würth Elektronik eiSos.

Only names with a character outside ASCII can change. Parts catalogued under such a name, and
alias rows naming one, take their new key, a name at a time; a part (or alias) whose new key
another one already holds (``Weidmüller`` and ``Weidmuller`` parts of one MPN, the two alias
rows ``Würth`` and ``Wurth``) keeps its old one. A learned choice takes the new key of the maker
of the part it chose when it held that maker's old key (an operator picks the line's maker's
part); a learned choice for another maker keeps its key. Each organization whose parts changed
gets a new catalogue version.

Not reversible: once parts under both spellings share one key they cannot be told apart."""

import re
import unicodedata

from django.db import IntegrityError, migrations, transaction
from django.db.models import F

# matching.manufacturer_key before and after this migration (a migration keeps its own copy)
NOT_ALNUM = re.compile(r"[^0-9A-Za-z]+")
NOT_WORD = re.compile(r"[\W_]+")
MAX = 200
LATIN = str.maketrans(
    {"Ø": "O", "ø": "o", "Đ": "D", "đ": "d", "Ł": "L", "ł": "l", "Æ": "AE", "æ": "ae"}
    | {"Œ": "OE", "œ": "oe", "Þ": "TH", "þ": "th", "Ħ": "H", "ħ": "h", "Ŧ": "T", "ŧ": "t"}
)
NON_ASCII = r"[^\x01-\x7f]"


def own_key(name):
    return NOT_WORD.sub("", unicodedata.normalize("NFKC", name).upper())[:MAX]


def old_key(name):
    key = NOT_ALNUM.sub("", name).upper()
    if key or name.isascii():
        return key
    own = own_key(name)
    return NOT_ALNUM.sub("", own) or own


def new_key(name):
    if name.isascii():
        return NOT_ALNUM.sub("", name).upper()
    folded = NOT_ALNUM.sub("", unicodedata.normalize("NFKD", name).translate(LATIN).upper())
    return folded[:MAX] if folded else own_key(name)


def _update_each(rows, **values):
    """Update ``rows`` at once, or one by one when one of them clashes (it keeps its key)."""
    try:
        with transaction.atomic():
            return rows.update(**values)
    except IntegrityError:
        done = 0
        for pk in rows.values_list("pk", flat=True):
            try:
                with transaction.atomic():
                    done += rows.model._default_manager.filter(pk=pk).update(**values)
            except IntegrityError:
                continue
        return done


def rekey(apps, schema_editor):
    Component = apps.get_model("enrichment", "Component")
    Alias = apps.get_model("enrichment", "ManufacturerAlias")
    Learned = apps.get_model("enrichment", "LearnedMatch")
    Catalogue = apps.get_model("enrichment", "Catalogue")
    changed = set()
    names = (
        Component.objects.filter(manufacturer__regex=NON_ASCII)
        .values_list("organization_id", "manufacturer", "manufacturer_key")
        .order_by()  # the model's ordering (mpn) would make it one row a part, not a name
        .distinct()
    )
    for org_id, name, key in names.iterator():
        new = new_key(name)
        if new == key:
            continue
        parts = Component.objects.filter(
            organization_id=org_id, manufacturer=name, manufacturer_key=key
        )
        if _update_each(parts, manufacturer_key=new):
            changed.add(org_id)
        old = old_key(name)
        if old and old != new:
            learned = Learned.objects.filter(
                organization_id=org_id, manufacturer_key=old, component__manufacturer=name
            )
            _update_each(learned, manufacturer_key=new)
    for alias in Alias.objects.filter(alias__regex=NON_ASCII).iterator():
        new = new_key(alias.alias)
        if new and new != alias.alias_key:
            _update_each(Alias.objects.filter(pk=alias.pk), alias_key=new)
    Catalogue.objects.filter(organization_id__in=changed).update(version=F("version") + 1)


class Migration(migrations.Migration):
    dependencies = [("enrichment", "0014_unicode_maker_keys")]

    operations = [migrations.RunPython(rekey)]  # irreversible: see the module's docstring
