"""
Reconnect storm: N clients, a server restart, and when every one of them tries to come back.

One process (this module's reactor) connects N :class:`hbchat.client.ChatClientFactory`
clients over loopback to a ``twistd hbchat`` subprocess, then stops the server and starts a
new one on the same port a fixed delay later.  Every connection attempt the clients make
is timestamped relative to the stop, as is the moment each client is registered again.

Two front ends share this logic: ``benchmarks/storm.py`` (:func:`main`: the measurement
behind the "Reconnect storm" section of docs/performance.md and docs/storm.png) and
``hbchat-bench storm`` (:func:`bench_main`: any server command, a one-line summary, JSON and
PNG where asked).

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

import argparse
import importlib
import json
import math
import os
import platform
import random
import re
import resource
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.copyright import version as twisted_version
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import ReconnectingClientFactory, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from hbchat.bench.stats import histogram_of_times, peak_to_mean, quantile
from hbchat.client.connector import EndpointConnector
from hbchat.client.factory import ChatClientFactory
from hbchat.client.protocol import HELLO_TIMEOUT, ChatClientProtocol
from hbchat.interfaces import IChatObserver

HOST = "127.0.0.1"
#: Words in a server log line that mean something went wrong.
PROBLEM_WORDS = ("traceback", "unhandled", "refused", "critical", "cannot")
#: A TCP connect on loopback that takes this long had a SYN dropped (retransmitted after 1 s).
SLOW_CONNECT = 0.9
BIN = 0.1  # histogram bin width, seconds
#: File descriptors kept free for the reactor, logs, pipes and the like.
FD_RESERVE = 256
SECTION_TITLE = "## Reconnect storm"

SCENARIOS: dict[str, tuple[str, str, bool]] = {
    # name: (backoff variant, how the server is stopped, quick restart (--quick-restart-delay))
    "stock-crash": ("stock", "crash", False),
    "hbchat-crash": ("hbchat", "crash", False),
    "hbchat-graceful": ("hbchat", "graceful", False),
    "stock-crash-quick": ("stock", "crash", True),
    "hbchat-crash-quick": ("hbchat", "crash", True),
    "stock-graceful": ("stock", "graceful", False),
}
SMOKE_SCENARIOS = ["stock-crash", "hbchat-crash", "hbchat-graceful"]
DEFAULT_SCENARIOS = [*SMOKE_SCENARIOS, "stock-crash-quick", "hbchat-crash-quick"]
#: A connection that stays this long without WELCOME was not a slow server: it was stalled
#: (the client waits up to hbchat.client.HELLO_TIMEOUT for HELLO).
STALLED = 5.0
#: Linux TcpExt counters (system-wide) that tell how the listen queue coped.
KERNEL_COUNTERS = ("ListenOverflows", "ListenDrops", "SyncookiesSent", "SyncookiesRecv", "TCPReqQFullDoCookies")


class BenchmarkError(Exception):
    """Something the benchmark needs did not happen in time."""


def now() -> float:
    return float(reactor.seconds())


def sleep(seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- what is recorded --------------------------------------------------------------------


@dataclass
class Recorder:
    """Everything one scenario measures; times after ``t0`` (the stop signal) are relative."""

    t0: float | None = None
    initial: set[str] = field(default_factory=set)
    #: Start of every attempt after t0, with its outcome (True: TCP connected) and how long
    #: the connect took, once known.
    attempts: list[float] = field(default_factory=list)
    outcomes: list[bool | None] = field(default_factory=list)
    latencies: list[float | None] = field(default_factory=list)
    back: dict[str, float] = field(default_factory=dict)
    gave_up: dict[str, str] = field(default_factory=dict)
    #: When each client noticed its connection was gone.
    losses: list[float] = field(default_factory=list)
    #: When connections that never got to WELCOME, and lasted STALLED seconds or more, ended.
    stalled: list[float] = field(default_factory=list)

    def attempt(self) -> int | None:
        """An attempt starts; returns its index, or None before the stop."""
        if self.t0 is None:
            return None
        self.attempts.append(now() - self.t0)
        self.outcomes.append(None)
        self.latencies.append(None)
        return len(self.attempts) - 1

    def attempt_ended(self, index: int | None, ok: bool) -> None:
        if index is None:
            return
        self.outcomes[index] = ok
        self.latencies[index] = now() - self.t0 - self.attempts[index]  # type: ignore[operator]

    def registered(self, nick: str) -> None:
        if self.t0 is None:
            self.initial.add(nick)
        elif nick not in self.back:
            self.back[nick] = now() - self.t0


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


# --- the server ----------------------------------------------------------------------------


def kernel_counters() -> dict[str, int]:
    """Linux's system-wide TcpExt listen-queue counters (empty where unreadable)."""
    try:
        rows = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines()]
    except OSError:
        return {}
    for names, values in zip(rows[::2], rows[1::2], strict=False):
        if names and names[0] == "TcpExt:":
            table = dict(zip(names[1:], values[1:], strict=False))
            return {name: int(table[name]) for name in KERNEL_COUNTERS if name in table}
    return {}


