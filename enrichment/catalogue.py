"""Component-file rows to clean catalogue records or row errors: pure, no ORM, no Django.

The header goes through the product import's ``map_header`` with this table of aliases; the
rows come from the product import's readers (CSV in any of its encodings and delimiters, XLSX)
in its validator process, which checks them with a ``ComponentPlan`` and builds their COPY text
(``copy_text.copy_text_of``) for the component writer (``catalogue_import``).
"""

from __future__ import annotations

import json
import operator
import re
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from itertools import compress

from imports.pipeline.copy_text import NULL, CopyBatch, copy_text_of
from imports.pipeline.validation import (
    CURRENCIES,
    CheckedBatch,
    HeaderMap,
    RowError,
    all_match,
    map_header,
)

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
PACKAGE_MAX = 100
URL_MAX = 500
INT_MAX = 2**62
PRICE_MAX = Decimal("99999999")
_INT = re.compile(r"[0-9]{1,18}")
_PLAIN_PRICE = re.compile(r"[0-9]{1,8}(?:\.[0-9]{1,6})?")
_BREAK = re.compile(r"^\s*([0-9]{1,12})\s*:\s*([0-9]+(?:\.[0-9]{1,6})?)\s*$")
# Whole columns at once (``check_batch``): values that ``check`` takes as they are. Anything
# else (a thousands separator, a leading zero, spaces in price breaks, …) goes through ``check``.
_STOCK = re.compile(r"0|[1-9][0-9]{0,17}")
_MOQ = re.compile(r"0|[1-9][0-9]{0,8}")  # under 2**31
_ONE_BREAK = rf"[1-9][0-9]{{0,11}}:{_PLAIN_PRICE.pattern}"
_BREAKS = re.compile(rf"(?:{_ONE_BREAK}(?:;{_ONE_BREAK})*)?")
_HTTP = ("http://", "https://")
# The same, a column at a time (``all_match``): each value (or none) and a newline. Every
# quantifier is possessive: each quantified part is followed by a character it cannot match
# (digits by ".", ":", ";" or the newline), so its longest match is the only one that can
# succeed, and the engine keeps no state to backtrack to. Two to three times faster than the
# plain patterns (500 values: prices 46 -> 18 µs, price breaks 104 -> 49 µs, stocks 34 -> 18
# µs, URLs 41 -> 25 µs, measured); tests/imports/test_validation.py holds each to the plain
# pattern of one value.
_POSSESSIVE_PRICE = r"[0-9]{1,8}+(?:\.[0-9]{1,6}+)?+"
_POSSESSIVE_BREAK = rf"[1-9][0-9]{{0,11}}+:{_POSSESSIVE_PRICE}"
_STOCK_LINES = re.compile(r"(?:(?:0|[1-9][0-9]{0,17}+)?+\n)*+")
_MOQ_LINES = re.compile(r"(?:(?:0|[1-9][0-9]{0,8}+)?+\n)*+")
_PRICE_LINES = re.compile(rf"(?:(?:{_POSSESSIVE_PRICE})?+\n)*+")
_BREAKS_LINES = re.compile(rf"(?:(?:{_POSSESSIVE_BREAK}(?:;{_POSSESSIVE_BREAK})*+)?+\n)*+")
_URL_LINES = re.compile(r"(?:(?:https?+://[^\n]*+)?+\n)*+")
_PACKAGING_ENDS = tuple(matching.PACKAGING_SUFFIXES)


def _counts(
    values: list[str], one: re.Pattern[str], lines: re.Pattern[str], default: str, slow: set[int]
) -> list[str]:
    """A column of whole numbers as ``check`` writes them: plain ones (``one``) kept, empty
    ones the default; the rows of any other go to ``slow``."""
    if not all_match(lines, values):
        slow.update(i for i, s in enumerate(values) if s and not one.fullmatch(s))
    if "" in values:
        values = [v or default for v in values]
    return values


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
        return f"{what} '{raw}' is too large (at most {PRICE_MAX})"
    return value.quantize(Decimal("0.000001")).normalize()


