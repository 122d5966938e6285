"""
When the client tries again: the arithmetic behind ``ChatClientFactory.retry``, without a reactor.

A :class:`ReconnectPlan` counts the attempts of one outage (reset by a WELCOME), asks its
:class:`~hbchat.client.backoff.IBackoff` for each delay (the window grows with the outage's
age), follows a server's retry hint (``BYE shutdown retry=S at=A``) once, and says when the
retries allowed (``--max-retries``) are used up.  A wait for a nick held by our own
interrupted registration is an attempt for the backoff but not a retry against the limit.
The factory only schedules what the plan decides (hbchat.client.factory).
"""

from __future__ import annotations

import random

from hbchat.client.backoff import IBackoff, hinted_delay


class ReconnectPlan:
    """The delays of one outage after another; pure state, the caller passes the time."""

    def __init__(self, backoff: IBackoff, rng: random.Random, max_retries: int | None = None) -> None:
        self.backoff = backoff
        self.rng = rng
        #: Retries allowed in a row without a WELCOME; ``None``: no limit.
        self.max_retries = max_retries
        #: Retries since the last WELCOME that count towards ``max_retries``.
        self.retries = 0
        #: Reconnect attempts since the last WELCOME: what the backoff grows with.  Unlike
        #: ``retries`` it also counts the waits for a nick held by our own lost registration.
        self.attempt = 0
        #: When the first of those attempts was scheduled: the outage's age is counted from here.
        self.outage_since = 0.0
        self._hint: float | None = None
        self._at: float | None = None
        self._free = False

    def hinted(self, retry: float | None, at: float | None) -> None:
        """A BYE said when to come back (``retry=`` bounds the wait, ``at=`` names the moment): the next delay obeys."""
        self._hint, self._at = retry, at

    def forgive_next(self) -> None:
        """The next retry waits for our own nick to be released: it does not count towards ``max_retries``."""
        self._free = True

    def next_delay(self, now: float) -> float | None:
        """The wait before the next attempt, ``now``; ``None`` once the retries are used up."""
        if self.attempt == 0:
            self.outage_since = now
        self.attempt += 1
        if self._free:
            self._free = False
        else:
            self.retries += 1
        if self.max_retries is not None and self.retries > self.max_retries:
            return None
        if self._hint is not None:
            delay = hinted_delay(self._hint, self.rng) if self._at is None else self._at
            self._hint = self._at = None
            return delay
        return self.backoff.delay(self.attempt - 1, now - self.outage_since, self.rng)

    def reset(self) -> None:
        """A WELCOME: the server works; the next outage starts from the first attempt."""
        self.retries = 0
        self.attempt = 0