def find_twistd() -> str:
    candidate = Path(sys.executable).with_name("twistd")
    if not candidate.exists():
        raise SystemExit(f"storm: no twistd next to {sys.executable}; install hbchat into this environment")
    return str(candidate)


#: The storm's server settings (besides --listen and --retry-hint): a slow heartbeat, so
#: that what is measured is reconnection, and room for every client.
SERVER_OPTIONS = ("--ping", "5", "--timeout", "15", "--max-clients", "20000")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class Server:
    """
    One ``twistd -n hbchat`` at a time on a fixed loopback port, started and stopped by PID.

    With ``template`` (a command line with ``{port}`` in it) that command is run instead, and
    it is listening once a TCP connect to the port succeeds; ``twistd hbchat`` is listening
    once its log says so.
    """

    def __init__(
        self, port: int, options: list[str], workdir: Path, backlog: int | None = None, template: str | None = None
    ) -> None:
        self.port = port
        self.options = options
        self.backlog = backlog
        self.workdir = workdir
        self.template = template
        self.name = "twistd" if template is None else "the server command"
        self.process: subprocess.Popen[bytes] | None = None
        #: Every process spawned, so that none outlives the benchmark (a graceful stop may
        #: still be flushing BYEs when the next one starts).
        self.spawned: list[subprocess.Popen[bytes]] = []
        self.logpath: Path | None = None
        self._starts = 0

    def command(self) -> list[str]:
        if self.template is not None:
            return shlex.split(self.template.replace("{port}", str(self.port)))
        return twistd_command(str(self.port), self.options, self.backlog)

    def spawn(self) -> None:
        self._starts += 1
        self.logpath = self.workdir / f"twistd-{self.port}-{self._starts}.log"
        with open(self.logpath, "wb") as logfile:
            self.process = subprocess.Popen(
                self.command(),
                stdout=logfile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.spawned.append(self.process)
        RUNNING.add(self)

    async def start(self, timeout: float = 15.0, bind_retries: int = 20) -> float:
        """Spawn, and respawn while the port cannot be bound; returns when it listens."""
        self.spawn()
        respawns = 0
        deadline = now() + timeout
        marker = f"starting on {self.port}".encode()
        while now() < deadline:
            assert self.process is not None and self.logpath is not None
            if self._listening(marker):
                return now()
            if self.process.poll() is not None:
                if respawns >= bind_retries:
                    raise BenchmarkError(f"{self.name} exited {self.process.returncode}; see {self.logpath}")
                await sleep(0.1)
                respawns += 1
                self.spawn()
                continue
            await sleep(0.01)
        raise BenchmarkError(f"{self.name} did not listen on {self.port} within {timeout}s; see {self.logpath}")

    def _listening(self, marker: bytes) -> bool:
        assert self.logpath is not None
        if self.template is None:
            return marker in self.logpath.read_bytes()
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    async def reaped(self, timeout: float) -> bool:
        """Wait (boundedly) for the current process to exit; SIGKILL it if it will not."""
        process = self.process
        if process is None:
            return True
        deadline = now() + timeout
        while process.poll() is None and now() < deadline:
            await sleep(0.005)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)
            return False
        return True

    def problems(self, limit: int = 5) -> tuple[int, list[str]]:
        """Lines of our twistd logs that look like trouble (tracebacks, refusals, criticals)."""
        count, examples = 0, list[str]()
        for path in sorted(self.workdir.glob(f"twistd-{self.port}-*.log")):
            for line in path.read_text(errors="replace").splitlines():
                lowered = line.lower()
                if any(word in lowered for word in PROBLEM_WORDS):
                    count += 1
                    if len(examples) < limit:
                        examples.append(line[:300])
        return count, examples

    def kill_now(self) -> None:
        """Cleanup: SIGKILL every process we spawned that still runs, by PID, and reap it."""
        for process in self.spawned:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    log(f"twistd pid {process.pid} did not die")
        RUNNING.discard(self)


