"""
Integration tests: the real server on real loopback sockets inside trial's reactor.

Clients are small line protocols defined here. Nothing sleeps: every wait is on an event
(a line, a closed connection, a fired Deferred) with a generous deadline, and a deadline
that passes fails the test with what was received so far.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterable
from typing import Any, cast

from twisted.internet import reactor, tcp, unix
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, gatherResults, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, UNIXClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial import unittest

from hbchat.config import ServerConfig
from hbchat.ops.observed import ObservedChatFactory as ChatFactory
from hbchat.server.factory import ChatFactory as ServerChatFactory
from hbchat.server.flow import CLOSE_GRACE
from hbchat.server.listeners import Listener
from hbchat.server.service import ChatService
from hbchat.server.tap import ServerOptions, makeService

#: How long any single wait may take before the test fails. Generous on purpose: these
#: deadlines exist to turn a hang into a readable failure, not to measure speed.
DEADLINE = 30.0

#: Measurements (how long a cut or a stop took) go to trial's test.log.
log = Logger()


def within(d: Deferred[Any], seconds: float, what: str) -> Deferred[Any]:
    """``d``, failed with a readable test failure if it has not fired within ``seconds``."""

    def onTimeout(result: Any, timeout: float) -> Any:
        if isinstance(result, Failure) and result.check(CancelledError):
            return Failure(unittest.FailTest(f"{what}: not done within {timeout}s"))
        return result

    return d.addTimeout(seconds, reactor, onTimeoutCancel=onTimeout)


class _Waiter:
    """One pending wait: ``count`` lines matching ``pattern`` at or after index ``start``."""

    def __init__(self, pattern: re.Pattern[str], count: int, start: int) -> None:
        self.pattern = pattern
        self.count = count
        self.start = start
        self.matches: list[re.Match[str]] = []
        self.deferred: Deferred[list[re.Match[str]]] = Deferred()
        self.timer: Any = None

    def describe(self) -> str:
        wanted = f"{self.count} lines" if self.count > 1 else "a line"
        return f"{wanted} matching {self.pattern.pattern!r} (from line {self.start}, found {len(self.matches)})"


class LineClient(Protocol):
    """
    A test client: records every line it receives (decoded, LF removed) with its arrival
    time, answers the server's PINGs unless told not to, and lets a test wait for lines.
    """

    def __init__(self, name: str, answerPings: bool = True, maxStored: int | None = None) -> None:
        self.name = name
        self.answerPings = answerPings
        #: Lines longer than this are stored cut short (a flood of big lines is only counted).
        self.maxStored = maxStored
        self.lines: list[str] = []
        self.arrivals: list[float] = []
        self.sentLines = 0
        self.lastSentAt: float | None = None
        self.lostReason: Failure | None = None
        self.lineHooks: list[Callable[[str], None]] = []
        self._buffer = b""
        self._waiters: list[_Waiter] = []
        self._lostNotify: list[Deferred[list[Failure]]] = []

    # --- protocol ---

    def dataReceived(self, data: bytes) -> None:
        pieces = (self._buffer + data).split(b"\n")
        self._buffer = pieces.pop()
        now = reactor.seconds()
        for raw in pieces:
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if self.maxStored is not None and len(raw) > self.maxStored:
                line = raw[: self.maxStored].decode("utf-8", "replace") + f"...({len(raw)} bytes)"
            else:
                line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            self.arrivals.append(now)
            if self.answerPings and (line == "PING" or line.startswith("PING ")):
                self.sendLine("PONG" + line[4:])
            for hook in list(self.lineHooks):
                hook(line)
            self._offer(len(self.lines) - 1, line)

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]
        self.lostReason = reason
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            self._fail(waiter, "the connection closed first")
        notify, self._lostNotify = self._lostNotify, []
        for d in notify:
            d.callback([reason])

    # --- sending ---

    def sendLine(self, line: str) -> None:
        self.sendLines([line])

    def sendLines(self, lines: Iterable[str]) -> None:
        batch = [line.encode("utf-8") + b"\n" for line in lines]
        assert self.transport is not None, f"{self.name}: not connected"
        self.transport.write(b"".join(batch))
        self.sentLines += len(batch)
        self.lastSentAt = reactor.seconds()

    # --- waiting ---

    def mark(self) -> int:
        """The index the next received line will have; pass it as ``start`` to ignore older lines."""
        return len(self.lines)

    def waitForLines(
        self, pattern: str, count: int, start: int = 0, timeout: float = DEADLINE
    ) -> Deferred[list[re.Match[str]]]:
        """Fires with the first ``count`` matches (whole-line) at or after line ``start``."""
        waiter = _Waiter(re.compile(pattern), count, start)
        for index in range(start, len(self.lines)):
            match = waiter.pattern.fullmatch(self.lines[index])
            if match is not None:
                waiter.matches.append(match)
                if len(waiter.matches) == count:
                    waiter.deferred.callback(waiter.matches)
                    return waiter.deferred
        if self.lostReason is not None:
            self._fail(waiter, "the connection is closed")
            return waiter.deferred
        waiter.timer = reactor.callLater(timeout, self._timedOut, waiter, timeout)
        self._waiters.append(waiter)
        return waiter.deferred

    def waitForLine(self, pattern: str, start: int = 0, timeout: float = DEADLINE) -> Deferred[re.Match[str]]:
        """Fires with the first whole-line match of ``pattern`` at or after line ``start``."""
        return self.waitForLines(pattern, 1, start, timeout).addCallback(lambda matches: matches[0])

    def whenLost(self) -> Deferred[list[Failure]]:
        """
        Fires once the connection is closed, with the reason wrapped in a list (a Failure
        as a Deferred's result would be taken for an error).
        """
        if self.lostReason is not None:
            d: Deferred[Any] = Deferred()
            d.callback([self.lostReason])
            return d
        d = Deferred()
        self._lostNotify.append(d)
        return d

    def indexOf(self, pattern: str, start: int = 0) -> int:
        compiled = re.compile(pattern)
        for index in range(start, len(self.lines)):
            if compiled.fullmatch(self.lines[index]):
                return index
        raise unittest.FailTest(f"{self.name}: no line matching {pattern!r}\n{self.transcript()}")

    def transcript(self, head: int = 15, tail: int = 40) -> str:
        lines = self.lines
        if len(lines) <= head + tail:
            shown = [f"  {i}: {line}" for i, line in enumerate(lines)]
        else:
            shown = [f"  {i}: {lines[i]}" for i in range(head)]
            shown.append(f"  ... ({len(lines) - head - tail} lines not shown) ...")
            shown += [f"  {i}: {lines[i]}" for i in range(len(lines) - tail, len(lines))]
        closed = "" if self.lostReason is None else f"; connection closed: {self.lostReason.getErrorMessage()}"
        return f"{self.name} received {len(lines)} lines{closed}:\n" + "\n".join(shown)

    def cancelWaits(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if waiter.timer is not None and waiter.timer.active():
                waiter.timer.cancel()

    def disconnect(self) -> Deferred[list[Failure]]:
        """Abort the connection (if still open) and fire once it is closed."""
        self.cancelWaits()
        if self.lostReason is None and self.transport is not None:
            cast(ITCPTransport, self.transport).abortConnection()
        return within(self.whenLost(), DEADLINE, f"{self.name}: closing the connection")

    def _offer(self, index: int, line: str) -> None:
        for waiter in list(self._waiters):
            if index < waiter.start:
                continue
            match = waiter.pattern.fullmatch(line)
            if match is None:
                continue
            waiter.matches.append(match)
            if len(waiter.matches) == waiter.count:
                self._waiters.remove(waiter)
                if waiter.timer is not None and waiter.timer.active():
                    waiter.timer.cancel()
                waiter.deferred.callback(waiter.matches)

    def _timedOut(self, waiter: _Waiter, timeout: float) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            self._fail(waiter, f"nothing within {timeout}s")

    def _fail(self, waiter: _Waiter, why: str) -> None:
        if waiter.timer is not None and waiter.timer.active():
            waiter.timer.cancel()
        waiter.deferred.errback(
            unittest.FailTest(f"{self.name}: waited for {waiter.describe()}: {why}.\n{self.transcript()}")
        )


def listeningAddresses(factory: ChatFactory) -> list[Any]:
    """The addresses the reactor is listening on for ``factory`` (TCP and UNIX ports)."""
    return [
        reader.getHost()
        for reader in reactor.getReaders()
        # A ChatService's ports listen with a Listener in front of the chat (behind TLS on ssl: ones).
        if isinstance(reader, (tcp.Port, unix.Port)) and chatBehind(reader.factory) is factory
    ]


def chatBehind(portFactory: Any) -> Any:
    """The chat a port's factory leads to: through TLS (``wrappedFactory``) and a Listener (``chat``)."""
    listener = getattr(portFactory, "wrappedFactory", portFactory)
    return listener.chat if isinstance(listener, Listener) else listener


def tcpPortOf(factory: ChatFactory) -> int:
    ports = [address.port for address in listeningAddresses(factory) if hasattr(address, "port")]
    if len(ports) != 1:
        raise unittest.FailTest(f"expected one TCP port for the chat, found {ports!r}")
    return int(ports[0])


def forgetSessions(factory: ServerChatFactory) -> None:
    """
    End the sessions a stopped server still keeps for resumption (a user cut by a timeout
    stays resumable for --grace seconds): their expiry timers would outlive the test.
    """
    sessions = getattr(factory, "sessions", None)
    if sessions is None:
        return
    for session in list(sessions):
        sessions.close(session)


def serverSideOf(factory: ChatFactory, client: LineClient) -> Any:
    """The server's protocol for ``client``'s connection, found by the client's local port."""
    local = cast(IPv4Address, cast(ITCPTransport, client.transport).getHost())
    for protocol in factory.connections:
        if cast(IPv4Address, protocol.link.getPeer()).port == local.port:
            return protocol
    raise unittest.FailTest(f"the server has no connection from {local}")


def pendingOutput(transport: Any) -> int | None:
    """
    Bytes a server-side transport holds in user space because the kernel would not take
    them, or None if this Twisted's FileDescriptor does not look as expected.
    """
    data = getattr(transport, "dataBuffer", None)
    offset = getattr(transport, "offset", None)
    temp = getattr(transport, "_tempDataLen", None)
    if not isinstance(data, (bytes, memoryview)) or not isinstance(offset, int) or not isinstance(temp, int):
        return None
    return len(data) - offset + temp


#: The server's answer to a shutdown: reason ``shutdown``, possibly with parameters (retry=S).
BYE_SHUTDOWN = r"BYE shutdown(?: \S+)*"


class ChatTestCase(unittest.TestCase):
    """Helpers to start a chat and connect clients, with everything cleaned up."""

    def setUp(self) -> None:
        self.clients: list[LineClient] = []
        # Registered first, so it runs last: the server says BYE to its connections
        # first, and whatever is still open afterwards is aborted here.
        self.addCleanup(self._disconnectAll)

    def _disconnectAll(self) -> Deferred[Any]:
        return gatherResults([client.disconnect() for client in self.clients], consumeErrors=True)

    def startServer(self, **settings: Any) -> tuple[ChatFactory, int]:
        factory = ChatFactory(ServerConfig(**settings), reactor)
        # ChatFactory is a plain Factory; listenTCP is annotated for a ServerFactory but takes any.
        port = reactor.listenTCP(0, cast(ServerFactory, factory), interface="127.0.0.1")
        self.addCleanup(self._stopServer, factory, port)
        return factory, cast(IPv4Address, port.getHost()).port

    @inlineCallbacks
    def _stopServer(self, factory: ChatFactory, port: Any) -> Any:
        stopped = gatherResults([port.stopListening(), factory.shutdown()], consumeErrors=True)
        yield within(stopped, DEADLINE, "stopping the server")
        forgetSessions(factory)

    def startService(self, *arguments: str) -> Any:
        """``twistd hbchat`` with these options, as a started service, stopped at cleanup."""
        options = ServerOptions()
        options.parseOptions(list(arguments))
        service = cast(ChatService, makeService(options, reactor))
        service.startService()

        @inlineCallbacks
        def stop() -> Any:
            if service.running:
                yield within(service.stopService(), DEADLINE, "stopping the service")
            forgetSessions(service.factory)

        self.addCleanup(stop)
        return service

    @inlineCallbacks
    def connect(self, port: int, name: str, **kwargs: Any) -> Any:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=DEADLINE)
        client = yield self._connect(endpoint, LineClient(name, **kwargs))
        return client

    @inlineCallbacks
    def connectUNIX(self, path: str, name: str, **kwargs: Any) -> Any:
        endpoint = UNIXClientEndpoint(reactor, path, timeout=DEADLINE)
        client = yield self._connect(endpoint, LineClient(name, **kwargs))
        return client

    @inlineCallbacks
    def _connect(self, endpoint: Any, client: LineClient) -> Any:
        yield within(connectProtocol(endpoint, client), DEADLINE, f"{client.name}: connecting")
        self.clients.append(client)
        return client

    @inlineCallbacks
    def register(self, client: LineClient, nick: str) -> Any:
        """HELLO, then NICK; returns the WELCOME's seq and checks the JOIN right after it."""
        yield client.waitForLine(r"HELLO hbchat/1 ping=\S+ timeout=\S+( .*)?")
        start = client.mark()
        client.sendLine(f"NICK {nick}")
        welcome = yield client.waitForLine(rf"WELCOME {re.escape(nick)} (\S+) (\d+)", start)
        seq = int(welcome.group(2))
        welcomeAt = client.indexOf(rf"WELCOME {re.escape(nick)} .*", start)
        yield client.waitForLine(rf"JOIN {seq + 1} {re.escape(nick)}", start)
        self.assertEqual(
            client.lines[welcomeAt + 1],
            f"JOIN {seq + 1} {nick}",
            f"JOIN does not follow WELCOME\n{client.transcript()}",
        )
        return seq


