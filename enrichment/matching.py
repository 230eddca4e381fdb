"""Matching part numbers: pure functions, no ORM.

Keys (computed once per component when the catalogue loads, and once per BOM line):

- ``exact_key``: the MPN as written, trimmed and upper-cased (tier ``exact``).
- ``normalize_mpn``: letters and digits only, upper-cased (tier ``normalized``). Different parts
  can share one (``1.5SMC68CA`` and ``1.5SMC6.8CA``): such a collision never auto-matches.
- ``strip_packaging``: the MPN without a known packaging suffix (tier ``packaging``).

The enrichment job (``enrichment/enrich.py``) joins these keys against the catalogue in SQL, one
statement per tier for a whole chunk of lines, and hands each line's candidate rows to the
``decide_*`` functions here. Candidates are plain ``Candidate`` tuples; a decision is a
``Decision``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]+")
_NOT_WORD = re.compile(r"[\W_]+")  # Unicode: anything but letters and digits
# the longest key of a name with no ASCII letter or digit (a name is at most 200 characters;
# compatibility forms and upper case can lengthen it)
MAKER_KEY_MAX = 200
# Latin letters that no decomposition takes to ASCII, as a maker's name spells them in ASCII
_LATIN_LETTERS = str.maketrans(
    {"Ø": "O", "ø": "o", "Đ": "D", "đ": "d", "Ł": "L", "ł": "l", "Æ": "AE", "æ": "ae"}
    | {"Œ": "OE", "œ": "oe", "Þ": "TH", "þ": "th", "Ħ": "H", "ħ": "h", "Ŧ": "T", "ŧ": "t"}
)

# Packaging suffixes: tape and reel, lead-free finish and the like. Only these are removed; a
# suffix that names a package or a grade (Microchip's ``/PT``, ``-I/P``, ``-XF``) is part of the
# part number. Longest first, so ``#TRPBF`` wins over ``#PBF``.
PACKAGING_SUFFIXES = (
    "#TRMPBF",  # Analog Devices (Linear): tape and reel, mini, lead-free
    "-TRMPBF",
    "#TRPBF",
    "-TRPBF",
    "#PBF",
    "-PBF",
    "/NOPB",  # Texas Instruments (National): lead-free, as ``#PBF``
    "#TRM",
    "#TR",
    "-TR",
    "/TR",
    "-T/R",
    "-REEL7",
    "-REEL",
    "/REEL",
    "-CT",
    "-CUT",
    "-BULK",
    "-TUBE",
)
# Nexperia / NXP packing codes: ``BAS16J,115``, ``PESD5V0S1BA,215``
_PACKING_CODE = re.compile(r",[0-9]{3}$")


def exact_key(mpn: str) -> str:
    """The MPN as written, trimmed and case-insensitive.

    >>> exact_key("  bas16j,115 ")
    'BAS16J,115'
    """
    return mpn.strip().upper()


def normalize_mpn(mpn: str) -> str:
    """Letters and digits only, upper case: of ``exact_key(mpn)``, so two MPNs with one exact
    key have one normalized key too (the catalogue's unique index holds both; ``"ß".upper()``
    is ``"SS"``).

    >>> normalize_mpn("1.5SMC6.8CA")
    '15SMC68CA'
    >>> normalize_mpn("1.5smc68ca")
    '15SMC68CA'
    >>> normalize_mpn("PIC18F4550-I/PT")
    'PIC18F4550IPT'
    >>> normalize_mpn(" rc0603fr-0710kl ")
    'RC0603FR0710KL'
    >>> normalize_mpn("straße") == normalize_mpn("STRASSE")
    True
    """
    return _NOT_ALNUM.sub("", mpn.upper())


def strip_packaging(mpn: str) -> str:
    """The MPN without a known packaging suffix (upper-cased, trimmed); unchanged otherwise.

    >>> strip_packaging("BAS16J,115")
    'BAS16J'
    >>> strip_packaging("LT1761ES5-5#TRPBF")
    'LT1761ES5-5'
    >>> strip_packaging("IRF540N#PBF")
    'IRF540N'
    >>> strip_packaging("TPS7A4700RGWR/TR")
    'TPS7A4700RGWR'
    >>> strip_packaging("PIC18F4550-I/PT")
    'PIC18F4550-I/PT'
    >>> strip_packaging("ATMEGA328P-XF")
    'ATMEGA328P-XF'
    >>> strip_packaging("LM317T/NOPB"), strip_packaging("LT1763CS8#TRMPBF")
    ('LM317T', 'LT1763CS8')
    """
    key = exact_key(mpn)
    for suffix in PACKAGING_SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)]
    if _PACKING_CODE.search(key) and len(key) > 4:
        return key[:-4]
    return key


def packaging_key(mpn: str) -> str:
    """The normalized key of the MPN without its packaging suffix (the tier's join key).

    >>> packaging_key("BAS16J,115") == packaging_key("BAS16J")
    True
    >>> packaging_key("PIC18F4550-I/PT") == packaging_key("PIC18F4550-I/P")
    False
    """
    return normalize_mpn(strip_packaging(mpn))


def manufacturer_key(name: str) -> str:
    """A manufacturer's name as a lookup key: letters and digits only, upper case.

    Accents and compatibility forms fold to the letters under them, so ``Würth`` is
    ``WURTH`` as ``Wurth`` is, ``Weidmüller`` is ``WEIDMULLER``, ``ß`` is ``SS``, ``Ø`` is
    ``O`` and a full-width TI is ``TI``. A name with no letter or digit that folds to ASCII
    (``村田製作所``, ``风华``) keeps its own letters and digits, in Unicode's compatibility form,
    upper-cased. A key is at most ``MAKER_KEY_MAX`` characters, and a key's key is the key (the
    API keys a filter that may already be one).

    >>> manufacturer_key("Texas Instruments")
    'TEXASINSTRUMENTS'
    >>> manufacturer_key("ON Semi.")
    'ONSEMI'
    >>> manufacturer_key("Würth Elektronik") == manufacturer_key("Wurth Elektronik")
    True
    >>> manufacturer_key("村田製作所"), manufacturer_key("TI(德州仪器)")
    ('村田製作所', 'TI')
    """
    if name.isascii():
        return _NOT_ALNUM.sub("", name).upper()
    # upper case after the decomposition: ß and ligatures become ASCII letters by it
    folded = _NOT_ALNUM.sub(
        "", unicodedata.normalize("NFKD", name).translate(_LATIN_LETTERS).upper()
    )
    if folded:
        return folded[:MAKER_KEY_MAX]
    # upper case before the letters are kept: it can add combining marks (ΐ)
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", name).upper())[:MAKER_KEY_MAX]


# ---------------------------------------------------------------------- deciding


class Tier:
    EXACT = "exact"
    NORMALIZED = "normalized"
    PACKAGING = "packaging"
    LEARNED = "learned"
    TRIGRAM = "trigram"
    MANUAL = "manual"


class Status:
    MATCHED = "matched"
    AMBIGUOUS = "ambiguous"
    NOT_FOUND = "not_found"
    SKIPPED = "skipped"
    ERROR = "error"


CONFIDENCE = {
    Tier.EXACT: 1.0,
    Tier.NORMALIZED: 0.95,
    Tier.LEARNED: 0.9,
    Tier.PACKAGING: 0.85,
    Tier.MANUAL: 1.0,
}
MAX_CANDIDATES = 5


class Candidate(NamedTuple):
    """A catalogue part as the tiers see it (a row of the candidate query)."""

    id: int
    manufacturer: str
    manufacturer_key: str
    mpn: str
    lifecycle: str = "active"
    stock: int = 0
    unit_price: Decimal | None = None
    price_breaks: tuple[tuple[int, Decimal], ...] = ()
    score: float = 1.0
    currency: str = "USD"
    datasheet_url: str = ""


@dataclass
class Decision:
    status: str
    tier: str = ""
    confidence: float = 0.0
    component: Candidate | None = None
    candidates: list[Candidate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # the tier found the part only from makers other than the line's: a later tier may still
    # find it from the line's maker (``enrich.Matcher`` holds this outcome until none does)
    other_makers: bool = False


def unit_price_at(
    quantity: int, breaks: Sequence[tuple[int, Decimal]], default: Decimal | None
) -> Decimal | None:
    """The unit price at ``quantity``: the break with the largest quantity not above it (the
    smallest break when the quantity is below all of them), else ``default``.

    >>> breaks = [(1, Decimal("0.10")), (100, Decimal("0.05")), (1000, Decimal("0.03"))]
    >>> unit_price_at(250, breaks, None)
    Decimal('0.05')
    >>> unit_price_at(1, breaks, None), unit_price_at(5000, breaks, None)
    (Decimal('0.10'), Decimal('0.03'))
    >>> unit_price_at(3, [], Decimal("1.20"))
    Decimal('1.20')
    """
    if not breaks:
        return default
    ordered = sorted(breaks)
    price = ordered[0][1]
    for qty, value in ordered:
        if qty <= quantity:
            price = value
    return price


def rank(candidates: Sequence[Candidate], quantity: int) -> list[Candidate]:
    """Active parts first, then stock that covers the need, then the price at that quantity,
    then the better score.

    >>> a = Candidate(1, "A", "A", "X", "eol", 10_000, Decimal("0.01"))
    >>> b = Candidate(2, "B", "B", "X", "active", 5, Decimal("0.02"))
    >>> c = Candidate(3, "C", "C", "X", "active", 500, Decimal("0.05"))
    >>> [x.id for x in rank([a, b, c], 100)]
    [3, 2, 1]
    """

    if len(candidates) < 2:  # the common case: nothing to rank
        return list(candidates)

    def key(c: Candidate) -> tuple:
        price = unit_price_at(quantity, c.price_breaks, c.unit_price)
        return (
            c.lifecycle != "active",
            c.stock < quantity,
            price is None,
            price or 0,
            -c.score,
            c.id,
        )

    return sorted(candidates, key=key)


def _distinct_parts(candidates: Sequence[Candidate], key) -> dict[str, list[Candidate]]:
    parts: dict[str, list[Candidate]] = {}
    for c in candidates:
        parts.setdefault(key(c), []).append(c)
    return parts


def _by_manufacturer(
    candidates: Sequence[Candidate], wanted: str
) -> tuple[list[Candidate], list[str]]:
    """The candidates of the line's manufacturer (its canonical key), or all of them when the
    line names none; with a note when it names one the catalogue does not have for this MPN."""
    if not wanted:
        return list(candidates), []
    mine = [c for c in candidates if c.manufacturer_key == wanted]
    if mine:
        return mine, []
    makers = ", ".join(sorted({c.manufacturer for c in candidates}))
    return [], [f"The catalogue has this part only from {makers}, not from the line's maker."]


def decide(
    tier: str,
    candidates: Sequence[Candidate],
    *,
    manufacturer: str = "",
    quantity: int = 1,
    mpn: str = "",
) -> Decision | None:
    """What the ``exact``, ``normalized``, ``packaging`` or ``learned`` tier decides for one
    line given the catalogue parts its key found; None when it found none (next tier).

    ``manufacturer`` is the line's manufacturer key after aliases ('' when it gives none).

    One part: matched.

    >>> ti = Candidate(1, "Texas Instruments", "TEXASINSTRUMENTS", "LM358D")
    >>> decide("exact", [ti]).status
    'matched'

    The same MPN from several makers and no maker on the line: ambiguous; with one, matched.

    >>> st = Candidate(2, "STMicroelectronics", "STMICROELECTRONICS", "LM358D")
    >>> decide("exact", [ti, st]).status
    'ambiguous'
    >>> d = decide("exact", [ti, st], manufacturer="STMICROELECTRONICS")
    >>> d.status, d.component.id
    ('matched', 2)

    Two different parts behind one normalized key never auto-match.

    >>> a = Candidate(3, "Littelfuse", "LITTELFUSE", "1.5SMC68CA")
    >>> b = Candidate(4, "Littelfuse", "LITTELFUSE", "1.5SMC6.8CA")
    >>> d = decide("normalized", [a, b], mpn="1.5SMC-6.8CA")
    >>> d.status, sorted(c.id for c in d.candidates)
    ('ambiguous', [3, 4])

    Not even when the line names the maker of one of them.

    >>> v = Candidate(6, "Vishay", "VISHAY", "1.5SMC6.8CA")
    >>> d = decide("normalized", [a, v], manufacturer="VISHAY", mpn="1.5SMC-6.8CA")
    >>> d.status, sorted(c.id for c in d.candidates)
    ('ambiguous', [3, 6])

    A packaging variant matches with a lower confidence and a note.

    >>> nx = Candidate(5, "Nexperia", "NEXPERIA", "BAS16J")
    >>> d = decide("packaging", [nx], mpn="BAS16J,115")
    >>> d.status, d.confidence, d.notes[0]
    ('matched', 0.85, "Packaging variant: the line's BAS16J,115 is catalogued as BAS16J.")
    """
    if not candidates:
        return None
    if tier == Tier.NORMALIZED and len(candidates) > 1:
        # whatever maker the line names: the line's own spelling does not say which part
        parts = _distinct_parts(candidates, lambda c: exact_key(c.mpn))
        if len(parts) > 1:
            names = " and ".join(sorted(parts))
            return Decision(
                Status.AMBIGUOUS,
                tier,
                0.0,
                None,
                rank(candidates, quantity)[:MAX_CANDIDATES],
                [f"Different catalogue parts share this normalized part number ({names})."],
                # none of them from the line's maker: a later tier may find it from that maker
                other_makers=bool(manufacturer)
                and all(c.manufacturer_key != manufacturer for c in candidates),
            )
    found, notes = _by_manufacturer(candidates, manufacturer)
    if not found:
        ranked = rank(candidates, quantity)[:MAX_CANDIDATES]
        return Decision(Status.AMBIGUOUS, tier, 0.0, None, ranked, notes, other_makers=True)
    ranked = rank(found, quantity)
    if tier == Tier.PACKAGING and len(found) > 1:
        parts = _distinct_parts(found, lambda c: strip_packaging(c.mpn))
        if len(parts) > 1:
            names = " and ".join(sorted(parts))
            return Decision(
                Status.AMBIGUOUS,
                tier,
                0.0,
                None,
                ranked[:MAX_CANDIDATES],
                [f"Different catalogue parts match without packaging ({names})."],
            )
    makers = _distinct_parts(found, lambda c: c.manufacturer_key) if len(found) > 1 else {}
    if len(makers) > 1:
        names = ", ".join(sorted({c.manufacturer for c in found}))
        return Decision(
            Status.AMBIGUOUS,
            tier,
            0.0,
            None,
            ranked[:MAX_CANDIDATES],
            [f"Several manufacturers make this part number ({names}); give the manufacturer."],
        )
    best = ranked[0]
    notes = []
    if tier == Tier.NORMALIZED:
        notes.append(
            f"Matched on letters and digits: the line's {mpn.strip()} is catalogued as {best.mpn}."
        )
    if tier == Tier.PACKAGING:
        notes.append(f"Packaging variant: the line's {mpn.strip()} is catalogued as {best.mpn}.")
        if len(ranked) > 1:
            notes.append(
                "Other packagings: " + ", ".join(c.mpn for c in ranked[1:MAX_CANDIDATES]) + "."
            )
    if tier == Tier.LEARNED:
        notes.append("Chosen earlier by an operator for this part number.")
    return Decision(
        Status.MATCHED, tier, CONFIDENCE[tier], best, ranked[1 : MAX_CANDIDATES + 1], notes
    )


def closest(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The MAX_CANDIDATES most similar; among equally similar parts (one look-alike MPN that
    several makers catalogue), active ones first, then the larger stock (as the neighbours'
    statement in ``enrich.py`` orders them).

    >>> eol = Candidate(1, "TI", "TI", "LM358", "eol", 10**6, score=0.6)
    >>> active = Candidate(9, "ST", "ST", "LM358", "active", 0, score=0.6)
    >>> [c.id for c in closest([eol, active])]
    [9, 1]
    """
    return sorted(candidates, key=lambda c: (-c.score, c.lifecycle != "active", -c.stock, c.id))[
        :MAX_CANDIDATES
    ]


