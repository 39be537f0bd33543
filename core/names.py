"""Names people read (orgs, projects, users, keys, budgets, usernames) must show what they are:
no control characters, no bidi overrides or isolates (U+202A-U+202E, U+2066-U+2069: they make
"resu" read as "user"), no zero-width or other invisible format characters (U+200B-U+200F,
U+2060, U+FEFF...), no line separators and no lone surrogates.

    name_problem("acme")            -> None
    name_problem("ac\u202eme")      -> "contains U+202E RIGHT-TO-LEFT OVERRIDE (invisible or
                                        control characters are not allowed)"
"""

from __future__ import annotations

import unicodedata

BANNED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def name_problem(text: str) -> str | None:
    """Why ``text`` is not an acceptable name (None when it is)."""
    if text.isascii() and text.isprintable():  # no ASCII character is Cf, Cs, Co, Zl, Zp
        return None
    for ch in text:
        if unicodedata.category(ch) in BANNED_CATEGORIES:
            label = unicodedata.name(ch, "control character")
            return (
                f"contains U+{ord(ch):04X} {label} "
                "(invisible or control characters are not allowed)"
            )
    return None