def msgs(client: LineClient) -> list[tuple[int, str, str]]:
    """The MSG lines a client received, as (seq, nick, text)."""
    found = []
    for line in client.lines:
        if line.startswith("MSG "):
            _, seq, nick, text = line.split(" ", 3)
            found.append((int(seq), nick, text))
    return found


class ChatTests(ChatTestCase):
    @inlineCallbacks
    def test_everyone_sees_every_msg_in_one_order_who_and_tell(self) -> Any:
        """
        Four clients register and talk at once: each receives every MSG (its own
        included), all in the same order with strictly increasing seq. WHO lists everyone
        sorted regardless of case. TELL reaches its target and no one else.
        """
        _, port = self.startServer(ping=5, timeout=30)
        nicks = ["carol", "Alice", "Dave", "bob"]
        clients: dict[str, LineClient] = {}
        for expectedSeq, nick in enumerate(nicks):
            client = yield self.connect(port, nick)
            seq = yield self.register(client, nick)
            self.assertEqual(seq, expectedSeq, client.transcript())
            for other in clients.values():
                yield other.waitForLine(rf"JOIN {seq + 1} {nick}")
            clients[nick] = client
        tokens = {client.lines[client.indexOf(r"WELCOME .*")].split()[2] for client in clients.values()}
        self.assertEqual(len(tokens), len(nicks), "session tokens are not distinct")

        perSender = 6
        sent = {nick: [f"line {i} from {nick} \u00e9\u2713 x" for i in range(perSender)] for nick in nicks}
        for nick, client in clients.items():
            client.sendLines(f"SAY {text}" for text in sent[nick])
        total = perSender * len(nicks)
        for client in clients.values():
            yield client.waitForLines(r"MSG \d+ \S+ .*", total)

        reference = msgs(clients[nicks[0]])
        self.assertEqual(len(reference), total)
        seqs = [seq for seq, _, _ in reference]
        self.assertTrue(all(a < b for a, b in itertools.pairwise(seqs)), f"seq not increasing: {seqs}")
        self.assertGreater(seqs[0], len(nicks), "a MSG reused a JOIN's seq")
        for nick, client in clients.items():
            self.assertEqual(msgs(client), reference, f"{nick} saw another order\n{client.transcript()}")
        for nick in nicks:
            self.assertEqual([text for _, who, text in reference if who == nick], sent[nick])

        alice = clients["Alice"]
        alice.sendLine("WHO")
        users = yield alice.waitForLine(r"USERS .*")
        self.assertEqual(users.group(0), "USERS Alice bob carol Dave")

        alice.sendLines(["TELL bob psst, only for bob", "TELL nobody hello?", "SAY after the tell"])
        private = yield clients["bob"].waitForLine(r"PRIV .*")
        self.assertEqual(private.group(0), "PRIV Alice psst, only for bob")
        yield alice.waitForLine(r"ERR 406 no such nick")
        # Every connection gets its lines in the order the server made them, so once this
        # MSG has arrived any PRIV meant for that connection would have arrived before it.
        for client in clients.values():
            yield client.waitForLine(r"MSG \d+ Alice after the tell")
        for nick, client in clients.items():
            privs = [line for line in client.lines if line.startswith("PRIV ")]
            self.assertEqual(privs, ["PRIV Alice psst, only for bob"] if nick == "bob" else [], client.transcript())
        self.assertLess(
            alice.indexOf(r"ERR 406 no such nick"), alice.indexOf(r"MSG \d+ Alice after the tell"), alice.transcript()
        )

    @inlineCallbacks
    def test_unregistered_connection_only_gets_replies(self) -> Any:
        """Before NICK: ERR 403 for chat commands, PONG for PING, and no chat traffic."""
        _, port = self.startServer(ping=5, timeout=30)
        member = yield self.connect(port, "member")
        yield self.register(member, "member")
        stranger = yield self.connect(port, "stranger")
        yield stranger.waitForLine(r"HELLO hbchat/1 ping=5 timeout=30")
        stranger.sendLines(["SAY hello?", "WHO"])
        yield stranger.waitForLines(r"ERR 403 register first", 2)
        member.sendLine("SAY not for strangers")
        yield member.waitForLine(r"MSG \d+ member not for strangers")
        stranger.sendLine("PING tok-1")
        yield stranger.waitForLine(r"PONG tok-1")
        self.assertEqual(
            stranger.lines,
            ["HELLO hbchat/1 ping=5 timeout=30", "ERR 403 register first", "ERR 403 register first", "PONG tok-1"],
        )


