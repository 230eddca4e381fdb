"""Text as PostgreSQL can store it."""

from __future__ import annotations


def valid_text(text: str) -> bool:
    """Whether PostgreSQL's text and jsonb can hold ``text``: no NUL character, and no lone
    surrogate (a JSON ``"\\ud800"``), which UTF-8 has no encoding for."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable(text: str) -> str:
    """``text`` without NUL characters, each lone surrogate as U+FFFD."""
    if valid_text(text):
        return text
    return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text.replace("\x00", ""))
