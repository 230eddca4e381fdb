"""Turning a purchase-order document into a ``ParsedOrder``: pure code, no ORM, no network.

``parse_document(path, filename, templates)`` picks the reader by the file's suffix (CSV/TSV,
XLSX, plain text, e-mail, PDF, JSON), then ``confidence.assess`` scores every field and runs the
arithmetic checks. Text and PDF go through the templates (``templates.py``).
"""

from __future__ import annotations

from pathlib import Path

from .confidence import assess
from .document import LINE_LIMIT, ParsedLine, ParsedOrder, ParseError
from .templates import GENERIC, Template

SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".txt": "text",
    ".eml": "email",
    ".pdf": "pdf",
    ".json": "json",
}


def source_format(filename: str) -> str | None:
    return SUFFIXES.get(Path(filename).suffix.lower())


def parse_document(
    path: Path,
    filename: str,
    templates: list[Template] | None = None,
    *,
    max_lines: int | None = None,
) -> ParsedOrder:
    """Read, extract and assess one document; raises ``ParseError`` with a user-facing message,
    as soon as a document has more than ``max_lines`` lines."""
    token = LINE_LIMIT.set(max_lines)
    try:
        return _parse(path, filename, templates)
    finally:
        LINE_LIMIT.reset(token)


def _parse(path: Path, filename: str, templates: list[Template] | None) -> ParsedOrder:
    fmt = source_format(filename)
    templates = templates or []
    if fmt in ("csv", "xlsx"):
        from .tabular import read_tabular

        order = read_tabular(path, fmt)
    elif fmt == "json":
        from .jsonfile import read_json

        order = read_json(path)
    elif fmt == "text":
        from .text import decode_text, parse_text

        order = parse_text(decode_text(path.read_bytes()), templates)
    elif fmt == "email":
        from .mail import parse_email

        order = parse_email(path.read_bytes(), templates)
    elif fmt == "pdf":
        from .pdf import pdf_text
        from .text import parse_text

        order = parse_text(pdf_text(path), templates)
        order.source_format = "pdf"
    else:
        allowed = ", ".join(sorted(SUFFIXES))
        raise ParseError(f"'{filename}' is not a purchase-order format we read ({allowed}).")
    if not order.lines:
        raise ParseError("No order lines were found in the document.")
    assess(order)
    return order


__all__ = [
    "GENERIC",
    "ParseError",
    "ParsedLine",
    "ParsedOrder",
    "Template",
    "parse_document",
    "source_format",
]