class TimeoutUnderLoadTests(ChatTestCase):
    PING = 0.5
    TIMEOUT = 1.5
    #: SAY lines each flooder may send at most, and how many per tick (every TICK seconds).
    BUDGET = 2000
    BATCH = 20
    TICK = 0.02

    @inlineCallbacks
    def test_silent_client_cut_at_timeout_while_others_flood(self) -> Any:
        """
        A client that stops reading and writing is cut after --timeout of silence, even
        while two others keep the server busy, and the others are told LEFT ... timeout.
        """
        # The flooders send as fast as they can: no rate limit here.
        factory, port = self.startServer(ping=self.PING, timeout=self.TIMEOUT, rate=0)
        flooders = []
        for nick in ("flood1", "flood2"):
            client = yield self.connect(port, nick)
            yield self.register(client, nick)
            flooders.append(client)
        silent = yield self.connect(port, "silent", answerPings=False)
        yield silent.waitForLine(r"HELLO .*")
        silent.sendLine("NICK silent")
        silentSentAt = silent.lastSentAt
        assert silentSentAt is not None
        yield silent.waitForLine(r"JOIN \d+ silent")
        silent.transport.pauseProducing()
        self.assertEqual(silent.sentLines, 1)

        floods = [Flood(client, self.BUDGET, self.BATCH) for client in flooders]
        ticks = [LoopingCall(flood.tick) for flood in floods]
        for loop in ticks:
            loop.clock = reactor
            loop.start(self.TICK)

        def stopFlooding() -> None:
            for loop in ticks:
                if loop.running:
                    loop.stop()

        self.addCleanup(stopFlooding)

        lefts = yield gatherResults(
            [client.waitForLine(r"LEFT (\d+) silent (\S+)") for client in flooders], consumeErrors=True
        )
        stopFlooding()
        for client, left in zip(flooders, lefts, strict=True):
            self.assertEqual(left.group(2), "timeout", client.transcript())
        first = flooders[0]
        leftAt = first.arrivals[first.indexOf(r"LEFT \d+ silent .*")]
        elapsed = leftAt - silentSentAt
        log.info(
            "silent client cut {elapsed:.3f}s after its last line; flood sent {sent} SAYs",
            elapsed=elapsed,
            sent=sum(flood.sent for flood in floods),
        )
        # The server heard the NICK no earlier than it was sent, and never cuts earlier than
        # --timeout after the last byte it heard; a small allowance covers float rounding.
        self.assertGreaterEqual(elapsed, self.TIMEOUT - 0.01, f"cut after {elapsed:.3f}s, before the timeout")
        self.assertLess(elapsed, self.TIMEOUT + 10, f"cut only after {elapsed:.3f}s")
        # The flood really overlapped the silence, and nobody else was cut.
        during = [
            line
            for line, at in zip(first.lines, first.arrivals, strict=True)
            if line.startswith("MSG ") and at < leftAt
        ]
        self.assertGreater(len(during), 200, f"only {len(during)} MSGs arrived before the cut")
        for client in flooders:
            self.assertIsNone(client.lostReason, client.transcript())
            self.assertEqual([line for line in client.lines if line.startswith("LEFT ")], [lefts[0].group(0)])
        self.assertEqual(lefts[0].group(0), lefts[1].group(0))
        leftSeq = int(lefts[0].group(1))
        leftIndex = first.indexOf(r"LEFT \d+ silent .*")
        before = [int(line.split()[1]) for line in first.lines[:leftIndex] if line.startswith("MSG ")]
        after = [int(line.split()[1]) for line in first.lines[leftIndex:] if line.startswith("MSG ")]
        self.assertTrue(all(seq < leftSeq for seq in before) and all(seq > leftSeq for seq in after))
        self.assertEqual(len(factory.connections), 2)

        # The server aborted the silent connection: once it reads again it finds it closed.
        silent.transport.resumeProducing()
        yield within(silent.whenLost(), DEADLINE, "silent client noticing it was cut")

        # The flooders are still served.
        flooders[1].sendLine("WHO")
        yield flooders[1].waitForLine(r"USERS flood1 flood2")


