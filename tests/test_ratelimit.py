"""Per-connection rate limits (--rate, --burst, PING strikes): ERR 429, then BYE kicked."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from hbchat import wire
from hbchat.ratelimit import MAX_STRIKES, STRIKE_MEMORY, Bucket, credit_left, ping_bucket, strikes_after
from hbchat.testing import FakeServer


class BucketTests(SynchronousTestCase):
    def test_a_full_bucket_gives_its_burst_at_once_and_then_refuses(self) -> None:
        bucket, full_at, taken = Bucket(rate=10, burst=5), 0.0, 0
        while (later := bucket.take(full_at, 100.0)) is not None:
            full_at, taken = later, taken + 1
        self.assertEqual(taken, 5)

    def test_tokens_come_back_at_the_rate(self) -> None:
        bucket = Bucket(rate=10, burst=1)
        full_at = bucket.take(0.0, 100.0)
        assert full_at is not None
        self.assertIsNone(bucket.take(full_at, 100.04))
        self.assertIsNotNone(bucket.take(full_at, 100.1))

    def test_a_refused_take_costs_nothing(self) -> None:
        bucket = Bucket(rate=1, burst=1)
        full_at = bucket.take(0.0, 100.0)
        assert full_at is not None
        for _ in range(100):
            self.assertIsNone(bucket.take(full_at, 100.4))
        self.assertIsNotNone(bucket.take(full_at, 101.0))

    def test_sustained_rate_is_the_rate(self) -> None:
        bucket, full_at, taken = Bucket(rate=100, burst=200), 0.0, 0
        for step in range(10_000):  # ten seconds, a try every millisecond
            later = bucket.take(full_at, 1000.0 + step / 1000)
            if later is not None:
                full_at, taken = later, taken + 1
        self.assertTrue(1195 <= taken <= 1201, taken)  # the burst, plus 100 a second

    def test_wait_says_when_the_next_token_comes(self) -> None:
        bucket = Bucket(rate=4, burst=2)
        full_at = 0.0
        for _ in range(2):
            later = bucket.take(full_at, 10.0)
            assert later is not None
            full_at = later
        wait = bucket.wait(full_at, 10.0)
        self.assertAlmostEqual(wait, 0.25)
        self.assertIsNone(bucket.take(full_at, 10.0))
        self.assertIsNotNone(bucket.take(full_at, 10.0 + wait))

    def test_a_token_may_come_half_an_interval_early_but_never_beyond_the_burst(self) -> None:
        bucket = Bucket(rate=1, burst=1)
        full_at = bucket.take(0.0, 100.0)
        assert full_at is not None
        self.assertIsNone(bucket.take(full_at, 100.49))
        self.assertIsNotNone(bucket.take(full_at, 100.5))

    def test_a_fresh_bucket_gives_its_whole_burst_at_real_clock_values(self) -> None:
        # Near 1.7e9 s, floats are 2**-22 s apart: a token that is due must not be lost to rounding.
        for rate in range(1, 201):
            for burst in (1, 2, 3, 200):
                bucket, full_at, taken = Bucket(rate, burst), 0.0, 0
                while (later := bucket.take(full_at, 1763795000.5)) is not None:
                    full_at, taken = later, taken + 1
                self.assertEqual(taken, burst, (rate, burst))

    def test_a_burst_of_one_gives_a_token_each_interval_at_real_clock_values(self) -> None:
        for rate in (1, 5, 6, 9, 13, 17, 100):
            bucket, full_at, now = Bucket(rate, 1), 0.0, 1763795000.5
            for _ in range(50):
                later = bucket.take(full_at, now)
                self.assertIsNotNone(later, rate)
                assert later is not None
                full_at = later
                now += bucket.wait(full_at, now)

    def test_ping_budget_is_twice_per_interval_but_at_least_once_a_second(self) -> None:
        self.assertEqual(ping_bucket(30).rate, 1.0)
        self.assertEqual(ping_bucket(0.5).rate, 4.0)

    def test_strikes_are_forgotten_after_a_quiet_while(self) -> None:
        self.assertEqual(strikes_after(3, 100.0, 100.0 + STRIKE_MEMORY / 2), 4)
        self.assertEqual(strikes_after(3, 100.0, 100.0 + STRIKE_MEMORY), 1)


class PauseCreditTests(SynchronousTestCase):
    """The server's own pauses are a credit: the lines sent meanwhile may arrive at once."""

    def test_a_credit_lets_the_bucket_owe_that_many_seconds_more(self) -> None:
        bucket, full_at, taken = Bucket(rate=10, burst=5), 0.0, 0
        while (later := bucket.take(full_at, 100.0, credit=3.0)) is not None:
            full_at, taken = later, taken + 1
        self.assertEqual(taken, 5 + 30)

    def test_a_credit_is_kept_until_the_bucket_has_been_drawn_on_after_the_pause(self) -> None:
        self.assertEqual(credit_left(3.0, full_at=99.0, now=100.0, since=100.0), 3.0)

    def test_a_credit_is_kept_while_the_bucket_owes(self) -> None:
        self.assertEqual(credit_left(3.0, full_at=102.0, now=101.0, since=100.0), 3.0)

    def test_a_credit_ends_once_the_bucket_is_full_again_after_the_backlog(self) -> None:
        self.assertEqual(credit_left(3.0, full_at=102.0, now=102.5, since=100.0), 0.0)


