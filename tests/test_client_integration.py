"""
Integration tests of the client: ``ChatClientFactory`` in trial's reactor against real servers.

The server is a ``twistd hbchat`` process where the test must restart it or freeze it
(SIGSTOP), and an in-process ``ChatFactory`` behind a chaos proxy where the test cuts
connections.  Nothing sleeps: every wait is for a condition, checked whenever something
happens, with a generous deadline that fails the test with what was seen so far.
"""

from __future__ import annotations

import os
import random
import re
import signal
from collections.abc import Callable
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IProtocolFactory,
    IStreamClientEndpoint,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer

from hbchat.client.backoff import Backoff
from hbchat.client.connector import connect
from hbchat.client.factory import ChatClientFactory
from hbchat.client.protocol import ChatClientProtocol
from hbchat.interfaces import IChatObserver
from tests.test_integration import DEADLINE, ChatTestCase
from tests.test_twistd import TWISTD, TwistdProcess, freePort

log = Logger()

#: Reconnect quickly: these tests are about what survives a reconnect, not about waiting.
QUICK = Backoff(base=0.2, cap=1)


def requireExecutable(path: str | None, what: str) -> str:
    """``path``, or skip the test; but on CI (``CI`` set) a missing executable is a failure."""
    if path is not None:
        return path
    message = f"no {what} executable next to sys.executable or on PATH"
    if os.environ.get("CI"):
        raise unittest.FailTest(f"{message}; it is required when CI is set (install the package)")
    raise unittest.SkipTest(message)


