"""Where each client is sent back to after a graceful stop (hbchat.server.comeback): pure arithmetic."""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from hbchat.server.comeback import comeback_delay


def drained(count: int, drain: float, hint: float, seed: int = 1) -> list[tuple[float, float]]:
    """(BYE sent at, at=) for ``count`` connections told in batches every 0.1 s over ``drain``."""
    rng = random.Random(seed)
    batches = max(1, round(drain / 0.1))
    size = max(1, -(-count // batches))
    told = []
    for index in range(count):
        sent_at = (index // size) * (drain / batches)
        told.append((sent_at, comeback_delay(index, count, sent_at, drain, hint, rng.random())))
    return told


class ComebackTests(SynchronousTestCase):
    def test_every_delay_is_within_the_retry_hint(self) -> None:
        for count, drain, hint in [(1, 0, 10), (300, 5, 10), (7, 1, 0.5), (2000, 5, 2), (300, 0, 10)]:
            for sent_at, at in drained(count, drain, hint):
                self.assertTrue(0 <= at <= hint, (count, drain, hint, sent_at, at))

    def test_nobody_is_sent_back_within_two_seconds_of_the_stop(self) -> None:
        returns = [sent_at + at for sent_at, at in drained(300, 5, 10)]
        self.assertGreaterEqual(min(returns), 2.0)
        self.assertLessEqual(max(returns), 15.0)

    def test_a_short_hint_moves_the_earliest_return_to_half_of_it(self) -> None:
        returns = [sent_at + at for sent_at, at in drained(100, 0, 1)]
        self.assertGreaterEqual(min(returns), 0.5)

    def test_the_returns_of_300_clients_are_flat_per_100_ms(self) -> None:
        # 300 clients told over a 5 s drain with retry=10: from 2 s to 15 s after the stop,
        # 13 s of 100 ms bins, about 2.3 in each; independent uniform draws put 7 to 10 into
        # the busiest one.
        returns = [sent_at + at for sent_at, at in drained(300, 5, 10)]
        bins = [0] * 150
        for at in returns:
            bins[int(at / 0.1)] += 1
        self.assertLessEqual(max(bins), 2 * 300 / 150)

    def test_the_order_of_telling_is_the_order_of_returning(self) -> None:
        returns = [sent_at + at for sent_at, at in drained(300, 5, 10)]
        self.assertEqual(returns, sorted(returns))

    def test_nothing_to_spread(self) -> None:
        self.assertEqual(comeback_delay(0, 0, 0.0, 5, 10, 0.5), 0.0)
        self.assertEqual(comeback_delay(0, 5, 0.0, 5, 0, 0.5), 0.0)
