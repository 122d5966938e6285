"""
Socket-level fuzzing: thousands of random byte strings over many real loopback
connections, while a well-behaved client keeps being served.

Every input is drawn from a seeded ``random.Random`` before any connection opens, so a
failure names the seed that reproduces the bytes (set ``HBCHAT_FUZZ_SEED`` to replay or
to explore another one).  Only the timing of the interleaving is left to the machine.
Fuzz connections may be closed by the server (ERR 413, BYE, a rate limiter's kick) at any
point: nothing here depends on them staying open, only on the good clients' service.
"""

from __future__ import annotations

import gc
import itertools
import os
import random
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.trial import unittest

from hbchat.server import verbs
from hbchat.server.connection import ChatServerProtocol
from hbchat.server.factory import ChatFactory
from tests.test_integration import DEADLINE, ChatTestCase, LineClient, within
from tests.test_web import waitUntil

#: Measurements go to trial's test.log.
log = Logger()

SEED = int(os.environ.get("HBCHAT_FUZZ_SEED", "20261122"))

#: A small --max-line, so that lines over it are cheap to send.
MAX_LINE = 512
CONNECTIONS = 150
#: Fuzz connections open at the same time.
CONCURRENT = 16
#: Random byte strings per connection (before any ending of the connection).
STRINGS = (16, 40)
#: No new fuzz connection starts, and no fuzz connection writes more, after this long.
FUZZ_BUDGET = 60.0
#: The good client sends one line (a PING or a SAY) this often: ~3 lines a second, far
#: below any sane rate limit.
GOOD_INTERVAL = 0.3
#: The longest the good client may wait for an answer during the fuzz; anything near it
#: means the reactor stalled.  Generous: the machine is noisy, a stall is not subtle.
STALL_LIMIT = 10.0

NICK_POOL = [b"fz", b"Fz", b"good", b"GOOD", b"a", b"x" * 32, b"x" * 33, b"bad nick", b"[]{}^|-_", b""]
VERBS = [b"NICK", b"SAY", b"TELL", b"WHO", b"PING", b"PONG", b"RESUME", b"say", b"Nick", b"WhO", b"FROB", b"", b"QUIT"]
#: Relative weights of VERBS: QUIT ends the connection, so it stays rare.
VERB_WEIGHTS = [6, 8, 5, 3, 4, 2, 4, 2, 2, 1, 1, 1, 0.3]
INVALID_UTF8 = [
    b"\xff",
    b"\xfe\xff",
    b"\x80",
    b"\xc0\xaf",  # overlong "/"
    b"\xed\xa0\x80",  # a surrogate
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xe2\x82",  # truncated
    b"\xc3",
]
#: Stands for the session token of an earlier fuzz connection, filled in as it is sent
#: (only when the mark is not split across writes), so that RESUME can succeed and take
#: sessions over.  Which token depends on timing; the bytes around it do not.
TOKEN_MARK = b"\x01token\x01"
TERMINATORS = [b"\n", b"\n", b"\n", b"\r\n", b"", b"\r", b"\n\r"]
FRAGMENTS = [b"\r", b"\n", b"\r\n", b"\n\r", b"\r\r\n", b"\n\n\n", b"\r" * 7, b"\x00", b"\x00\n", b"\r\x00\n"]


def printable(rng: random.Random, size: int) -> bytes:
    return bytes(rng.randrange(0x20, 0x7F) for _ in range(size))


def randomTail(rng: random.Random) -> bytes:
    """What follows a verb: sometimes plausible arguments, often not."""
    kind = rng.randrange(7)
    if kind == 0:
        return rng.randbytes(rng.randrange(40))
    if kind == 1:
        return printable(rng, rng.randrange(60))
    if kind == 2:
        return rng.choice(NICK_POOL) + (b" " + printable(rng, rng.randrange(1, 20)) if rng.random() < 0.5 else b"")
    if kind == 3:
        token = rng.choice([TOKEN_MARK, rng.randbytes(16).hex().encode(), b"", b"-", b"\x00"])
        return token + b" " + randomSeq(rng)
    if kind == 4:
        return printable(rng, 5) + rng.choice(INVALID_UTF8) + printable(rng, 5)
    if kind == 5:
        return b" " * rng.randrange(1, 5) + printable(rng, 10)
    return b""


def randomSeq(rng: random.Random) -> bytes:
    return rng.choice(
        [b"0", b"7", str(rng.randrange(300)).encode(), b"-1", b"9" * 20, b"9" * 25, b"1e3", b"", b"\xd9\xa3"]
    )


