"""Text that people read (client names in `client list`, audit reasons in `tokenmint audit`): what
must never reach a terminal as it is, and how it is shown instead."""

from __future__ import annotations

import re

# C0 controls (ESC starts the sequences that move the cursor and erase rows), DEL, C1 controls (0x9b
# is a one-byte CSI), Unicode line and paragraph separators, and the bidirectional overrides and
# isolates that reorder what a reader sees.
UNREADABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNREADABLE_BUT_LAYOUT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str, *, multiline: bool = False) -> str:
    """``text`` as a terminal shows it literally: each unreadable character as its Python escape
    (``\\x1b``, ``\\u202e``). ``multiline`` keeps newlines and tabs (the layout of our own output); a
    table cell keeps none, so that a client-chosen name cannot forge a row."""
    pattern = _UNREADABLE_BUT_LAYOUT if multiline else UNREADABLE
    return pattern.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)