class ServerPauseCreditTests(SynchronousTestCase):
    """
    A client held back by backpressure (docs/protocol.md section 10) that kept to its rate
    is not refused the lines it sent meanwhile, which arrive together once it is read again.
    """

    def setUp(self) -> None:
        self.server = FakeServer(rate=10, burst=5, ping=30, timeout=90)
        self.alice = self.server.registered("alice")
        self.receivers = [self.server.registered(nick) for nick in ("bob", "carol", "dave")]
        self.server.advance(1)
        for peer in (self.alice, *self.receivers):
            peer.received()

    def holdAliceFor(self, seconds: float) -> None:
        """alice speaks, most receivers congest: alice is not read for ``seconds``."""
        self.alice.protocol.dataReceived(b"SAY before\n")
        for receiver in self.receivers:
            receiver.protocol.pauseProducing()
        self.assertEqual(self.alice.transport.producerState, "paused")
        self.server.advance(seconds)
        for receiver in self.receivers:
            receiver.protocol.resumeProducing()
        self.assertEqual(self.alice.transport.producerState, "producing")
        self.alice.received()

    def test_lines_sent_at_the_rate_during_a_pause_are_all_handled_when_read(self) -> None:
        self.holdAliceFor(3)
        # 8 lines a second (under --rate 10) for the 3 s she was not read: 24 lines, in one read.
        self.alice.send(b"".join(b"SAY paced %d\n" % n for n in range(24)))
        lines = self.alice.received()
        self.assertEqual([line for line in lines if line.startswith(b"ERR")], [])
        self.assertEqual(len([line for line in lines if line.startswith(b"MSG")]), 24)

    def test_the_pause_credit_is_only_what_the_pause_was_worth(self) -> None:
        self.holdAliceFor(3)
        self.alice.send(b"SAY x\n" * (5 + 30 + 1))
        self.assertEqual(self.alice.received()[-1], b"ERR 429 too many requests: SAY not handled")

    def test_the_credit_ends_once_the_backlog_is_read(self) -> None:
        self.holdAliceFor(3)
        self.alice.send(b"SAY backlog\n" * 24)
        self.server.advance(10)  # the bucket refills; the next line finds it full
        self.alice.sendLine("SAY paced")
        self.alice.received()
        self.alice.send(b"SAY x\n" * 6)
        self.assertEqual(self.alice.received()[-1], b"ERR 429 too many requests: SAY not handled")


