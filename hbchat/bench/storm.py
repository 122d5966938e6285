"""
Reconnect storm: N clients, a server restart, and when every one of them tries to come back.

One process (this module's reactor) connects N :class:`hbchat.client.ChatClientFactory`
clients over loopback to a ``twistd hbchat`` subprocess, then stops the server and starts a
new one on the same port a fixed delay later.  Every connection attempt the clients make
is timestamped relative to the stop, as is the moment each client is registered again.

Two front ends share this logic (:mod:`hbchat.bench.stormrun`): ``benchmarks/storm.py``
(the measurement behind the "Reconnect storm" section of docs/performance.md and
docs/storm.png) and ``hbchat-bench storm`` (any server command, a one-line summary, JSON and
PNG where asked).  This module holds the clients and one scenario's run; the server, the
records, the results, the report, the plot and the docs writer are its ``storm*`` neighbours.

Scenarios (``--scenarios``):

* ``stock-crash``: SIGKILL (no BYE, pure backoff) with Twisted's stock
  ``ReconnectingClientFactory.retry``: Gaussian jitter around a delay that starts at 1 s
  and grows by a factor of e, capped at 30 s.
* ``hbchat-crash``: SIGKILL with hbchat's own retry (:mod:`hbchat.backoff`): uniform(0, 1.5)
  first, then uniform(c/2, c) with c = min(30, max(1, age of the outage / 2)).
* ``hbchat-graceful``: SIGTERM; the server says ``BYE shutdown retry=S at=A`` (``--retry-hint``)
  and each client comes back after the A the server chose for it (:mod:`hbchat.server.comeback`).
* ``stock-crash-quick``, ``hbchat-crash-quick``: the crashes again, with the new server
  spawned after ``--quick-restart-delay`` (0.2 s), i.e. up before the stock clients' first
  retry at about 1 s, which then lands on it in one wave.
* ``stock-graceful`` (not run by default): SIGTERM with the stock retry, which ignores the hint.

``--smoke`` runs only the first three, with 50 clients.

Loopback only.  Every wait is bounded, the whole run has a time budget, and the servers it
started are killed by PID when it ends, also on SIGINT or SIGTERM.
"""

from __future__ import annotations

import math
import random
import signal
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import ReconnectingClientFactory, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from hbchat.bench.stats import quantile
from hbchat.bench.stormclock import BenchmarkError, log, now, sleep
from hbchat.bench.stormrecord import Recorder
from hbchat.bench.stormresults import BIN, SCENARIOS, SLOW_CONNECT, STALLED, Result, Settings, histogram
from hbchat.bench.stormserver import HOST, SERVER_OPTIONS, Server, free_port, kernel_counters
from hbchat.client.connector import EndpointConnector
from hbchat.client.factory import ChatClientFactory
from hbchat.client.protocol import ChatClientProtocol
from hbchat.interfaces import IChatObserver


@implementer(IChatObserver)
class Observer:
    """Reports registrations and give-ups to the recorder; the chat itself is ignored."""

    def __init__(self, nick: str, recorder: Recorder) -> None:
        self.nick = nick
        self.recorder = recorder

    def registered(self, nick: str, resumed: bool) -> None:
        self.recorder.registered(self.nick)

    def gaveUp(self, reason: str) -> None:
        self.recorder.gave_up[self.nick] = reason

    def disconnected(self, reason: str) -> None:
        recorder = self.recorder
        if recorder.t0 is not None:
            recorder.losses.append(now() - recorder.t0)

    def message(self, seq: int, nick: str, text: str, own: bool) -> None: ...
    def private(self, sender: str, text: str) -> None: ...
    def joined(self, seq: int, nick: str) -> None: ...
    def left(self, seq: int, nick: str, reason: str) -> None: ...
    def users(self, nicks: list[str]) -> None: ...
    def resumed(self, count: int, complete: bool, missing: int | None) -> None: ...
    def historyLost(self) -> None: ...
    def serverError(self, code: int, text: str) -> None: ...
    def reconnecting(self, delay: float, attempt: int, reason: str) -> None: ...
    def rtt(self, seconds: float) -> None: ...


# --- the clients ---------------------------------------------------------------------------


