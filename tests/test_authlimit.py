"""
Bounded login work (hbchat.authlimit): password checks at once and waiting, failed logins
per address, and what the server says when a login is refused unchecked.
"""

from __future__ import annotations

import os
import re
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from hbchat.auth.authlimit import (
    BACKOFF_DELAY_MAX,
    FAILURE_WINDOW,
    BoundedChecker,
    CheckerBusyError,
    FailureLimit,
    address_key,
)
from hbchat.auth.passwords import hash_password, write_entries
from hbchat.testing import FakeServer
from tests.test_auth import CHEAP, UNAUTHORIZED, PendingChecker
from tests.test_integration import DEADLINE, within
from tests.test_metrics import scrape
from tests.test_twistd import TwistdProcess, TwistdTestCase, freePort

BUSY = b"ERR 503 busy checking passwords, try again later"
BACKOFF = b"ERR 503 too many failed logins from your address, try again later"


def request(checker: ICredentialsChecker, nick: bytes = b"alice") -> Deferred[Any]:
    result: Deferred[Any] = checker.requestAvatarId(UsernamePassword(nick, b"pw"))
    return result


class BoundedCheckerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.inner = PendingChecker()
        self.checker = BoundedChecker(self.inner, concurrency=2, waiting=1)

    def test_it_is_a_credentials_checker(self) -> None:
        self.assertTrue(verifyObject(ICredentialsChecker, self.checker))
        self.assertEqual(self.checker.credentialInterfaces, self.inner.credentialInterfaces)

    def test_at_most_concurrency_checks_run_at_once(self) -> None:
        request(self.checker, b"a")
        request(self.checker, b"b")
        request(self.checker, b"c")
        self.assertEqual([nick for nick, _, _ in self.inner.requests], [b"a", b"b"])
        self.assertEqual((self.checker.running, self.checker.waiting), (2, 1))

    def test_a_waiting_check_starts_when_one_ends_first_come_first_served(self) -> None:
        first = request(self.checker, b"a")
        request(self.checker, b"b")
        third = request(self.checker, b"c")
        self.inner.requests[0][2].callback(b"a")
        self.assertEqual(self.successResultOf(first), b"a")
        self.assertEqual([nick for nick, _, _ in self.inner.requests], [b"a", b"b", b"c"])
        self.inner.requests[2][2].errback(UnauthorizedLogin())
        self.failureResultOf(third, UnauthorizedLogin)
        self.assertEqual((self.checker.running, self.checker.waiting), (1, 0))

    def test_beyond_the_queue_a_check_is_refused_at_once(self) -> None:
        for nick in (b"a", b"b", b"c"):
            request(self.checker, nick)
        self.failureResultOf(request(self.checker, b"d"), CheckerBusyError)
        self.assertEqual(len(self.inner.requests), 2)
        self.assertEqual(self.checker.refused, 1)

    def test_a_cancelled_waiting_check_leaves_the_queue(self) -> None:
        request(self.checker, b"a")
        request(self.checker, b"b")
        waiting = request(self.checker, b"c")
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)
        self.assertEqual(self.checker.waiting, 0)
        self.inner.requests[0][2].callback(b"a")
        self.assertEqual(len(self.inner.requests), 2)

    def test_a_cancelled_running_check_holds_its_slot_until_it_ends(self) -> None:
        running = request(self.checker, b"a")
        running.cancel()
        self.failureResultOf(running, CancelledError)
        self.assertEqual(self.checker.running, 1)
        self.inner.requests[0][2].callback(b"a")
        self.assertEqual(self.checker.running, 0)


class FailureLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.limit = FailureLimit(self.clock, limit=3)

    def test_an_address_may_fail_limit_times_then_must_wait(self) -> None:
        for _ in range(2):
            self.limit.failed("192.0.2.1")
            self.assertFalse(self.limit.refuse("192.0.2.1"))
        self.limit.failed("192.0.2.1")
        self.assertTrue(self.limit.refuse("192.0.2.1"))
        self.assertFalse(self.limit.refuse("192.0.2.2"))
        self.assertEqual((self.limit.refused, self.limit.blocked()), (1, 1))

    def test_one_more_try_comes_back_after_window_over_limit_seconds(self) -> None:
        for _ in range(3):
            self.limit.failed("192.0.2.1")
        self.clock.advance(FAILURE_WINDOW / 3 - 0.5)
        self.assertTrue(self.limit.refuse("192.0.2.1"))
        self.clock.advance(0.5)
        self.assertFalse(self.limit.refuse("192.0.2.1"))
        self.limit.failed("192.0.2.1")
        self.assertTrue(self.limit.refuse("192.0.2.1"))

    def test_after_the_window_everything_is_forgotten(self) -> None:
        for _ in range(3):
            self.limit.failed("192.0.2.1")
        self.clock.advance(FAILURE_WINDOW)
        self.assertEqual(self.limit.wait("192.0.2.1"), 0)
        self.assertEqual(len(self.limit), 0)

    def test_the_table_of_addresses_is_bounded(self) -> None:
        self.limit.maxTracked = 5
        for number in range(20):
            self.limit.failed(f"192.0.2.{number}")
        self.assertEqual(len(self.limit), 5)

    def test_addresses_count_by_ip_loopback_included(self) -> None:
        self.assertEqual(address_key(IPv4Address("TCP", "127.0.0.1", 4000)), "127.0.0.1")
        self.assertEqual(address_key(IPv4Address("TCP", "192.0.2.1", 4000)), "192.0.2.1")
        self.assertEqual(address_key(UNIXAddress(b"/run/hbchat.sock")), "unix")

    def test_an_ipv6_address_counts_by_its_64(self) -> None:
        first = address_key(IPv6Address("TCP", "2001:db8:1:2::5", 4000))
        self.assertEqual(first, "2001:db8:1:2::/64")
        self.assertEqual(address_key(IPv6Address("TCP", "2001:db8:1:2:ffff::1", 4000)), first)
        self.assertEqual(address_key(IPv6Address("TCP", "::1", 4000)), "::1")
        self.assertEqual(address_key(IPv6Address("TCP", "::ffff:192.0.2.1", 4000)), "192.0.2.1")


