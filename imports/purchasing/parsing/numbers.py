"""Numbers and dates as suppliers write them: ``27,80``, ``1.234,56``, ``$1,234.56``, dates.

>>> parse_decimal("27,80", ",")
Decimal('27.80')
>>> parse_decimal("1.234,56")
Decimal('1234.56')
>>> parse_decimal("$1,234.56")
Decimal('1234.56')
>>> parse_decimal("1,234")
Decimal('1234')
>>> parse_decimal("12,5")
Decimal('12.5')
>>> parse_decimal("abc") is None
True
>>> parse_date("03.12.2026", ["%d.%m.%Y"])
datetime.date(2026, 12, 3)
>>> parse_date("2026-12-03")
datetime.date(2026, 12, 3)
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

# ASCII digits only: str.isdigit() accepts "²"
_NUMBER = re.compile(r"^[+-]?[0-9][0-9.,' ]*$|^[+-]?[.,][0-9]+$")
_STRIP = re.compile(r"[^\d.,'+\- ]")
DATE_FORMATS = (
    "%Y-%m-%d",
    "%d.%m.%Y",
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d-%m-%Y",
    "%d %b %Y",
    "%d %B %Y",
    "%b %d, %Y",
    "%B %d, %Y",
    "%Y/%m/%d",
)
CURRENCY_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "CHF": "CHF"}
_CURRENCY_CODE = re.compile(r"\b([A-Z]{3})\b")


def parse_decimal(text: object, separator: str = "auto") -> Decimal | None:
    """A decimal from a supplier's text; ``separator`` is ``.``, ``,`` or ``auto``."""
    if text is None or isinstance(text, bool):  # JSON's true is no quantity
        return None
    if isinstance(text, Decimal | int | float):
        return _finite(Decimal(str(text)) if not isinstance(text, Decimal) else text)
    s = _STRIP.sub("", str(text)).strip().replace(" ", "").replace("'", "")
    negative = str(text).strip().startswith("(") and str(text).strip().endswith(")")
    if not s or not _NUMBER.match(s):
        return None
    if separator == "auto":
        separator = _guess_separator(s)
    s = s.replace(".", "").replace(",", ".") if separator == "," else s.replace(",", "")
    try:
        value = Decimal(s)
    except InvalidOperation:
        return None
    return _finite(-value if negative else value)


def _finite(value: Decimal) -> Decimal | None:
    """``value`` if it is a number an order can mean: not NaN or infinite (JSON's ``NaN``), and
    not beyond 10**40 either way (``1e999999999`` made ``abs()`` overflow in the checks)."""
    if not value.is_finite() or abs(value.adjusted()) > 40:
        return None
    return value


def _guess_separator(s: str) -> str:
    last_point, last_comma = s.rfind("."), s.rfind(",")
    if last_point >= 0 and last_comma >= 0:
        return "," if last_comma > last_point else "."
    if last_comma >= 0:
        # "1,234" is a thousands group; "12,5" and "27,80" are decimals
        digits_after = len(s) - last_comma - 1
        return "." if digits_after == 3 and s.count(",") >= 1 and len(s) > 4 else ","
    return "."


def parse_date(text: object, formats: list[str] | tuple[str, ...] = ()) -> dt.date | None:
    if text is None:
        return None
    if isinstance(text, dt.datetime):
        return text.date()
    if isinstance(text, dt.date):
        return text
    s = str(text).strip()
    if "T" in s and s[:4].isdigit():
        s = s.split("T", 1)[0]
    if re.match(r"^\d{4}-\d{2}-\d{2} \d", s):
        s = s[:10]
    for fmt in (*formats, *DATE_FORMATS):
        try:
            return dt.datetime.strptime(s, fmt).date()
        except ValueError:
            continue
    return None


def parse_currency(text: object) -> str | None:
    """An ISO 4217 code from ``EUR``, ``eur``, ``€`` or ``USD ($)``."""
    if text is None:
        return None
    s = str(text).strip()
    m = _CURRENCY_CODE.search(s.upper())
    if m and (len(s) <= 3 or m.group(1) not in ("PO", "TAX")):
        return m.group(1)
    for symbol, code in CURRENCY_SYMBOLS.items():
        if symbol in s:
            return code
    return None


def parse_quantity(text: object, separator: str = "auto") -> Decimal | None:
    return parse_decimal(text, separator)
