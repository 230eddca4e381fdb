"""PDF: the text layer, page by page, through pdfplumber. No OCR: a scan is refused clearly."""

from __future__ import annotations

from pathlib import Path

from .document import ParseError

MAX_PAGES = 200


def pdf_text(path: Path) -> str:
    import pdfplumber
    from pdfminer.pdfparser import PDFSyntaxError

    try:
        with pdfplumber.open(path) as pdf:
            if len(pdf.pages) > MAX_PAGES:
                raise ParseError(f"The PDF has {len(pdf.pages)} pages; at most {MAX_PAGES}.")
            pages = [page.extract_text(layout=False) or "" for page in pdf.pages]
    except ParseError:
        raise
    except (PDFSyntaxError, Exception) as exc:
        raise ParseError(f"The PDF could not be opened ({type(exc).__name__}).") from exc
    text = "\n".join(pages)
    if not text.strip():
        raise ParseError(
            "The PDF has no text layer (it looks scanned). Text recognition (OCR) is not "
            "available: upload the supplier's original PDF, a CSV/XLSX or the e-mail instead."
        )
    return text