def parse_breaks(raw: str) -> list[list] | str:
    """``1:0.10;100:0.05`` → ``[[1, "0.10"], [100, "0.05"]]``, in the file's order (readers
    sort them; why: ``_breaks_json``).

    >>> parse_breaks("100:0.05; 1:0.10")
    [[100, '0.05'], [1, '0.10']]
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
        price = parse_price(m.group(2), "price_breaks price")
        if isinstance(price, str):  # the first break is the unit price when none is given
            return f"{price} in '{raw}'"
        out.append([int(m.group(1)), m.group(2)])
    return out


_BREAKS_SHAPE = (
    'Price breaks are a list of [quantity, "unit price"] pairs, e.g. [[1, "0.10"], [100, "0.05"]]'
)


def clean_breaks(value: object) -> list[list] | str:
    """Price breaks as an admin form gives them (JSON), in the shape an import stores:
    ``[[quantity, "price"], ...]``; or why not (readers parse every stored break, so one that
    is not a quantity and a plain price would fail every enrichment that meets the part).

    >>> clean_breaks([[1, 0.1], [100, "0.05"]])
    [[1, '0.1'], [100, '0.05']]
    >>> clean_breaks([[100, "0,05"]])
    "price 1 of the price breaks, '0,05', is not a plain number such as 0.05"
    >>> clean_breaks({"1": "0.1"})[:40]
    'Price breaks are a list of [quantity, "u'
    """
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        return _BREAKS_SHAPE
    out = []
    for n, item in enumerate(value, 1):
        if not (isinstance(item, list) and len(item) == 2):
            return _BREAKS_SHAPE
        quantity, price = item
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
            return f"quantity {n} of the price breaks, {quantity!r}, is not a whole number"
        if quantity >= 10**12:
            return f"quantity {n} of the price breaks, {quantity}, is too large"
        text = (
            str(price) if isinstance(price, int | float) and not isinstance(price, bool) else price
        )
        if not (isinstance(text, str) and _PLAIN_BREAK_PRICE.fullmatch(text)):
            return f"price {n} of the price breaks, {price!r}, is not a plain number such as 0.05"
        if Decimal(text) > PRICE_MAX:
            return f"price {n} of the price breaks, {text}, is too large (at most {PRICE_MAX})"
        out.append([quantity, text])
    return out


_PLAIN_BREAK_PRICE = re.compile(r"[0-9]+(?:\.[0-9]{1,6})?")


def parse_count(raw: str, what: str, default: int) -> int | str:
    text = matching.count_text(raw.strip())
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


_NOT_ALNUM_LINES = re.compile(r"[^0-9A-Za-z\n]+")
# what ``check_batch`` sends through ``matching.packaging_key``: a line that ends in a packaging
# suffix, or with a comma in its last four characters (a packing code such as ``,115``)
_PACKAGING_END = re.compile(
    "(?:" + "|".join(map(re.escape, matching.PACKAGING_SUFFIXES)) + r"|,[^\n]{0,3})$", re.M
)
# a column of price breaks as JSON: what ``_breaks_json``'s replaces make of an empty cell
_NO_BREAKS = '[["]]'


def _joined(values: list[str]) -> str | None:
    """``values`` as one text, a line each; None if a value holds a newline of its own."""
    text = "\n".join(values)
    return text if text.count("\n") == len(values) - 1 else None


# what ``_NOT_ALNUM_LINES`` removes from an ASCII text, for ``bytes.translate``
_NOT_ALNUM_ASCII = bytes(b for b in range(128) if _NOT_ALNUM_LINES.fullmatch(chr(b)))


def _normalized(keys: list[str]) -> list[str]:
    """``matching.normalize_mpn`` of a column of exact keys (MPNs already upper-cased): one
    pass over the joined column. An ASCII column, nearly every one, goes through
    ``bytes.translate`` (500 keys: 24 µs against 115 µs by the regex, measured)."""
    text = _joined(keys)
    if text is None:
        return list(map(matching.normalize_mpn, keys))
    if text.isascii():
        return text.encode("ascii").translate(None, _NOT_ALNUM_ASCII).decode("ascii").split("\n")
    return _NOT_ALNUM_LINES.sub("", text).split("\n")


def _lines_matching(pattern: re.Pattern[str], values: list[str]) -> Iterator[int]:
    """The positions of the values that ``pattern`` (a multi-line ``…$`` search) finds,
    from one pass over the joined column: newlines are counted between matches only."""
    text = _joined(values)
    if text is None:
        yield from (i for i, v in enumerate(values) if pattern.search(v))
        return
    line, at = 0, 0
    for m in pattern.finditer(text):
        line += text.count("\n", at, m.start())
        at = m.start()
        yield line


def _breaks_json(breaks: list[str]) -> list[str]:
    """A column of price breaks (``1:0.10;100:0.05``, as ``_BREAKS_LINES`` passes them) as
    JSON arrays, ``[[1, "0.10"], [100, "0.05"]]``, by regex passes over the joined column.
    The breaks keep the file's order: whoever reads them sorts (``matching.unit_price_at``,
    the API), which costs a few breaks a read instead of a sort a row here (1M rows: about a
    second of the validator's time). Rows the column test refused get whatever comes out:
    ``check`` writes theirs."""
    text = _joined(breaks)
    if text is None:
        return [_breaks_json([b.replace("\n", " ")])[0] for b in breaks]
    # only str.replace, at C speed (a regex with groups in its template expands each match in
    # Python: 1.5 µs a break). A checked cell starts with a digit, so "[[" + '"]]' is an
    # empty one.
    text = text.replace(":", ', "').replace(";", '"], [').replace("\n", '"]]\n[[')
    return ("[[" + text + '"]]').replace(_NO_BREAKS, "[]").split("\n")


class ComponentValidator:
    """Rows of a component file to COPY-ready records (text in ``STAGE_COLUMNS`` order; an
    empty ``unit_price`` is none) or row errors."""

    def __init__(self, header: HeaderMap, canonical: Canonicalizer) -> None:
        self.width = header.width
        self.idx = tuple(header.columns.get(f, -1) for f in FIELDS)
        self.canonical = canonical

    def check_batch(self, numbers: Sequence[int], rows: Sequence[list[str]]) -> CheckedBatch:
        """The clean records as columns (``STAGE_COLUMNS`` order) and the rows refused.

        A column at a time, as the product validator's ``check_batch``: each column is
        stripped and tested whole at C speed (``map``, one regex pass over the column, a set
        test); only the rows a column test picks out go through ``check`` one by one, which
        also writes their messages, so the outcome is exactly that of ``check`` on every row.
        Measured: 33 µs a row by ``check`` alone, the whole validator process included."""
        n = len(rows)
        if not n:
            return CheckedBatch([], [[] for _ in STAGE_COLUMNS], [])
        width = self.width
        slow: set[int] = set()  # rows ``check`` decides
        cells = rows
        if set(map(len, rows)) != {width}:
            slow.update(i for i, r in enumerate(rows) if len(r) != width)
            filler = [""] * width
            cells = [r if len(r) == width else filler for r in rows]
        cols = list(zip(*cells, strict=True))

        def stripped(index: int) -> list[str]:
            return list(map(str.strip, cols[index])) if index >= 0 else [""] * n

        i_mfr, i_mpn, i_desc, i_cat, i_pkg, i_life, i_url, i_stock, i_moq, i_price, i_cur, i_br = (
            self.idx
        )
        makers = stripped(i_mfr)
        if not all(makers) or max(map(len, makers)) > TEXT_MAX:
            slow.update(i for i, s in enumerate(makers) if not s or len(s) > TEXT_MAX)
        mpns = stripped(i_mpn)
        keys = list(map(str.upper, mpns))  # matching.exact_key of a stripped MPN
        norms = _normalized(keys)
        # the key is what the column holds, and never shorter than the MPN ("ß".upper() is "SS")
        if not all(norms) or max(map(len, keys)) > MPN_MAX:
            slow.update(i for i, s in enumerate(keys) if not norms[i] or len(s) > MPN_MAX)
        lifecycles = list(map(LIFECYCLES.get, map(str.lower, stripped(i_life))))
        if None in lifecycles:
            slow.update(i for i, s in enumerate(lifecycles) if s is None)
        stocks = _counts(stripped(i_stock), _STOCK, _STOCK_LINES, "0", slow)
        moqs = _counts(stripped(i_moq), _MOQ, _MOQ_LINES, "1", slow)
        prices = stripped(i_price)
        if not all_match(_PRICE_LINES, prices):
            slow.update(i for i, s in enumerate(prices) if s and not _PLAIN_PRICE.fullmatch(s))
        breaks = stripped(i_br)
        if not all_match(_BREAKS_LINES, breaks):
            slow.update(i for i, s in enumerate(breaks) if not _BREAKS.fullmatch(s))
        currencies = [c or "USD" for c in map(str.upper, stripped(i_cur))]
        if not CURRENCIES.issuperset(currencies):
            slow.update(i for i, c in enumerate(currencies) if c not in CURRENCIES)
        urls = stripped(i_url)
        if any(urls) and not (all_match(_URL_LINES, urls) and max(map(len, urls)) <= URL_MAX):
            slow.update(
                i
                for i, u in enumerate(urls)
                if u and not (u.startswith(_HTTP) and len(u) <= URL_MAX)
            )
        categories, packages = stripped(i_cat), stripped(i_pkg)
        if max(map(len, categories)) > TEXT_MAX or max(map(len, packages)) > PACKAGE_MAX:
            slow.update(
                i
                for i, (c, p) in enumerate(zip(categories, packages, strict=True))
                if len(c) > TEXT_MAX or len(p) > PACKAGE_MAX
            )
        descriptions = stripped(i_desc)

        # matching.packaging_key: only an MPN that ends like a packaging suffix can lose one;
        # every other's key is its normalized MPN
        bases = list(norms)
        for i in _lines_matching(_PACKAGING_END, keys):
            bases[i] = matching.packaging_key(keys[i])
        breaks_json = _breaks_json(breaks)
        if "" in prices:  # the smallest quantity's price when no unit price is given
            for i, price in enumerate(prices):
                if not price and breaks[i] and i not in slow:
                    prices[i] = min(
                        (b.split(":") for b in breaks[i].split(";")), key=lambda b: int(b[0])
                    )[1]
        names, maker_keys = self._canonical_columns(makers)
        columns = [
            list(map(str, numbers)),
            names,
            mpns,
            maker_keys,
            keys,
            norms,
            bases,
            descriptions,
            categories,
            packages,
            lifecycles,
            urls,
            stocks,
            moqs,
            prices,
            currencies,
            breaks_json,
        ]
        if not slow:
            return CheckedBatch(list(numbers), columns, [])  # type: ignore[arg-type]
        # The rows ``check`` decides go into the columns in place, and the refused ones are
        # dropped once at the end: one odd cell (a stock of "5,000") must not send the whole
        # batch through Python row by row.
        errors: list[RowError] = []
        dropped: set[int] = set()
        for i in sorted(slow):  # file order, as the errors are reported
            record = self.check(numbers[i], list(rows[i]))
            if record.__class__ is RowError:
                errors.append(record)  # type: ignore[arg-type]
                dropped.add(i)
            else:
                for column, value in zip(columns, record, strict=True):  # type: ignore[arg-type]
                    column[i] = value
        kept = list(numbers)
        if dropped:
            keep = [i for i in range(n) if i not in dropped]
            columns = [[column[i] for i in keep] for column in columns]
            kept = [numbers[i] for i in keep]
        return CheckedBatch(kept, columns, errors)

    def _canonical_columns(self, makers: list[str]) -> tuple[list[str], list[str]]:
        """The canonical names and their keys for a column of makers: each distinct maker
        once (a catalogue names few), then two lookups per row at C speed."""
        found = {maker: self.canonical(maker) for maker in set(makers)}
        names = {maker: name for maker, (name, _) in found.items()}
        keys = {maker: key for maker, (_, key) in found.items()}
        return list(map(names.__getitem__, makers)), list(map(keys.__getitem__, makers))

    def check(self, number: int, values: list[str]) -> tuple[str, ...] | RowError:
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
        elif len(matching.exact_key(mpn)) > MPN_MAX:
            # upper-casing can lengthen it ("ß" is "SS"): say so, or the count makes no sense
            upper = " once upper-cased" if len(mpn) <= MPN_MAX else ""
            problems.append(f"mpn '{mpn[:40]}…' is longer than {MPN_MAX} characters{upper}")
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
        if url and not url.lower().startswith(_HTTP):
            problems.append(f"datasheet_url '{url[:60]}' is not an http(s) URL")
        elif len(url) > URL_MAX:
            problems.append(f"datasheet_url is longer than {URL_MAX} characters")
        category, package = cell(i_cat), cell(i_pkg)
        if len(category) > TEXT_MAX or len(package) > PACKAGE_MAX:
            problems.append("category or package is too long")
        if problems:
            return RowError(number, f"Row {number}: " + "; ".join(problems), list(values))
        if price is None and breaks:  # the smallest quantity's price
            price = min(breaks, key=lambda b: b[0])[1]
        manufacturer, mfr_key = self.canonical(raw_mfr)
        return (
            str(number),
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
            str(stock),
            str(moq),
            "" if price is None else str(price),
            currency,
            json.dumps(breaks),
        )


# a clean record's values, in the order ``ComponentValidator.check`` returns them (the file's
# row number first)
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


# the columns of a component's COPY line after its organization (``ComponentChecker.batch_of``)
COPY_COLUMNS = STAGE_COLUMNS[1:]
_PRICE = COPY_COLUMNS.index("unit_price")  # a plain number or '': written as it is


@dataclass(frozen=True)
class ComponentPlan:
    """How the validator process checks a component file (plain data: it travels there).
    ``aliases``: the organization's manufacturer aliases (alias key → canonical name)."""

    aliases: Mapping[str, str]
    # whether to gather the file's groups (``SharedNorms``): only a first load uses them
    gather_groups: bool = True

    def checker(self, header: Sequence[str], expected_rows: int) -> ComponentChecker:
        return ComponentChecker(
            ComponentValidator(
                map_header(list(header), aliases=ALIASES, required=REQUIRED),
                Canonicalizer(dict(self.aliases)),
            ),
            SharedNorms() if self.gather_groups else None,
        )


_KEY, _NORM = STAGE_COLUMNS.index("mpn_key"), STAGE_COLUMNS.index("mpn_norm")


class SharedNorms:
    """The normalized MPNs that different parts of one file may share, gathered as its clean
    batches pass: after a first load, the flags are set in these groups only (the catalogue
    holds nothing else), instead of reading the fresh catalogue back and grouping it whole
    (1.5-1.8 s of a 1M-part load, measured).

    Two different MPN keys share a normalized MPN only if one of them is not its own normalized
    MPN (it has a character other than an ASCII letter or digit: ``1.5SMC6.8CA``): two keys
    that are equal to the same normalized MPN are equal. So a candidate is a normalized MPN of
    such a "punctuated" key that another row of the file has too, punctuated or not. The rows
    are kept as 64-bit hashes of their normalized MPN, 8 bytes a row: equal MPNs hash equal, so
    no shared group is missed, and a collision or a repeat of one key (the same MPN from two
    makers) only adds a candidate, which the flagging checks against the catalogue. The
    punctuated rows' normalized MPNs are kept as text, to name the candidates. Past
    ``MAX_ROWS`` rows or ``MAX_CHARS`` of that text, or with more than ``MAX_SHARED``
    candidates: nothing (``shared()`` is None).

    The hashes are kept in ``PARTS`` parts by their low bits, so that the sets ``shared()``
    builds hold one part at a time: 1M rows, 16 MiB kept and 5 MiB more at the end, where one
    set of every punctuated hash took 40 MiB more (measured)."""

    MAX_ROWS = 2_000_000
    MAX_CHARS = 24_000_000
    # more candidates than this: None, and the job groups the whole catalogue instead (the
    # same limit as ``catalogue_import.NEW_NORMS_MAX`` on a later import's new parts)
    MAX_SHARED = 50_000
    PARTS = 8  # a power of two

    def __init__(self) -> None:
        self.rows = 0
        self.chars = 0
        self._punctuated: list[array] | None = [array("q") for _ in range(self.PARTS)]
        self._plain: list[array] = [array("q") for _ in range(self.PARTS)]
        self._texts: list[str] = []  # the punctuated normalized MPNs, a batch a text

    def add(self, keys: list[str], norms: list[str]) -> None:
        if self._punctuated is None:
            return
        self.rows += len(keys)
        differs = list(map(operator.ne, keys, norms))
        punctuated = list(compress(norms, differs))
        text = "\n".join(punctuated)
        self.chars += len(text)
        if self.rows > self.MAX_ROWS or self.chars > self.MAX_CHARS:
            self._punctuated, self._plain, self._texts = None, [], []
            return
        mask = self.PARTS - 1
        if punctuated:
            self._texts.append(text)
            parts = self._punctuated
            for h in map(hash, punctuated):
                parts[h & mask].append(h)
        if len(punctuated) < len(norms):
            plain = compress(norms, map(operator.not_, differs)) if punctuated else norms
            parts = self._plain
            for h in map(hash, plain):
                parts[h & mask].append(h)

    def shared(self) -> list[str] | None:
        """The candidates, sorted; None if the file was too large to keep."""
        if self._punctuated is None:
            return None
        twice: set[int] = set()
        for punctuated, plain in zip(self._punctuated, self._plain, strict=True):
            seen: set[int] = set()
            for h in punctuated:
                if h in seen:
                    twice.add(h)
                else:
                    seen.add(h)
            twice.update(seen.intersection(plain))
        if len(twice) > self.MAX_SHARED:
            return None
        if not twice:
            return []
        return sorted(
            {norm for text in self._texts for norm in text.split("\n") if hash(norm) in twice}
        )


class ComponentChecker:
    """The pipeline's ``RowChecker`` for component files."""

    def __init__(self, validator: ComponentValidator, groups: SharedNorms | None = None) -> None:
        self.validator = validator
        self.groups = groups

    def __call__(self, numbers: Sequence[int], rows: Sequence[list[str]]) -> CheckedBatch:
        checked = self.validator.check_batch(numbers, rows)
        if self.groups is not None:
            self.groups.add(checked.columns[_KEY], checked.columns[_NORM])
        return checked

    def summary(self) -> list[str] | None:
        """What the job learns once the file is read: ``SharedNorms.shared()``, if gathered."""
        return None if self.groups is None else self.groups.shared()

    def batch_of(self, org: str, checked: CheckedBatch) -> CopyBatch:
        """COPY text of ``organization_id, *COPY_COLUMNS`` (the file's row number stays out:
        the same lines go straight into the catalogue on a first load), no unit price as
        COPY's null."""
        if not checked.numbers:
            return CopyBatch()
        columns = checked.columns[1:]
        columns[_PRICE] = [price or NULL for price in columns[_PRICE]]
        text = copy_text_of(org, columns, raw=_PRICE)
        return CopyBatch(list(checked.numbers), checked.columns[2], text)

    def take_skipped(self) -> dict[str, int]:
        return {}  # every row of a component file is a component or a row error