def decide_similar(candidates: Sequence[Candidate], quantity: int = 1) -> Decision:
    """Trigram similarity only proposes: a line with look-alikes is ambiguous, never matched.
    The proposals are the most similar parts (at most MAX_CANDIDATES), ranked as every
    candidate list is: active first, then stock that covers the need, then price, then the
    better score.

    >>> decide_similar([Candidate(1, "Yageo", "YAGEO", "RC0603FR-0733KL", score=0.6)]).status
    'ambiguous'
    >>> decide_similar([]).status
    'not_found'
    >>> eol = Candidate(1, "Yageo", "YAGEO", "RC0603FR-0733KL", "eol", 10**6, score=0.8)
    >>> active = Candidate(2, "Yageo", "YAGEO", "RC0603FR-0734KL", "active", 10**6, score=0.6)
    >>> [c.id for c in decide_similar([eol, active], 100).candidates]
    [2, 1]
    """
    if not candidates:
        return Decision(Status.NOT_FOUND, "", 0.0)
    return Decision(
        Status.AMBIGUOUS,
        Tier.TRIGRAM,
        0.0,
        None,
        rank(closest(candidates), quantity),
        ["Not in the catalogue as written; similar part numbers are proposed."],
    )


# ``BomLine.extended_price`` holds 18 digits, 6 of them after the point
EXTENDED_PRICE_LIMIT = Decimal(10) ** 12


