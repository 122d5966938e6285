"""Sessions in grace are bounded, in all (--max-grace) and per address (--max-grace-per-ip)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from hbchat.server.sessions import Session, SessionTable
from hbchat.testing import FakeServer
from tests.test_metrics import scrape
from tests.test_resume import token_and_seq


class GraceTableTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.expired: list[bytes] = []
        self.table: SessionTable[object] = SessionTable(
            self.clock, 120, lambda session: self.expired.append(session.nick), max_grace=3, max_grace_per_host=2
        )

    def dropped(self, nick: str, host: str | None) -> Session[object]:
        session = self.table.open(nick.encode(), object())
        self.table.detach(session, "error", host)
        return session

    def test_at_the_total_bound_the_oldest_session_in_grace_ends(self) -> None:
        for number in range(4):
            self.dropped(f"n{number}", None)
        self.assertEqual(self.expired, [b"n0"])
        self.assertFalse(self.table.nick_taken(b"n0"))
        self.assertTrue(self.table.nick_taken(b"n3"))
        self.assertEqual((self.table.in_grace, self.table.evicted["max_grace"]), (3, 1))

    def test_at_the_per_address_bound_that_addresses_oldest_ends(self) -> None:
        self.dropped("other", "192.0.2.9")
        self.dropped("a1", "192.0.2.1")
        self.dropped("a2", "192.0.2.1")
        self.dropped("a3", "192.0.2.1")
        self.assertEqual(self.expired, [b"a1"])
        self.assertTrue(self.table.nick_taken(b"other"))
        self.assertEqual(self.table.evicted["max_grace_per_ip"], 1)

    def test_exempt_addresses_count_only_in_all(self) -> None:
        self.dropped("a", None)
        self.dropped("b", None)
        self.dropped("c", None)
        self.assertEqual(self.expired, [])

    def test_a_resumed_session_no_longer_counts(self) -> None:
        first = self.dropped("a1", "192.0.2.1")
        self.table.attach(first, object())
        self.dropped("a2", "192.0.2.1")
        self.dropped("a3", "192.0.2.1")
        self.assertEqual(self.expired, [])
        self.assertEqual(self.table.in_grace, 2)

    def test_an_ended_session_no_longer_counts(self) -> None:
        self.clock.advance(1)
        self.dropped("a1", "192.0.2.1")
        self.clock.advance(120)
        self.assertEqual(self.expired, [b"a1"])
        self.dropped("a2", "192.0.2.1")
        self.dropped("a3", "192.0.2.1")
        self.assertEqual((self.expired, self.table.in_grace), ([b"a1"], 2))

    def test_an_early_end_cancels_its_timer(self) -> None:
        for number in range(4):
            self.dropped(f"n{number}", None)
        self.clock.advance(120)
        self.assertEqual(self.expired, [b"n0", b"n1", b"n2", b"n3"])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class ServerGraceBoundTests(SynchronousTestCase):
    def test_register_and_drop_cycles_hold_at_most_max_grace_sessions(self) -> None:
        server = FakeServer(max_grace=5)
        tokens = []
        for number in range(50):
            peer = server.connect()
            peer.received()
            tokens.append(token_and_seq(peer.register(f"user{number}")[0])[0])
            peer.lose()
        self.assertEqual(server.factory.chat.sessions.in_grace, 5)
        metrics = scrape(server.factory)
        self.assertEqual(metrics["hbchat_sessions_in_grace"], 5)
        self.assertEqual(metrics["hbchat_sessions_grace_evicted_total{bound=max_grace}"], 45)
        again = server.connect()
        again.received()
        self.assertTrue(again.register("user0")[0].startswith(b"WELCOME user0 "))
        late = server.connect()
        late.received()
        late.sendLine(b"RESUME " + tokens[1] + b" 0")
        self.assertEqual(late.received(), [b"ERR 404 unknown session"])
        recent = server.connect()
        recent.received()
        recent.sendLine(b"RESUME " + tokens[49] + b" 0")
        self.assertTrue(recent.received()[0].startswith(b"WELCOME user49 "))
