"""Plain text (a pasted order, an e-mail body, a PDF's text layer) through the templates."""

from __future__ import annotations

from imports.pipeline.readers import FileReadError, detect_encoding

from .document import ParsedOrder, ParseError
from .templates import Template, choose, extract


def decode_text(raw: bytes) -> str:
    if not raw.strip():
        raise ParseError("File is empty.")
    try:
        return raw.decode(detect_encoding(raw[:65536]))
    except FileReadError as exc:
        raise ParseError(str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise ParseError("File is not UTF-8, UTF-16 or Windows-1252 text.") from exc


def parse_text(text: str, templates: list[Template], source_format: str = "text") -> ParsedOrder:
    if not text.strip():
        raise ParseError("The document holds no text.")
    template = choose(text, templates)
    return extract(text, template, source_format)