#: Servers with processes that may still run; killed at reactor shutdown whatever happens.
RUNNING: set[Server] = set()


def kill_all_servers() -> None:
    for server in list(RUNNING):
        server.kill_now()


# --- one scenario ----------------------------------------------------------------------------


@dataclass
class Settings:
    clients: int
    rate: float
    max_pending: int
    restart_delay: float
    quick_restart_delay: float
    retry_hint: float
    connect_deadline: float
    storm_deadline: float
    seed: int
    backlog: int | None = None


@dataclass
class Result:
    name: str
    variant: str
    stop: str
    clients: int
    all_back: bool
    back_count: int
    time_all_back: float | None
    back_p50: float | None
    back_p99: float | None
    restart_delay: float
    server_listening_at: float
    losses_noticed: list[float | None]
    old_server_exited_at: float | None
    retry_hint: float
    peak_per_bin: int
    peak_bin_start: float
    live_peak_per_bin: int
    live_peak_bin_start: float
    total_attempts: int
    failed_attempts: int
    unfinished_attempts: int
    max_connect_latency: float
    slow_connects: int
    kernel_counters: dict[str, int]
    stalled_connections: int
    server_log_problems: int
    server_log_examples: list[str]
    gave_up: int
    initial_connect_seconds: float
    histogram: list[int]
    reached_histogram: list[int]
    attempts: list[float]
    back_times: list[float]


def histogram(times: list[float], width: float = BIN) -> list[int]:
    return histogram_of_times(times, width)


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


# --- reports -----------------------------------------------------------------------------------

BACKOFF_LABELS = {
    "stock": "stock `ReconnectingClientFactory`",
    "hbchat": "hbchat backoff",
}


def seconds(value: float | None) -> str:
    return "not all back" if value is None else f"{value:.2f} s"


def backoff_label(r: Result) -> str:
    if r.stop == "graceful" and r.variant == "hbchat":
        return f"hbchat, `BYE shutdown retry={r.retry_hint:g}`"
    if r.stop == "graceful":
        return "stock (ignores the retry hint)"
    return BACKOFF_LABELS[r.variant]


def stop_label(r: Result) -> str:
    how = "SIGKILL (crash)" if r.stop == "crash" else "SIGTERM (graceful)"
    return f"{how}, server up again at {r.server_listening_at:.2f} s"


def peak_over_mean(r: Result) -> str:
    """The busiest 100 ms over the mean 100 ms, from the stop until the last client was back."""
    if r.time_all_back is None:
        return "-"
    peak, mean = peak_to_mean(r.attempts, r.time_all_back, BIN)
    return f"{peak / mean:.2f}" if mean else "-"


def table(results: list[Result]) -> str:
    lines = [
        "| Backoff | Server stop, new server listening | Peak attempts / 100 ms (all) "
        "| Peak / 100 ms on the new server | Time until all are back | Median back | 99 % back "
        "| Total attempts | Refused | Stalled | Peak / mean |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {backoff_label(r)} | {stop_label(r)} | {r.peak_per_bin} (at {r.peak_bin_start:.1f} s) "
            f"| {r.live_peak_per_bin} (at {r.live_peak_bin_start:.1f} s) | {seconds(r.time_all_back)} "
            f"| {seconds(r.back_p50)} | {seconds(r.back_p99)} | {r.total_attempts} | {r.failed_attempts} "
            f"| {r.stalled_connections} | {peak_over_mean(r)} |"
        )
    return "\n".join(lines)


def machine_note() -> str:
    try:
        load = "load average at the start {:.2f} / {:.2f} / {:.2f} (1/5/15 min)".format(*os.getloadavg())
    except OSError:
        load = "load average unknown"
    cpu = platform.processor() or platform.machine()
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}, Twisted {twisted_version}; {load}"
    )


#: Beyond this many seconds the plot switches to a second, compressed panel (a broken axis),
#: so that a late wave (clients stalled for the HELLO timeout) does not squash the rest.
PLOT_SPLIT = 15.0


