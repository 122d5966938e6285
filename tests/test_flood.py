"""
A crowd of clients that never read, readers, and one sender (issue #14, item 4), scaled down.

What the server queues for each client, in its own buffers and the kernel's send queue,
stays bounded (``--sendq-soft`` in the kernel, ``--sendq-max`` in all), and the clients
that do not read neither pin the kernel's memory nor hold the readers' chat: the readers
keep getting every message while the non-readers are cut as slow consumers.
"""

from __future__ import annotations

import itertools
import re
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from hbchat.ops.observed import ObservedChatFactory as ChatFactory
from hbchat.server.sendq import kernel_unsent
from tests.test_integration import DEADLINE, ChatTestCase, LineClient, pendingOutput, within

clock = cast(IReactorTime, reactor)
log = Logger()

PAGE = 4096


def sockstat_tcp_pages() -> int | None:
    """The kernel's TCP memory in pages (/proc/net/sockstat ``TCP: ... mem``), for the whole namespace."""
    try:
        with open("/proc/net/sockstat") as stat:
            for line in stat:
                if line.startswith("TCP:"):
                    fields = line.split()
                    return int(fields[fields.index("mem") + 1])
    except (OSError, ValueError):
        return None
    return None


class FloodSampler:
    """Every ``interval``: what the server's sockets hold in the kernel, and what it holds per client."""

    def __init__(self, factory: ChatFactory, interval: float = 0.05) -> None:
        self.factory = factory
        self.maxKernel = 0
        self.maxHeld = 0
        self.baselinePages = sockstat_tcp_pages()
        self.maxPages = self.baselinePages
        self._loop = LoopingCall(self.sample)
        self._loop.clock = clock
        self._loop.start(interval)

    def sample(self) -> None:
        kernel = 0
        for protocol in list(self.factory.connections):
            transport: Any = protocol.transport
            queued = kernel_unsent(transport.getHandle())
            kernel += queued
            self.maxHeld = max(self.maxHeld, (pendingOutput(transport) or 0) + queued)
        self.maxKernel = max(self.maxKernel, kernel)
        pages = sockstat_tcp_pages()
        if pages is not None and self.maxPages is not None:
            self.maxPages = max(self.maxPages, pages)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()


class FloodTests(ChatTestCase):
    STUCK = 100
    READERS = 5
    SOFT = 64 * 1024
    MAX = 512 * 1024
    #: The sender: SAYs of this many bytes, this many a second, this many in all.
    TEXT = 4000
    PACE = 50.0
    LINES = 250
    #: What the kernel queues beyond its send buffer (it takes a last write of up to 64 KiB while under it).
    KERNEL_SLACK = 64 * 1024

    @inlineCallbacks
    def test_clients_that_never_read_neither_pin_kernel_memory_nor_stall_the_readers(self) -> Any:
        factory, port = self.startServer(
            sendq_soft=self.SOFT, sendq_max=self.MAX, ping=1.0, timeout=10.0, rate=0, max_per_ip=1000
        )
        readers = []
        for n in range(self.READERS):
            reader = yield self.connect(port, f"reader{n}", maxStored=100)
            yield self.register(reader, f"reader{n}")
            readers.append(reader)
        stuck: list[LineClient] = []
        for n in range(self.STUCK):
            client = yield self.connect(port, f"stuck{n}", answerPings=False, maxStored=100)
            yield self.register(client, f"stuck{n}")
            cast(IPushProducer, client.transport).pauseProducing()
            stuck.append(client)
        sender = yield self.connect(port, "sender", maxStored=100)
        yield self.register(sender, "sender")
        sampler = FloodSampler(factory)
        self.addCleanup(sampler.stop)

        text = "f" * self.TEXT
        numbers = itertools.count()

        def send() -> None:
            n = next(numbers)
            if n < self.LINES:
                sender.sendLine(f"SAY {n} {text}")

        pacer = LoopingCall(send)
        pacer.clock = clock
        pacer.start(1 / self.PACE)
        self.addCleanup(lambda: pacer.stop() if pacer.running else None)
        startedAt = clock.seconds()
        last = rf"MSG \d+ sender {self.LINES - 1} .*"
        yield within(gatherResults([reader.waitForLine(last) for reader in readers]), DEADLINE, "the readers' last MSG")
        took = clock.seconds() - startedAt
        pacer.stop()
        # Each non-reader was sent more than --sendq-max: every one is cut as a slow consumer.
        lefts = yield within(
            readers[0].waitForLines(r"LEFT \d+ stuck\d+ (\S+)", self.STUCK), DEADLINE, "the non-readers' LEFTs"
        )
        sampler.sample()
        sampler.stop()

        # The readers got every message, with no long stall.
        worstGap = 0.0
        for reader in readers:
            arrivals = [
                at
                for line, at in zip(reader.lines, reader.arrivals, strict=True)
                if re.fullmatch(r"MSG \d+ sender \d+ .*", line)
            ]
            self.assertEqual(len(arrivals), self.LINES, reader.transcript())
            worstGap = max(worstGap, *(b - a for a, b in itertools.pairwise(arrivals)))
        pages = (
            None
            if sampler.maxPages is None or sampler.baselinePages is None
            else sampler.maxPages - sampler.baselinePages
        )
        report = (
            f"{self.STUCK} non-readers, {self.READERS} readers, {self.LINES} SAYs of {self.TEXT} B at "
            f"{self.PACE:g}/s: readers done after {took:.2f}s, worst gap {worstGap:.2f}s; server send queues "
            f"(kernel) at most {sampler.maxKernel / 2**20:.1f} MiB in all; at most {sampler.maxHeld / 1024:.0f} KiB "
            f"held for one client (its own and the kernel's); /proc/net/sockstat TCP mem grew by at most "
            f"{'?' if pages is None else f'{pages * PAGE / 2**20:.1f} MiB'}; "
            f"{factory.stats.closes['slow']} cut as slow, {factory.stats.closes['error']} as error"
        )
        log.info("flood: {report}", report=report)
        self.assertEqual({left.group(1) for left in lefts}, {"slow"}, report)
        self.assertEqual(factory.stats.closes["slow"], self.STUCK, report)
        self.assertLess(worstGap, 5.0, report)
        self.assertLessEqual(sampler.maxKernel, self.STUCK * (self.SOFT + self.KERNEL_SLACK) + 2**20, report)
        self.assertLessEqual(sampler.maxHeld, self.MAX, report)