def extended_price(unit: Decimal | None, quantity: int) -> Decimal | None:
    """The line's total at ``unit`` price; None when the price is unknown or the total is
    too large to store (``warnings_for`` says so).

    >>> extended_price(Decimal("0.05"), 300)
    Decimal('15.00')
    >>> extended_price(Decimal("500000"), 2_000_000) is None
    True
    """
    if unit is None:
        return None
    total = unit * quantity
    return total if abs(total) < EXTENDED_PRICE_LIMIT else None


def warnings_for(component: Candidate, quantity: int, unit: Decimal | None = None) -> list[str]:
    """What a buyer must know about a matched part (``unit``: its price at ``quantity``).

    >>> warnings_for(Candidate(1, "A", "A", "X", "eol", 10), 100)
    ['Lifecycle is eol, not active.', 'Stock 10 is short of the 100 needed.']
    >>> warnings_for(Candidate(1, "A", "A", "X", "active", 10**10), 2_000_000, Decimal(500000))
    ['The extended price (2000000 x 500000) is too large to store: it is left empty.']
    """
    out = []
    if component.lifecycle != "active":
        out.append(f"Lifecycle is {component.lifecycle}, not active.")
    if component.stock < quantity:
        out.append(f"Stock {component.stock} is short of the {quantity} needed.")
    if unit is not None and extended_price(unit, quantity) is None:
        out.append(
            f"The extended price ({quantity} x {unit}) is too large to store: it is left empty."
        )
    return out