class ServerTests(SynchronousTestCase):
    def test_a_nick_beyond_the_queue_is_told_busy_and_closed(self) -> None:
        checker = PendingChecker()
        server = FakeServer(checker=checker, auth_checks=1, auth_queue=1)
        peers = [server.connect() for _ in range(3)]
        for peer in peers:
            peer.received()
            peer.sendLine("NICK alice pw")
        self.assertEqual(peers[2].received(), [BUSY])
        self.assertTrue(peers[2].closing)
        self.assertEqual(len(checker.requests), 1)
        peers[2].finishClose()
        metrics = scrape(server.factory)
        self.assertEqual(metrics["hbchat_connections_closed_total{reason=auth_busy}"], 1)
        self.assertEqual(metrics["hbchat_auth_refused_total{reason=busy}"], 1)
        self.assertEqual(metrics["hbchat_auth_checks_running"], 1)
        self.assertEqual(metrics["hbchat_auth_checks_waiting"], 1)
        self.assertEqual(server.factory.stats.authFailures, 0)

    def test_a_connection_that_ends_while_its_check_waits_leaves_the_queue(self) -> None:
        checker = PendingChecker()
        server = FakeServer(checker=checker, auth_checks=1, auth_queue=1)
        first, second = server.connect(), server.connect()
        first.sendLine("NICK alice pw")
        second.sendLine("NICK bob pw")
        second.lose()
        bounded = server.factory.checker
        assert isinstance(bounded, BoundedChecker)
        self.assertEqual(bounded.waiting, 0)
        checker.requests[0][2].errback(UnauthorizedLogin())
        self.assertEqual(len(checker.requests), 1)

    def test_an_address_that_used_up_its_failures_is_refused_unchecked(self) -> None:
        checker = PendingChecker()
        server = FakeServer(checker=checker, auth_failures=2)
        for _ in range(2):
            peer = server.connect()
            peer.received()
            peer.sendLine("NICK alice wrong")
            checker.requests[-1][2].errback(UnauthorizedLogin())
            self.assertEqual(peer.received(), [UNAUTHORIZED])
        late = server.connect()
        late.received()
        late.sendLine("NICK alice right")
        self.assertEqual(late.received(), [])
        server.advance(BACKOFF_DELAY_MAX)
        self.assertEqual(late.received(), [BACKOFF])
        self.assertTrue(late.closing)
        self.assertEqual(len(checker.requests), 2)
        late.finishClose()
        metrics = scrape(server.factory)
        self.assertEqual(metrics["hbchat_auth_refused_total{reason=backoff}"], 1)
        self.assertEqual(metrics["hbchat_auth_addresses_backing_off"], 1)
        self.assertEqual(metrics["hbchat_connections_closed_total{reason=auth_backoff}"], 1)

    def test_the_refusal_waits_until_the_address_may_try_again_at_most_backoff_delay_max(self) -> None:
        checker = PendingChecker()
        server = FakeServer(checker=checker, auth_failures=10)  # one more try every 6 s
        for _ in range(10):
            peer = server.connect()
            peer.sendLine("NICK alice wrong")
            checker.requests[-1][2].errback(UnauthorizedLogin())
        server.advance(3)
        late = server.connect()
        late.received()
        late.sendLine("NICK alice right")
        late.sendLine("WHO")
        server.advance(2.9)
        self.assertEqual(late.received(), [])
        self.assertFalse(late.closing)
        server.advance(0.1)
        self.assertEqual(late.received(), [BACKOFF])
        self.assertTrue(late.closing)

    def test_the_address_may_try_again_after_its_backoff(self) -> None:
        checker = PendingChecker()
        server = FakeServer(checker=checker, auth_failures=2)
        peer = server.connect()
        peer.received()
        for _ in range(2):
            peer.sendLine("NICK alice wrong")
            checker.requests[-1][2].errback(UnauthorizedLogin())
        server.advance(FAILURE_WINDOW / 2)
        peer = server.connect()
        peer.received()
        peer.sendLine("NICK alice right")
        checker.requests[-1][2].callback(b"alice")
        self.assertTrue(peer.received()[0].startswith(b"WELCOME alice "))

    def test_without_auth_nothing_is_limited(self) -> None:
        server = FakeServer()
        for number in range(20):
            peer = server.connect()
            peer.received()
            self.assertTrue(peer.register(f"n{number}")[0].startswith(b"WELCOME "))


class TwistdLoginBoundsTests(TwistdTestCase):
    """Over a real loopback socket: a guesser's address is held back after --auth-failures."""

    @inlineCallbacks
    def test_after_auth_failures_the_address_gets_err_503_and_is_closed(self) -> Any:
        path = os.path.abspath(self.mktemp())
        write_entries(path, {"tester": hash_password("pass-word", **CHEAP)})
        port = freePort()
        process = TwistdProcess()
        arguments = [self.twistd, "-n", "--pidfile=", "hbchat", "--listen", f"tcp:{port}:interface=127.0.0.1"]
        arguments += ["--auth", f"hbpasswd:{path}", "--auth-failures", "2"]
        transport = reactor.spawnProcess(
            process, self.twistd, arguments, env=dict(os.environ), path=self.freshDirectory()
        )
        self.addCleanup(self._kill, process, transport)
        guesser = yield self._connect(process, port)
        yield guesser.waitForLine(r"HELLO .*")
        guesser.sendLine("NICK tester wrong")
        guesser.sendLine("NICK tester wrong-again")
        yield guesser.waitForLine("ERR 401 .*")
        yield guesser.waitForLine("ERR 401 .*", start=guesser.indexOf("ERR 401 .*") + 1)
        honest = yield self._connect(process, port)
        yield honest.waitForLine(r"HELLO .*")
        honest.sendLine("NICK tester pass-word")
        yield honest.waitForLine(re.escape(BACKOFF.decode()))
        yield within(honest.whenLost(), DEADLINE, "the close after ERR 503")
