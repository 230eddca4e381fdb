"""E-mail (.eml): an attached order document if there is one, else the body's text."""

from __future__ import annotations

import email
import email.policy
import html
import re
import tempfile
from pathlib import Path

from .document import LINE_LIMIT, ParsedOrder, ParseError
from .templates import Template
from .text import parse_text

ATTACHMENT_SUFFIXES = (".csv", ".tsv", ".xlsx", ".pdf", ".json", ".txt")
# a tag ends at the next '>' and never spans a '<': a run of '<' without '>' was scanned to the
# end of the text from each of them (time in its square)
_TAG = re.compile(r"<[^<>]+>")
_BLOCK = re.compile(r"(?i)<\s*(br|/p|/div|/tr|/li|/h\d)\s*/?>")
# The standard library's header parser takes time in the square of a header's length (48 KB
# of 'Content-Type' parameters: 2 s; a 20 MB header: days). The headers read here (a part's
# type and disposition, the subject) are short in every real e-mail: a longer one, or more
# header text read in all than a real e-mail has, is refused.
MAX_HEADER_CHARS = 2048
MAX_HEADERS_READ_CHARS = 512 * 1024


class _BoundedPolicy(email.policy.EmailPolicy):
    """``policy.default`` that refuses a header too long to parse in reasonable time."""

    budget: list[int] | None = None  # header characters still allowed (one list per e-mail)

    def header_fetch_parse(self, name: str, value: str):  # type: ignore[no-untyped-def]
        if len(value) > MAX_HEADER_CHARS:
            raise ParseError(
                f"The e-mail's '{name[:100]}' header is {len(value):,} characters long; at most "
                f"{MAX_HEADER_CHARS:,} are read."
            )
        if self.budget is not None:
            self.budget[0] -= len(value)
            if self.budget[0] < 0:
                raise ParseError(
                    "The e-mail has more header text than an order's e-mail has (too many parts?)."
                )
        return super().header_fetch_parse(name, value)


def html_to_text(markup: str) -> str:
    text = _BLOCK.sub("\n", markup)
    text = re.sub(r"(?i)<\s*/t[dh]\s*>", "  ", text)
    return html.unescape(_TAG.sub("", text))


def parse_email(raw: bytes, templates: list[Template]) -> ParsedOrder:
    from . import parse_document  # an attachment is a document of its own

    policy = _BoundedPolicy().clone(budget=[MAX_HEADERS_READ_CHARS])
    try:
        message = email.message_from_bytes(raw, policy=policy)
    except ParseError:
        raise
    except Exception as exc:  # the parser is lenient; this is a truly broken file
        raise ParseError(f"The e-mail could not be read ({type(exc).__name__}).") from exc
    for part in message.iter_attachments():
        try:
            name = part.get_filename() or ""
        except ValueError as exc:  # UnicodeError too: an RFC 2231 name in "idna", "a%ff"
            raise ParseError(f"An attachment's name cannot be read ({exc}).") from exc
        suffix = Path(name).suffix.lower()
        if suffix in ATTACHMENT_SUFFIXES:
            payload = part.get_payload(decode=True) or b""
            with tempfile.TemporaryDirectory() as tmp:
                # not the sender's name: one with a NUL, or over 255 bytes, is no file name
                path = Path(tmp) / f"attachment{suffix}"
                path.write_bytes(payload)
                order = parse_document(path, name, templates, max_lines=LINE_LIMIT.get())
            order.source_format = f"email+{order.source_format}"
            order.warnings.append(f"Read from the e-mail's attachment '{name}'.")
            return order
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        raise ParseError("The e-mail has no text body and no order attached.")
    try:
        text = body.get_content()
    except (LookupError, ValueError) as exc:  # "charset=nope", "idna", a NUL in the name
        raise ParseError(f"The e-mail's text is in an encoding we cannot read ({exc}).") from exc
    if body.get_content_type() == "text/html":
        text = html_to_text(text)
    order = parse_text(text, templates, source_format="email")
    subject = message.get("subject", "")
    if subject:
        order.warnings.append(f"E-mail subject: {str(subject)[:200]}")
    return order