def plot(results: list[Result], path: Path) -> bool:
    try:
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        log("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    span = max((len(r.histogram) for r in results), default=1) * BIN
    span = max(span, max((r.time_all_back or 0.0) for r in results)) + 0.3
    late = [t for r in results for t in (*r.attempts, *r.back_times) if t > PLOT_SPLIT]
    split = bool(late)
    windows = [(0.0, PLOT_SPLIT), (math.floor(min(late)) - 0.5, span)] if split else [(0.0, span)]
    peak = max((r.peak_per_bin for r in results), default=1)
    fig = plt.figure(figsize=(11, 2.6 * len(results) + 0.6), layout="constrained")
    rows = fig.subfigures(len(results), 1, squeeze=False)[:, 0]
    legend: tuple[list[Any], list[str]] | None = None
    axes = []
    for row, r in enumerate(results):
        axes.append(
            rows[row].subplots(1, len(windows), sharey=True, squeeze=False, width_ratios=[3, 1] if split else [1])[0]
        )
        reached = r.reached_histogram + [0] * (len(r.histogram) - len(r.reached_histogram))
        other = [total - ok for total, ok in zip(r.histogram, reached, strict=True)]
        starts = [i * BIN for i in range(len(r.histogram))]
        percent_back = [(i + 1) / r.clients * 100 for i in range(len(r.back_times))]
        for column, (low, high) in enumerate(windows):
            ax = axes[row][column]
            ax.bar(starts, reached, width=BIN, align="edge", color="tab:blue", label="attempts that reached the server")
            ax.bar(starts, other, width=BIN, align="edge", bottom=reached, color="0.7", label="attempts refused")
            ax.set_ylim(0, peak * 1.15)
            ax.set_xlim(low, high)
            ax.grid(axis="y", alpha=0.3)
            ax.axvline(r.server_listening_at, color="tab:green", linestyle="--", label="new server listening")
            if r.time_all_back is not None:
                ax.axvline(r.time_all_back, color="tab:red", linestyle=":", label="last client back")
            back = ax.twinx()
            (line,) = back.step(
                [0.0, *r.back_times, span],
                [0.0, *percent_back, percent_back[-1] if percent_back else 0.0],
                where="post",
                color="tab:orange",
                label="% of clients registered again",
            )
            back.set_ylim(0, 105)
            if column == len(windows) - 1:
                back.set_ylabel("% back", color="tab:orange")
            else:
                back.set_yticks([])
            if column == 0:
                ax.set_ylabel("attempts / 100 ms")
            else:
                ax.tick_params(axis="y", left=False)
                ax.spines["left"].set_linestyle((0, (2, 2)))
            if legend is None:
                handles, labels = ax.get_legend_handles_labels()
                legend = ([*handles, line], [*labels, line.get_label()])
        stalled = f", {r.stalled_connections} stalled" if r.stalled_connections else ""
        rows[row].suptitle(
            f"{backoff_label(r).replace('`', '')}; {stop_label(r)}: peak {r.peak_per_bin} / 100 ms "
            f"({r.live_peak_per_bin} on the new server){stalled}, all back after {seconds(r.time_all_back)}",
            fontsize=10,
        )
    if legend is not None:
        axes[0][0].legend(*legend, loc="center right", fontsize=8)
    for column in range(len(windows)):
        axes[-1][column].set_xlabel("seconds after the server was stopped" if column == 0 else "(later)")
    fig.suptitle(f"Reconnect storm: {results[0].clients} clients, one server restart (100 ms bins)", fontsize=12)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def findings(results: list[Result]) -> list[str]:
    """What the numbers say, worded from the numbers themselves (the section is regenerated each run)."""
    by_name = {r.name: r for r in results}
    stock, full, hint = (by_name.get(name) for name in ("stock-crash", "hbchat-crash", "hbchat-graceful"))
    stock_quick, full_quick = by_name.get("stock-crash-quick"), by_name.get("hbchat-crash-quick")
    points: list[str] = []

    def queue_trouble(r: Result) -> str:
        text = ""
        if r.slow_connects:
            counted = r.kernel_counters.get("ListenOverflows")
            kernel = f" (Linux counted {counted} listen-queue overflows meanwhile, system-wide)" if counted else ""
            text += (
                f" {r.slow_connects} connects took over {SLOW_CONNECT:g} s: their SYN was dropped by the server's "
                f"full listen queue{kernel} and sent again a second later."
            )
        if r.stalled_connections:
            cookies = r.kernel_counters.get("SyncookiesSent", 0)
            how = (
                f" (Linux sent {cookies} SYN cookies meanwhile, system-wide: a handshake completed with a cookie "
                "while the accept "
                "queue was full leaves the client connected and the server with no trace of it)"
                if cookies
                else ""
            )
            text += (
                f" {r.stalled_connections} connections were established for the client but never accepted by the "
                f"server{how}: those clients waited for a HELLO that never came until their {HELLO_TIMEOUT:g} s "
                f"HELLO timeout, and the last came back only after {seconds(r.time_all_back)}."
            )
        return text

    if stock is not None:
        points.append(
            f"- **Stock, crash.** The clients retry in waves: the first ({stock.peak_per_bin} attempts in the "
            f"busiest 100 ms, at {stock.peak_bin_start:.1f} s) "
            + (
                "comes while no server listens; the next, about e times later, puts"
                if stock.peak_bin_start + BIN <= stock.server_listening_at
                else "lands on the new server:"
            )
            + f" up to {stock.live_peak_per_bin} connects per 100 ms on the new server."
            + queue_trouble(stock)
        )
    if full is not None:
        versus = (lambda value: f" (stock: {value})") if stock is not None else (lambda value: "")
        points.append(
            f"- **hbchat, crash.** hbchat's backoff: at most {full.live_peak_per_bin} connects per 100 ms on the new "
            f"server{versus(stock.live_peak_per_bin if stock else 0)}; half of the clients back after "
            f"{seconds(full.back_p50)}{versus(seconds(stock.back_p50) if stock else '')}, 99 % after "
            f"{seconds(full.back_p99)}, all after {seconds(full.time_all_back)}"
            f"{versus(seconds(stock.time_all_back) if stock else '')}; {full.failed_attempts} attempts refused while "
            f"no server listened{versus(stock.failed_attempts if stock else 0)}. Refusals early in the outage do not "
            "lengthen the wait (it grows with the outage's age), so there is no tail of clients refused several "
            "times." + queue_trouble(full)
        )
    if hint is not None:
        points.append(
            f"- **hbchat, graceful stop.** With `retry={hint.retry_hint:g}` and the moment `at=` each BYE names, the "
            f"clients come back one after another until the drain plus {hint.retry_hint:g} s: at most "
            f"{hint.live_peak_per_bin} connects per 100 ms on the new server; only those sent back before it "
            f"listened ({hint.failed_attempts} refused attempts) fall back to the backoff; all back after "
            f"{seconds(hint.time_all_back)}." + queue_trouble(hint)
        )
    if stock_quick is not None:
        points.append(
            f"- **Quick restart, stock.** When the new server is up ({stock_quick.server_listening_at:.2f} s) before "
            f"the stock clients' first wave, the whole wave lands on it: {stock_quick.live_peak_per_bin} connects in "
            f"100 ms." + queue_trouble(stock_quick)
        )
    if full_quick is not None:
        points.append(
            f"- **Quick restart, hbchat.** The same quick restart with hbchat's backoff: at most "
            f"{full_quick.live_peak_per_bin} connects per 100 ms, all back after {seconds(full_quick.time_all_back)}."
            + queue_trouble(full_quick)
        )
    return [*points, ""] if points else []


def section(results: list[Result], settings: Settings, command: str, machine: str, png: Path | None, md: Path) -> str:
    quick = any(SCENARIOS[r.name][2] for r in results)
    quick_text = (
        f' ("quick" rows: {settings.quick_restart_delay:g} s, so that it is up before the stock clients\' first retry)'
        if quick
        else ""
    )
    parts = [
        SECTION_TITLE,
        "",
        f"`benchmarks/storm.py` connects {settings.clients} `ChatClientFactory` clients (all in one process, over "
        "loopback) to `twistd hbchat`, stops the server, spawns a new one on the same port "
        f"{settings.restart_delay:g} s later{quick_text}, and timestamps every connection attempt the clients make, "
        "and the moment each is registered again (WELCOME), relative to the stop. `SIGKILL` is a crash: the "
        "clients see their connections reset and nothing else, so only the backoff spreads them. `SIGTERM` is a "
        f"graceful stop: every client gets `BYE shutdown retry={settings.retry_hint:g} at=A` and comes back after "
        "A s, a moment the server chose so that the returns are spread evenly (docs/protocol.md, section 9). "
        "The stock variant is the same client with "
        "`ReconnectingClientFactory.retry` (Gaussian jitter of 12 % around a delay that starts at 1 s and grows by "
        "a factor of e, cap 30 s) instead of hbchat's backoff (the first retry after uniform(0, 1.5) s, each later "
        "one after uniform(c/2, c) s with c = min(30, max(1, half the outage's age)); reset after WELCOME). "
        "*Peak / mean*: the busiest 100 ms over the mean 100 ms, from the stop until the last client was back.",
        "",
        f"Command: `{command}`",
        "",
        f"N = {settings.clients} clients, connected at {settings.rate:g}/s before the stop. Server options: "
        f"`{' '.join(SERVER_OPTIONS)} --retry-hint {settings.retry_hint:g}`, listening with "
        + (
            f"a listen backlog of {settings.backlog}"
            if settings.backlog
            else (
                "hbchat's default listen backlog (1024; Twisted's own default of 50 overflowed "
                "in this storm, leaving clients waiting for a HELLO)"
            )
        )
        + f". Machine: {machine}. The server, the clients and whatever else runs on "
        "the machine share its CPUs, so timings move by a few hundred milliseconds between runs; the new "
        "server's start-up (Python imports) comes on top of the restart delay.",
        "",
        table(results),
        "",
        "*Peak attempts (all)*: the busiest 100 ms, counting attempts refused while no server listened. "
        "*Peak on the new server*: the busiest 100 ms counting only attempts that connected, i.e. the load the "
        "restarted server has to accept. *Time until all are back*: from the stop to the last client's WELCOME; "
        "*median* and *99 % back*: the same for half and for 99 % of them. *Refused*: attempts made while "
        f"nothing listened. *Stalled*: connections that got no HELLO for {STALLED:g} s or more.",
        "",
        *findings(results),
        *(
            [
                "The quick-restart rows are the most sensitive to timing: where the new server comes up relative to "
                "the clients' retries decides how many handshakes overflow its listen queue, so their stalled counts "
                "vary a lot from run to run. `--backlog N` reruns the storm against a server listening with "
                "`tcp:PORT:backlog=N`.",
                "",
            ]
            if quick
            else []
        ),
    ]
    if png is not None:
        rel = os.path.relpath(png, md.parent)
        parts += [f"![Connection attempts per 100 ms after a server restart]({rel})", ""]
    return "\n".join(parts)


def write_section(md: Path, text: str) -> None:
    """Replace (or append) the "Reconnect storm" section, leaving every other section alone."""
    if not md.exists():
        md.write_text("# Performance\n\n" + text)
        return
    lines = md.read_text().splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION_TITLE), None)
    if start is None:
        body = "".join(lines)
        md.write_text(body + ("" if body.endswith("\n") else "\n") + "\n" + text)
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(("# ", "## "))), len(lines))
    replacement = text if end == len(lines) else text + "\n"
    md.write_text("".join(lines[:start]) + replacement + "".join(lines[end:]))


