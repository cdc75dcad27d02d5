"""A 5x7 bitmap font for printable ASCII, so stand-in images can show their request.

The emulator's pictures write the prompt, seed and steps on themselves; a tiny built-in
font keeps that standard-library only. Each glyph is seven rows of five pixels; a row is
one base-32 digit whose bits, high to low, are the pixels from left to right. A glyph
sits in a cell two rows taller: letters with a descender (g, p, q, y) drop into them.
"""

from __future__ import annotations

GLYPH_WIDTH = 5
GLYPH_HEIGHT = 7
CELL_HEIGHT = GLYPH_HEIGHT + 2  # room below the line for descenders
ADVANCE = GLYPH_WIDTH + 1  # one blank column between characters

_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUV"
_FIRST, _LAST = 0x20, 0x7E
# Seven digits per glyph, for " " (0x20) through "~" (0x7E) in order.
_TABLE = (
    "00000004444404AA00000AAVAVAA4FKE5U4OP248J3CIK8LID4400000"
    "2488842842224804LEL40044V4400000C48000V00000000CC01248G0"
    "EHJLPHE4C4444EEH1248VV2421HE26AIV22VGU11HE68GUHHEV124888"
    "EHHEHHEEHHF12C0CC0CC00CC0C48248G84200V0V008421248EH12404"
    "EH1DLLEEHHVHHHUHHUHHUEHGGGHESIHHHISVGGUGGVVGGUGGGEHGNHHF"
    "HHHVHHHE44444E72222ICHIKOKIHGGGGGGVHRLLHHHHHPLJHHEHHHHHE"
    "UHHUGGGEHHHLIDUHHUKIHFGGE11UV444444HHHHHHEHHHHHA4HHHLLLA"
    "HHA4AHHHHA4444V1248GVE88888E0G84210E22222E4AH0000000000V"
    "840000000E1FHFGGMPHHU00EGGHE11DJHHF00EHVGE698S888FHHHF1E"
    "GGMPHHH40C444E20622ICGGIKOKIC44444E00QLLHH00MPHHH00EHHHE"
    "UHHHUGGFHHHF1100MPGGG00EGE1U88S889600HHHJD00HHHA400HHLLA"
    "00HA4AHHHHHF1E00V248V244844244444448442448008L200"
)
_DESCENDERS = "gpqy"
_GLYPHS = tuple(
    (0, 0, *rows) if chr(_FIRST + i // GLYPH_HEIGHT) in _DESCENDERS else (*rows, 0, 0)
    for i in range(0, len(_TABLE), GLYPH_HEIGHT)
    for rows in [tuple(_DIGITS.index(d) for d in _TABLE[i : i + GLYPH_HEIGHT])]
)
assert len(_GLYPHS) == _LAST - _FIRST + 1
_UNKNOWN = _GLYPHS[ord("?") - _FIRST]


def printable(text: str) -> str:
    """``text`` as the font can draw it: whitespace becomes a space, the rest outside
    printable ASCII a ``?``."""
    return "".join(c if _FIRST <= ord(c) <= _LAST else " " if c.isspace() else "?" for c in text)


def glyph_rows(char: str) -> tuple[int, ...]:
    """The ``CELL_HEIGHT`` 5-bit rows of ``char``'s cell (``?`` for anything undrawable)."""
    code = ord(char)
    return _GLYPHS[code - _FIRST] if _FIRST <= code <= _LAST else _UNKNOWN
