"""One vocabulary of close reasons (hbchat.closereasons): the label, the LEFT word, resumability, the words."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from hbchat import wire
from hbchat.closereasons import CLOSE_LABELS, PURPOSES, RESUMABLE_ENDINGS, CloseReason
from hbchat.ops.stats import CLOSE_REASONS
from hbchat.server import closes, sessions
from hbchat.testing import FakeServer


class VocabularyTests(SynchronousTestCase):
    def test_every_reason_has_one_label_and_finds_itself_by_it(self) -> None:
        self.assertEqual(len(set(CLOSE_LABELS)), len(CloseReason))
        for reason in CloseReason:
            self.assertIs(CloseReason.by_label(reason.label), reason)
        self.assertIsNone(CloseReason.by_label("no such reason"))

    def test_the_metric_labels_are_a_view_of_the_reasons(self) -> None:
        self.assertIs(CLOSE_REASONS, CLOSE_LABELS)

    def test_the_log_words_are_a_view_of_the_reasons(self) -> None:
        self.assertIs(closes.PURPOSES, PURPOSES)
        self.assertEqual(PURPOSES["shutdown"], CloseReason.SHUTDOWN.why)

    def test_the_resumable_endings_are_a_view_of_the_reasons(self) -> None:
        self.assertEqual(sessions.RESUMABLE_ENDINGS, RESUMABLE_ENDINGS)
        self.assertEqual(RESUMABLE_ENDINGS, frozenset({"timeout", "error", "slow"}))

    def test_a_line_too_long_is_counted_as_such_and_announced_as_an_error(self) -> None:
        reason = CloseReason.LINE_TOO_LONG
        self.assertEqual((reason.label, reason.left, reason.resumable), ("line_too_long", "error", True))

    def test_a_quit_ends_the_session(self) -> None:
        self.assertFalse(CloseReason.QUIT.resumable)

    def test_a_close_the_transport_explains_has_no_words_of_its_own(self) -> None:
        self.assertIsNone(CloseReason.ERROR.why)
        self.assertIsNone(CloseReason.TLS_ERROR.why)


class HandedInTests(SynchronousTestCase):
    def test_a_close_is_counted_under_the_reason_handed_in_not_the_bytes_written(self) -> None:
        server = FakeServer()
        peer = server.registered("alice")
        peer.protocol.closeWith(b"BYE something new\n", CloseReason.KICKED)
        peer.finishClose()
        self.assertEqual(server.factory.stats.closes["kicked"], 1)

    def test_a_registration_timeout_is_counted_as_such(self) -> None:
        server = FakeServer(register_timeout=5)
        peer = server.connect()
        server.advance(6)
        self.assertIn(wire.ERR_REGISTRATION_TIMEOUT.rstrip(b"\n"), peer.received())
        peer.finishClose()
        self.assertEqual(server.factory.stats.closes["register_timeout"], 1)