class BenchProtocol(ChatClientProtocol):
    """
    The real client protocol, except that a registered client skips chunks of pure chat.

    All N clients live in this one process, so every JOIN the server broadcasts is parsed N
    times here: N**2 lines per storm, which would make this process, not the backoff, the
    thing measured.  A chunk that holds only complete lines and no PING, BYE or ERR is
    therefore only noted as traffic (it keeps the heartbeat happy); everything else goes
    through the normal path.
    """

    _madeAt = 0.0

    def connectionMade(self) -> None:
        self._madeAt = now()
        super().connectionMade()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        recorder = getattr(self.observer, "recorder", None)
        if not self.ready and recorder is not None and recorder.t0 is not None and now() - self._madeAt >= STALLED:
            recorder.stalled.append(now() - recorder.t0)
        super().connectionLost(reason)

    def dataReceived(self, data: bytes) -> None:
        if (
            self.ready
            and data.endswith(b"\n")
            and not self.midLine
            and b"PING" not in data
            and b"BYE" not in data
            and b"ERR" not in data
        ):
            self.noteTraffic()
            return
        super().dataReceived(data)


class HbchatFactory(ChatClientFactory):
    """hbchat's own backoff (hbchat.backoff; the server's retry hint first)."""

    protocolClass = BenchProtocol


class StockFactory(HbchatFactory):
    """The same client, but with ``ReconnectingClientFactory``'s stock retry."""

    initialDelay = 1.0
    factor = math.e
    maxDelay = 30
    # jitter: the stock 0.119626565582 (a Gaussian with that relative standard deviation)

    def retry(self, connector: Any = None) -> None:
        ReconnectingClientFactory.retry(self, connector)


class RecordingConnector(EndpointConnector):
    """hbchat's EndpointConnector, timestamping every attempt and its outcome."""

    def __init__(self, endpoint: Any, factory: ChatClientFactory, recorder: Recorder) -> None:
        super().__init__(endpoint, factory)
        self.recorder = recorder
        self._index: int | None = None

    def connect(self) -> None:
        self._index = self.recorder.attempt()
        super().connect()

    def attemptSucceeded(self, protocol: Any) -> None:
        self.recorder.attempt_ended(self._index, True)
        super().attemptSucceeded(protocol)

    def attemptFailed(self, reason: Failure) -> None:
        self.recorder.attempt_ended(self._index, False)
        super().attemptFailed(reason)


# --- one scenario ----------------------------------------------------------------------------