class Flood:
    """Drives one client's share of a bounded flood: a batch of SAYs per tick, paced by the echoes."""

    def __init__(self, client: LineClient, budget: int, batch: int) -> None:
        self.client = client
        self.budget = budget
        self.batch = batch
        self.sent = 0
        self.echoed = 0
        client.lineHooks.append(self._onLine)

    def _onLine(self, line: str) -> None:
        if line.startswith("MSG ") and line.split(" ", 3)[2] == self.client.name:
            self.echoed += 1

    def tick(self) -> None:
        if self.sent >= self.budget or self.sent - self.echoed >= self.batch:
            return  # budget spent, or the server has not caught up with the last batch
        count = min(self.batch, self.budget - self.sent)
        name = self.client.name
        self.client.sendLines(f"SAY flood {name} {i} " + "z" * 40 for i in range(self.sent, self.sent + count))
        self.sent += count


class ShutdownTests(ChatTestCase):
    #: Size of one flooding SAY, and how many rounds of 16 of them may be sent at most
    #: while waiting for the server to hold output it cannot deliver (64 rounds ~ 60 MiB).
    BIG = 60_000
    MAX_ROUNDS = 64

    @inlineCallbacks
    def test_stop_service_says_bye_and_is_not_held_by_a_peer_that_never_reads(self) -> Any:
        """
        stopService() (what SIGTERM does under twistd) closes the listener, sends
        ``BYE shutdown`` to registered and unregistered connections, and its Deferred fires
        within CLOSE_GRACE plus a little even though one peer never reads its output.
        """
        service = self.startService(
            "--listen", "tcp:0:interface=127.0.0.1", "--ping", "5", "--timeout", "30", "--max-line", "65536"
        )
        factory = service.factory
        port = tcpPortOf(factory)

        reader = yield self.connect(port, "reader", maxStored=120)
        yield self.register(reader, "reader")
        stuck = yield self.connect(port, "stuck", answerPings=False, maxStored=120)
        yield self.register(stuck, "stuck")
        stuck.transport.pauseProducing()
        stranger = yield self.connect(port, "stranger")
        yield stranger.waitForLine(r"HELLO .*")

        # Fill the kernel's buffers towards "stuck" until the server holds output for it
        # that it cannot write: then closing it cleanly is impossible and only CLOSE_GRACE
        # bounds the wait.
        stuckServerSide = serverSideOf(factory, stuck).transport
        held = pendingOutput(stuckServerSide)
        text = "b" * self.BIG
        rounds = 0
        while rounds < (self.MAX_ROUNDS if held is not None else 16) and (held is None or held < 1 << 20):
            start = reader.mark()
            reader.sendLines([f"SAY {text}"] * 16)
            yield reader.waitForLines(r"MSG \d+ reader b+\.\.\.\(\d+ bytes\)", 16, start)
            rounds += 1
            held = pendingOutput(stuckServerSide)
        if held is not None:
            self.assertGreaterEqual(held, 1 << 20, f"the server never held output for the stuck peer ({rounds} rounds)")

        startedAt = reactor.seconds()
        yield within(service.stopService(), CLOSE_GRACE + 20, "stopService")
        took = reactor.seconds() - startedAt
        log.info(
            "stopService took {took:.3f}s; {rounds} flood rounds, {held} bytes held for the stuck peer",
            took=took,
            rounds=rounds,
            held=held,
        )
        self.assertLessEqual(took, CLOSE_GRACE + 5, f"stopService took {took:.2f}s")
        if held is not None:
            # Proof that the scenario was real: the stuck peer was given CLOSE_GRACE, not less.
            self.assertGreaterEqual(took, CLOSE_GRACE * 0.9, f"stopService took only {took:.2f}s")

        for client in (reader, stranger):
            [reason] = yield within(client.whenLost(), DEADLINE, f"{client.name}: connection closed")
            self.assertRegex(client.lines[-1], f"^{BYE_SHUTDOWN}$", client.transcript())
            self.assertTrue(reason.check(ConnectionDone), f"{client.name}: {reason.getErrorMessage()}")
        self.assertEqual(len(stranger.lines), 2, stranger.transcript())
        self.assertEqual(stranger.lines[0], "HELLO hbchat/1 ping=5 timeout=30")
        # Nobody was told LEFT about a shutdown.
        self.assertEqual([line for line in reader.lines if line.startswith("LEFT ")], [])

        # The listener is gone: nobody new gets in.
        late = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=DEADLINE)
        yield self.assertFailure(connectProtocol(late, LineClient("late")), ConnectionRefusedError)
        self.assertEqual(factory.connections, set())

        # The stuck peer was aborted, not closed cleanly.
        stuck.transport.resumeProducing()
        [reason] = yield within(stuck.whenLost(), DEADLINE, "stuck: connection closed")
        if held is not None:
            self.assertIsNone(reason.check(ConnectionDone), f"stuck: {reason.getErrorMessage()}")


