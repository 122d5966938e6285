"""What the terminal client prints: every line it shows is safe to show."""

from __future__ import annotations

import io

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from hbchat.client.cli import PIPE_GIVE_UP_AFTER, give_up_after, parse_arguments
from hbchat.client.console import Console
from hbchat.client.factory import ChatClientFactory

ESCAPES = "\x1b[2J\x1b]0;title\x07\x1b]52;c;Zm9v\x07\x08\x00\r\x7f\x9b\u202e"
SHOWN = "^[[2J^[]0;title^G^[]52;c;Zm9v^G^H^@^M^?\\x9b<U+202E>"


class ConsoleTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()
        self.console = Console(self.out, self.err, Clock(), interactive=True)

    def printed(self) -> str:
        return self.out.getvalue() + self.err.getvalue()


class EscapeInjectionTests(ConsoleTestCase):
    """Issue #14 item 6: another user's control characters reach the terminal rendered."""

    def assertRendered(self) -> None:
        printed = self.printed()
        self.assertIn(SHOWN, printed)
        self.assertEqual([char for char in printed if char < " " and char != "\n"], [])
        self.assertEqual([char for char in printed if "\x7f" <= char <= "\x9f" or char == "\u202e"], [])

    def test_a_message_text_is_rendered(self) -> None:
        self.console.message(1, "mallory", ESCAPES, False)
        self.assertRendered()

    def test_a_cr_cannot_overwrite_the_line_with_a_fake_notice(self) -> None:
        self.console.message(1, "mallory", "hi\r-- alice left (quit)", False)
        self.assertTrue(self.out.getvalue().endswith(" <mallory> hi^M-- alice left (quit)\n"))

    def test_a_private_message_is_rendered(self) -> None:
        self.console.private("mallory", ESCAPES)
        self.assertRendered()

    def test_nicks_are_rendered_wherever_they_appear(self) -> None:
        nick = "m" + ESCAPES
        self.console.message(1, nick, "x", False)
        self.console.private(nick, "x")
        self.console.joined(2, nick)
        self.console.left(3, nick, "quit")
        self.console.users([nick, "bob"])
        self.assertEqual(self.out.getvalue().count(SHOWN), 5)
        self.assertRendered()

    def test_a_server_error_text_is_rendered(self) -> None:
        self.console.serverError(400, ESCAPES)
        self.assertRendered()

    def test_a_reconnect_reason_is_rendered(self) -> None:
        self.console.reconnecting(1.5, 1, "the server closed the connection (" + ESCAPES + ")")
        self.assertRendered()

    def test_a_reason_for_giving_up_is_rendered_on_stderr(self) -> None:
        self.console.gaveUp("the server refused us: ERR 432 " + ESCAPES)
        self.assertTrue(self.err.getvalue().startswith("hbchat-client: "))
        self.assertRendered()


class MessagesTests(ConsoleTestCase):
    """Issue #15 item 10: the client says what it knows, and shows what the user did."""

    def setUp(self) -> None:
        super().setUp()
        self.factory = ChatClientFactory("carol", self.console, clock=Clock())
        self.console.factory = self.factory

    def test_a_tell_shows_the_sender_what_went_out(self) -> None:
        self.console.lineTyped("/tell dave psst, over here")
        lines = self.out.getvalue().splitlines()
        self.assertRegex(lines[0], r"^\d\d:\d\d:\d\d -> \*dave\* psst, over here$")
        self.assertEqual(lines[1:], ["-- not connected: will send when reconnected"])
        self.assertEqual(list(self.factory.session.outbox), [b"TELL dave psst, over here"])

    def test_a_refused_tell_is_not_shown_as_sent(self) -> None:
        self.console.lineTyped("/tell dave " + "x" * 5000)
        self.assertNotIn("-> *dave*", self.out.getvalue())
        self.assertIn("-- not sent: message too long", self.out.getvalue())

    def test_each_retry_line_gives_the_reason(self) -> None:
        self.console.disconnected("connection lost: the connection broke")
        self.console.reconnecting(0.42, 1, "connection lost: the connection broke")
        self.console.reconnecting(1.9, 2, "could not connect: connection refused")
        self.assertEqual(
            self.out.getvalue().splitlines(),
            [
                "-- connection lost: the connection broke; reconnecting in 0.4 s (attempt 1)",
                "-- could not connect: connection refused; reconnecting in 1.9 s (attempt 2)",
            ],
        )

    def test_a_resume_counts_messages_not_events(self) -> None:
        self.console.resumed(1, True, 0)
        self.console.resumed(0, True, 0)
        self.assertEqual(
            self.out.getvalue().splitlines(), ["-- resumed: 1 missed message", "-- resumed: 0 missed messages"]
        )

    def test_a_partial_replay_says_how_many_events_are_gone(self) -> None:
        self.console.resumed(2, False, 5)
        self.assertEqual(
            self.out.getvalue().splitlines()[1],
            "-- history gap: 5 earlier events (messages, joins or leaves) were too old for the server's history "
            "and are not shown",
        )

    def test_a_partial_replay_of_unknown_extent_claims_no_number(self) -> None:
        self.console.resumed(0, False, None)
        self.assertEqual(
            self.out.getvalue().splitlines()[1],
            "-- history gap: the server could not replay everything since we left; some events are missing",
        )

    def test_a_lost_session_does_not_claim_that_messages_were_lost(self) -> None:
        self.console.historyLost()
        shown = self.out.getvalue()
        self.assertNotIn("were lost", shown)
        self.assertIn("the server no longer knew", shown)


class GiveUpAfterOptionTests(SynchronousTestCase):
    """Issue #15 item 8: how long a pipe waits for a connection is an option with a documented default."""

    def resolved(self, interactive: bool, *options: str) -> float | None:
        return give_up_after(parse_arguments(["tcp:127.0.0.1:1", "--nick", "bot", *options]), interactive)

    def test_a_pipe_gives_up_after_60_seconds_by_default(self) -> None:
        self.assertEqual(PIPE_GIVE_UP_AFTER, 60.0)
        self.assertEqual(self.resolved(False), 60.0)

    def test_a_terminal_never_gives_up_by_default(self) -> None:
        self.assertIsNone(self.resolved(True))

    def test_the_option_sets_the_time_in_either_mode(self) -> None:
        self.assertEqual(self.resolved(False, "--give-up-after", "2.5"), 2.5)
        self.assertEqual(self.resolved(True, "--give-up-after", "300"), 300.0)

    def test_never_keeps_trying(self) -> None:
        self.assertIsNone(self.resolved(False, "--give-up-after", "never"))