class Conditions:
    """
    Waits for conditions on state that changes as events arrive.

    Whatever changes the state calls :meth:`check`; each pending condition is evaluated
    then, so a wait ends at the event that satisfies it, or fails at its deadline with a
    description of the state at that moment.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Callable[[], bool], Deferred[None], IDelayedCall]] = []

    def check(self) -> None:
        for entry in list(self._pending):
            condition, d, timer = entry
            if entry in self._pending and condition():
                self._pending.remove(entry)
                if timer.active():
                    timer.cancel()
                d.callback(None)

    def waitFor(
        self, condition: Callable[[], bool], what: str, describe: Callable[[], str], timeout: float = DEADLINE
    ) -> Deferred[None]:
        if condition():
            return succeed(None)
        d: Deferred[None] = Deferred()

        def expired() -> None:
            for entry in list(self._pending):
                if entry[1] is d:
                    self._pending.remove(entry)
                    d.errback(unittest.FailTest(f"waited {timeout}s for {what}; still not so.\n{describe()}"))

        timer = reactor.callLater(timeout, expired)
        self._pending.append((condition, d, timer))
        return d

    def cancelAll(self) -> None:
        pending, self._pending = self._pending, []
        for _, _, timer in pending:
            if timer.active():
                timer.cancel()


@implementer(IChatObserver)
class WatchingObserver:
    """Records everything a client reports, with the reactor time, and wakes up waits."""

    def __init__(self, name: str, conditions: Conditions) -> None:
        self.name = name
        self.conditions = conditions
        #: Everything, as short strings, in order.
        self.events: list[str] = []
        self.times: list[float] = []
        #: (seq, nick, text, own) of every MSG reported.
        self.messages: list[tuple[int, str, str, bool]] = []
        #: (reactor time, reason) of every ``disconnected``.
        self.disconnects: list[tuple[float, str]] = []
        self.hooks: list[Callable[[str], None]] = []

    def _note(self, event: str) -> None:
        self.events.append(event)
        self.times.append(reactor.seconds())
        for hook in list(self.hooks):
            hook(event)
        self.conditions.check()

    def registered(self, nick: str, resumed: bool) -> None:
        self._note(f"registered {nick} resumed={resumed}")

    def message(self, seq: int, nick: str, text: str, own: bool) -> None:
        self.messages.append((seq, nick, text, own))
        self._note(f"msg {seq} {nick} {text}{' (own)' if own else ''}")

    def private(self, sender: str, text: str) -> None:
        self._note(f"private {sender} {text}")

    def joined(self, seq: int, nick: str) -> None:
        self._note(f"joined {nick}")

    def left(self, seq: int, nick: str, reason: str) -> None:
        self._note(f"left {nick} {reason}")

    def users(self, nicks: list[str]) -> None:
        self._note("users " + " ".join(nicks))

    def resumed(self, count: int, complete: bool, missing: int | None) -> None:
        self._note(f"resumed {count} {'complete' if complete else 'partial'}")

    def historyLost(self) -> None:
        self._note("history lost")

    def serverError(self, code: int, text: str) -> None:
        self._note(f"error {code} {text}")

    def disconnected(self, reason: str) -> None:
        self.disconnects.append((reactor.seconds(), reason))
        self._note(f"disconnected: {reason}")

    def reconnecting(self, delay: float, attempt: int, reason: str) -> None:
        self._note(f"reconnecting in {delay:.2f}s (attempt {attempt})")

    def gaveUp(self, reason: str) -> None:
        self._note(f"gave up: {reason}")

    def rtt(self, seconds: float) -> None:
        pass

    # --- queries ---

    def texts(self, nick: str | None = None) -> list[str]:
        return [text for _, who, text, _ in self.messages if nick is None or who == nick]

    def count(self, prefix: str) -> int:
        return sum(1 for event in self.events if event.startswith(prefix))

    def transcript(self, head: int = 20, tail: int = 40) -> str:
        rows = [f"  {time:.3f} {event}" for time, event in zip(self.times, self.events, strict=True)]
        if len(rows) > head + tail:
            rows = [*rows[:head], f"  ... ({len(rows) - head - tail} events not shown) ...", *rows[-tail:]]
        return f"{self.name} saw {len(self.events)} events:\n" + "\n".join(rows)


@implementer(IStreamClientEndpoint)
class TrackingEndpoint:
    """An endpoint that tells its factory about every connection it makes."""

    def __init__(self, endpoint: IStreamClientEndpoint, factory: TrackedClientFactory) -> None:
        self.endpoint = endpoint
        self.factory = factory

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[Any]:
        def connected(protocol: Any) -> Any:
            self.factory.open.add(cast(ChatClientProtocol, protocol))
            return protocol

        return self.endpoint.connect(protocolFactory).addCallback(connected)


class TrackedClientFactory(ChatClientFactory):
    """A client factory that knows its open connections, so that a test can end them all."""

    def __init__(self, nick: str, observer: WatchingObserver, **settings: Any) -> None:
        super().__init__(nick, observer, **settings)
        self.watcher = observer
        self.open: set[ChatClientProtocol] = set()

    def lost(self, protocol: ChatClientProtocol, reason: Failure) -> None:
        self.open.discard(protocol)
        super().lost(protocol, reason)
        self.watcher.conditions.check()


class ClientTestCase(ChatTestCase):
    """Chat clients driven by ``ChatClientFactory``, stopped and disconnected at cleanup."""

    def setUp(self) -> None:
        super().setUp()
        self.conditions = Conditions()
        # Runs last: no wait may outlive the test.
        self.addCleanup(self.conditions.cancelAll)

    def waitFor(
        self, condition: Callable[[], bool], what: str, *observers: WatchingObserver, timeout: float = DEADLINE
    ) -> Deferred[None]:
        return self.conditions.waitFor(
            condition, what, lambda: "\n".join(observer.transcript() for observer in observers), timeout
        )

    def startClient(self, nick: str, port: int, seed: int = 1) -> tuple[TrackedClientFactory, WatchingObserver]:
        observer = WatchingObserver(nick, self.conditions)
        factory = TrackedClientFactory(nick, observer, backoff=QUICK, clock=reactor, rng=random.Random(seed))
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
        connect(reactor, TrackingEndpoint(endpoint, factory), factory)
        self.addCleanup(self._stopClient, factory)
        return factory, observer

    def _stopClient(self, factory: TrackedClientFactory) -> Deferred[None]:
        factory.stopTrying()
        for protocol in list(factory.open):
            if protocol.transport is not None:
                cast(ITCPTransport, protocol.transport).abortConnection()
        return self.waitFor(lambda: not factory.open, f"{factory.watcher.name}: connections closed", factory.watcher)

    def waitRegistered(self, observer: WatchingObserver, times: int = 1) -> Deferred[None]:
        """Until the observer has seen its own JOIN after registering ``times`` times."""
        nick = observer.name
        return self.waitFor(lambda: observer.count(f"joined {nick}") >= times, f"{nick} registered ({times})", observer)

    def waitOwn(self, observer: WatchingObserver, *texts: str) -> Deferred[None]:
        """Until the echoes of all ``texts`` (said by the observer's client) have been seen."""
        nick = observer.name
        return self.waitFor(
            lambda: set(texts) <= {text for _, who, text, own in observer.messages if who == nick and own},
            f"{nick}: echoes of {texts!r}",
            observer,
        )


# --- a twistd server as a process ---


class ServerProcess(TwistdProcess):
    """A ``twistd -n hbchat`` child whose output wakes up waits."""

    def __init__(self, conditions: Conditions) -> None:
        super().__init__()
        self.conditions = conditions
        self.transport: Any = None

    def outReceived(self, data: bytes) -> None:
        super().outReceived(data)
        self.conditions.check()

    def errReceived(self, data: bytes) -> None:
        super().errReceived(data)
        self.conditions.check()

    def processEnded(self, reason: Failure) -> None:
        super().processEnded(reason)
        self.conditions.check()

    @property
    def running(self) -> bool:
        return self.reason is None

    def sendSignal(self, number: signal.Signals) -> None:
        assert self.transport is not None and self.running, self.output()
        self.transport.signalProcess(int(number))


class ServerProcessTestCase(ClientTestCase):
    """Tests that start, stop, restart and freeze ``twistd hbchat`` processes."""

    SERVER_OPTIONS = ("--ping", "1", "--timeout", "3", "--grace", "60", "--retry-hint", "1")

    def setUp(self) -> None:
        super().setUp()
        self.twistd = requireExecutable(TWISTD, "twistd")

    @inlineCallbacks
    def startServerProcess(self, port: int) -> Any:
        """``twistd -n hbchat`` listening on 127.0.0.1:``port``; fires once it listens."""
        directory = os.path.abspath(str(self.mktemp()))
        os.makedirs(directory)
        process = ServerProcess(self.conditions)
        arguments = [
            self.twistd,
            "-n",
            "--pidfile=",
            "hbchat",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            *self.SERVER_OPTIONS,
        ]
        process.transport = reactor.spawnProcess(process, self.twistd, arguments, env=dict(os.environ), path=directory)
        self.addCleanup(self._killServerProcess, process)
        listening = f"starting on {port}"
        yield self.conditions.waitFor(
            lambda: listening in process.out.decode(errors="replace") or not process.running,
            f"twistd to listen on {port}",
            process.output,
        )
        if not process.running:
            self.fail(f"twistd exited before it listened\n{process.output()}")
        return process

    def waitEnded(self, process: ServerProcess, what: str) -> Deferred[None]:
        return self.conditions.waitFor(lambda: not process.running, what, process.output)

    @inlineCallbacks
    def _killServerProcess(self, process: ServerProcess) -> Any:
        if process.running:
            # A stopped process dies of SIGKILL too, but SIGCONT first keeps it simple.
            process.sendSignal(signal.SIGCONT)
            process.sendSignal(signal.SIGKILL)
        yield self.waitEnded(process, f"twistd dying of SIGKILL\n{process.output()}")


class ServerRestartTests(ServerProcessTestCase):
    @inlineCallbacks
    def test_restart_registers_afresh_and_delivers_the_outbox_once(self) -> Any:
        """
        SIGTERM, then a new server on the same port: the client is told BYE shutdown, comes
        back (its RESUME is refused: the new server knows no sessions), registers again
        reporting the history as lost, and then delivers, once each and in order, the
        lines said while no server was there.  Nothing is reported twice.
        """
        port = freePort()
        first = yield self.startServerProcess(port)
        factory, alice = self.startClient("alice", port)
        yield self.waitRegistered(alice)
        factory.say("before the restart")
        yield self.waitOwn(alice, "before the restart")

        first.sendSignal(signal.SIGTERM)
        yield self.waitFor(lambda: bool(alice.disconnects), "the client to notice the shutdown", alice)
        self.assertEqual(alice.disconnects[0][1], "the server closed the connection (shutdown)", alice.transcript())
        self.assertFalse(factory.connected)
        factory.say("said while down 1")
        factory.say("said while down 2")
        self.assertEqual(len(factory.session.outbox), 2)
        yield self.waitEnded(first, f"the first twistd exiting after SIGTERM\n{first.output()}")
        self.assertNotIn("Traceback", first.output(), first.output())

        yield self.startServerProcess(port)
        yield self.waitOwn(alice, "said while down 1", "said while down 2")
        self.assertTrue(factory.session.idle, alice.transcript())

        interesting = [event for event in alice.events if not event.startswith("reconnecting")]
        # Server sequence numbers start again at 1 after a restart: JOIN 1, MSG 2, ...
        self.assertEqual(
            interesting,
            [
                "registered alice resumed=False",
                "joined alice",
                "msg 2 alice before the restart (own)",
                "disconnected: the server closed the connection (shutdown)",
                "history lost",
                "registered alice resumed=False",
                "joined alice",
                "msg 2 alice said while down 1 (own)",
                "msg 3 alice said while down 2 (own)",
            ],
            alice.transcript(),
        )
        # The first reconnect came no later than the retry hint (1 s) allows.
        self.assertLessEqual(float(re.findall(r"reconnecting in (\S+)s", " ".join(alice.events))[0]), 1.0)


class ServerFreezeTests(ServerProcessTestCase):
    TIMEOUT = 3.0
    #: How late a detection may be on a slow, loaded machine.
    SLACK = 7.0

    @inlineCallbacks
    def test_frozen_server_is_detected_and_the_session_resumed(self) -> Any:
        """
        A server stopped with SIGSTOP sends nothing: the client gives up on the connection
        after the advertised timeout (3 s) of silence, no sooner, and after SIGCONT it
        resumes its session completely.  A line said into the frozen connection and one
        said while disconnected are each delivered once, in order.
        """
        port = freePort()
        server = yield self.startServerProcess(port)
        factory, bob = self.startClient("bob", port)
        yield self.waitRegistered(bob)
        factory.say("before the freeze")
        yield self.waitOwn(bob, "before the freeze")
        protocol = factory.protocolInstance
        assert protocol is not None

        server.sendSignal(signal.SIGSTOP)
        frozenAt = reactor.seconds()
        factory.say("into the frozen connection")  # written to a live socket, never echoed
        yield self.waitFor(
            lambda: bool(bob.disconnects), "the client to detect the frozen server", bob, timeout=DEADLINE
        )
        detectedAt, reason = bob.disconnects[0]
        silence = detectedAt - protocol.lastReceived
        server.sendSignal(signal.SIGCONT)
        factory.say("said while disconnected")

        self.assertRegex(reason, r"^the server was silent for \d+\.\ds$", bob.transcript())
        log.info(
            "frozen server detected after {took:.3f}s ({silence:.3f}s of silence)",
            took=detectedAt - frozenAt,
            silence=silence,
        )
        self.assertGreaterEqual(silence, self.TIMEOUT - 0.01, f"detected after {silence:.3f}s of silence")
        self.assertLessEqual(detectedAt - frozenAt, self.TIMEOUT + self.SLACK, bob.transcript())
        # The last traffic before the freeze was at most a ping interval or so earlier.
        self.assertGreaterEqual(detectedAt - frozenAt, 1.0, bob.transcript())

        yield self.waitFor(lambda: bob.count("resumed ") >= 1, "the session resumed", bob)
        yield self.waitOwn(bob, "into the frozen connection", "said while disconnected")
        self.assertTrue(server.running)
        self.assertTrue(factory.session.idle, bob.transcript())
        milestones = [event for event in bob.events if event.startswith(("registered", "resumed", "history", "gave"))]
        self.assertEqual(len(milestones), 3, bob.transcript())
        self.assertEqual(milestones[:2], ["registered bob resumed=False", "registered bob resumed=True"])
        # What was replayed depends on what the thawed server handled first (our LEFT, the
        # line said into the frozen connection), but the replay must be complete.
        self.assertRegex(milestones[2], r"^resumed \d+ complete$", bob.transcript())
        self.assertEqual(
            bob.texts(),
            ["before the freeze", "into the frozen connection", "said while disconnected"],
            bob.transcript(),
        )
        seqs = [seq for seq, _, _, _ in bob.messages]
        self.assertEqual(seqs, sorted(set(seqs)), bob.transcript())


# --- chaos: a proxy that cuts every connection at random moments ---


class _Inbound(Protocol):
    """A client's connection to the proxy; its data goes upstream once that is connected."""

    def __init__(self, proxy: ChaosProxy) -> None:
        self.proxy = proxy
        self.upstream: _Outbound | None = None
        self.connecting: Deferred[Any] | None = None
        self.pending: list[bytes] = []
        self.closed = False

    def connectionMade(self) -> None:
        self.proxy.inbound.add(self)
        self.connecting = connectProtocol(self.proxy.target, _Outbound(self))
        self.connecting.addCallbacks(self._upstreamConnected, self._upstreamFailed)

    def _upstreamConnected(self, upstream: _Outbound) -> None:
        self.connecting = None
        if self.closed:
            cast(ITCPTransport, upstream.transport).abortConnection()
            return
        self.upstream = upstream
        assert upstream.transport is not None
        upstream.transport.write(b"".join(self.pending))
        self.pending = []

    def _upstreamFailed(self, reason: Failure) -> None:
        self.connecting = None
        if not self.closed:
            cast(ITCPTransport, self.transport).abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.upstream is None:
            self.pending.append(data)
        elif self.upstream.transport is not None:
            self.upstream.transport.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True
        self.proxy.inbound.discard(self)
        if self.upstream is not None and not self.upstream.closed:
            assert self.upstream.transport is not None
            self.upstream.transport.loseConnection()
        elif self.connecting is not None:
            self.connecting.cancel()
        self.proxy.conditions.check()


class _Outbound(Protocol):
    """The proxy's connection to the server for one inbound connection."""

    def __init__(self, inbound: _Inbound) -> None:
        self.inbound = inbound
        self.closed = False

    def connectionMade(self) -> None:
        self.inbound.proxy.outbound.add(self)

    def dataReceived(self, data: bytes) -> None:
        if not self.inbound.closed and self.inbound.transport is not None:
            self.inbound.transport.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True
        self.inbound.proxy.outbound.discard(self)
        if not self.inbound.closed and self.inbound.transport is not None:
            self.inbound.transport.loseConnection()
        self.inbound.proxy.conditions.check()


class ChaosProxy(ServerFactory):
    """Forwards 127.0.0.1:<port> to a server, and aborts every connection on :meth:`cut`."""

    noisy = False

    def __init__(self, targetPort: int, conditions: Conditions) -> None:
        self.target = TCP4ClientEndpoint(reactor, "127.0.0.1", targetPort, timeout=5)
        self.conditions = conditions
        self.inbound: set[_Inbound] = set()
        self.outbound: set[_Outbound] = set()
        self.listening: IListeningPort | None = None

    def buildProtocol(self, addr: IAddress | None) -> _Inbound:
        return _Inbound(self)

    def listen(self) -> int:
        self.listening = reactor.listenTCP(0, self, interface="127.0.0.1")
        return cast(IPv4Address, self.listening.getHost()).port

    def cut(self) -> int:
        """Abort both sides of every proxied connection; returns how many were cut."""
        inbound = list(self.inbound)
        for connection in inbound:
            connection.closed = True  # its peer is aborted here, not closed gracefully
            cast(ITCPTransport, connection.transport).abortConnection()
            if connection.upstream is not None:
                connection.upstream.closed = True
                cast(ITCPTransport, connection.upstream.transport).abortConnection()
        return len(inbound)

    def close(self) -> Deferred[Any]:
        listening = self.listening
        stopped = succeed(None) if listening is None else listening.stopListening()
        self.cut()

        @inlineCallbacks
        def drained() -> Any:
            yield stopped
            yield self.conditions.waitFor(
                lambda: not self.inbound and not self.outbound,
                "the proxy's connections closed",
                lambda: f"{len(self.inbound)} inbound, {len(self.outbound)} outbound still open",
            )

        return drained()


class ChaosTests(ClientTestCase):
    CUTS = 20
    PER_CLIENT = 250
    #: Seconds between two lines from each client: 250 lines in 7.5 s.
    PACE = 0.03
    #: Seconds between two cuts, drawn uniformly: about 7.5 s for 20 cuts.
    CUT_GAP = (0.1, 0.65)
    SEED = 20240611

    @inlineCallbacks
    def test_two_clients_lose_nothing_and_double_nothing_through_20_cuts(self) -> Any:
        """
        Two clients behind a proxy that aborts every connection 20 times at random moments
        each say 250 numbered lines.  Both end up with all 500, each exactly once, every
        sender's lines in order, and the very same sequence on both sides.
        """
        _, serverPort = self.startServer(ping=1, timeout=3, grace=60, history=5000)
        proxy = ChaosProxy(serverPort, self.conditions)
        port = proxy.listen()
        self.addCleanup(proxy.close)

        clients = {name: self.startClient(name, port, seed) for seed, name in enumerate(["a", "b"], start=11)}
        observers = [observer for _, observer in clients.values()]
        for _, observer in clients.values():
            yield self.waitRegistered(observer)

        rng = random.Random(self.SEED)
        cutsDone: list[int] = []

        def scheduleCut() -> None:
            def cutNow() -> None:
                cutsDone.append(proxy.cut())
                self.conditions.check()
                if len(cutsDone) < self.CUTS:
                    scheduleCut()

            timer = reactor.callLater(rng.uniform(*self.CUT_GAP), cutNow)
            self.addCleanup(lambda: timer.cancel() if timer.active() else None)

        sent = {name: 0 for name in clients}

        def sayNext() -> None:
            for name, (factory, _) in clients.items():
                if sent[name] < self.PER_CLIENT:
                    sent[name] += 1
                    factory.say(f"{name}-{sent[name]:04d}")
            self.conditions.check()
            if all(count == self.PER_CLIENT for count in sent.values()):
                pacer.stop()

        pacer = LoopingCall(sayNext)
        self.addCleanup(lambda: pacer.stop() if pacer.running else None)
        startedAt = reactor.seconds()
        scheduleCut()
        pacer.start(self.PACE)

        yield self.waitFor(
            lambda: len(cutsDone) == self.CUTS and not pacer.running,
            "all lines said and all cuts made",
            *observers,
            timeout=120,
        )
        # Calm again: one last line each, after everything else they said.
        for name, (factory, _) in clients.items():
            factory.say(f"{name}-end")

        def finished() -> bool:
            return all(
                {"a-end", "b-end"} <= set(observer.texts()) and factory.session.idle
                for factory, observer in clients.values()
            )

        yield self.waitFor(finished, "both clients to see both last lines, with nothing left to send", *observers)
        took = reactor.seconds() - startedAt
        log.info(
            "chaos: {cuts} cuts severed {severed} connections; done in {took:.2f}s",
            cuts=len(cutsDone),
            severed=sum(cutsDone),
            took=took,
        )

        expected = {name: [f"{name}-{n:04d}" for n in range(1, self.PER_CLIENT + 1)] + [f"{name}-end"] for name in sent}
        views = {}
        for name, (_, observer) in clients.items():
            for sender, lines in expected.items():
                got = observer.texts(sender)
                if got != lines:
                    missing = sorted(set(lines) - set(got))
                    doubled = sorted({text for text in got if got.count(text) > 1})
                    self.fail(
                        f"{name} saw {len(got)} lines from {sender}: missing {missing[:10]}, doubled {doubled[:10]}"
                        f"\n{observer.transcript()}"
                    )
            seqs = [seq for seq, _, _, _ in observer.messages]
            self.assertEqual(seqs, sorted(set(seqs)), f"{name}: seqs not strictly increasing")
            views[name] = [(seq, nick, text) for seq, nick, text, _ in observer.messages]
            for event in observer.events:
                self.assertFalse(event.startswith(("history lost", "gave up", "error ")), event)
                if event.startswith("resumed "):
                    self.assertTrue(event.endswith(" complete"), observer.transcript())
            # The cuts did hit this client, and it resumed each time.
            self.assertGreaterEqual(observer.count("resumed "), 1, observer.transcript())
            own = [text for _, who, text, isOwn in observer.messages if isOwn]
            self.assertEqual(own, expected[name], f"{name}: own lines not all recognised as own")
        self.assertEqual(views["a"], views["b"], "the two clients saw different chats")
        self.assertEqual(len(cutsDone), self.CUTS)
        self.assertGreater(sum(cutsDone), 0)