class EndpointTests(ChatTestCase):
    @inlineCallbacks
    def test_tcp_and_unix_listeners_share_one_chat(self) -> Any:
        """Two --listen endpoints, one chat: users on either see each other."""
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "s")
        service = self.startService(
            "--listen", "tcp:0:interface=127.0.0.1", "--listen", f"unix:{path}", "--ping", "5", "--timeout", "30"
        )
        overTcp = yield self.connect(tcpPortOf(service.factory), "tcpUser")
        yield self.register(overTcp, "tcpUser")
        overUnix = yield self.connectUNIX(path, "unixUser")
        yield self.register(overUnix, "unixUser")
        yield overTcp.waitForLine(r"JOIN \d+ unixUser")

        overTcp.sendLine("SAY hello from tcp")
        for client in (overTcp, overUnix):
            yield client.waitForLine(r"MSG \d+ tcpUser hello from tcp")
        overUnix.sendLine("SAY hello from unix")
        for client in (overTcp, overUnix):
            yield client.waitForLine(r"MSG \d+ unixUser hello from unix")
        self.assertEqual(msgs(overTcp), msgs(overUnix))

        overUnix.sendLine("WHO")
        yield overUnix.waitForLine(r"USERS tcpUser unixUser")
        overUnix.sendLine("TELL tcpUser across sockets")
        yield overTcp.waitForLine(r"PRIV unixUser across sockets")


class SoftOutputBoundTests(ChatTestCase):
    @inlineCallbacks
    def test_the_soft_output_bound_is_the_transports_high_water_mark(self) -> Any:
        """--sendq-soft is where Twisted's transport tells the connection to stop producing."""
        factory, port = self.startServer(ping=5, timeout=30, sendq_soft=123_456)
        alice = yield self.connect(port, "alice")
        yield self.register(alice, "alice")
        self.assertEqual(serverSideOf(factory, alice).transport.bufferSize, 123_456)