# --- main --------------------------------------------------------------------------------------


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft fd limit to the hard one; return how many clients it allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as error:
            log(f"could not raise the fd limit from {soft} to {hard}: {error}")
    if soft == resource.RLIM_INFINITY:
        return wanted
    allowed = max(1, soft - FD_RESERVE)
    if wanted > allowed:
        log(f"the fd limit is {soft}: {allowed} clients instead of {wanted}")
    return min(wanted, allowed)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, help="clients to connect (default 2000; 50 with --smoke)")
    parser.add_argument("--out", type=Path, help="directory for storm.png and performance.md (default docs/)")
    parser.add_argument("--json", type=Path, help="results file (default benchmarks/storm-results.json)")
    parser.add_argument("--smoke", action="store_true", help="50 clients, short hint; exit 1 unless all come back")
    add_storm_options(parser)
    parser.add_argument("--no-docs", action="store_true", help="do not write performance.md")
    parser.add_argument(
        "--from-json", type=Path, metavar="JSON", help="run nothing: redraw the plot and the section from saved results"
    )
    args = parser.parse_args(argv)
    apply_defaults(args, parser)
    return args


def add_storm_options(parser: argparse.ArgumentParser, backlog_help: str | None = None) -> None:
    """The options that shape the storm itself, shared by both front ends."""
    default_list = " ".join(DEFAULT_SCENARIOS)
    parser.add_argument(
        "--scenarios", nargs="+", metavar="NAME", choices=sorted(SCENARIOS), help=f"default: {default_list}"
    )
    parser.add_argument("--rate", type=float, default=500.0, help="initial connects per second (default 500)")
    parser.add_argument("--max-pending", type=int, default=200, help="unregistered clients at once while ramping")
    parser.add_argument("--restart-delay", type=float, default=1.0, help="seconds from stop to respawn (default 1)")
    parser.add_argument(
        "--quick-restart-delay", type=float, default=0.2, help="the same for the *-quick scenarios (default 0.2)"
    )
    parser.add_argument("--retry-hint", type=float, help="server --retry-hint (default 10; 2 with --smoke)")
    parser.add_argument("--deadline", type=float, help="seconds after the stop for all to be back (default 60/20)")
    parser.add_argument("--seed", type=int, default=1, help="random seed for the clients' jitter")
    parser.add_argument(
        "--backlog", type=int, help=backlog_help or "listen backlog for the server (default: hbchat's, 1024)"
    )


