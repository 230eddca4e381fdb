"""Component-file rows to clean catalogue records or row errors: pure, no ORM.

The header goes through the product import's ``map_header`` with this table of aliases; the
rows come from the product import's readers (CSV in any of its encodings and delimiters, XLSX).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from imports.pipeline.validation import CURRENCIES, HeaderMap, RowError

from . import matching

FIELDS = (
    "manufacturer",
    "mpn",
    "description",
    "category",
    "package",
    "lifecycle",
    "datasheet_url",
    "stock",
    "moq",
    "unit_price",
    "currency",
    "price_breaks",
)
REQUIRED = ("manufacturer", "mpn")
# header names as ``normalize_header`` leaves them: lower case, ``_-.`` as spaces
ALIASES: dict[str, tuple[str, ...]] = {
    "manufacturer": ("manufacturer", "mfr", "mfg", "manufacturer name", "mfr name", "maker"),
    "mpn": (
        "mpn",
        "manufacturer part number",
        "mfr part #",
        "mfr part number",
        "mfr part no",
        "mfg#",
        "mfg #",
        "mfg part number",
        "part number",
        "part #",
    ),
    "description": ("description", "desc", "value"),
    "category": ("category", "type", "product category"),
    "package": ("package", "package / case", "package/case", "case", "footprint"),
    "lifecycle": ("lifecycle", "lifecycle status", "part status", "status"),
    "datasheet_url": ("datasheet url", "datasheet", "datasheet link"),
    "stock": ("stock", "in stock", "quantity available", "qty available", "available"),
    "moq": ("moq", "minimum order quantity", "min order qty", "min qty"),
    "unit_price": ("unit price", "price", "price each"),
    "currency": ("currency", "currency code", "ccy"),
    "price_breaks": ("price breaks", "pricing", "price break"),
}

LIFECYCLES = {
    "": "unknown",
    "unknown": "unknown",
    "active": "active",
    "production": "active",
    "in production": "active",
    "nrnd": "nrnd",
    "not recommended for new designs": "nrnd",
    "last time buy": "last_time_buy",
    "last_time_buy": "last_time_buy",
    "ltb": "last_time_buy",
    "eol": "eol",
    "end of life": "eol",
    "obsolete": "obsolete",
    "discontinued": "obsolete",
}
MPN_MAX = 100
TEXT_MAX = 200
INT_MAX = 2**62
PRICE_MAX = Decimal("99999999")
_INT = re.compile(r"[0-9]{1,18}")
_PLAIN_PRICE = re.compile(r"[0-9]{1,8}(?:\.[0-9]{1,6})?")
_BREAK = re.compile(r"^\s*([0-9]{1,12})\s*:\s*([0-9]+(?:\.[0-9]{1,6})?)\s*$")


class Canonicalizer:
    """Manufacturer names through the aliases: ``TI`` → ``Texas Instruments``."""

    def __init__(self, aliases: dict[str, str]) -> None:
        self.aliases = aliases  # alias key -> canonical name
        self._cache: dict[str, tuple[str, str]] = {}

    def __call__(self, raw: str) -> tuple[str, str]:
        """The canonical name and its key."""
        found = self._cache.get(raw)
        if found is None:
            name = raw.strip()
            canonical = self.aliases.get(matching.manufacturer_key(name), name)
            found = (canonical, matching.manufacturer_key(canonical))
            if len(self._cache) < 100_000:
                self._cache[raw] = found
        return found


def parse_price(raw: str, what: str) -> Decimal | str | None:
    text = raw.strip().replace(",", ".") if raw.count(",") == 1 and "." not in raw else raw.strip()
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return f"{what} '{raw}' is not a number"
    if not value.is_finite() or value < 0:
        return f"{what} '{raw}' must be a number of 0 or more"
    if value > PRICE_MAX:
        return f"{what} '{raw}' is too large"
    return value.quantize(Decimal("0.000001")).normalize()


def parse_breaks(raw: str) -> list[list] | str:
    """``1:0.10;100:0.05`` → ``[[1, "0.10"], [100, "0.05"]]`` ascending by quantity.

    >>> parse_breaks("100:0.05; 1:0.10")
    [[1, '0.10'], [100, '0.05']]
    >>> parse_breaks("1-0.1")
    "price_breaks '1-0.1' is not quantity:price;quantity:price (e.g. 1:0.10;100:0.05)"
    """
    text = raw.strip()
    if not text:
        return []
    out = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        m = _BREAK.match(part)
        if not m:
            return (
                f"price_breaks '{raw}' is not quantity:price;quantity:price (e.g. 1:0.10;100:0.05)"
            )
        out.append([int(m.group(1)), m.group(2)])
    out.sort(key=lambda b: b[0])
    return out


def parse_count(raw: str, what: str, default: int) -> int | str:
    text = raw.strip().replace(",", "")
    if not text:
        return default
    if _INT.fullmatch(text):
        return int(text)
    try:
        number = Decimal(text)
    except InvalidOperation:
        return f"{what} '{raw}' is not a whole number"
    if not number.is_finite() or number != number.to_integral_value() or number < 0:
        return f"{what} '{raw}' must be a whole number of 0 or more"
    if number > INT_MAX:
        return f"{what} '{raw}' is too large"
    return int(number)


class ComponentValidator:
    """Rows of a component file to COPY-ready tuples (``STAGE_COLUMNS`` order) or row errors."""

    def __init__(self, header: HeaderMap, canonical: Canonicalizer) -> None:
        self.width = header.width
        self.idx = tuple(header.columns.get(f, -1) for f in FIELDS)
        self.canonical = canonical

    def check_batch(
        self, numbers: Sequence[int], rows: Sequence[list[str]]
    ) -> tuple[list[tuple], list[RowError]]:
        good: list[tuple] = []
        errors: list[RowError] = []
        check = self.check
        for number, values in zip(numbers, rows, strict=True):
            out = check(number, values)
            if out.__class__ is RowError:
                errors.append(out)  # type: ignore[arg-type]
            else:
                good.append(out)  # type: ignore[arg-type]
        return good, errors

    def check(self, number: int, values: list[str]) -> tuple | RowError:
        # one strip per cell, and a padded row, instead of a helper call per field
        cells = [v.strip() for v in values]
        if len(cells) < self.width:
            cells += [""] * (self.width - len(cells))
        cells.append("")  # index -1: a column the file does not have

        def cell(i: int) -> str:
            return cells[i]

        i_mfr, i_mpn, i_desc, i_cat, i_pkg, i_life, i_url, i_stock, i_moq, i_price, i_cur, i_br = (
            self.idx
        )
        problems: list[str] = []
        raw_mfr, mpn = cell(i_mfr), cell(i_mpn)
        if not raw_mfr:
            problems.append("manufacturer is required")
        if not mpn:
            problems.append("mpn is required")
        elif len(mpn) > MPN_MAX:
            problems.append(f"mpn '{mpn[:40]}…' is longer than {MPN_MAX} characters")
        elif not matching.normalize_mpn(mpn):
            problems.append(f"mpn '{mpn}' has no letters or digits")
        if len(raw_mfr) > TEXT_MAX:
            problems.append(f"manufacturer is longer than {TEXT_MAX} characters")
        lifecycle = LIFECYCLES.get(cell(i_life).lower().replace("_", " ").replace("-", " "))
        if lifecycle is None:
            lifecycle = LIFECYCLES.get(cell(i_life).lower())
        if lifecycle is None:
            problems.append(
                f"lifecycle '{cell(i_life)}' is not one of active, nrnd, last_time_buy, eol, "
                "obsolete, unknown"
            )
        stock = parse_count(cell(i_stock), "stock", 0)
        if isinstance(stock, str):
            problems.append(stock)
        moq = parse_count(cell(i_moq), "moq", 1)
        if isinstance(moq, str):
            problems.append(moq)
        elif moq > 2**31 - 1:
            problems.append(f"moq '{cell(i_moq)}' is too large")
        raw_price = cell(i_price)
        # a plain price goes to PostgreSQL as written (its numeric parses it); others are checked
        price = (
            raw_price if _PLAIN_PRICE.fullmatch(raw_price) else parse_price(raw_price, "unit_price")
        )
        if isinstance(price, str) and price is not raw_price:
            problems.append(price)
        breaks = parse_breaks(cell(i_br))
        if isinstance(breaks, str):
            problems.append(breaks)
        currency = cell(i_cur).upper() or "USD"
        if currency not in CURRENCIES:
            problems.append(f"currency '{cell(i_cur)}' is not an ISO 4217 code")
        url = cell(i_url)
        if url and not url.lower().startswith(("http://", "https://")):
            problems.append(f"datasheet_url '{url[:60]}' is not an http(s) URL")
        elif len(url) > 500:
            problems.append("datasheet_url is longer than 500 characters")
        category, package = cell(i_cat), cell(i_pkg)
        if len(category) > TEXT_MAX or len(package) > 100:
            problems.append("category or package is too long")
        if problems:
            return RowError(number, f"Row {number}: " + "; ".join(problems), list(values))
        if price is None and breaks:
            price = Decimal(breaks[0][1])
        manufacturer, mfr_key = self.canonical(raw_mfr)
        return (
            number,
            manufacturer,
            mpn,
            mfr_key,
            matching.exact_key(mpn),
            matching.normalize_mpn(mpn),
            matching.packaging_key(mpn),
            cell(i_desc),
            category,
            package,
            lifecycle,
            url,
            stock,
            moq,
            price,
            currency,
            json.dumps(breaks),
        )


# the stage table's columns, in the order ``ComponentValidator.check`` returns them
STAGE_COLUMNS = (
    "row_number",
    "manufacturer",
    "mpn",
    "manufacturer_key",
    "mpn_key",
    "mpn_norm",
    "mpn_base",
    "description",
    "category",
    "package",
    "lifecycle",
    "datasheet_url",
    "stock",
    "moq",
    "unit_price",
    "currency",
    "price_breaks",
)
