"""
Slow consumers on real loopback sockets: the limits of section 10 of docs/protocol.md.

A client that registers and then never reads fills the kernel's buffers, then the
server's: past ``--sendq-soft`` it is congested (and not read), past ``--sendq-max`` (or
after ``--timeout`` without draining) it is aborted and announced ``LEFT <seq> <nick>
slow``.  Meanwhile the others keep chatting and keep their heartbeats, and what the server
holds for the stuck client stays bounded.  A client that only pauses, and drains before
either limit, loses nothing.

The stuck client's socket gets a small receive buffer before it connects, and the
server's socket towards it a small send buffer (Linux would otherwise grow the latter to
megabytes on loopback), so that the kernel fills quickly and the server's own buffer is
what the test measures.
"""

from __future__ import annotations

import itertools
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer, IReactorSocket, IReactorTime
from twisted.internet.protocol import Factory, ServerFactory
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.trial.unittest import SkipTest

from hbchat.ops.observed import ObservedChatFactory as ChatFactory
from hbchat.server.sendq import kernel_unsent
from tests.test_integration import DEADLINE, ChatTestCase, LineClient, pendingOutput, serverSideOf, tcpPortOf, within

clock = cast(IReactorTime, reactor)

#: Measurements (bytes held, how long a cut took) go to trial's test.log.
log = Logger()

#: Lines that carry an event number (every one of them a client must see, in order).
EVENT = re.compile(r"(?:MSG|JOIN|LEFT) (\d+) .*")


def eventSeqs(client: LineClient, start: int = 0) -> list[int]:
    """The seq of every MSG, JOIN and LEFT ``client`` received from line ``start`` on."""
    return [int(match.group(1)) for line in client.lines[start:] if (match := EVENT.fullmatch(line)) is not None]


def assertContiguous(case: ChatTestCase, client: LineClient, first: int, start: int = 0) -> list[int]:
    """``client`` got every event from ``first`` on, in order, none twice and none missing."""
    seqs = eventSeqs(client, start)
    case.assertTrue(seqs, f"{client.name} received no events\n{client.transcript()}")
    expected = list(range(first, first + len(seqs)))
    if seqs != expected:
        gaps = [(a, b) for a, b in itertools.pairwise(seqs) if b != a + 1][:10]
        case.fail(f"{client.name}: events not contiguous from {first} (first breaks: {gaps})\n{client.transcript()}")
    return seqs


class _One(Factory):
    """Builds the one protocol it was given (for an adopted socket)."""

    def __init__(self, protocol: LineClient) -> None:
        self.protocol_ = protocol

    def buildProtocol(self, addr: Any) -> LineClient:
        return self.protocol_


class Flooder:
    """
    Keeps ``window`` SAYs of ``size`` bytes in flight, sending one more for each echo, until
    ``budget`` SAYs are sent or :meth:`stop` is called: a flood that stops by itself.
    """

    def __init__(self, client: LineClient, budget: int, window: int, size: int) -> None:
        self.client = client
        self.budget = budget
        self.window = window
        self.text = "f" * size
        #: A line at which the flood stops by itself.
        self.stopOn: re.Pattern[str] | None = None
        self.sent = 0
        self.echoed = 0
        self._done: list[Deferred[None]] = []
        client.lineHooks.append(self._onLine)

    def start(self) -> None:
        self._send(self.window)

    def stop(self) -> None:
        self.budget = self.sent
        self._check()

    def whenDone(self) -> Deferred[None]:
        """Fires once every SAY sent so far has come back."""
        d: Deferred[None] = Deferred()
        self._done.append(d)
        self._check()
        return d

    def _send(self, count: int) -> None:
        count = min(count, self.budget - self.sent)
        if count <= 0 or self.client.lostReason is not None:
            return
        name = self.client.name
        self.client.sendLines(f"SAY {name} {i} {self.text}" for i in range(self.sent, self.sent + count))
        self.sent += count

    def _onLine(self, line: str) -> None:
        if self.stopOn is not None and self.stopOn.fullmatch(line):
            self.stop()
        if line.startswith("MSG ") and line.split(" ", 3)[2] == self.client.name:
            self.echoed += 1
            self._send(1)
            self._check()

    def _check(self) -> None:
        if self.sent >= self.budget and self.echoed >= self.sent:
            done, self._done = self._done, []
            for d in done:
                d.callback(None)