def apply_defaults(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Fill in what depends on --smoke, and refuse values out of range (``parser.error``)."""
    if args.scenarios is None:
        args.scenarios = SMOKE_SCENARIOS if args.smoke else DEFAULT_SCENARIOS
    if args.smoke:
        args.clients = 50 if args.clients is None else args.clients
        args.retry_hint = 2.0 if args.retry_hint is None else args.retry_hint
        args.deadline = 20.0 if args.deadline is None else args.deadline
    args.clients = 2000 if args.clients is None else args.clients
    args.retry_hint = 10.0 if args.retry_hint is None else args.retry_hint
    args.deadline = 60.0 if args.deadline is None else args.deadline
    if not (0 < args.clients <= 20000):
        parser.error("--clients must be between 1 and 20000")
    delays_ok = 0 <= args.restart_delay <= 30 and 0 <= args.quick_restart_delay <= 30
    if not (0 < args.rate and 0 < args.max_pending and delays_ok and 0 < args.deadline <= 600):
        parser.error("--rate and --max-pending must be positive, restart delays 0 to 30, --deadline at most 600")


def outputs(args: argparse.Namespace, smoke: bool, repo: Path) -> tuple[Path, Path]:
    """Where the PNG and performance.md go, and where the JSON goes."""
    if args.out is not None:
        out: Path = args.out
    elif smoke:
        out = Path(tempfile.mkdtemp(prefix="storm-smoke-"))
    else:
        out = repo / "docs"
    json_path: Path = args.json or (out / "storm-results.json" if smoke else repo / "benchmarks/storm-results.json")
    return out, json_path


def report(results: list[Result], settings: Settings, command: str, machine: str, out: Path, write_docs: bool) -> None:
    png = out / "storm.png"
    plotted = plot(results, png)
    text = section(results, settings, command, machine, png if plotted else None, out / "performance.md")
    print(text)
    if write_docs:
        out.mkdir(parents=True, exist_ok=True)
        write_section(out / "performance.md", text)
    log(("wrote " + str(png) if plotted else "no plot") + (f", {out / 'performance.md'}" if write_docs else ""))


def redraw(args: argparse.Namespace, repo: Path) -> int:
    saved = json.loads(args.from_json.read_text())
    results = [Result(**result) for result in saved["results"]]
    out = args.out if args.out is not None else repo / "docs"
    report(results, Settings(**saved["settings"]), saved["command"], saved["machine"], out, not args.no_docs)
    return 0 if all(r.all_back for r in results) else 1


@dataclass
class Storm:
    """A finished run of scenarios: what :func:`saved` writes as JSON."""

    settings: Settings
    machine: str
    elapsed: float
    results: list[Result]


async def run_scenarios(args: argparse.Namespace, server_command: str | None = None) -> Storm:
    clients = raise_fd_limit(args.clients)
    settings = Settings(
        clients=clients,
        rate=args.rate,
        max_pending=args.max_pending,
        restart_delay=args.restart_delay,
        quick_restart_delay=args.quick_restart_delay,
        retry_hint=args.retry_hint,
        connect_deadline=clients / args.rate + 60,
        storm_deadline=args.deadline,
        seed=args.seed,
        backlog=args.backlog,
    )
    machine = machine_note()
    started = time.monotonic()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="storm-") as work:
        for name in args.scenarios:
            results.append(await run_scenario(name, settings, Path(work), server_command))
    return Storm(settings, machine, time.monotonic() - started, results)


def saved(storm: Storm, command: str) -> dict[str, Any]:
    return {
        "command": command,
        "machine": storm.machine,
        "settings": vars(storm.settings),
        "bin_seconds": BIN,
        "elapsed_seconds": round(storm.elapsed, 1),
        "results": [vars(r) for r in storm.results],
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Indented, but with each list of numbers on one line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=1)
    path.write_text(re.sub(r"\[[-0-9.,\s]+\]", lambda m: re.sub(r"\s+", "", m.group(0)), text) + "\n")


def failures(storm: Storm) -> int:
    """1 (and a log line) unless every client of every scenario came back, else 0."""
    failed = [r.name for r in storm.results if not r.all_back]
    if failed:
        log(f"FAILED: not all clients came back within {storm.settings.storm_deadline:g}s in {', '.join(failed)}")
        return 1
    return 0


async def run(args: argparse.Namespace, command: str, repo: Path) -> int:
    out, json_path = outputs(args, args.smoke, repo)
    storm = await run_scenarios(args)
    write_json(json_path, saved(storm, command))
    log(f"done in {storm.elapsed:.0f}s; wrote {json_path}")
    report(storm.results, storm.settings, command, storm.machine, out, not args.no_docs)
    return failures(storm)


def drive(work: Callable[[], Any], budget: float, timeout_code: int = 2) -> int:
    """
    Run ``work()`` (a coroutine) in the reactor and return its exit status.

    The servers it started are killed whatever happens, and ``budget`` seconds caps the
    whole run (the work is cancelled then, and the status is ``timeout_code``).
    """
    outcome: dict[str, Any] = {"code": 2}

    def finished(code: int) -> None:
        outcome["code"] = code

    def failed(failure: Failure) -> None:
        log(f"error: {failure.getErrorMessage()}")
        if not failure.check(BenchmarkError, defer.CancelledError):
            failure.printTraceback(file=sys.stderr)

    stopper: Callable[[Any], Any] = lambda _: reactor.stop()  # noqa: E731
    d = defer.ensureDeferred(work())
    d.addCallbacks(finished, failed)
    d.addBoth(stopper)

    # A hard ceiling on the whole run, whatever happens.
    def timeUp() -> None:
        outcome["code"] = timeout_code
        log(f"the time budget ({budget:g}s) is used up: stopping")
        d.cancel()

    watchdog = reactor.callLater(budget, timeUp)
    reactor.addSystemEventTrigger("before", "shutdown", kill_all_servers)
    reactor.run()
    kill_all_servers()
    if not d.called:
        log("stopped before the benchmark finished; its servers are killed")
    if watchdog.active():
        watchdog.cancel()
    return int(outcome["code"])


def budget_for(args: argparse.Namespace) -> float:
    return float(len(args.scenarios) * (args.clients / args.rate + 90 + args.deadline) + 60)


def main(argv: list[str] | None = None, repo: Path | None = None) -> int:
    """``benchmarks/storm.py``; ``repo`` is the checkout whose docs/ and benchmarks/ it writes."""
    argv = sys.argv[1:] if argv is None else argv
    repo = Path.cwd() if repo is None else repo
    args = parse_args(argv)
    if args.from_json is not None:
        return redraw(args, repo)
    command = "python benchmarks/storm.py " + " ".join(argv)
    return drive(lambda: run(args, command.strip(), repo), budget_for(args))


# --- hbchat-bench storm ------------------------------------------------------------------------


def twistd_command(port: str, options: Sequence[str], backlog: int | None = None) -> list[str]:
    """The ``twistd -n hbchat`` command line of the benchmark's own server."""
    listen = f"tcp:{port}:interface={HOST}" + (f":backlog={backlog}" if backlog else "")
    return [find_twistd(), "-n", "--pidfile=", "hbchat", "--listen", listen, *options]


def default_server_command(backlog: int | None = None) -> str:
    """What ``hbchat-bench storm`` runs when not given ``--server-cmd`` (the benchmark's server)."""
    return shlex.join(twistd_command("{port}", [*SERVER_OPTIONS, "--retry-hint", "{retry_hint}"], backlog))


def summary_line(storm: Storm) -> str:
    parts = []
    for r in storm.results:
        back = f"all back {seconds(r.time_all_back)}" if r.all_back else f"ONLY {r.back_count}/{r.clients} back"
        parts.append(
            f"{r.name}: {back}, p50 {seconds(r.back_p50)}, peak {r.peak_per_bin}/100ms "
            f"({r.live_peak_per_bin} on the new server), {r.total_attempts} attempts, {r.stalled_connections} stalled"
        )
    return f"storm n={storm.settings.clients} | " + " | ".join(parts)


async def run_bench(args: argparse.Namespace, command: str) -> int:
    storm = await run_scenarios(args, args.server_cmd)
    summary = summary_line(storm)
    if args.json is not None:
        data = saved(storm, command)
        data["summary"] = summary
        data["server_command"] = args.server_cmd or default_server_command(args.backlog)
        write_json(Path(args.json), data)
        log(f"wrote {args.json}")
    if args.plot is not None and plot(storm.results, Path(args.plot)):
        log(f"wrote {args.plot}")
    print(summary, flush=True)
    return failures(storm)


def bench_main(args: argparse.Namespace, argv: list[str]) -> int:
    """``hbchat-bench storm``, with arguments parsed and checked by :mod:`hbchat.bench.cli`."""
    command = "hbchat-bench " + " ".join(shlex.quote(arg) for arg in argv)
    return drive(lambda: run_bench(args, command), min(budget_for(args), args.max_time), timeout_code=3)