class ServerPingPauseCreditTests(SynchronousTestCase):
    def test_pings_sent_at_the_interval_during_a_long_pause_are_all_answered(self) -> None:
        server = FakeServer(ping=1, timeout=3)
        alice = server.registered("alice")
        receivers = [server.registered(nick) for nick in ("bob", "carol", "dave")]
        alice.protocol.dataReceived(b"SAY before\n")
        for receiver in receivers:
            receiver.protocol.pauseProducing()  # most lag: alice is held for as long as it takes
        server.advance(20)
        pings = [line for line in alice.received() if line.startswith(b"PING ")]
        for receiver in receivers:
            receiver.protocol.resumeProducing()
        self.assertEqual(alice.transport.producerState, "producing")
        # Read at once: her answers to our PINGs, and one PING of her own a second (the
        # interval HELLO told) for the 20 s she was not read.
        answers = b"".join(b"PONG" + ping[4:] + b"\n" for ping in pings)
        alice.send(answers + b"".join(b"PING %d\n" % n for n in range(20)))
        self.assertEqual(alice.received(), [b"PONG %d" % n for n in range(20)])


class ServerRateLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer(rate=10, burst=5, ping=30, timeout=90)
        self.alice = self.server.registered("alice")
        self.bob = self.server.registered("bob")
        self.server.advance(1)  # the NICKs took a token each: full buckets again
        self.alice.received()
        self.bob.received()

    def test_lines_within_the_burst_are_all_handled(self) -> None:
        self.alice.send(b"".join(b"SAY %d\n" % n for n in range(5)))
        self.assertEqual([line.split(b" ", 2)[2] for line in self.bob.received()], [b"alice %d" % n for n in range(5)])

    def test_a_line_over_the_limit_gets_err_429_naming_its_verb_and_is_not_handled(self) -> None:
        self.alice.send(b"".join(b"SAY %d\n" % n for n in range(6)))
        self.assertEqual(self.alice.received()[-1], b"ERR 429 too many requests: SAY not handled")
        self.assertEqual(len(self.bob.received()), 5)

    def test_an_unknown_verb_over_the_limit_is_a_line(self) -> None:
        self.alice.send(b"WHO\n" * 5 + b"\xff\xfe junk\n")
        self.assertEqual(self.alice.received()[-1], b"ERR 429 too many requests: line not handled")

    def test_lines_are_handled_again_once_tokens_come_back(self) -> None:
        self.alice.send(b"SAY x\n" * 6)
        self.alice.received()
        self.server.advance(0.1)
        self.alice.sendLine("SAY again")
        self.assertEqual(self.alice.received(), [b"MSG 8 alice again"])

    def test_empty_lines_are_not_counted(self) -> None:
        self.alice.send(b"\n" * 1000 + b"SAY still fine\n")
        self.assertEqual(self.alice.received(), [b"MSG 3 alice still fine"])

    def test_a_peer_that_keeps_going_after_repeated_429s_is_kicked(self) -> None:
        self.alice.send(b"SAY x\n" * (5 + MAX_STRIKES + 1))
        lines = self.alice.received()
        self.assertEqual(lines.count(b"ERR 429 too many requests: SAY not handled"), MAX_STRIKES)
        self.assertEqual(lines[-1], b"BYE kicked")
        self.assertTrue(self.alice.closing)
        self.alice.finishClose()
        self.assertEqual(self.bob.received()[-1], b"LEFT 8 alice kicked")

    def test_nothing_is_handled_after_the_kick(self) -> None:
        self.alice.send(b"SAY x\n" * (5 + MAX_STRIKES + 1) + b"SAY after\n")
        self.assertNotIn(b"MSG 8 alice after", self.bob.received())

    def test_a_kicked_session_cannot_be_resumed(self) -> None:
        token = self.alice.protocol.session.token  # type: ignore[union-attr]
        self.alice.send(b"SAY x\n" * (5 + MAX_STRIKES + 1))
        self.alice.finishClose()
        again = self.server.connect()
        again.received()
        again.sendLine(b"RESUME " + token + b" 0")
        self.assertEqual(again.received(), [b"ERR 404 unknown session"])

    def test_strikes_spread_over_more_than_their_memory_never_kick(self) -> None:
        for _ in range(3 * MAX_STRIKES):
            self.alice.send(b"SAY x\n" * 6)  # the sixth is refused
            self.server.advance(STRIKE_MEMORY)
        self.assertFalse(self.alice.closing)

    def test_an_unregistered_peer_is_limited_too(self) -> None:
        stranger = self.server.connect()
        stranger.received()
        stranger.send(b"FOO\n" * (5 + MAX_STRIKES + 1))
        lines = stranger.received()
        self.assertEqual(lines.count(b"ERR 403 register first"), 5)
        self.assertEqual(lines[-1], b"BYE kicked")

    def test_others_are_served_while_one_is_limited(self) -> None:
        self.alice.send(b"SAY x\n" * 50)
        self.bob.received()
        self.bob.sendLine("SAY hello")
        self.assertEqual(self.bob.received()[-1], b"MSG 9 bob hello")

    def test_rejections_and_kicks_are_counted(self) -> None:
        self.alice.send(b"SAY x\n" * (5 + MAX_STRIKES + 1))
        self.alice.finishClose()
        stats = self.server.factory.stats
        self.assertEqual(stats.rateLimited, MAX_STRIKES + 1)
        self.assertEqual(stats.closes["kicked"], 1)


