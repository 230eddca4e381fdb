"""Column mapping and store presets: proposals, conflicts, and each system's real export."""

from __future__ import annotations

from pathlib import Path

import pytest

from imports.pipeline.mapping import PRODUCT_SPEC, FieldSpec, MappingError, propose, resolve
from imports.pipeline.markup import html_to_text
from imports.pipeline.presets import detect
from imports.pipeline.readers import open_source
from imports.pipeline.shaping import ImportPlan

EXPORTS = Path(__file__).resolve().parents[1] / "fixtures" / "exports"


def _read(name: str):
    source = open_source(EXPORTS / name, name)
    numbers, rows = zip(*[(n, list(v)) for n, v in source.rows()], strict=True)
    return source.header, list(numbers), list(rows)


def _shaped(name: str):
    header, numbers, rows = _read(name)
    preset = detect(header)
    assert preset is not None, f"no preset recognised {name}"
    checker = ImportPlan(preset=preset.name).checker(header, 100)
    return preset.name, checker.preview(numbers, rows)


# ------------------------------------------------------------------ proposals


def test_two_columns_for_one_field_is_a_choice_with_a_reason_not_a_refusal():
    proposal = propose(["SKU", "Name", "Price", "Product Category", "Type"], PRODUCT_SPEC)
    assert proposal.mapping["Product Category"] == "category"
    assert proposal.mapping["Type"] is None
    assert proposal.confident
    assert "'Product Category' and 'Type' could both mean 'category'" in proposal.notes[0]
    type_column = next(c for c in proposal.choices if c.column == "Type")
    assert "'Product Category' was kept" in type_column.note


def test_near_names_are_proposed_but_a_required_guess_is_not_trusted():
    proposal = propose(["Variant SKU", "Title", "Prise"], PRODUCT_SPEC)
    assert proposal.mapping == {"Variant SKU": "sku", "Title": "name", "Prise": "price"}
    assert not proposal.confident
    assert set(proposal.unsure) == {"sku", "price"}


def test_missing_required_field_is_named():
    proposal = propose(["sku", "name", "cost"], PRODUCT_SPEC)
    assert proposal.missing == ["price"]


def test_remembered_mapping_comes_first():
    remembered = {"Artikel": "sku", "Bezeichnung": "name", "VK": "price", "Type": None}
    proposal = propose(
        ["Artikel", "Bezeichnung", "VK", "Type"], PRODUCT_SPEC, remembered=remembered
    )
    assert proposal.mapping == remembered
    assert proposal.confident and proposal.remembered


def test_the_machinery_takes_any_field_spec():
    bom = FieldSpec(
        "bom",
        ("reference", "mpn", "quantity"),
        ("mpn", "quantity"),
        {"reference": ("designator", "refdes"), "mpn": ("manufacturer part number", "mfr part")},
    )
    proposal = propose(["Designator", "Manufacturer Part Number", "Qty", "Quantity"], bom)
    assert proposal.mapping["Designator"] == "reference"
    assert proposal.mapping["Manufacturer Part Number"] == "mpn"
    assert proposal.mapping["Quantity"] == "quantity"


def test_resolve_names_every_problem_of_a_sent_mapping():
    header = ["a", "b", "c"]
    with pytest.raises(MappingError) as exc:
        resolve(header, {"a": "sku", "b": "sku", "z": "name", "c": "colour"}, PRODUCT_SPEC)
    text = str(exc.value)
    assert "columns 'a' and 'b' are both mapped to 'sku'" in text
    assert "column 'z' is not in the file" in text
    assert "'colour' is not a field" in text
    assert resolve(header, {"a": "sku", "b": "name", "c": "price"}, PRODUCT_SPEC).columns == {
        "sku": 0,
        "name": 1,
        "price": 2,
    }


def test_html_bodies_become_plain_text():
    assert html_to_text("<p>Hand-glazed, 350&nbsp;ml.</p><p>Safe&nbsp;&amp; sound</p>") == (
        "Hand-glazed, 350 ml.\nSafe & sound"
    )
    assert html_to_text("3 < 4 and plain") == "3 < 4 and plain"


# ------------------------------------------------------------------ presets on real exports


