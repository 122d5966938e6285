"""One connection's standing against the rate limits (hbchat.server.limits), without a reactor."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from hbchat.ratelimit import STRIKE_MEMORY, Bucket, ping_bucket
from hbchat.server.limits import Standing


class LineLimitsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.lines = Bucket(2, 3)
        self.pings = ping_bucket(30, burst=1)
        self.limits = Standing()

    def test_a_burst_is_allowed_and_the_next_line_is_not(self) -> None:
        self.assertEqual(
            [self.limits.withinLimits(self.lines, self.pings, b"SAY", 0.0) for _ in range(4)], [True] * 3 + [False]
        )

    def test_the_bucket_refills_at_the_rate(self) -> None:
        for _ in range(3):
            self.limits.withinLimits(self.lines, self.pings, b"SAY", 0.0)
        self.assertTrue(self.limits.withinLimits(self.lines, self.pings, b"SAY", 0.5))

    def test_pings_are_limited_on_their_own_bucket_too(self) -> None:
        self.assertTrue(self.limits.withinLimits(self.lines, self.pings, b"PING", 0.0))
        self.assertFalse(self.limits.withinLimits(self.lines, self.pings, b"PING", 0.0))
        self.assertTrue(self.limits.withinLimits(self.lines, self.pings, b"SAY", 0.0))

    def test_a_pause_of_reading_is_credited_to_what_arrives_after_it(self) -> None:
        for _ in range(3):
            self.limits.withinLimits(self.lines, self.pings, b"SAY", 0.0)
        self.limits.readingPaused(0.0)
        self.limits.readingResumed(10.0)
        # Ten seconds of pause: the lines the client sent meanwhile all arrive now.
        self.assertTrue(all(self.limits.withinLimits(self.lines, self.pings, b"SAY", 10.0) for _ in range(6)))

    def test_strikes_count_up_and_are_forgotten_after_a_quiet_while(self) -> None:
        self.assertEqual([self.limits.strike(0.0), self.limits.strike(1.0)], [1, 2])
        self.assertEqual(self.limits.strike(1.0 + STRIKE_MEMORY + 1), 1)