class PingStrikeTests(SynchronousTestCase):
    def test_pings_far_more_often_than_the_interval_get_429_and_a_kick(self) -> None:
        server = FakeServer(ping=30, timeout=90)
        alice = server.registered("alice")
        alice.received()
        alice.send(b"PING\n" * 10)
        self.assertEqual(alice.received(), [b"PONG"] * 10)
        alice.send(b"PING\n")
        self.assertEqual(alice.received(), [b"ERR 429 too many requests: PING not handled"])
        for _ in range(MAX_STRIKES):
            alice.send(b"PING\n")
        self.assertEqual(alice.received()[-1], b"BYE kicked")

    def test_a_ping_a_second_is_always_answered(self) -> None:
        server = FakeServer(ping=30, timeout=90)
        alice = server.registered("alice")
        alice.received()
        for n in range(100):
            alice.sendLine(f"PING {n}")
            self.assertEqual(alice.received(), [f"PONG {n}".encode()])
            server.advance(1)


class RateLimitOffTests(SynchronousTestCase):
    def test_rate_zero_turns_every_limit_off(self) -> None:
        server = FakeServer(rate=0)
        alice = server.registered("alice")
        alice.received()
        alice.send(b"PING\n" * 1000 + b"SAY x\n" * 1000)
        lines = alice.received()
        self.assertEqual(lines.count(b"PONG"), 1000)
        self.assertEqual(len(lines), 2000)


class GreetingTests(SynchronousTestCase):
    def test_the_default_limits_leave_the_v1_greeting_as_it_was(self) -> None:
        self.assertEqual(FakeServer(ping=30, timeout=90).connect().received(), [b"HELLO hbchat/1 ping=30 timeout=90"])

    def test_other_limits_are_told_in_the_greeting(self) -> None:
        self.assertEqual(
            FakeServer(ping=30, timeout=90, rate=2.5, burst=10).connect().received(),
            [b"HELLO hbchat/1 ping=30 timeout=90 rate=2.5 burst=10"],
        )

    def test_no_limit_is_told_as_rate_zero(self) -> None:
        self.assertEqual(
            FakeServer(ping=30, timeout=90, rate=0).connect().received(),
            [b"HELLO hbchat/1 ping=30 timeout=90 rate=0 burst=200"],
        )

    def test_err_429_texts_name_the_verb(self) -> None:
        self.assertEqual(wire.err_rate_limited(b"TELL"), b"ERR 429 too many requests: TELL not handled\n")
        self.assertEqual(wire.err_rate_limited(b"\xff"), b"ERR 429 too many requests: line not handled\n")