class Sampler:
    """Every ``interval`` seconds, the largest unsent output the server holds (one connection, and all)."""

    def __init__(self, factory: ChatFactory, watched: Any, interval: float = 0.01) -> None:
        self.factory = factory
        self.watched = watched
        self.maxWatched = 0
        self.maxTotal = 0
        self.samples = 0
        self.congested = False
        self._loop = LoopingCall(self.sample)
        self._loop.clock = clock
        self._loop.start(interval)

    def sample(self) -> None:
        self.samples += 1
        total = 0
        for protocol in list(self.factory.connections):
            pending = pendingOutput(protocol.transport) or 0
            total += pending
            if protocol is self.watched:
                self.maxWatched = max(self.maxWatched, pending)
                self.congested = self.congested or self.factory.backpressure.is_congested(protocol)
        self.maxTotal = max(self.maxTotal, total)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()


@dataclass
class Scene:
    """A chat with a watcher, two flooders and a stuck client, flooding until the stuck one is cut."""

    factory: ChatFactory
    watcher: LineClient
    #: The WELCOME seq of the watcher: it must see every event after it.
    watcherSeq: int
    flooders: list[LineClient]
    stuck: LineClient
    #: The server's protocol for the stuck client.
    stuckSide: Any
    floods: list[Flooder] = field(default_factory=list)
    sampler: Sampler | None = None
    #: (why, unsent bytes at that moment) for each cutAsSlow of the stuck client.
    cuts: list[tuple[str, int | None]] = field(default_factory=list)
    #: The LEFT each of watcher, flood1, flood2 received about the stuck client.
    lefts: list[re.Match[str]] = field(default_factory=list)
    #: Seconds from the start of the flood to the LEFT.
    took: float = 0.0


