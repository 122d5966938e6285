"""Text from other users is printed with every control character shown, never obeyed."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from hbchat.client.visible import visible

#: (what arrives, what is printed): each attack from issue #14, and the characters around them.
CASES = [
    ("plain text", "plain text"),
    ("clear \x1b[2J screen", "clear ^[[2J screen"),
    ("\x1b]0;pwned\x07", "^[]0;pwned^G"),  # OSC window title, ended by BEL
    ("\x1b]2;title\x1b\\", "^[]2;title^[\\"),  # OSC window title, ended by ST
    ("\x1b]52;c;cm0gLXJmIH4K\x07", "^[]52;c;cm0gLXJmIH4K^G"),  # OSC 52 clipboard write
    ("ding\x07", "ding^G"),
    ("abc\x08\x08\x08xyz", "abc^H^H^Hxyz"),
    ("nul\x00byte", "nul^@byte"),
    ("hi\r-- alice left (quit)", "hi^M-- alice left (quit)"),
    ("line\nbreak", "line^Jbreak"),
    ("tab\there", "tab^Ihere"),
    ("del\x7f", "del^?"),
    ("\x9b2J", "\\x9b2J"),  # the one-byte CSI
    ("\x80\x9d\x9f", "\\x80\\x9d\\x9f"),
    ("\u202eevil\u202c", "<U+202E>evil<U+202C>"),
    ("\u202a\u202b\u202d", "<U+202A><U+202B><U+202D>"),
    ("\u2066\u2067\u2068\u2069", "<U+2066><U+2067><U+2068><U+2069>"),
    ("\u200e\u200f\u061c", "<U+200E><U+200F><U+061C>"),
    ("para\u2028graph\u2029", "para<U+2028>graph<U+2029>"),
    ("héllo wörld ñ ß", "héllo wörld ñ ß"),
    ("日本語 مرحبا 🙂 👩\u200d💻", "日本語 مرحبا 🙂 👩\u200d💻"),
    ("\xa0non-breaking", "\xa0non-breaking"),
]


class VisibleTests(SynchronousTestCase):
    def test_each_control_character_is_rendered_visibly(self) -> None:
        for arrived, printed in CASES:
            self.assertEqual(visible(arrived), printed, repr(arrived))

    def test_nothing_a_terminal_obeys_survives_rendering(self) -> None:
        obeyed = {*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
        rendered = visible("".join(chr(code) for code in sorted(obeyed)))
        self.assertEqual([char for char in rendered if ord(char) in obeyed], [])
