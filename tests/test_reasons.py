"""Connection failures in words for a person, on every retry line (issue #15 item 8)."""

from __future__ import annotations

from twisted.internet import error
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from hbchat.client.reasons import describe

#: (what Twisted reports, what the user reads)
CASES: list[tuple[BaseException, str]] = [
    (error.ConnectionRefusedError(111, "Connection refused"), "connection refused"),
    (error.TCPTimedOutError(110, "Connection timed out"), "timed out"),
    (error.TimeoutError(string=""), "timed out"),
    (error.DNSLookupError("chat.example.invalid"), "DNS lookup failed for chat.example.invalid"),
    (error.DNSLookupError(), "DNS lookup failed"),
    (error.NoRouteError(113, "No route to host"), "no route to host"),
    (error.ConnectError(2, "No such file or directory"), "no such file or directory"),
    (error.ConnectError(13), "permission denied"),
    (error.ConnectionDone(), "the server closed the connection"),
    (error.ConnectionLost(), "the connection broke"),
    (error.ConnectionLost("Connection reset by peer"), "the connection broke: Connection reset by peer"),
    (error.ConnectionAborted(), "the connection was aborted"),
    (ValueError("Something odd."), "something odd"),
    (ValueError(), "ValueError"),
]


class DescribeTests(SynchronousTestCase):
    def test_each_failure_is_worded_for_a_person(self) -> None:
        for value, words in CASES:
            self.assertEqual(describe(Failure(value)), words, repr(value))

    def test_no_twisted_boilerplate_reaches_the_user(self) -> None:
        for value, _ in CASES:
            words = describe(Failure(value))
            for boilerplate in ("other side", "non-clean", "fashion", "111:", "Unexpected error"):
                self.assertNotIn(boilerplate, words)