class SlowConsumerTestCase(ChatTestCase):
    SOFT = 96 * 1024
    MAX = 1024 * 1024
    PING = 0.5
    TIMEOUT = 5.0
    #: Bytes of text in one flooding SAY, SAYs each flooder keeps in flight, and the most
    #: it may send (2 x 4000 x 1 KB: far more than the stuck client's limits).
    TEXT = 1000
    WINDOW = 16
    BUDGET = 4000
    #: The kernel's buffers towards the stuck client: its receive buffer, and the server's
    #: send buffer for it (left alone, Linux grows the latter to megabytes on loopback, and
    #: the server's own buffer would only start filling after those).
    RCVBUF = 4096
    SNDBUF = 16384
    #: What the server may hold for a client beyond --sendq-soft plus --sendq-max: the
    #: writes of the turn that crossed each bound (a turn's flood is a few dozen SAYs).
    MARGIN = 256 * 1024

    def connectNotReading(self, port: int, name: str) -> LineClient:
        """
        A client whose socket has a small receive buffer from the start (set before
        ``connect``, so the window it advertises is small): adopted by the reactor.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.RCVBUF)
            sock.settimeout(DEADLINE)
            sock.connect(("127.0.0.1", port))  # loopback: the kernel completes it at once
            sock.setblocking(False)
            client = LineClient(name, answerPings=False, maxStored=80)
            cast(IReactorSocket, reactor).adoptStreamConnection(
                sock.fileno(), socket.AF_INET, cast(ServerFactory, _One(client))
            )
        finally:
            sock.close()  # the reactor holds its own duplicate
        self.clients.append(client)
        return client

    @inlineCallbacks
    def flooding(self, **settings: Any) -> Any:
        """
        A server; a watcher that reads everything and answers PINGs; two flooders; a stuck
        client registered last, whose reading is paused.  Nothing flooded yet.
        """
        config: dict[str, Any] = {
            "sendq_soft": self.SOFT,
            "sendq_max": self.MAX,
            "ping": self.PING,
            "timeout": self.TIMEOUT,
            "rate": 0,
        }
        config.update(settings)
        factory, port = self.startServer(**config)
        watcher = yield self.connect(port, "watcher", maxStored=80)
        watcherSeq = yield self.register(watcher, "watcher")
        flooders = []
        for nick in ("flood1", "flood2"):
            client = yield self.connect(port, nick, maxStored=80)
            yield self.register(client, nick)
            flooders.append(client)
        stuck = self.connectNotReading(port, "stuck")
        yield self.register(stuck, "stuck")
        cast(IPushProducer, stuck.transport).pauseProducing()
        stuckSide = serverSideOf(factory, stuck)
        stuckSide.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.SNDBUF)
        yield watcher.waitForLine(r"JOIN \d+ stuck")
        scene = Scene(factory, watcher, watcherSeq, flooders, stuck, stuckSide)
        scene.cuts = self.recordCuts(stuckSide)
        scene.sampler = Sampler(factory, stuckSide)
        self.addCleanup(scene.sampler.stop)
        return scene

    def startFlood(self, scene: Scene, budget: int, stopOn: str | None = None) -> None:
        floods = [Flooder(client, budget, self.WINDOW, self.TEXT) for client in scene.flooders]
        for flood in floods:
            flood.stopOn = None if stopOn is None else re.compile(stopOn)

        def stop() -> None:
            for flood in floods:
                flood.stop()

        self.addCleanup(stop)
        scene.floods = floods
        for flood in floods:
            flood.start()

    def stopFlood(self, scene: Scene) -> Deferred[None]:
        """Stop flooding; fires once every flooder has its last SAY back."""
        for flood in scene.floods:
            flood.stop()
        return self.floodDone(scene)

    @inlineCallbacks
    def floodDone(self, scene: Scene) -> Any:
        """Fires once every flooder has sent its budget (or was stopped) and has its last SAY back."""
        yield within(gatherResults([flood.whenDone() for flood in scene.floods]), DEADLINE, "the flood's last echoes")
        if scene.sampler is not None:
            scene.sampler.stop()

    def recordCuts(self, protocol: Any) -> list[tuple[str, int | None]]:
        """Why the server cuts ``protocol`` as slow, and its unsent output (its own and the kernel's) then."""
        cuts: list[tuple[str, int | None]] = []
        original: Callable[[str], None] = protocol.cutAsSlow

        def cutAsSlow(why: str) -> None:
            pending = pendingOutput(protocol.transport)
            kernel = kernel_unsent(protocol.transport.getHandle())
            cuts.append((why, None if pending is None else pending + kernel))
            original(why)

        setattr(protocol, "cutAsSlow", cutAsSlow)  # noqa: B010 (a method replaced on one instance)
        return cuts

    @inlineCallbacks
    def cutStuck(self, stopAtCut: bool = False, **settings: Any) -> Any:
        """Flood until the stuck client is cut (and on, unless ``stopAtCut``); the Scene."""
        scene = yield self.flooding(**settings)
        startedAt = clock.seconds()
        self.startFlood(scene, self.BUDGET, r"LEFT \d+ stuck .*" if stopAtCut else None)
        scene.lefts = yield gatherResults(
            [client.waitForLine(r"LEFT (\d+) stuck (\S+)") for client in [scene.watcher, *scene.flooders]],
            consumeErrors=True,
        )
        scene.took = clock.seconds() - startedAt
        return scene

    def report(self, scene: Scene) -> str:
        sampler = scene.sampler
        assert sampler is not None
        return (
            f"cut after {scene.took:.2f}s ({scene.cuts}); sampled max {sampler.maxWatched} bytes held for it, "
            f"{sampler.maxTotal} for all, in {sampler.samples} samples; "
            f"{sum(flood.sent for flood in scene.floods)} SAYs"
        )


class SlowConsumerTests(SlowConsumerTestCase):
    @inlineCallbacks
    def test_a_client_that_never_reads_is_cut_as_slow_while_others_keep_chatting(self) -> Any:
        """
        While two clients flood, one that never reads is aborted as slow: everyone else is
        told ``LEFT <seq> stuck slow``; the watcher loses no event and keeps its heartbeat;
        the flooders are not cut and keep chatting after the cut.
        """
        scene = yield self.cutStuck()
        watcher, flooders = scene.watcher, scene.flooders
        for client, left in zip([watcher, *flooders], scene.lefts, strict=True):
            self.assertEqual(left.group(2), "slow", client.transcript())
            self.assertEqual(left.group(1), scene.lefts[0].group(1))
        self.assertEqual(len(scene.cuts), 1, scene.cuts)
        self.assertTrue(scene.stuckSide.core.phase.ended)
        self.assertNotIn(scene.stuckSide, scene.factory.chat.fanout)
        log.info("slow consumer: {report}", report=self.report(scene))

        # The others keep chatting: more MSGs from both flooders after the LEFT (when the
        # flood has not run out already), and the watcher's heartbeat goes on: a PING after
        # the LEFT, answered.
        leftAt = watcher.indexOf(r"LEFT \d+ stuck slow")
        for flood in scene.floods:
            if flood.sent < flood.budget:
                yield watcher.waitForLines(rf"MSG \d+ {flood.client.name} .*", self.WINDOW, leftAt)
        yield watcher.waitForLine(r"PING \S+", leftAt)
        yield self.stopFlood(scene)
        watcher.sendLine("SAY still here")
        flooders[0].sendLine("SAY after the cut")
        for client in [watcher, *flooders]:
            yield client.waitForLine(r"MSG \d+ watcher still here")
            yield client.waitForLine(r"MSG \d+ flood1 after the cut")

        # No event lost or reordered for anyone who stayed.
        seqs = assertContiguous(self, watcher, scene.watcherSeq + 1)
        for client in flooders:
            assertContiguous(self, client, eventSeqs(client)[0])
            self.assertEqual(eventSeqs(client)[-1], seqs[-1])
        # Nobody else left, nobody else was refused anything, everyone else is connected.
        for client in [watcher, *flooders]:
            self.assertIsNone(client.lostReason, client.transcript())
            others = [line for line in client.lines if line.startswith(("LEFT ", "ERR ", "BYE "))]
            self.assertEqual(others, [scene.lefts[0].group(0)], client.transcript())
        self.assertEqual(len(scene.factory.connections), 3)
        self.assertGreaterEqual(len([line for line in watcher.lines if line.startswith("PING ")]), 2)
        self.assertGreaterEqual(serverSideOf(scene.factory, watcher).pongsReceived, 2)

        # The server aborted it: once the stuck client reads again, it finds it closed.
        cast(IPushProducer, scene.stuck.transport).resumeProducing()
        [reason] = yield within(scene.stuck.whenLost(), DEADLINE, "stuck: noticing the cut")
        self.assertIsNone(reason.check(ConnectionDone), f"closed cleanly: {reason.getErrorMessage()}")

    @inlineCallbacks
    def test_a_slow_consumer_can_resume_its_session(self) -> Any:
        """
        After the cut, ``RESUME <token> <last seq it saw>`` on a new connection takes the
        session back: same WELCOME token, the events it missed (as many as the history
        holds, its own LEFT ... slow the last of them), RESUMED, and a JOIN for everyone.
        """
        history = 300
        scene = yield self.cutStuck(stopAtCut=True, history=history)
        yield self.stopFlood(scene)
        stuck = scene.stuck
        leftSeq = int(scene.lefts[0].group(1))
        token = stuck.lines[stuck.indexOf(r"WELCOME stuck .*")].split()[2]
        lastSeen = eventSeqs(stuck)[-1]
        cast(IPushProducer, stuck.transport).resumeProducing()
        yield within(stuck.whenLost(), DEADLINE, "stuck: noticing the cut")

        again = yield self.connect(tcpPortOf(scene.factory), "stuck-again", maxStored=80)
        yield again.waitForLine(r"HELLO .*")
        again.sendLine(f"RESUME {token} {lastSeen}")
        welcomed = yield again.waitForLine(rf"WELCOME stuck {re.escape(token)} (\d+)")
        resumed = yield again.waitForLine(r"RESUMED (\d+) (complete|partial)")
        newest = int(welcomed.group(1))
        self.assertGreaterEqual(newest, leftSeq)
        self.assertEqual(eventSeqs(again), list(range(newest - history + 1, newest + 1)), again.transcript())
        self.assertEqual(resumed.group(0), f"RESUMED {history} partial", "the flood outran the history ring")
        self.assertIn(f"LEFT {leftSeq} stuck slow", again.lines, "its own LEFT is replayed")
        watcher = scene.watcher
        join = yield watcher.waitForLine(r"JOIN (\d+) stuck", watcher.indexOf(r"LEFT \d+ stuck slow"))
        self.assertEqual(int(join.group(1)), newest + 1)
        yield again.waitForLine(rf"JOIN {newest + 1} stuck")

    @inlineCallbacks
    def test_a_consumer_that_drains_late_is_not_cut_before_its_limits(self) -> Any:
        """
        A client that stops reading while the others send less than --sendq-max, and
        reads again before --timeout, is congested but not cut: it then gets every event,
        in order, and nobody is told it left.
        """
        # 2 x 300 SAYs of 1 KB: well past --sendq-soft, well short of --sendq-max.
        budget = 300
        scene = yield self.flooding(timeout=15.0)
        stuck, watcher, sampler = scene.stuck, scene.watcher, scene.sampler
        assert sampler is not None
        self.startFlood(scene, budget)
        yield self.floodDone(scene)
        sampler.sample()
        held = pendingOutput(scene.stuckSide.transport)
        self.assertTrue(sampler.congested, f"the late reader was never congested ({sampler.maxWatched} bytes)")
        self.assertLess(sampler.maxWatched, self.MAX)

        cast(IPushProducer, stuck.transport).resumeProducing()
        yield stuck.waitForLine(rf"MSG {scene.factory.chat.seq} .*")
        stuck.sendLine("SAY caught up")
        yield watcher.waitForLine(r"MSG \d+ stuck caught up")
        # Its own echo too: the count below includes it (the watcher may hear it first).
        yield stuck.waitForLine(r"MSG \d+ stuck caught up")
        log.info("late reader: {held} bytes held after the flood, sampled max {max}", held=held, max=sampler.maxWatched)

        self.assertEqual(scene.cuts, [])
        self.assertIsNone(stuck.lostReason, stuck.transcript())
        assertContiguous(self, stuck, eventSeqs(stuck)[0])
        self.assertEqual(len([line for line in stuck.lines if line.startswith("MSG ")]), 2 * budget + 1)
        assertContiguous(self, watcher, scene.watcherSeq + 1)
        for client in [watcher, *scene.flooders, stuck]:
            self.assertEqual([line for line in client.lines if line.startswith(("LEFT ", "ERR ", "BYE "))], [])
        self.assertEqual(len(scene.factory.connections), 4)


class SlowConsumerMemoryTests(SlowConsumerTestCase):
    @inlineCallbacks
    def test_what_the_server_holds_for_a_client_that_never_reads_stays_under_sendq_max(self) -> Any:
        """
        What the server holds unsent for a client that never reads (sampled every 10 ms,
        and at the cut itself), its own buffer and the kernel's, never passes --sendq-max:
        the write that would pass it is not made, the client is cut instead, long before
        --timeout.
        """
        scene = yield self.cutStuck()
        yield self.stopFlood(scene)
        sampler = scene.sampler
        assert sampler is not None
        report = self.report(scene)
        log.info("slow consumer: {report}", report=report)
        self.assertEqual(len(scene.cuts), 1, report)
        [(why, pendingAtCut)] = scene.cuts
        self.assertIsNotNone(pendingAtCut, "this Twisted's transport does not show its buffer")
        assert pendingAtCut is not None
        self.assertTrue(sampler.congested, f"the stuck client was never congested: {report}")
        highest = max(sampler.maxWatched, pendingAtCut)
        self.assertLessEqual(highest, self.MAX, f"the server held {highest} bytes (bound {self.MAX}): {report}")
        # Cut at its backlog limit (its unsent output, the server's and the kernel's), not
        # long before (a turn's writes short of it at most), and not only at the timeout.
        self.assertIn("backlog would pass", why, report)
        self.assertGreater(pendingAtCut, self.MAX - self.MARGIN, report)


def stopLoop(loop: LoopingCall) -> None:
    if loop.running:
        loop.stop()


class PacedSenderTests(SlowConsumerTestCase):
    """The server's own pauses never count against a client that keeps to its rate (issue #14, item 2)."""

    RATE = 20.0
    BURST = 5
    #: hbchat-client's pace: 80 % of the rate it was told.
    PACE = 0.8 * RATE
    LINES = 64
    TEXT = 4000

    @inlineCallbacks
    def test_a_sender_held_back_by_backpressure_is_not_refused_what_it_sent_at_its_rate(self) -> Any:
        """
        A sender pacing big SAYs under --rate while a client that never reads congests is
        held back (not read) for a while; the SAYs it sent meanwhile arrive together when
        it is read again, and every one of them is handled: no ERR 429, no BYE, all echoed.
        """
        factory, port = self.startServer(
            sendq_soft=16 * 1024,
            sendq_max=self.MAX,
            ping=self.PING,
            timeout=self.TIMEOUT,
            rate=self.RATE,
            burst=self.BURST,
        )
        sender = yield self.connect(port, "sender", maxStored=80)
        yield self.register(sender, "sender")
        stuck = self.connectNotReading(port, "stuck")
        yield self.register(stuck, "stuck")
        cast(IPushProducer, stuck.transport).pauseProducing()
        serverSideOf(factory, stuck).transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.SNDBUF)
        yield sender.waitForLine(r"JOIN \d+ stuck")
        senderSide = serverSideOf(factory, sender)
        held: list[float] = []

        def watch() -> None:
            if factory.backpressure.is_paused(senderSide):
                held.append(clock.seconds())

        watcher = LoopingCall(watch)
        watcher.clock = clock
        watcher.start(0.01)
        self.addCleanup(stopLoop, watcher)
        text = "p" * self.TEXT
        sent = itertools.count()

        def send() -> None:
            n = next(sent)
            if n < self.LINES and sender.lostReason is None:
                sender.sendLine(f"SAY {n} {text}")

        pacer = LoopingCall(send)
        pacer.clock = clock
        pacer.start(1 / self.PACE)
        self.addCleanup(stopLoop, pacer)
        yield within(
            sender.waitForLines(r"(MSG \d+ sender \d+ .*|ERR 429 .*|BYE .*)", self.LINES), DEADLINE, "the echoes"
        )
        pacer.stop()
        watcher.stop()
        self.assertTrue(held, "the sender was never held back: the test did not test anything")
        log.info("paced sender: held back for about {held:.2f}s", held=len(held) * 0.01)
        refused = [line for line in sender.lines if line.startswith(("ERR ", "BYE "))]
        self.assertEqual(refused, [], sender.transcript())
        echoed = [int(line.split(" ", 4)[3]) for line in sender.lines if line.startswith("MSG ")]
        self.assertEqual(echoed, list(range(self.LINES)), sender.transcript())
        self.assertIsNone(sender.lostReason, sender.transcript())


