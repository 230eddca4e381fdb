"""Store presets: how the product exports of Shopify, WooCommerce and Google Merchant Center map
onto Intake's fields, and the value rules each needs. Pure code, no ORM.

A preset is recognised by headers only that system writes (``detect``), maps its columns by
name, and brings ``RowRules``: per-file state and per-row rules that run before validation.
A rule fills cells a system leaves blank on purpose (Shopify writes a product's title only on
its first row), skips rows that are not products (image rows, variable parents) with a count,
and turns values into ours (``9.90 USD``, ``Published -1``, HTML bodies).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .markup import html_to_text
from .validation import FIELDS, normalize_header

F = {name: i for i, name in enumerate(FIELDS)}  # a field's place in a shaped row
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def unescape_formula(text: str) -> str:
    """Undo our exports' formula guard: ``'=1+2`` was written for ``=1+2``."""
    if len(text) > 1 and text[0] == "'" and text[1] in "=+-@\t\r":
        return text[1:]
    return text


# ------------------------------------------------------------------ presets


class RowRules:
    """One file's rules. ``fill`` may write context into the raw cells (those are what a
    failed row keeps, so a fixed row stands on its own); ``skip`` names why a row is no
    product; ``shape`` turns the mapped values (``FIELDS`` order) into ours or says why not."""

    def __init__(self, header: Sequence[str]) -> None:
        self.at = {normalize_header(h): i for i, h in reversed(list(enumerate(header)))}

    def cell(self, values: list[str], name: str) -> str:
        i = self.at.get(name, -1)
        return values[i].strip() if 0 <= i < len(values) else ""

    def fill(self, values: list[str]) -> list[str]:
        return values

    def skip(self, values: list[str]) -> str | None:
        return None

    def shape(self, values: list[str], out: list[str]) -> str | None:
        return None


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    columns: dict[str, str | None]  # normalized header -> field (None: known, not imported)
    detect: frozenset[str] = frozenset()  # normalized headers that identify the system
    rules: type[RowRules] = RowRules
    notes: tuple[str, ...] = field(default=())

    def columns_for(self, header: Sequence[str]) -> dict[str, str | None]:
        """This preset's mapping for ``header``'s own column names."""
        return {
            h.strip(): self.columns[normalize_header(h)]
            for h in header
            if normalize_header(h) in self.columns
        }

    def matches(self, header: Sequence[str]) -> bool:
        return bool(self.detect) and self.detect <= {normalize_header(h) for h in header}


class ShopifyRules(RowRules):
    # written only on the first row of a handle; the variant rows below leave them blank
    PRODUCT_LEVEL = (
        "title",
        "body (html)",
        "vendor",
        "product category",
        "type",
        "tags",
        "published",
        "status",
    )

    def __init__(self, header: Sequence[str]) -> None:
        super().__init__(header)
        self.handle = ""
        self.first: dict[int, str] = {}
        self.product_level = [self.at[c] for c in self.PRODUCT_LEVEL if c in self.at]

    def fill(self, values: list[str]) -> list[str]:
        handle = self.cell(values, "handle")
        if handle and handle == self.handle:
            for i in self.product_level:
                if i < len(values) and not values[i].strip() and self.first.get(i):
                    values[i] = self.first[i]
        elif handle:
            self.handle = handle
            self.first = {i: values[i] for i in self.product_level if i < len(values)}
        return values

    def skip(self, values: list[str]) -> str | None:
        if not self.cell(values, "variant sku") and not self.cell(values, "variant price"):
            return "image rows (no variant)"
        return None

    def shape(self, values: list[str], out: list[str]) -> str | None:
        if not out[F["sku"]].strip():
            return (
                "Variant SKU is empty: give the variant a SKU in Shopify "
                "(Intake keys products by SKU)"
            )
        options = [
            self.cell(values, f"option{n} value")
            for n in (1, 2, 3)
            if self.cell(values, f"option{n} value") not in ("", "Default Title")
        ]
        if options and out[F["name"]].strip():
            out[F["name"]] = f"{out[F['name']].strip()} - {' / '.join(options)}"
        out[F["description"]] = html_to_text(out[F["description"]])
        if not out[F["category"]].strip():
            out[F["category"]] = self.cell(values, "product category")
        status = out[F["status"]].strip().lower()
        if status == "archived":
            out[F["status"]] = "draft"  # Intake has no archive: keep it, not for sale
        elif not status and "status" not in self.at:
            # exports before Status existed say it with Published
            published = self.cell(values, "published").lower()
            out[F["status"]] = "draft" if published in ("false", "0", "no") else "active"
        qty = out[F["quantity"]].strip()
        if qty.startswith("-") and qty[1:].isdecimal():
            out[F["quantity"]] = "0"  # oversold: Shopify counts below zero, we do not
        return None


_UNESCAPED_COMMA = re.compile(r"(?<!\\),")


class WooCommerceRules(RowRules):
    INHERITED = ("categories", "description", "short description", "brands")

    def __init__(self, header: Sequence[str]) -> None:
        super().__init__(header)
        self.parents: dict[str, dict[int, str]] = {}
        self.inherited = [self.at[c] for c in self.INHERITED if c in self.at]

    def kinds(self, values: list[str]) -> set[str]:
        return {t.strip().lower() for t in self.cell(values, "type").split(",")}

    def fill(self, values: list[str]) -> list[str]:
        kinds = self.kinds(values)
        if "variable" in kinds:
            # variations name their parent as id:123 or by SKU; both, for a few parents only
            known = {i: values[i] for i in self.inherited if i < len(values)}
            for key in (f"id:{self.cell(values, 'id')}", self.cell(values, "sku")):
                if key not in ("id:", ""):
                    self.parents[key] = known
        elif "variation" in kinds:
            parent = self.parents.get(self.cell(values, "parent"), {})
            for i, value in parent.items():
                if i < len(values) and not values[i].strip():
                    values[i] = value
        return values

    def skip(self, values: list[str]) -> str | None:
        kinds = self.kinds(values)
        if "variable" in kinds:
            return "variable products (their variations are imported)"
        if "grouped" in kinds:
            return "grouped products (their children are imported)"
        return None

    def shape(self, values: list[str], out: list[str]) -> str | None:
        if not out[F["price"]].strip():
            out[F["price"]] = self.cell(values, "sale price")
        # the exporter writes line breaks as a literal \n
        description = out[F["description"]].replace("\\n", "\n") or self.cell(
            values, "short description"
        ).replace("\\n", "\n")
        out[F["description"]] = html_to_text(description)
        categories = out[F["category"]]
        if categories:
            first = _UNESCAPED_COMMA.split(categories)[0].replace("\\,", ",")
            out[F["category"]] = " > ".join(p.strip() for p in first.split(">") if p.strip())
        published = out[F["status"]].strip()
        if published in ("1", ""):
            out[F["status"]] = "active"
        elif published in ("0", "-1"):
            out[F["status"]] = "draft"  # 0 is private, -1 a draft: neither is for sale
        else:
            return f"Published '{published}' must be 1, 0 or -1"
        qty = out[F["quantity"]].strip()
        if qty.startswith("-") and qty[1:].isdecimal():
            out[F["quantity"]] = "0"  # on backorder
        return None


_MONEY = re.compile(r"^\s*(?:([A-Za-z]{3})\s+)?([0-9][0-9.,]*)\s*(?:([A-Za-z]{3}))?\s*$")
_AVAILABILITY = {
    "in_stock": "active",
    "in stock": "active",
    "preorder": "active",
    "backorder": "active",
    "out_of_stock": "draft",
    "out of stock": "draft",
    "": "active",
}


class MerchantCenterRules(RowRules):
    def shape(self, values: list[str], out: list[str]) -> str | None:
        price = out[F["price"]]
        if price.strip():
            match = _MONEY.match(price)
            if not match or (match.group(1) and match.group(3)):
                return f"price '{price}' is not an amount and a currency such as '9.90 USD'"
            out[F["price"]] = match.group(2)
            currency = match.group(1) or match.group(3)
            if currency:
                out[F["currency"]] = currency.upper()
        availability = out[F["status"]].strip().lower()
        if availability not in _AVAILABILITY:
            return (
                f"availability '{out[F['status']]}' must be in_stock, out_of_stock, "
                "preorder or backorder"
            )
        out[F["status"]] = _AVAILABILITY[availability]
        return None


def _columns(**pairs: str | None) -> dict[str, str | None]:
    return {normalize_header(k.replace("__", " ")): v for k, v in pairs.items()}


SHOPIFY = Preset(
    name="shopify",
    label="Shopify product export",
    detect=frozenset({"handle", "variant sku", "variant price"}),
    columns={
        "handle": None,
        "title": "name",
        "body (html)": "description",
        "vendor": "brand",
        "product category": None,  # Shopify's taxonomy: used when Type is empty
        "type": "category",
        "status": "status",
        "variant sku": "sku",
        "variant price": "price",
        "variant inventory qty": "quantity",
        "variant barcode": "barcode",
    },
    rules=ShopifyRules,
    notes=(
        "One product per variant; Title, Body, Vendor, Type and Status are carried down from "
        "the first row of each Handle.",
        "Rows without a variant (extra image rows) are skipped and counted.",
        "Status archived is imported as draft. Shopify exports carry no currency: prices are "
        "read as USD unless a column is mapped to currency.",
    ),
)

WOOCOMMERCE = Preset(
    name="woocommerce",
    label="WooCommerce product export",
    detect=frozenset({"type", "sku", "regular price", "published"}),
    columns={
        "id": None,
        "type": None,  # simple / variable / variation: the kind of product, not a category
        "sku": "sku",
        "name": "name",
        "published": "status",
        "description": "description",
        "stock": "quantity",
        "regular price": "price",
        "categories": "category",
        "brands": "brand",
        "gtin, upc, ean, or isbn": "barcode",
    },
    rules=WooCommerceRules,
    notes=(
        "Variable parents and grouped products are skipped and counted; their variations are "
        "imported and inherit the parent's categories and description when they have none.",
        "Price is Regular price (Sale price when there is no regular one); Categories keeps "
        "the first category path ('A > B'); Published 1 is active, 0 and -1 are draft.",
    ),
)

MERCHANT_CENTER = Preset(
    name="google_merchant_center",
    label="Google Merchant Center feed",
    detect=frozenset({"id", "title", "price", "availability"}),
    columns={
        "id": "sku",
        "title": "name",
        "description": "description",
        "price": "price",
        "gtin": "barcode",
        "brand": "brand",
        "product type": "category",
        "availability": "status",
    },
    rules=MerchantCenterRules,
    notes=(
        "price '9.90 USD' gives the price and the currency; availability out_of_stock is "
        "imported as draft, the others as active.",
    ),
)

INTAKE = Preset(
    name="intake",
    label="Intake export",
    columns={f: f for f in FIELDS},
    notes=("Intake's own export layout; undoes the export's formula guard (a leading ').",),
)

PRESETS: dict[str, Preset] = {p.name: p for p in (SHOPIFY, WOOCOMMERCE, MERCHANT_CENTER, INTAKE)}
# tried in this order; a preset without ``detect`` is only used when asked for
DETECTABLE = (SHOPIFY, WOOCOMMERCE, MERCHANT_CENTER)


def detect(header: Sequence[str]) -> Preset | None:
    """The preset whose identifying headers are all in ``header``, if one is."""
    return next((p for p in DETECTABLE if p.matches(header)), None)