def test_shopify_export_variants_carry_the_title_and_image_rows_are_skipped():
    name, rows = _shaped("shopify_products_export.csv")
    assert name == "shopify"
    imported = [r for r in rows if r.fields]
    assert [r.fields["sku"] for r in imported] == [
        "NW-TEE-BLK-M",
        "NW-TEE-BLK-L",
        "NW-TEE-WHT-M",
        "NW-TEE-WHT-L",
        "KC-MUG-350",
        "NW-POSTER-23",
    ]
    assert [r.skipped for r in rows if r.skipped] == ["image rows (no variant)"] * 2
    assert not [r for r in rows if r.error]
    white_l = imported[3].fields
    # the second variant row onwards has no Title, Vendor, Body or Type of its own
    assert white_l["name"] == "Classic Tee - White / L"
    assert white_l["brand"] == "Northwind Apparel" and white_l["category"] == "T-Shirts"
    assert white_l["price"] == "26.00" and white_l["barcode"] == "4006381330046"
    assert white_l["description"].startswith("Our Classic Tee is cut from 100% organic cotton &")
    assert "<" not in white_l["description"] and "• Machine wash cold" in white_l["description"]
    mug, poster = imported[4].fields, imported[5].fields
    assert mug["name"] == "Stoneware Mug" and mug["status"] == "draft"
    assert mug["quantity"] == "0"  # -2 (oversold) in the file
    assert mug["category"].startswith("Home & Garden > Kitchen")  # no Type: the taxonomy
    assert poster["status"] == "draft"  # archived


def test_woocommerce_export_imports_variations_not_parents_and_reads_its_values():
    name, rows = _shaped("woocommerce_products.csv")
    assert name == "woocommerce"
    by_sku = {r.fields["sku"]: r.fields for r in rows if r.fields}
    assert sorted(by_sku) == [
        "woo-album",
        "woo-beanie",
        "woo-hoodie-blue",
        "woo-hoodie-red",
        "woo-single",
        "wp-pennant",
    ]
    assert sorted(r.skipped for r in rows if r.skipped) == [
        "grouped products (their children are imported)",
        "variable products (their variations are imported)",
    ]
    beanie = by_sku["woo-beanie"]
    assert beanie["price"] == "18" and beanie["quantity"] == "25"
    assert beanie["category"] == "Clothing > Accessories"  # not 'simple'
    assert beanie["description"] == "A soft rib-knit beanie.\nOne size fits most."
    blue = by_sku["woo-hoodie-blue"]
    assert blue["price"] == "45"  # Regular price, not the sale price
    assert blue["category"] == "Clothing > Hoodies"  # the parent's first category
    assert by_sku["woo-hoodie-red"]["description"].startswith("Brushed fleece")  # parent by SKU
    assert by_sku["woo-album"]["status"] == "draft"  # Published 0
    assert by_sku["woo-single"]["status"] == "draft"  # Published -1
    assert by_sku["woo-single"]["category"] == "Music > Singles, EPs"  # an escaped comma
    assert by_sku["wp-pennant"]["status"] == "active"


@pytest.mark.parametrize("name", ["merchant_center_feed.tsv", "merchant_center_feed.csv"])
def test_merchant_center_feed_splits_price_and_currency(name):
    preset, rows = _shaped(name)
    assert preset == "google_merchant_center"
    by_sku = {r.fields["sku"]: r.fields for r in rows if r.fields}
    shoe = by_sku["GMC-1001"]
    assert (shoe["price"], shoe["currency"], shoe["barcode"], shoe["brand"]) == (
        "89.90",
        "USD",
        "4006381330084",
        "Peakline",
    )
    assert shoe["category"] == "Shoes > Running > Trail"
    socks = by_sku["GMC-1002"]
    assert (socks["price"], socks["currency"], socks["status"]) == ("24.00", "EUR", "draft")
    assert by_sku["GMC-1003"]["status"] == "active"  # preorder
    [failed] = [r for r in rows if r.error]
    assert failed.error == (
        "Row 5: availability 'limited' must be in_stock, out_of_stock, preorder or backorder"
    )
    assert failed.values[0] == "GMC-1004"  # the file's own cells, to fix


def test_a_failed_shopify_row_keeps_its_carried_down_cells():
    header, numbers, rows = _read("shopify_products_export.csv")
    price = header.index("Variant Price")
    rows[3][price] = "twenty"
    checker = ImportPlan(preset="shopify").checker(header, 100)
    checked = checker(numbers, rows)
    [error] = checked.errors
    assert error.row_number == 5 and "price 'twenty'" in error.message
    assert error.values[header.index("Title")] == "Classic Tee"  # filled from row 2
    assert checker.take_skipped() == {"image rows (no variant)": 2}
