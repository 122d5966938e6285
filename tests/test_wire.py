"""Framing and the exact bytes of each line: pure functions, no reactor."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from hbchat import wire


class LineFramerTests(SynchronousTestCase):
    def test_complete_lines_are_returned_and_the_rest_is_kept(self) -> None:
        framer = wire.LineFramer(100)
        self.assertEqual(framer.feed(b"one\ntwo\nthr"), ([b"one", b"two"], False))
        self.assertEqual(framer.feed(b"ee\n"), ([b"three"], False))

    def test_cr_before_lf_is_dropped_but_not_elsewhere(self) -> None:
        framer = wire.LineFramer(100)
        self.assertEqual(framer.feed(b"a\r\nb\rc\n\r\r\n"), ([b"a", b"b\rc", b"\r"], False))

    def test_cr_and_lf_in_separate_reads(self) -> None:
        framer = wire.LineFramer(100)
        self.assertEqual(framer.feed(b"a\r"), ([], False))
        self.assertEqual(framer.feed(b"\n"), ([b"a"], False))

    def test_limit_counts_bytes_without_the_terminator(self) -> None:
        framer = wire.LineFramer(3)
        self.assertEqual(framer.feed(b"abc\nabc\r\n"), ([b"abc", b"abc"], False))
        self.assertEqual(framer.feed(b"abcd\n"), ([], True))

    def test_lines_before_an_overlong_line_are_kept(self) -> None:
        framer = wire.LineFramer(3)
        self.assertEqual(framer.feed(b"ok\r\nlong\nlater\n"), ([b"ok"], True))

    def test_unterminated_input_over_the_limit_overflows_at_once(self) -> None:
        framer = wire.LineFramer(3)
        self.assertEqual(framer.feed(b"ab"), ([], False))
        self.assertEqual(framer.feed(b"cd"), ([], True))

    def test_unterminated_input_one_over_the_limit_may_end_in_cr(self) -> None:
        framer = wire.LineFramer(3)
        self.assertEqual(framer.feed(b"abc\r"), ([], False))
        self.assertEqual(framer.feed(b"x"), ([], True))


class NickTests(SynchronousTestCase):
    def test_valid_nicks(self) -> None:
        for nick in [b"a", b"Z9", b"_-[]{}^|", b"x" * 32, b"0start", b"-dash"]:
            self.assertTrue(wire.is_valid_nick(nick), nick)

    def test_invalid_nicks(self) -> None:
        for nick in [b"", b"x" * 33, b"a b", b"a.b", b"a\n", "é".encode(), b"a@b", b"a\x00"]:
            self.assertFalse(wire.is_valid_nick(nick), nick)

    def test_nick_key_ignores_letter_case(self) -> None:
        self.assertEqual(wire.nick_key(b"AlIcE[]"), wire.nick_key(b"alice[]"))

    def test_session_token_is_base64url_with_at_least_128_bits(self) -> None:
        token = wire.new_session_token()
        self.assertRegex(token, r"^[A-Za-z0-9_-]{22,}$")
        self.assertNotEqual(token, wire.new_session_token())


class FormatTests(SynchronousTestCase):
    def test_hello(self) -> None:
        self.assertEqual(wire.hello(30, 90), b"HELLO hbchat/1 ping=30 timeout=90\n")
        self.assertEqual(
            wire.hello(0.5, 1.25, auth_required=True), b"HELLO hbchat/1 ping=0.5 timeout=1.25 auth=required\n"
        )

    def test_events(self) -> None:
        self.assertEqual(wire.msg(7, b"al", b"hi there"), b"MSG 7 al hi there\n")
        self.assertEqual(wire.join(8, b"al"), b"JOIN 8 al\n")
        self.assertEqual(wire.left(9, b"al", "timeout"), b"LEFT 9 al timeout\n")

    def test_users_are_sorted_regardless_of_case(self) -> None:
        self.assertEqual(wire.users([b"bob", b"Alice", b"carol", b"Bea"]), b"USERS Alice Bea bob carol\n")

    def test_pong_echoes_what_followed_the_verb(self) -> None:
        self.assertEqual(wire.pong(b" 42"), b"PONG 42\n")
        self.assertEqual(wire.pong(b""), b"PONG\n")

    def test_unknown_command_names_the_verb(self) -> None:
        self.assertEqual(wire.err_unknown_command(b"FOO"), b"ERR 400 unknown command FOO\n")


class DecimalTests(SynchronousTestCase):
    def test_a_decimal_up_to_the_bound_is_its_value(self) -> None:
        self.assertEqual(wire.decimal_at_most(b"0", 10), 0)
        self.assertEqual(wire.decimal_at_most(b"007", 10), 7)
        self.assertEqual(wire.decimal_at_most(b"10", 10), 10)

    def test_a_decimal_above_the_bound_is_the_bound_however_long(self) -> None:
        self.assertEqual(wire.decimal_at_most(b"11", 10), 10)
        self.assertEqual(wire.decimal_at_most(b"9" * 21, 10**20), 10**20)
        self.assertEqual(wire.decimal_at_most(b"9" * 100_000, 5), 5)
        self.assertEqual(wire.decimal_at_most(b"0" * 100 + b"3", 5), 3)

    def test_anything_else_is_none(self) -> None:
        for text in [b"", b"-1", b"+1", b"1.0", b"1e3", b" 1", b"x", "\u0663".encode()]:
            self.assertIsNone(wire.decimal_at_most(text, 10), text)
