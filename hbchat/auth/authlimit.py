"""
Bounds on the work of logging in (``--auth``): how many password checks run and wait at once,
and how many failed logins one address may have before it must wait.

Each password check is slow on purpose (scrypt: tens of milliseconds of CPU and 16 MiB of
memory in a thread), so unbounded, a few peers sending wrong passwords keep every core busy,
delay every honest login and swell the process.  :class:`BoundedChecker` runs at most
``--auth-checks`` checks at once, lets at most ``--auth-queue`` more wait their turn (first
come, first served) and refuses the rest at once with :class:`CheckerBusyError`.
:class:`FailureLimit` keeps a token bucket of failed logins per address (``--auth-failures``
per :data:`FAILURE_WINDOW` seconds, all at once at most; an IPv6 /64 counts as one
address): an address whose bucket is empty
is refused without a check until it refills, its ERR 503 delayed by up to
:data:`BACKOFF_DELAY_MAX` seconds.

Both are plain logic: the time comes from an ``IReactorTime``, the checks from the checker.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.interfaces import IAddress, IReactorTime
from zope.interface import implementer

from hbchat.ratelimit import Bucket

#: Seconds over which --auth-failures failed logins per address are allowed (the bucket
#: refills at --auth-failures per this many seconds).
FAILURE_WINDOW = 60.0

#: Longest a refused login waits for its ERR 503 (the time until its address may try again,
#: up to this): a guesser that reconnects at once is held back instead of costing the server
#: a connection per refusal.  Its connection counts against --max-handshakes meanwhile, as a
#: silent one would for --register-timeout.
BACKOFF_DELAY_MAX = 5.0

#: Most addresses whose failures are remembered; beyond, the one remembered longest is
#: forgotten (an attacker with that many addresses is still held by --auth-checks).
MAX_TRACKED_ADDRESSES = 10000


class CheckerBusyError(Exception):
    """The password check was refused unchecked: --auth-checks run and --auth-queue wait already."""


def address_key(address: IAddress) -> str:
    """
    What failed logins count against: the IPv4 address (loopback included), the /64 of an
    IPv6 address (one host usually has a whole /64 to pick from), or ``unix``.
    """
    host = getattr(address, "host", None)
    if not isinstance(host, str):
        return "unix"
    host = host.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if isinstance(ip, ipaddress.IPv6Address) and not ip.is_loopback:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@implementer(ICredentialsChecker)
class BoundedChecker:
    """
    An ``ICredentialsChecker`` that passes requests to ``checker``, at most ``concurrency``
    at once and ``waiting`` more in a queue; beyond, it fails at once with :class:`CheckerBusyError`.
    Cancelling a waiting request (its connection ended) takes it out of the queue.
    """

    def __init__(self, checker: ICredentialsChecker, concurrency: int, waiting: int) -> None:
        self.checker = checker
        self.credentialInterfaces = checker.credentialInterfaces
        self.concurrency = concurrency
        self.maxWaiting = waiting
        self.running = 0
        self._queue: deque[tuple[Any, Deferred[Any]]] = deque()
        #: Requests refused because the queue was full.
        self.refused = 0

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        if self.running < self.concurrency:
            return self._start(credentials)
        if len(self._queue) >= self.maxWaiting:
            self.refused += 1
            return fail(CheckerBusyError())

        def dequeue(deferred: Deferred[Any]) -> None:
            for index, (_, queued) in enumerate(self._queue):
                if queued is deferred:
                    del self._queue[index]
                    return

        result: Deferred[Any] = Deferred(dequeue)
        self._queue.append((credentials, result))
        return result

    def _start(self, credentials: Any) -> Deferred[Any]:
        """
        Run one check.  Its caller gets a Deferred of its own: cancelling that one (the
        connection ended) does not free the slot while the check still runs in its thread.
        """
        self.running += 1
        checked: Deferred[Any] = maybeDeferred(self.checker.requestAvatarId, credentials)

        def done(result: object) -> object:
            self.running -= 1
            self._next()
            return result

        verdict: Deferred[Any] = Deferred()
        checked.addBoth(done).chainDeferred(verdict)
        return verdict

    def _next(self) -> None:
        while self._queue and self.running < self.concurrency:
            credentials, waiter = self._queue.popleft()
            self._start(credentials).chainDeferred(waiter)


class FailureLimit:
    """Failed logins per address: ``limit`` at once, refilled at ``limit`` per ``window`` seconds."""

    def __init__(self, clock: IReactorTime, limit: int, window: float = FAILURE_WINDOW) -> None:
        self.clock = clock
        self.bucket = Bucket(limit / window, limit)
        self.maxTracked = MAX_TRACKED_ADDRESSES
        #: Address to the time its bucket is full again (GCRA, see hbchat.ratelimit);
        #: oldest update first.
        self._fullAt: dict[str, float] = {}
        #: Logins refused unchecked because their address had no failures left.
        self.refused = 0

    def __len__(self) -> int:
        return len(self._fullAt)

    def wait(self, key: str) -> float:
        """Seconds before ``key`` may try a password again (0: now)."""
        full_at = self._fullAt.get(key)
        if full_at is None:
            return 0.0
        now = self.clock.seconds()
        if full_at <= now:
            del self._fullAt[key]
            return 0.0
        return self.bucket.wait(full_at, now)

    def refuse(self, key: str) -> float:
        """Seconds ``key`` must wait before trying a password (counted as a refusal); 0: it may now."""
        wait = self.wait(key)
        if wait > 0:
            self.refused += 1
        return wait

    def failed(self, key: str) -> None:
        """One failed login from ``key``."""
        now = self.clock.seconds()
        full_at = self._fullAt.pop(key, 0.0)
        taken = self.bucket.take(full_at, now)
        # An empty bucket stays empty: the debt does not grow past the burst.
        self._fullAt[key] = taken if taken is not None else full_at
        self._prune(now)

    def blocked(self) -> int:
        """Addresses that may not try a password now (walks the table: for a scrape)."""
        now = self.clock.seconds()
        return sum(1 for full_at in self._fullAt.values() if self.bucket.wait(full_at, now) > 0)

    def _prune(self, now: float) -> None:
        # Oldest update first: drop what has refilled, and the oldest beyond the bound.
        for key, full_at in list(self._fullAt.items()):
            if len(self._fullAt) <= self.maxTracked and full_at > now:
                break
            del self._fullAt[key]