def randomString(rng: random.Random) -> bytes:
    """One fuzz string: random bytes, a verb and a random tail, a long line, bad UTF-8, CR/LF or NUL."""
    kind = rng.choices(["bytes", "verb", "long", "utf8", "fragment", "nul", "resume"], [3, 8, 0.25, 1, 1, 1, 0.5])[0]
    if kind == "bytes":
        return rng.randbytes(rng.randrange(80))
    if kind == "verb":
        verb = rng.choices(VERBS, VERB_WEIGHTS)[0]
        separator = rng.choice([b" ", b" ", b" ", b"  ", b"\t", b""])
        return verb + separator + randomTail(rng) + rng.choice(TERMINATORS)
    if kind == "long":
        # Right at the limit (allowed), one over, a CR at the edge, or far over.
        body = rng.choice([b"SAY ", b"", b"NICK "]) + printable(rng, MAX_LINE)
        return rng.choice(
            [
                body[:MAX_LINE] + b"\r\n",
                body[:MAX_LINE] + b"\r",
                body + b"x\n",
                body * rng.randrange(2, 5),
                body * 2 + b"\n",
            ]
        )
    if kind == "utf8":
        return rng.choice([b"SAY ", b"NICK ", b"TELL good ", b""]) + rng.choice(INVALID_UTF8) + b"\n"
    if kind == "fragment":
        return rng.choice(FRAGMENTS)
    if kind == "resume":
        return rng.choice([b"RESUME ", b"resume "]) + TOKEN_MARK + b" " + randomSeq(rng) + b"\n"
    return rng.choice([b"SAY a\x00b\n", b"NICK a\x00\n", b"\x00" * rng.randrange(1, 20), b"\x00PING\n"])


@dataclass
class Script:
    """What one fuzz connection sends, in which pieces, and how it ends."""

    index: int
    seed: int
    strings: list[bytes]
    #: The bytes of ``strings`` cut at random points: lines are split across writes.
    writes: list[bytes]
    #: Seconds to wait after each write (0: the next reactor turn).
    delays: list[float]
    #: "close", "half-close" (after a partial line), "abort" (after a partial line) or "quit".
    ending: str

    @classmethod
    def generate(cls, index: int, seed: int) -> Script:
        rng = random.Random(seed)
        strings = [randomString(rng) for _ in range(rng.randint(*STRINGS))]
        if rng.random() < 0.5:
            # Registered first, so that the rest reaches the commands behind registration.
            strings.insert(0, b"NICK fz%d\n" % index)
        ending = rng.choices(["close", "half-close", "abort", "quit"], [4, 2, 3, 1.5])[0]
        stream = b"".join(strings)
        if ending in ("half-close", "abort"):
            stream += rng.choice([b"SAY cut mid-li", b"NICK", b"\xe2\x82", b"\r", printable(rng, 30)])
        elif ending == "quit":
            stream += b"\nQUIT fuzz done\n"
        cuts = sorted(rng.sample(range(1, len(stream)), max(0, min(len(stream) - 1, len(strings) + rng.randrange(10)))))
        bounds = [0, *cuts, len(stream)]
        writes = [stream[start:end] for start, end in itertools.pairwise(bounds)]
        delays = [rng.choice([0.0, 0.0, 0.001, 0.005, 0.02, 0.05]) for _ in writes]
        return cls(index, seed, strings, writes, delays, ending)

    def describe(self) -> str:
        sent = repr(self.writes)
        shown = sent if len(sent) <= 2000 else sent[:2000] + f"... ({len(sent)} characters)"
        return f"fuzz connection {self.index} (seed {self.seed}, ending {self.ending}): {shown}"


def scripts(seed: int, count: int) -> list[Script]:
    rng = random.Random(seed)
    return [Script.generate(index, rng.getrandbits(64)) for index in range(count)]


@dataclass
class GoodTraffic:
    """
    The well-behaved client's modest traffic: a PING, or every third time a SAY, each
    tagged with a token, and how long each answer (PONG or its own MSG) took.
    """

    client: LineClient
    sentAt: dict[str, float] = field(default_factory=dict)
    answeredAt: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.client.lineHooks.append(self._onLine)

    def tick(self) -> None:
        token = f"t{len(self.sentAt)}"
        self.sentAt[token] = reactor.seconds()
        self.client.sendLine(f"SAY good {token}" if len(self.sentAt) % 3 == 0 else f"PING {token}")

    def _onLine(self, line: str) -> None:
        words = line.split(" ")
        if words[0] == "PONG" and len(words) == 2:
            token = words[1]
        elif words[0] == "MSG" and len(words) == 5 and words[2:4] == ["good", "good"]:
            token = words[4]
        else:
            return
        if token in self.sentAt and token not in self.answeredAt:
            self.answeredAt[token] = reactor.seconds()

    def unanswered(self) -> list[str]:
        return [token for token in self.sentAt if token not in self.answeredAt]

    def worstWait(self) -> float:
        return max((self.answeredAt[token] - sent for token, sent in self.sentAt.items()), default=0.0)

    def answeredBefore(self, moment: float) -> int:
        return sum(1 for at in self.answeredAt.values() if at <= moment)


