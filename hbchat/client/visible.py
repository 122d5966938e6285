"""
Text from the network made safe to print on a terminal: every control character is shown,
never obeyed.

Another user's nick or text (or a server's ERR text) could otherwise carry terminal escape
sequences: ``ESC [2J`` clears the screen, an OSC sets the window title or (OSC 52) writes
the clipboard, BEL rings, BS or CR overwrite what is already on the line with a forged
``-- alice left (quit)``, and Unicode bidi overrides reorder what follows.  :func:`visible`
replaces each such character with a visible spelling:

- C0 controls and DEL in caret notation: ESC is ``^[``, BEL ``^G``, BS ``^H``, CR ``^M``,
  NUL ``^@``, TAB ``^I``, DEL ``^?``;
- C1 controls (U+0080 to U+009F, CSI U+009B among them) as ``\\x9b``;
- bidi controls (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069) and the
  Unicode line and paragraph separators (U+2028, U+2029) as ``<U+202E>``.

Everything else, letters of every script and emoji included, is printed as it is.
"""

from __future__ import annotations

#: Characters that move the cursor, reorder text or start a terminal command.
_BIDI_AND_SEPARATORS = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029)


def _spelling(code: int) -> str:
    if code < 0x20:
        return "^" + chr(code + 0x40)
    if code == 0x7F:
        return "^?"
    if code <= 0x9F:
        return f"\\x{code:02x}"
    return f"<U+{code:04X}>"


#: ``str.translate`` table: code point to its visible spelling.
_TABLE = {code: _spelling(code) for code in (*range(0x20), *range(0x7F, 0xA0), *_BIDI_AND_SEPARATORS)}


def visible(text: str) -> str:
    """``text`` with every control character replaced by a visible spelling of it."""
    return text.translate(_TABLE)
