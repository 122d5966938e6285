"""
One load connection: a raw line protocol, far lighter than :class:`hbchat.client.ChatClientFactory`.

A worker process holds thousands of these.  Each registers (``NICK``), answers the
server's PINGs, and does what its role asks: an idle connection sends ``PING <send ns>``
when its worker's schedule says so and times the PONG; a receiver parses every ``MSG`` and
times it from the stamp its sender put in the text; a sender says stamped texts (its
worker paces it) and only counts its own echoes.  Everything counted goes into the
worker's shared :class:`Tally`.

Lines that only matter as a count (JOIN and LEFT broadcasts, chat on a connection that
does not time chat) are not split one by one: a chunk of complete lines with no PING,
PONG, ERR or BYE in it is only counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer, IReactorTime, ITCPTransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from hbchat import wire
from hbchat.bench.stats import Histogram, Timeline, parse_stamp

IDLE, RECEIVER, SENDER = "idle", "receiver", "sender"
#: Longer lines from the server are a protocol error (the server's own limit is 4096).
MAX_LINE = 1 << 20
#: Notes (why a connection failed or dropped) kept per worker.
MAX_NOTES = 8
NEVER = 1 << 62
#: The server's answer to a line over its rate limit, and its last word to a client that kept going.
RATE_LIMITED = b"ERR 429 "
KICKED = wire.BYE_KICKED.rstrip(b"\n")


class Tally:
    """What one worker counts; :meth:`progress` and :meth:`result` are what it reports."""

    def __init__(self, run_tag: bytes) -> None:
        self.run_tag = run_tag
        self.window_start = NEVER
        self.window_end = NEVER
        self.closing = False
        # connections
        self.started = 0
        self.registered = 0
        self.failed = 0
        self.drops = 0
        self.drops_window = 0
        self.fail_notes: list[str] = []
        self.drop_notes: list[str] = []
        self.hello: dict[str, str] = {}
        # heartbeats
        self.pings_sent = 0
        self.pings_sent_window = 0
        self.pongs = 0
        self.pongs_window = 0
        self.bad_pongs = 0
        self.server_pings = 0
        self.server_pings_window = 0
        self.rtt = Histogram()
        # presence and other lines
        self.joins = 0
        self.lefts = 0
        self.last_event_ns = 0
        self.err_lines = 0
        self.bye_lines = 0
        # the server's rate limit (--rate, --burst, the PING budget): refused lines, and kicks
        self.rate_limited = 0
        self.kicked = 0
        # fanout
        self.sent = 0
        self.sent_window = 0
        self.received = 0
        self.received_window = 0
        self.delivered_in_window = 0
        self.echoes = 0
        self.foreign = 0
        self.unstamped = 0
        self.out_of_order = 0
        self.latency = Histogram()
        self.timeline: Timeline | None = None

    def in_window(self, ns: int) -> bool:
        return self.window_start <= ns < self.window_end

    def note_failure(self, text: str) -> None:
        self.failed += 1
        if len(self.fail_notes) < MAX_NOTES:
            self.fail_notes.append(text)

    def note_drop(self, text: str) -> None:
        self.drops += 1
        if self.in_window(time.time_ns()):
            self.drops_window += 1
        self.add_drop_note(text)

    def add_drop_note(self, text: str) -> None:
        """Keep ``text`` among the (first ``MAX_NOTES``) notes about drops, without counting one."""
        if len(self.drop_notes) < MAX_NOTES:
            self.drop_notes.append(text)

    def counters(self) -> dict[str, int]:
        names = (
            "started registered failed drops drops_window pings_sent pings_sent_window pongs pongs_window bad_pongs "
            "server_pings server_pings_window joins lefts last_event_ns err_lines bye_lines rate_limited kicked sent "
            "sent_window received received_window delivered_in_window echoes foreign unstamped out_of_order"
        ).split()
        return {name: getattr(self, name) for name in names}


@implementer(IPushProducer)
class BenchConnection(Protocol):
    """One connection of a worker; ``index`` is its number across all workers of the run."""

    transport: ITCPTransport | None
    registered = False
    quitting = False
    #: A sender whose transport's buffer is full waits for ``resumeProducing``.
    paused = False

    def __init__(
        self,
        tally: Tally,
        clock: IReactorTime,
        index: int,
        nick: bytes,
        role: str,
        registration_timeout: float,
        on_registered: Callable[[BenchConnection], None],
        on_ended: Callable[[BenchConnection], None],
    ) -> None:
        self.tally = tally
        self.clock = clock
        self.index = index
        self.nick = nick
        self.role = role
        self.registration_timeout = registration_timeout
        self.on_registered = on_registered
        self.on_ended = on_ended
        self._pending = b""
        self._deadline: IDelayedCall | None = None
        self._failed = False
        #: Receivers: the last sequence number seen from each sender.
        self._last_seq: dict[int, int] = {}
        #: Senders: this connection's sender number and next sequence number.
        self.sender_id = 0
        self.seq = 0

    # --- connection life ---

    def connectionMade(self) -> None:
        self._deadline = self.clock.callLater(self.registration_timeout, self._too_slow)

    def _too_slow(self) -> None:
        self._deadline = None
        self.fail(f"not registered within {self.registration_timeout:g}s")

    def fail(self, why: str) -> None:
        """Registration failed: count it once, and close."""
        if self._failed or self.registered:
            return
        self._failed = True
        self.tally.note_failure(f"{self.nick.decode()}: {why}")
        if self.transport is not None:
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        if not self.registered:
            self.fail(f"connection lost before WELCOME: {reason.getErrorMessage()}")
        elif not (self.quitting or self.tally.closing):
            self.tally.note_drop(f"{self.nick.decode()}: {reason.getErrorMessage()}")
        self.on_ended(self)

    def quit(self) -> None:
        """Leave cleanly (the server frees the nick and keeps no session)."""
        self.quitting = True
        if self.transport is not None:
            self.transport.write(b"QUIT\n")
            self.transport.loseConnection()

    # --- IPushProducer (senders) ---

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.paused = True

    # --- sending ---

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def send_ping(self, now: int) -> None:
        tally = self.tally
        tally.pings_sent += 1
        if tally.window_start <= now < tally.window_end:
            tally.pings_sent_window += 1
        self.write(b"PING %d\n" % now)

    # --- receiving ---

    def dataReceived(self, data: bytes) -> None:
        now = time.time_ns()
        tally = self.tally
        if (
            self.registered
            and self.role != RECEIVER
            and not self._pending
            and data.endswith(b"\n")
            and b"PING" not in data
            and b"PONG" not in data
            and b"ERR" not in data
            and b"BYE" not in data
        ):
            joins = data.count(b"\nJOIN ") + data.startswith(b"JOIN ")
            lefts = data.count(b"\nLEFT ") + data.startswith(b"LEFT ")
            if joins or lefts:
                tally.joins += joins
                tally.lefts += lefts
                tally.last_event_ns = now
            if self.role == SENDER:
                tally.echoes += data.count(b"\nMSG ") + data.startswith(b"MSG ")
            return
        if self._pending:
            data = self._pending + data
        lines = data.split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > MAX_LINE:
            self._pending = b""
            self._protocol_error("the server sent a line longer than 1 MiB")
            return
        receiver = self.role == RECEIVER
        for line in lines:
            if receiver and line.startswith(b"MSG "):
                self._message(line, now)
            else:
                self._line(line.rstrip(b"\r"), now)

    def _protocol_error(self, why: str) -> None:
        if not self.registered:
            self.fail(why)
        else:
            self.tally.note_drop(f"{self.nick.decode()}: {why}")
            self.quitting = True  # counted already
            if self.transport is not None:
                self.transport.abortConnection()

    def _line(self, line: bytes, now: int) -> None:
        tally = self.tally
        verb = line[:4]
        if verb == b"MSG ":
            if self.role == SENDER:
                tally.echoes += 1
        elif verb == b"JOIN" or verb == b"LEFT":
            if verb == b"JOIN":
                tally.joins += 1
            else:
                tally.lefts += 1
            tally.last_event_ns = now
        elif verb == b"PING":
            self.write(b"PONG" + line[4:] + b"\n")
            tally.server_pings += 1
            if tally.window_start <= now < tally.window_end:
                tally.server_pings_window += 1
        elif verb == b"PONG":
            self._pong(line[5:], now)
        elif line.startswith(b"HELLO "):
            self._hello(line)
        elif line.startswith(b"WELCOME "):
            self._welcome()
        elif line.startswith(b"ERR "):
            tally.err_lines += 1
            if line.startswith(RATE_LIMITED):
                tally.rate_limited += 1
            if not self.registered:
                self.fail("the server said " + line.decode("utf-8", "replace"))
            else:
                tally.add_drop_note(f"{self.nick.decode()}: the server said {line.decode('utf-8', 'replace')}")
        elif line.startswith(b"BYE"):
            tally.bye_lines += 1
            if line == KICKED:
                tally.kicked += 1
            if not (self.quitting or tally.closing):
                tally.add_drop_note(f"{self.nick.decode()}: the server said {line.decode('utf-8', 'replace')}")

    def _hello(self, line: bytes) -> None:
        if not self.tally.hello:
            for field in line.split(b" ")[2:]:
                key, _, value = field.partition(b"=")
                self.tally.hello[key.decode("ascii", "replace")] = value.decode("ascii", "replace")
        self.write(b"NICK " + self.nick + b"\n")

    def _welcome(self) -> None:
        if self.registered or self._failed:
            return
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        self.registered = True
        self.tally.registered += 1
        if self.role == SENDER and self.transport is not None:
            cast(IConsumer, self.transport).registerProducer(self, True)
        self.on_registered(self)

    def _pong(self, token: bytes, now: int) -> None:
        tally = self.tally
        try:
            sent = int(token)
        except ValueError:
            tally.bad_pongs += 1
            return
        tally.pongs += 1
        rtt = now - sent
        if tally.timeline is not None:
            tally.timeline.record(now, rtt)
        if tally.window_start <= sent < tally.window_end:
            tally.pongs_window += 1
            tally.rtt.record(rtt)

    def _message(self, line: bytes, now: int) -> None:
        tally = self.tally
        parts = line.split(b" ", 3)
        stamp = parse_stamp(parts[3]) if len(parts) == 4 else None
        if stamp is None:
            tally.unstamped += 1
            return
        sent, run, sender, seq = stamp
        if run != tally.run_tag:
            tally.foreign += 1
            return
        tally.received += 1
        if seq <= self._last_seq.get(sender, -1):
            tally.out_of_order += 1
        else:
            self._last_seq[sender] = seq
        if tally.window_start <= now < tally.window_end:
            tally.delivered_in_window += 1
        latency = now - sent
        if tally.timeline is not None:
            tally.timeline.record(now, latency)
        if tally.window_start <= sent < tally.window_end:
            tally.received_window += 1
            tally.latency.record(latency)


def describe_failure(reason: Any) -> str:
    """A connect failure in a few words."""
    if isinstance(reason, Failure):
        return reason.getErrorMessage().rstrip(".")
    return str(reason)