async def run_scenario(name: str, settings: Settings, workdir: Path, server_command: str | None = None) -> Result:
    variant, stop, quick = SCENARIOS[name]
    restart_delay = settings.quick_restart_delay if quick else settings.restart_delay
    n = settings.clients
    random.seed(settings.seed)  # the stock retry draws from the module-level generator
    rng = random.Random(settings.seed)
    port = free_port()
    options = [*SERVER_OPTIONS, "--retry-hint", f"{settings.retry_hint:g}"]
    template = None
    if server_command is not None:
        template = server_command.replace("{retry_hint}", f"{settings.retry_hint:g}")
    server = Server(port, options, workdir, settings.backlog, template)
    recorder = Recorder()
    factories: list[HbchatFactory] = []
    factory_class: type[HbchatFactory] = StockFactory if variant == "stock" else HbchatFactory
    try:
        await server.start()
        log(f"{name}: server pid {server.process.pid if server.process else '?'} on {HOST}:{port}; connecting {n}")

        # Connect at --rate per second, at most --max-pending unregistered at a time.
        began = now()
        deadline = began + settings.connect_deadline
        endpoint = TCP4ClientEndpoint(reactor, HOST, port, timeout=30)
        while len(factories) < n:
            if now() > deadline:
                raise BenchmarkError(f"{name}: only {len(recorder.initial)}/{n} registered before the deadline")
            due = min(n, int((now() - began) * settings.rate) + 1)
            room = settings.max_pending - (len(factories) - len(recorder.initial))
            for _ in range(max(0, min(due - len(factories), room))):
                nick = f"{variant[0]}{len(factories):05d}"
                factory = factory_class(nick, Observer(nick, recorder), rng=random.Random(rng.random()))
                factories.append(factory)
                RecordingConnector(endpoint, factory, recorder).connect()
            await sleep(0.01)
        while len(recorder.initial) < n:
            if now() > deadline:
                raise BenchmarkError(f"{name}: only {len(recorder.initial)}/{n} registered before the deadline")
            await sleep(0.05)
        initial_seconds = now() - began
        log(f"{name}: {n} registered in {initial_seconds:.1f}s; settling 1s")
        await sleep(1.0)

        # The storm.
        counters_before = kernel_counters()
        recorder.t0 = now()
        old = server.process
        old_exit: float | None = None
        if stop == "crash":
            server.signal(signal.SIGKILL)
            await server.reaped(5)
        else:
            server.signal(signal.SIGTERM)
        log(f"{name}: server stopped ({'SIGKILL' if stop == 'crash' else 'SIGTERM'}); restarting in {restart_delay:g}s")
        await sleep(max(0.0, recorder.t0 + restart_delay - now()))
        listening = await server.start()
        listening_at = listening - recorder.t0
        log(f"{name}: new server listening at +{listening_at:.2f}s")
        storm_deadline = recorder.t0 + settings.storm_deadline
        last_report = now()
        while len(recorder.back) + len(recorder.gave_up) < n and now() < storm_deadline:
            await sleep(0.05)
            if old_exit is None and old is not None and old.poll() is not None:
                old_exit = now() - recorder.t0
            if now() - last_report >= 5:
                last_report = now()
                log(f"{name}: +{now() - recorder.t0:.0f}s, {len(recorder.back)}/{n} back")
        counters_after = kernel_counters()
        if old_exit is None and old is not None and old.poll() is not None:
            old_exit = now() - recorder.t0
        if stop == "graceful":
            exited = f"exited {old.returncode} by +{old_exit:.2f}s" if old and old_exit is not None else "STILL RUNNING"
            log(f"{name}: the SIGTERMed server {exited}")
    finally:
        for factory in factories:
            factory.stopTrying()
        server.kill_now()
        # Let the clients see their connections go (stopTrying: no reconnects).
        settle = now() + 5
        while any(f.protocolInstance is not None for f in factories) and now() < settle:
            await sleep(0.05)

    back_times = sorted(recorder.back.values())
    attempts = sorted(recorder.attempts)
    counts = histogram(attempts)
    peak = max(counts) if counts else 0
    reached = [t for t, ok in zip(recorder.attempts, recorder.outcomes, strict=True) if ok]
    reached_counts = histogram(reached)
    live_peak = max(reached_counts) if reached_counts else 0
    latencies = [latency for latency in recorder.latencies if latency is not None]
    problem_count, problem_examples = server.problems()
    if problem_count:
        log(f"{name}: {problem_count} worrying server log lines, e.g. {problem_examples[0]}")
    all_back = len(back_times) == n
    result = Result(
        name=name,
        variant=variant,
        stop=stop,
        clients=n,
        all_back=all_back,
        back_count=len(back_times),
        time_all_back=back_times[-1] if all_back else None,
        back_p50=quantile(back_times, 0.5),
        back_p99=quantile(back_times, 0.99),
        restart_delay=restart_delay,
        server_listening_at=listening_at,
        losses_noticed=[min(recorder.losses, default=None), max(recorder.losses, default=None)],
        old_server_exited_at=old_exit,
        retry_hint=settings.retry_hint,
        peak_per_bin=peak,
        peak_bin_start=round(counts.index(peak) * BIN, 1) if counts else 0.0,
        live_peak_per_bin=live_peak,
        live_peak_bin_start=round(reached_counts.index(live_peak) * BIN, 1) if reached_counts else 0.0,
        total_attempts=len(attempts),
        failed_attempts=recorder.outcomes.count(False),
        unfinished_attempts=recorder.outcomes.count(None),
        max_connect_latency=max(latencies, default=0.0),
        slow_connects=sum(1 for latency in latencies if latency >= SLOW_CONNECT),
        kernel_counters={
            key: counters_after[key] - counters_before[key] for key in counters_after if key in counters_before
        },
        stalled_connections=len(recorder.stalled),
        server_log_problems=problem_count,
        server_log_examples=problem_examples,
        gave_up=len(recorder.gave_up),
        initial_connect_seconds=initial_seconds,
        histogram=counts,
        reached_histogram=reached_counts,
        attempts=[round(t, 3) for t in attempts],
        back_times=[round(t, 3) for t in back_times],
    )
    status = f"all back after {result.time_all_back:.2f}s" if all_back else f"ONLY {len(back_times)}/{n} back"
    log(
        f"{name}: {status}; {len(attempts)} attempts ({result.failed_attempts} failed), peak {peak}/100 ms, "
        f"{live_peak}/100 ms on the new server; {result.slow_connects} connects took >= {SLOW_CONNECT}s, "
        f"{result.stalled_connections} stalled >= {STALLED:g}s before HELLO; kernel {result.kernel_counters}"
    )
    return result