def aliveProtocols(factory: ChatFactory) -> list[ChatServerProtocol]:
    """The server's protocol objects for ``factory`` that still exist after a full collection."""
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, ChatServerProtocol) and o.factory is factory]


@dataclass
class FuzzRun:
    """Totals of one fuzz run, for the failure messages and test.log."""

    seed: int
    connections: int = 0
    stringsSent: int = 0
    closedByServer: int = 0
    resumed: int = 0
    #: Session tokens the fuzz connections were given (never the good clients').
    tokens: list[bytes] = field(default_factory=list, repr=False)

    def noteLine(self, line: str) -> None:
        words = line.split(" ")
        if words[0] == "WELCOME" and len(words) == 4:
            self.tokens.append(words[2].encode("ascii", "replace"))
        elif words[0] == "RESUMED":
            self.resumed += 1


class SocketFuzzTests(ChatTestCase):
    def startFuzzServer(self) -> tuple[ChatFactory, int]:
        return self.startServer(ping=2, timeout=10, max_line=MAX_LINE)

    @inlineCallbacks
    def fuzzOne(self, port: int, script: Script, stopAt: float, run: FuzzRun) -> Generator[Deferred[Any], Any, None]:
        """One fuzz connection: its writes, paced, then its ending; done once it is closed."""
        client: LineClient = yield self.connect(port, f"fuzz{script.index}", answerPings=False, maxStored=80)
        transport = cast(ITCPTransport, client.transport)
        transport.setTcpNoDelay(True)
        client.lineHooks.append(run.noteLine)
        run.connections += 1
        pick = random.Random(script.seed)
        written = 0
        for data, delay in zip(script.writes, script.delays, strict=True):
            if client.lostReason is not None or reactor.seconds() > stopAt:
                break
            written += len(data)
            if TOKEN_MARK in data and run.tokens:
                data = data.replace(TOKEN_MARK, pick.choice(run.tokens))
            transport.write(data)
            yield deferLater(reactor, delay, lambda: None)
        ends, total = [], 0
        for string in script.strings:
            total += len(string)
            ends.append(total)
        run.stringsSent += sum(1 for end in ends if end <= written)
        if client.lostReason is not None:
            run.closedByServer += 1
        elif script.ending == "close":
            transport.loseConnection()
        elif script.ending == "half-close":
            transport.loseWriteConnection()
        elif script.ending == "abort":
            transport.abortConnection()
        # "quit": the server is to close it.
        yield within(client.whenLost(), DEADLINE, f"{script.describe()}: closing")

    @inlineCallbacks
    def fuzz(self, port: int, seed: int) -> Generator[Deferred[Any], Any, FuzzRun]:
        """Run every script, CONCURRENT at a time, within FUZZ_BUDGET; fires with the totals."""
        run = FuzzRun(seed)
        stopAt = reactor.seconds() + FUZZ_BUDGET
        pending: Iterator[Script] = iter(scripts(seed, CONNECTIONS))

        @inlineCallbacks
        def worker() -> Generator[Deferred[Any], Any, None]:
            for script in pending:
                if reactor.seconds() > stopAt:
                    return
                yield self.fuzzOne(port, script, stopAt, run)

        yield gatherResults([worker() for _ in range(CONCURRENT)], consumeErrors=True)
        return run

    @inlineCallbacks
    def withSeed(self, seed: int, body: Callable[[], Deferred[Any]]) -> Generator[Deferred[Any], Any, None]:
        """Run ``body``; any failure names the seed that reproduces the fuzz input."""
        try:
            yield body()
        except Exception as error:
            cause = getattr(error, "subFailure", None)  # a FirstError from gatherResults
            detail = cause.getErrorMessage() if cause is not None else str(error)
            raise unittest.FailTest(f"fuzz seed {seed} (HBCHAT_FUZZ_SEED={seed} to replay): {detail}") from error

    @inlineCallbacks
    def test_random_bytes_on_many_connections_never_hurt_a_well_behaved_client(self) -> Any:
        """
        Thousands of random byte strings over 150 connections (16 at a time, lines split
        across writes, half-closes and aborts mid-line): meanwhile and afterwards a client
        registered before them is answered promptly and sees its own MSGs, WHO lists just
        it, a new client can register, and the server logged no error.
        """
        seed = SEED
        factory, port = self.startFuzzServer()
        good = yield self.connect(port, "good")
        yield self.register(good, "good")
        traffic = GoodTraffic(good)
        loop = LoopingCall(traffic.tick)
        loop.clock = reactor

        def stopTraffic() -> None:
            if loop.running:
                loop.stop()

        self.addCleanup(stopTraffic)

        @inlineCallbacks
        def body() -> Generator[Deferred[Any], Any, None]:
            startedAt = reactor.seconds()
            loop.start(GOOD_INTERVAL)
            run = yield self.fuzz(port, seed)
            fuzzedAt = reactor.seconds()
            stopTraffic()
            self.assertGreaterEqual(run.stringsSent, 1500, f"the fuzz hardly ran: {run}")
            yield waitUntil(lambda: not traffic.unanswered(), "the good client's last answers")
            self.assertLess(traffic.worstWait(), STALL_LIMIT, f"the good client waited too long\n{good.transcript()}")
            self.assertGreaterEqual(traffic.answeredBefore(fuzzedAt), 3, "the good client was not served meanwhile")
            self.assertIsNone(good.lostReason, good.transcript())

            start = good.mark()
            good.sendLine("PING after-fuzz")
            yield good.waitForLine("PONG after-fuzz", start)
            good.sendLine("SAY still here after the fuzz")
            yield good.waitForLine(r"MSG \d+ good still here after the fuzz", start)
            yield waitUntil(lambda: len(factory.connections) == 1, "the fuzz connections closing on the server")
            good.sendLine("WHO")
            yield good.waitForLine("USERS good", start)

            newcomer = yield self.connect(port, "newcomer")
            yield self.register(newcomer, "newcomer")
            yield good.waitForLine(r"JOIN \d+ newcomer", start)
            newcomer.sendLine("WHO")
            yield newcomer.waitForLine("USERS good newcomer")
            errors = self.flushLoggedErrors()
            self.assertEqual(errors, [], "the server logged errors:\n" + "\n".join(e.getTraceback() for e in errors))
            log.info(
                "socket fuzz, seed {seed}: {run}; {took:.1f}s; good client's worst wait {worst:.3f}s",
                seed=seed,
                run=run,
                took=fuzzedAt - startedAt,
                worst=traffic.worstWait(),
            )

        yield self.withSeed(seed, body)

    @inlineCallbacks
    def test_fuzz_connections_leave_no_protocol_objects_behind(self) -> Any:
        """
        Once the fuzz connections are closed, the server holds only the good client's
        connection: in its connection set, in the fan-out, and in memory (no protocol
        object of a fuzz connection survives a garbage collection).
        """
        seed = SEED + 1
        factory, port = self.startFuzzServer()
        good = yield self.connect(port, "good")
        yield self.register(good, "good")

        @inlineCallbacks
        def body() -> Generator[Deferred[Any], Any, None]:
            yield self.fuzz(port, seed)
            yield waitUntil(lambda: len(factory.connections) == 1, "the fuzz connections closing on the server")
            [survivor] = factory.connections
            self.assertEqual(survivor.nick, b"good")
            self.assertEqual(len(factory.chat.fanout), 1)
            self.assertEqual([s.nick for s in factory.chat.sessions if s.connection is not None], [b"good"])
            leaked = [protocol for protocol in aliveProtocols(factory) if protocol is not survivor]
            self.assertEqual(
                len(leaked), 0, f"protocol objects of closed connections still alive, from {[p.peer for p in leaked]}"
            )

        yield self.withSeed(seed, body)

    @inlineCallbacks
    def test_an_exception_in_the_server_is_a_logged_error_the_fuzz_would_catch(self) -> Any:
        """
        The oracle works: an exception raised while the server handles a fuzz
        connection's bytes reaches trial as a logged error (which fails a test unless
        flushed), and that connection is closed rather than left hanging.
        """

        def explode(protocol: ChatServerProtocol, rest: bytes) -> None:
            raise ZeroDivisionError("planted by the test")

        self.patch(verbs, "COMMANDS", {**verbs.COMMANDS, b"BOOM": explode})
        _, port = self.startFuzzServer()
        strings = [b"NICK fz0\n", b"SAY x\n", b"BOOM\n"]
        # Ending "quit" without a QUIT: the server has to close the connection itself.
        script = Script(0, 0, strings, [b"NICK fz0\nSA", b"Y x\nBO", b"OM\n"], [0.0, 0.0, 0.0], "quit")
        yield self.fuzzOne(port, script, reactor.seconds() + DEADLINE, FuzzRun(0))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