class ZeroWindowTests(SlowConsumerTestCase):
    """
    A peer whose kernel keeps acknowledging with a zero window is alive and not reading:
    a slow consumer, not a connection the kernel gives up on (issue #14, item 3).
    """

    @inlineCallbacks
    def test_server_sockets_leave_unacknowledged_output_to_the_slow_consumer_rule_first(self) -> Any:
        if not hasattr(socket, "TCP_USER_TIMEOUT"):
            raise SkipTest("no TCP_USER_TIMEOUT on this system")
        factory, port = self.startServer(ping=5, timeout=15)
        client = yield self.connect(port, "client")
        yield self.register(client, "client")
        sock = serverSideOf(factory, client).transport.getHandle()
        self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT), 90_000)

    @inlineCallbacks
    def test_a_zero_window_reader_is_cut_as_slow_not_by_the_kernel(self) -> Any:
        """
        A client that never reads (but keeps sending, so its heartbeat holds) while another
        trickles big SAYs: its window closes long before its output passes --sendq-soft.
        It is cut as a slow consumer (``LEFT ... slow``, counted), not aborted by the
        kernel's TCP_USER_TIMEOUT (``LEFT ... error``).
        """
        timeout = 2.0
        factory, port = self.startServer(sendq_soft=128 * 1024, sendq_max=self.MAX, ping=0.5, timeout=timeout, rate=0)
        sender = yield self.connect(port, "sender", maxStored=80)
        yield self.register(sender, "sender")
        stuck = self.connectNotReading(port, "stuck")
        yield self.register(stuck, "stuck")
        cast(IPushProducer, stuck.transport).pauseProducing()
        stuckSide = serverSideOf(factory, stuck)
        stuckSide.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.SNDBUF)
        cuts = self.recordCuts(stuckSide)
        yield sender.waitForLine(r"JOIN \d+ stuck")
        text = "z" * 4000

        def trickle() -> None:
            if sender.lostReason is None:
                sender.sendLine(f"SAY {text}")
            if stuck.lostReason is None:
                stuck.sendLine("")  # traffic: the heartbeat has nothing to say against it

        pacer = LoopingCall(trickle)
        pacer.clock = clock
        pacer.start(0.1)
        self.addCleanup(stopLoop, pacer)
        startedAt = clock.seconds()
        left = yield sender.waitForLine(r"LEFT \d+ stuck (\S+)")
        took = clock.seconds() - startedAt
        pacer.stop()
        log.info("zero-window reader: LEFT {reason} after {took:.2f}s", reason=left.group(1), took=took)
        self.assertEqual(left.group(1), "slow", f"after {took:.2f}s\n{sender.transcript()}")
        self.assertEqual(len(cuts), 1, cuts)
        self.assertIn("did not drain", cuts[0][0])
        # The LEFT goes out as the cut is made; the close is counted when the aborted
        # transport reports its loss, a reactor turn later.
        deadline = clock.seconds() + DEADLINE
        while stuckSide.connected and clock.seconds() < deadline:
            yield deferLater(clock, 0.01, lambda: None)
        self.assertEqual(factory.stats.closes["slow"], 1)
        self.assertEqual(factory.stats.closes["error"], 0)