# ---------------------------------------------------------------------- BOM cells

# thousands separators: a first group of one to three digits that is not a lone 0, then
# groups of three ("0,015" is a decimal comma, not fifteen), or grouped as in India (lakhs and
# crores: 1,00,000 and 12,34,567)
_GROUPED = re.compile(
    r"(?:[1-9][0-9]{0,2}(?:,[0-9]{3})+|[1-9][0-9]?(?:,[0-9]{2})+,[0-9]{3})(?:\.[0-9]+)?"
)


def count_text(text: str) -> str:
    """A whole-number cell (a quantity, a stock) with its commas read: thousands separators
    dropped (``1,000``), a lone decimal comma as a point (``1,00``, ``0,5``: a spreadsheet
    saved in a European locale), so that the caller's parse takes ``1,00`` as 1 and refuses
    ``0,5`` instead of reading 100 and 5. Any other comma is left for the parse to refuse.

    >>> count_text("1,000"), count_text("1,00,000"), count_text("1,00"), count_text("0,5")
    ('1000', '100000', '1.00', '0.5')
    """
    if "," not in text:
        return text
    if _GROUPED.fullmatch(text):
        return text.replace(",", "")
    if text.count(",") == 1 and "." not in text:
        return text.replace(",", ".")
    return text


DNP_VALUES = frozenset(
    {"dnp", "dnf", "nf", "np", "yes", "y", "true", "1", "x", "do not populate", "do not fit"}
)
# what EDA tools write in a Fitted column (Altium: "Fitted" / "Not Fitted")
FITTED_NOT = frozenset(
    {
        "no", "n", "false", "0", "dnp", "dnf", "nf", "np", "not fitted", "unfitted", "do not fit",
        # a Populate / Populated column (``bom_file``) says it in its own words
        "do not populate", "not populated", "unpopulated", "no pop", "nopop",
    }
)  # fmt: skip


def not_populated(value: str, *, fitted_column: bool = False) -> bool:
    """Whether a DNP cell marks the line not populated. A ``Fitted`` column means the opposite
    (``no`` there is not populated).

    >>> not_populated("DNP"), not_populated("yes"), not_populated(""), not_populated("no")
    (True, True, False, False)
    >>> not_populated("no", fitted_column=True), not_populated("yes", fitted_column=True)
    (True, False)
    >>> not_populated("Not Fitted", fitted_column=True), not_populated("Fitted", fitted_column=True)
    (True, False)
    >>> not_populated("Do-Not-Populate"), not_populated("not_fitted", fitted_column=True)
    (True, True)
    """
    text = " ".join(value.replace("_", " ").replace("-", " ").split()).lower()
    if fitted_column:
        return text in FITTED_NOT
    return text in DNP_VALUES
