"""Header mapping and row validation: pure functions and small classes, no ORM.

A row becomes either a ``CleanProduct`` (ready for the writer) or a ``RowError`` whose message is
written for the person who made the file: ``Row 12: price '-3' must be 0 or more``.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from .text import storable, valid_text

FIELDS = (
    "sku",
    "name",
    "description",
    "price",
    "currency",
    "quantity",
    "barcode",
    "category",
    "brand",
    "status",
)
REQUIRED_COLUMNS = ("sku", "name", "price")

ALIASES: dict[str, tuple[str, ...]] = {
    "sku": ("sku", "item sku", "product sku", "sku code", "item code", "article number"),
    "name": ("name", "product name", "title", "item name", "product"),
    "description": ("description", "desc", "product description", "details"),
    "price": ("price", "unit price", "price each", "retail price", "sale price"),
    "currency": ("currency", "currency code", "ccy"),
    "quantity": ("quantity", "qty", "stock", "inventory", "on hand", "stock quantity"),
    "barcode": ("barcode", "ean", "ean13", "upc", "gtin", "ean upc"),
    "category": ("category", "product category", "type", "product type"),
    "brand": ("brand", "manufacturer", "vendor", "make"),
    "status": ("status", "state", "product status"),
}
_ALIAS_TO_FIELD = {alias: field for field, names in ALIASES.items() for alias in names}

SKU_MAX = 64
SKU_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$")
PRICE_MAX = Decimal("9999999999.99")
# ASCII digits only: its matches go to PostgreSQL as typed (``\d`` would let other scripts'
# digits through, which Python's Decimal reads but PostgreSQL's numeric does not)
_PLAIN_PRICE = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,2})?")
QUANTITY_MAX = 2**62
STATUSES = {"active": "active", "draft": "draft", "": "active"}
_STATUS_VALUES = frozenset(("active", "draft"))
# A whole column at once: each value and a newline, matched in one pass of the regex engine.
# Each accepts exactly what the row-at-a-time fast paths of ``RowValidator.check`` accept.
# Every quantifier is possessive: what each quantified part matches cannot be followed by
# more of it (the value ends at a newline, digits at "."), so the longest match is the only
# one that can succeed, and the engine keeps no state to backtrack to (two to three times
# faster; tests/imports/test_validation.py holds each to its plain pattern).
_SKU_LINES = re.compile(rf"(?:[A-Za-z0-9][A-Za-z0-9._\-/]{{0,{SKU_MAX - 1}}}+\n)*+")
_PRICE_LINES = re.compile(r"(?:[0-9]{1,10}+(?:\.[0-9]{1,2}+)?+\n)*+")
_QUANTITY_LINES = re.compile(r"(?:[0-9]{0,17}+\n)*+")  # an empty quantity is 0

# ISO 4217 active codes (2024).
CURRENCIES = frozenset(
    [
        "AED",
        "AFN",
        "ALL",
        "AMD",
        "ANG",
        "AOA",
        "ARS",
        "AUD",
        "AWG",
        "AZN",
        "BAM",
        "BBD",
        "BDT",
        "BGN",
        "BHD",
        "BIF",
        "BMD",
        "BND",
        "BOB",
        "BOV",
        "BRL",
        "BSD",
        "BTN",
        "BWP",
        "BYN",
        "BZD",
        "CAD",
        "CDF",
        "CHE",
        "CHF",
        "CHW",
        "CLF",
        "CLP",
        "CNY",
        "COP",
        "COU",
        "CRC",
        "CUC",
        "CUP",
        "CVE",
        "CZK",
        "DJF",
        "DKK",
        "DOP",
        "DZD",
        "EGP",
        "ERN",
        "ETB",
        "EUR",
        "FJD",
        "FKP",
        "GBP",
        "GEL",
        "GHS",
        "GIP",
        "GMD",
        "GNF",
        "GTQ",
        "GYD",
        "HKD",
        "HNL",
        "HTG",
        "HUF",
        "IDR",
        "ILS",
        "INR",
        "IQD",
        "IRR",
        "ISK",
        "JMD",
        "JOD",
        "JPY",
        "KES",
        "KGS",
        "KHR",
        "KMF",
        "KPW",
        "KRW",
        "KWD",
        "KYD",
        "KZT",
        "LAK",
        "LBP",
        "LKR",
        "LRD",
        "LSL",
        "LYD",
        "MAD",
        "MDL",
        "MGA",
        "MKD",
        "MMK",
        "MNT",
        "MOP",
        "MRU",
        "MUR",
        "MVR",
        "MWK",
        "MXN",
        "MXV",
        "MYR",
        "MZN",
        "NAD",
        "NGN",
        "NIO",
        "NOK",
        "NPR",
        "NZD",
        "OMR",
        "PAB",
        "PEN",
        "PGK",
        "PHP",
        "PKR",
        "PLN",
        "PYG",
        "QAR",
        "RON",
        "RSD",
        "RUB",
        "RWF",
        "SAR",
        "SBD",
        "SCR",
        "SDG",
        "SEK",
        "SGD",
        "SHP",
        "SLE",
        "SLL",
        "SOS",
        "SRD",
        "SSP",
        "STN",
        "SVC",
        "SYP",
        "SZL",
        "THB",
        "TJS",
        "TMT",
        "TND",
        "TOP",
        "TRY",
        "TTD",
        "TWD",
        "TZS",
        "UAH",
        "UGX",
        "USD",
        "USN",
        "UYI",
        "UYU",
        "UYW",
        "UZS",
        "VED",
        "VES",
        "VND",
        "VUV",
        "WST",
        "XAF",
        "XAG",
        "XAU",
        "XBA",
        "XBB",
        "XBC",
        "XBD",
        "XCD",
        "XCG",
        "XDR",
        "XOF",
        "XPD",
        "XPF",
        "XPT",
        "XSU",
        "XTS",
        "XUA",
        "XXX",
        "YER",
        "ZAR",
        "ZMW",
        "ZWG",
        "ZWL",
    ]
)


def normalize_header(name: str) -> str:
    return " ".join(re.sub(r"[_\-.]+", " ", name.strip().lower()).split())


@dataclass(frozen=True)
class HeaderMap:
    # field -> column index in the file
    columns: dict[str, int]
    unknown: list[str]
    width: int


class HeaderError(Exception):
    pass


def map_header(
    header: list[str],
    *,
    aliases: dict[str, tuple[str, ...]] | None = None,
    required: Sequence[str] = REQUIRED_COLUMNS,
) -> HeaderMap:
    """Map file columns onto product fields (or, with ``aliases`` and ``required``, another
    kind's fields); raises HeaderError naming what is missing."""
    to_field = _ALIAS_TO_FIELD
    if aliases is not None:
        to_field = {alias: field for field, names in aliases.items() for alias in names}
    columns: dict[str, int] = {}
    unknown: list[str] = []
    for index, raw in enumerate(header):
        field = to_field.get(normalize_header(raw))
        if field is None:
            if raw.strip():
                unknown.append(raw.strip())
        elif field in columns:
            raise HeaderError(
                f"Columns '{header[columns[field]]}' and '{raw}' both mean '{field}'; keep one."
            )
        else:
            columns[field] = index
    if not columns:
        found = ", ".join(h for h in header if h.strip()) or "nothing"
        raise HeaderError(
            f"No recognizable header row: expected columns such as {', '.join(required)} "
            f"(found: {found})."
        )
    missing = [c for c in required if c not in columns]
    if missing:
        found = ", ".join(h for h in header if h.strip())
        noun = "Column" if len(missing) == 1 else "Columns"
        verb = "is" if len(missing) == 1 else "are"
        names = ", ".join(f"'{m}'" for m in missing)
        raise HeaderError(f"{noun} {names} {verb} missing (found: {found}).")
    return HeaderMap(columns=columns, unknown=unknown, width=len(header))


@dataclass(slots=True)
class CleanProduct:
    row_number: int
    sku: str
    name: str
    description: str
    price: Decimal
    currency: str
    quantity: int
    barcode: str
    category: str
    brand: str
    status: str


# Row errors travel in every progress event and are stored per row: a message quotes at most
# QUOTE_MAX characters of a cell, and what is kept of a row is bounded too, so a file of 10 MB
# cells cannot make megabyte events or rows.
QUOTE_MAX = 200
MESSAGE_MAX = 1000
VALUE_MAX = 1000
VALUES_MAX = 500  # as many cells as a product upload may have columns (IMPORT_MAX_COLUMNS)


def quoted(raw: str, limit: int = QUOTE_MAX) -> str:
    """``raw`` in quotes for a message, cut to ``limit`` characters (saying how long it was)."""
    if len(raw) <= limit:
        return f"'{raw}'"
    return f"'{raw[:limit]}…' ({len(raw):,} characters)"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class RowError:
    row_number: int
    message: str
    values: list[str]

    def __post_init__(self) -> None:
        # every producer of row errors (validator, writer) gets the same bounds, and text
        # the job's jsonb can hold: a NUL from the file in a message or a value failed the
        # progress write, and with it the whole job
        if len(self.message) > MESSAGE_MAX:
            object.__setattr__(self, "message", _clip(self.message, MESSAGE_MAX))
        values = self.values
        if len(values) > VALUES_MAX or any(len(v) > VALUE_MAX for v in values):
            kept = [_clip(str(v), VALUE_MAX) for v in values[:VALUES_MAX]]
            object.__setattr__(self, "values", kept)
        # after the clipping (a 10 MB cell is repaired in 1,000 characters, not whole)
        if not valid_text(self.message):
            object.__setattr__(self, "message", storable(self.message))
        if not all(map(valid_text, map(str, self.values))):
            object.__setattr__(self, "values", [storable(str(v)) for v in self.values])


@dataclass(slots=True)
class CheckedBatch:
    """A batch of rows after ``RowValidator.check_batch``: the clean products as columns of
    text in ``FIELDS`` order (what COPY takes), their file rows, and the rows refused."""

    numbers: list[int]
    columns: list[list[str]]
    errors: list[RowError]


def all_match(lines: re.Pattern[str], values: list[str]) -> bool:
    """Whether every value matches ``lines`` (a pattern of ``value\\n`` repeats): one pass of
    the regex engine over the column instead of one call per value. A value holding a newline
    of its own fails, so nothing can pass as two values."""
    text = "\n".join(values)
    return text.count("\n") == len(values) - 1 and lines.fullmatch(text + "\n") is not None


def barcode_ok(code: str) -> bool:
    """EAN-13 or UPC-A (12 digits) with a valid check digit."""
    if len(code) not in (12, 13) or not code.isdigit():
        return False
    if not code.isascii():
        return False
    digits = code.encode()
    # weights 3, 1, 3, 1, … from the rightmost digit of the body; an ASCII digit is 48 + it
    threes, ones = digits[-2::-2], digits[-3::-2]
    total = 3 * (sum(threes) - 48 * len(threes)) + sum(ones) - 48 * len(ones)
    return (10 - total % 10) % 10 == digits[-1] - 48


# a weighted digit sum, a byte a code, to 0 where it is a multiple of 10 (a valid check digit)
_MOD10 = bytes(0 if v % 10 == 0 else 1 for v in range(256))


def barcodes_ok(codes: list[str]) -> bool:
    """Whether every code is a valid EAN-13 or UPC-A, for a whole column at once.

    The codes of one length are joined and sliced into digit columns (``joined[j::13]``);
    read as big integers with a byte a code, the weighted sum of the columns holds each code's
    check sum in its own byte (at most 9 * 25 = 225, so no byte carries into the next), and
    one ``translate`` tests them all. No Python-level step per code.
    """
    for length in (12, 13):
        group = [c for c in codes if len(c) == length]
        if not group:
            continue
        joined = "".join(group)
        if not (joined.isascii() and joined.isdigit()):
            return False
        digits = joined.encode()
        m = len(group)
        # weights 3, 1, 3, … from the rightmost digit of the body, 1 for the check digit
        weights = [3 if (length - 2 - j) % 2 == 0 else 1 for j in range(length - 1)] + [1]
        total = sum(
            w * int.from_bytes(digits[j::length], "big") for j, w in enumerate(weights)
        ) - 48 * sum(weights) * int.from_bytes(b"\x01" * m, "big")
        if total.to_bytes(m, "big").translate(_MOD10).count(0) != m:
            return False
    return True


# Numbers are read only from ASCII: Python's Decimal and int() also take other scripts'
# digits ("٣", fullwidth "\uff13"), str.isdigit() is true for "²" while int("²") raises, and
# Decimal takes "NaN", "Infinity" and "1e400". What passes these patterns is a plain decimal.
_PRICE_TEXT = re.compile(r"\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_QUANTITY_TEXT = re.compile(r"\+?[0-9]+(?:\.0*)?")


def _digits_hint(text: str) -> str:
    if not text.isascii() and any(c.isdigit() for c in text):
        return " (write numbers with the digits 0-9 only)"
    return ""


def parse_price(raw: str) -> Decimal | str:
    text = raw.strip().replace(" ", "")
    if not text:
        return "price is required"
    if text.startswith("-") and _PRICE_TEXT.fullmatch(text[1:]):
        return f"price {quoted(raw)} must be 0 or more"
    if not _PRICE_TEXT.fullmatch(text):
        return f"price {quoted(raw)} is not a number{_digits_hint(text)}"
    whole, _, fraction = text.lstrip("+").partition(".")
    # by length first: Decimal() of a 10 MB string of digits is slow, and too large anyway
    if len(whole.lstrip("0")) > len(str(int(PRICE_MAX))):
        return f"price {quoted(raw)} is too large (at most {PRICE_MAX})"
    if len(fraction.rstrip("0")) > 2:
        return f"price {quoted(raw)} has more than 2 decimals"
    value = Decimal(f"{whole or 0}.{fraction[:2] or 0}")
    if value > PRICE_MAX:
        return f"price {quoted(raw)} is too large (at most {PRICE_MAX})"
    return value.quantize(Decimal("0.01"))


def parse_quantity(raw: str) -> int | str:
    text = raw.strip()
    if not text:
        return 0
    if text.startswith("-") and _QUANTITY_TEXT.fullmatch(text[1:]):
        return f"quantity {quoted(raw)} must be 0 or more"
    if not _QUANTITY_TEXT.fullmatch(text):
        return f"quantity {quoted(raw)} is not a whole number{_digits_hint(text)}"
    digits = text.lstrip("+").partition(".")[0].lstrip("0") or "0"
    if len(digits) > len(str(QUANTITY_MAX)) or int(digits) > QUANTITY_MAX:
        return f"quantity {quoted(raw)} is too large (at most {QUANTITY_MAX})"
    return int(digits)


class SeenSkus:
    """Which SKUs a file already had, and on which row, in 8 bytes per slot.

    An open-addressing table sized from the pre-scan's exact row count. Each slot packs a
    fingerprint of the SKU (low bits of Python's ``hash``, stable within one process) above the
    row number; the slot's home index comes from the hash's high bits, so the two are
    independent. A dict of SKUs would cost over 150 bytes a row, far past the memory budget for
    a 5M-row file. Two different SKUs are mistaken for one only if they share a fingerprint
    (38 bits at 5M rows) and a probe run: about once in 30,000 files of 5M rows. Should the
    file hold more rows than counted, the excess goes to a plain dict.
    """

    LOAD = 0.8  # of the exact row count; linear probing stays short below ~0.85
    MAX_LOAD = 0.9  # past it (more rows than counted), new SKUs go to a plain dict

    def __init__(self, expected: int) -> None:
        # Sized exactly, not to a power of two: at 5M rows that is 48 MiB instead of 64.
        size = max(1024, int(expected / self.LOAD) + 1)
        self._size = size
        self._row_bits = max(24, (expected + 16).bit_length() + 2)
        self._row_mask = (1 << self._row_bits) - 1
        self._fp_bits = 63 - self._row_bits
        self._fp_mask = (1 << self._fp_bits) - 1
        # the home slot comes from the hash bits above the fingerprint (multiply-shift range
        # reduction: uniform over any size), so slot and fingerprint are independent
        self._hi_bits = 64 - self._fp_bits
        self._slots = array("q", bytes(8 * size))
        self._capacity = int(size * self.MAX_LOAD)
        self._used = 0
        self._overflow: dict[str, int] = {}

    def add(self, sku: str, row: int) -> int:
        """Record ``sku`` at ``row``; return the earlier row that had it, or 0."""
        h = hash(sku) & 0xFFFF_FFFF_FFFF_FFFF
        fp = (h & self._fp_mask) or 1
        slots, size, row_bits = self._slots, self._size, self._row_bits
        i = ((h >> self._fp_bits) * size) >> self._hi_bits
        while True:
            stored = slots[i]
            if stored == 0:
                break
            if stored >> row_bits == fp:
                return stored & self._row_mask
            i += 1
            if i == size:
                i = 0
        if self._overflow or self._used >= self._capacity or row > self._row_mask:
            earlier = self._overflow.get(sku)
            if earlier is None:
                self._overflow[sku] = row
                return 0
            return earlier
        slots[i] = (fp << row_bits) | row
        self._used += 1
        return 0

    def add_many(self, skus: list[str], rows: Sequence[int]) -> list[tuple[int, int]]:
        """``add`` for each pair in order; returns ``(index, earlier row)`` for the repeats.
        The same table and probes as ``add``, in one loop with no call per SKU."""
        if (
            self._overflow
            or self._used + len(skus) > self._capacity
            or (rows and max(rows) > self._row_mask)
        ):
            found = map(self.add, skus, rows)
            return [(i, earlier) for i, earlier in enumerate(found) if earlier]
        slots, size, row_bits, row_mask = self._slots, self._size, self._row_bits, self._row_mask
        fp_mask, fp_bits, hi_bits = self._fp_mask, self._fp_bits, self._hi_bits
        repeats: list[tuple[int, int]] = []
        added = 0
        for index, (h, row) in enumerate(zip(map(hash, skus), rows, strict=True)):
            h &= 0xFFFF_FFFF_FFFF_FFFF
            fp = (h & fp_mask) or 1
            i = ((h >> fp_bits) * size) >> hi_bits
            stored = slots[i]
            while stored:
                if stored >> row_bits == fp:
                    repeats.append((index, stored & row_mask))
                    break
                i += 1
                if i == size:
                    i = 0
                stored = slots[i]
            else:
                slots[i] = (fp << row_bits) | row
                added += 1
        self._used += added
        return repeats


class RowValidator:
    """Turns raw rows into clean products or row errors; remembers SKUs seen in this file.

    ``validate`` runs once per row of files with millions of rows, so it keeps to locals and
    fast paths (a price that matches the plain pattern skips the general parser).
    """

    def __init__(self, header: HeaderMap, expected_rows: int) -> None:
        self.header = header
        self.seen = SeenSkus(expected_rows)
        cols = header.columns
        self._idx = tuple(cols.get(f, -1) for f in FIELDS)

    def check_batch(self, numbers: Sequence[int], rows: Sequence[list[str]]) -> CheckedBatch:
        """``check`` for a batch of rows, a column at a time.

        Each column is stripped and tested whole at C speed (``map``, one regex pass, a set
        test); only the rows a column test picks out go through ``check`` one by one, which
        also writes their messages, so the outcome is exactly that of ``check`` on every row in
        order. The hot path of an import: 1.2 µs a row instead of 3.4 measured by ``check``.
        """
        n = len(rows)
        width = self.header.width
        flagged: set[int] = set()
        cells = rows
        if set(map(len, rows)) != {width}:
            flagged.update(i for i, r in enumerate(rows) if len(r) != width)
            filler = [""] * width
            cells = [r if len(r) == width else filler for r in rows]
        if not n:
            return CheckedBatch([], [[] for _ in FIELDS], [])
        cols = list(zip(*cells, strict=True))
        i_sku, i_name, i_desc, i_price, i_cur, i_qty, i_bar, i_cat, i_brand, i_status = self._idx

        def stripped(index: int, default: str = "") -> list[str]:
            return list(map(str.strip, cols[index])) if index >= 0 else [default] * n

        skus = stripped(i_sku)
        if not all_match(_SKU_LINES, skus):
            flagged.update(
                i for i, s in enumerate(skus) if not (len(s) <= SKU_MAX and SKU_RE.match(s))
            )
        names = stripped(i_name)
        if not all(names) or max(map(len, names)) > 255:
            flagged.update(i for i, s in enumerate(names) if not s or len(s) > 255)
        prices = stripped(i_price)
        if not all_match(_PRICE_LINES, prices):
            flagged.update(i for i, s in enumerate(prices) if not _PLAIN_PRICE.fullmatch(s))
        quantities = stripped(i_qty, "0")
        if i_qty >= 0:
            if not all_match(_QUANTITY_LINES, quantities):
                flagged.update(
                    i
                    for i, s in enumerate(quantities)
                    if not (s.isascii() and s.isdigit() and len(s) < 18)
                )
            if "" in quantities:
                quantities = [q or "0" for q in quantities]
        currencies = ["USD"] * n
        if i_cur >= 0:
            currencies = [c or "USD" for c in map(str.upper, stripped(i_cur))]
            if not CURRENCIES.issuperset(currencies):
                flagged.update(i for i, c in enumerate(currencies) if c not in CURRENCIES)
        barcodes = stripped(i_bar)
        if i_bar >= 0:
            present = list(filter(None, barcodes))
            if present and not (set(map(len, present)) <= {12, 13} and barcodes_ok(present)):
                flagged.update(i for i, b in enumerate(barcodes) if b and not barcode_ok(b))
        statuses = ["active"] * n
        if i_status >= 0:
            statuses = list(map(str.lower, stripped(i_status)))
            if not _STATUS_VALUES.issuperset(statuses):
                statuses = [s or "active" for s in statuses]
                if not _STATUS_VALUES.issuperset(statuses):
                    flagged.update(i for i, s in enumerate(statuses) if s not in _STATUS_VALUES)
        descriptions = stripped(i_desc)
        categories = stripped(i_cat)
        brands = stripped(i_brand)
        for column in (categories, brands):
            if max(map(len, column)) > 255:
                flagged.update(i for i, s in enumerate(column) if len(s) > 255)

        columns = [
            skus,
            names,
            descriptions,
            prices,
            currencies,
            quantities,
            barcodes,
            categories,
            brands,
            statuses,
        ]
        errors: list[RowError] = []
        dropped: list[int] = []

        def repeat(i: int, earlier: int) -> None:
            number = numbers[i]
            message = f"Row {number}: SKU '{skus[i]}' repeats row {earlier}"
            errors.append(RowError(number, message, rows[i]))
            dropped.append(i)

        if not flagged:
            for i, earlier in self.seen.add_many(skus, numbers):
                repeat(i, earlier)
        else:  # in file order: a flagged row may be the first to hold a SKU
            add = self.seen.add
            for i in range(n):
                if i in flagged:
                    out = self.check(numbers[i], rows[i])
                    if out.__class__ is RowError:
                        errors.append(out)  # type: ignore[arg-type]
                        dropped.append(i)
                    else:
                        for column, value in zip(columns, out, strict=True):
                            column[i] = value
                elif earlier := add(skus[i], numbers[i]):
                    repeat(i, earlier)
        kept = list(numbers)
        if dropped:
            gone = set(dropped)
            keep = [i for i in range(n) if i not in gone]
            columns = [[column[i] for i in keep] for column in columns]
            kept = [numbers[i] for i in keep]
        return CheckedBatch(kept, columns, errors)

    def validate(self, number: int, values: list[str]) -> CleanProduct | RowError:
        """The row as a ``CleanProduct`` (typed values), or its ``RowError``."""
        out = self.check(number, values)
        if out.__class__ is RowError:
            return out  # type: ignore[return-value]
        sku, name, description, price, currency, quantity, barcode, category, brand, status = out
        return CleanProduct(
            number,
            sku,
            name,
            description,
            Decimal(price),
            currency,
            int(quantity),
            barcode,
            category,
            brand,
            status,  # type: ignore[arg-type]
        )

    def check(self, number: int, values: list[str]) -> tuple[str, ...] | RowError:
        """The row's clean values as text, in ``FIELDS`` order (what COPY takes), or its
        ``RowError``. The hot path of an import: no objects beyond the strings."""
        width = self.header.width
        if len(values) != width:
            if len(values) > width and not any(v.strip() for v in values[width:]):
                values = values[:width]
            else:
                return RowError(
                    number,
                    f"Row {number}: has {len(values)} values but the header has {width} columns",
                    values,
                )
        i_sku, i_name, i_desc, i_price, i_cur, i_qty, i_bar, i_cat, i_brand, i_status = self._idx
        problems: list[str] = []

        sku = values[i_sku].strip()
        if not sku:
            problems.append("sku is required")
        elif len(sku) > SKU_MAX:
            problems.append(f"sku '{sku[:20]}…' is longer than {SKU_MAX} characters")
        elif not SKU_RE.match(sku):
            problems.append(
                f"sku {quoted(sku)} may hold only letters, digits and . _ - / "
                "(and must start with a letter or digit)"
            )

        name = values[i_name].strip()
        if not name:
            problems.append("name is required")
        elif len(name) > 255:
            problems.append("name is longer than 255 characters")

        price = values[i_price].strip()
        if not _PLAIN_PRICE.fullmatch(price):
            parsed = parse_price(values[i_price])
            if isinstance(parsed, str):
                problems.append(parsed)
            else:
                price = str(parsed)

        quantity = "0"
        if i_qty >= 0:
            raw_qty = values[i_qty].strip()
            if raw_qty.isascii() and raw_qty.isdigit() and len(raw_qty) < 18:
                quantity = raw_qty
            else:
                parsed_qty = parse_quantity(raw_qty)
                if isinstance(parsed_qty, str):
                    problems.append(parsed_qty)
                else:
                    quantity = str(parsed_qty)

        currency = "USD"
        if i_cur >= 0:
            currency = values[i_cur].strip().upper() or "USD"
            if currency not in CURRENCIES:
                problems.append(f"currency {quoted(values[i_cur])} is not an ISO 4217 code")

        barcode = values[i_bar].strip() if i_bar >= 0 else ""
        if barcode and not barcode_ok(barcode):
            problems.append(f"barcode {quoted(barcode)} is not a valid EAN-13 or UPC-A code")

        status = "active"
        if i_status >= 0:
            raw_status = values[i_status].strip().lower()
            if raw_status in STATUSES:
                status = STATUSES[raw_status]
            else:
                problems.append(f"status {quoted(values[i_status])} must be active or draft")

        description = values[i_desc].strip() if i_desc >= 0 else ""
        category = values[i_cat].strip() if i_cat >= 0 else ""
        brand = values[i_brand].strip() if i_brand >= 0 else ""
        if len(category) > 255:
            problems.append("category is longer than 255 characters")
        if len(brand) > 255:
            problems.append("brand is longer than 255 characters")

        if sku and not problems:
            earlier = self.seen.add(sku, number)
            if earlier:
                problems.append(f"SKU '{sku}' repeats row {earlier}")
        if problems:
            return RowError(number, f"Row {number}: " + "; ".join(problems), values)
        return (sku, name, description, price, currency, quantity, barcode, category, brand, status)
