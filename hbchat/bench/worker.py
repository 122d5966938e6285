"""
A worker process of ``hbchat-bench``: its own reactor and its share of the connections.

The parent starts each worker with :func:`worker_main` (multiprocessing, spawn) and talks
to it over a pipe with small dicts.  Commands from the parent:

- ``{"cmd": "window", "start_ns", "end_ns", "timeline_end_ns"}``: the measurement window
  (wall-clock nanoseconds, the same clock in every process); fanout senders also get
  ``send_from_ns`` and start sending then.
- ``{"cmd": "finish"}``: stop measuring and report the result (the connections stay, so
  that one worker's goodbyes are not counted by another).
- ``{"cmd": "leave"}``: leave (QUIT every connection) and exit; also on its own a while
  after ``finish``.
- ``{"cmd": "abort"}``: report what there is, and leave at once.

Reports to the parent: ``{"type": "progress", ...counters}`` a few times a second,
``{"type": "result", ...}`` once at the end, ``{"type": "error", "message"}`` if it cannot
go on.  A worker stops by itself if the pipe closes (the parent is gone) or at its own hard
deadline, a little after the run's ``--max-time``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, UNIXClientEndpoint, connectProtocol
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from hbchat.bench.conn import IDLE, RECEIVER, SENDER, BenchConnection, Tally, describe_failure
from hbchat.bench.plan import WorkerPlan
from hbchat.bench.resources import cpu_seconds, raise_fd_limit
from hbchat.bench.settings import RunSettings
from hbchat.bench.stats import Histogram, Timeline, due_slots, padding_for, phase_ns, stamp_text, timeline_bin_ns

PROGRESS_EVERY = 0.2
POLL_EVERY = 0.02
CONNECT_TICK = 0.01
SEND_TICK = 0.001
#: The largest batch a paced sender writes at once; a late schedule catches up over ticks.
MAX_BATCH = 512
#: Flat out: messages per write, and writes per tick at most (or until the transport is full).
FLAT_BATCH = 64
FLAT_WRITES = 16
LAG_PROBE = 0.01
CLOSE_WAIT = 3.0
#: After reporting, leave by ourselves if the parent says nothing for this long.
LEAVE_WAIT = 20.0


class Worker:
    def __init__(self, reactor: Any, pipe: Any, settings: RunSettings, plan: WorkerPlan) -> None:
        self.reactor = reactor
        self.pipe = pipe
        self.settings = settings
        self.plan = plan
        self.tally = Tally(settings.run_tag.encode("ascii"))
        self.endpoint = self._endpoint()
        self.connections: set[BenchConnection] = set()
        self.pending = 0
        self.queue = self._connection_queue()
        self.connect_started_ns = 0
        self.connect_ended_ns = 0
        self.finished = False
        self.reported = False
        self.loops: list[LoopingCall] = []
        # idle: the ping schedule
        self.period_ns = int(settings.period * 1e9)
        self.slots = max(1, min(1000, round(settings.period / 0.005)))
        self.slot_ns = max(1, self.period_ns // self.slots)
        self.schedule: list[set[BenchConnection]] = [set() for _ in range(self.slots)]
        self.last_slot = -1
        # fanout: the senders and their pacing
        self.senders: list[BenchConnection] = []
        self.send_from_ns = 0
        self.sending = False
        self.sending_done = False
        self.padding = padding_for(settings.size) if settings.scenario == "fanout" else b""
        # measuring the measurer
        self.lag = Histogram()
        self._probe_due = 0
        self.cpu_window: list[float] = []

    def _endpoint(self) -> IStreamClientEndpoint:
        e, timeout = self.settings.endpoint, self.settings.connect_timeout
        if e.kind == "unix":
            return UNIXClientEndpoint(self.reactor, e.path, timeout=timeout)
        if ":" in e.address:
            return TCP6ClientEndpoint(self.reactor, e.address, e.port, timeout=timeout)
        return TCP4ClientEndpoint(self.reactor, e.address, e.port, timeout=timeout)

    def _connection_queue(self) -> list[tuple[str, int, int]]:
        """(role, global index, role index) of every connection to open, in order."""
        p = self.plan
        queue = [(IDLE, p.first_client + i, p.first_client + i) for i in range(p.clients)]
        queue += [(RECEIVER, p.first_receiver + i, p.first_receiver + i) for i in range(p.receivers)]
        total_receivers = self.settings.receivers
        queue += [(SENDER, total_receivers + p.first_sender + i, p.first_sender + i) for i in range(p.senders)]
        queue.reverse()  # popped from the end
        return queue

    # --- running ---

    def start(self) -> None:
        self.connect_started_ns = time.time_ns()
        if not self.queue:
            self.connect_ended_ns = self.connect_started_ns
        for function, interval in (
            (self._connect_tick, CONNECT_TICK),
            (self._poll, POLL_EVERY),
            (self._progress, PROGRESS_EVERY),
        ):
            loop = LoopingCall(function)
            loop.clock = self.reactor
            self.loops.append(loop)
            loop.start(interval, now=True).addErrback(self._crashed)
        if self.settings.scenario == "idle":
            self._loop(self._ping_tick, self.slot_ns / 1e9)
        self._probe_due = time.monotonic_ns() + int(LAG_PROBE * 1e9)
        self.reactor.callLater(LAG_PROBE, self._probe)

    def _loop(self, function: Any, interval: float) -> None:
        loop = LoopingCall(function)
        loop.clock = self.reactor
        self.loops.append(loop)
        loop.start(interval, now=False).addErrback(self._crashed)

    def _crashed(self, failure: Failure) -> None:
        self._send({"type": "error", "message": failure.getTraceback()})
        self._stop(hurry=True)

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self.pipe.send(message)
        except (OSError, EOFError, ValueError):
            self._stop(hurry=True)

    def _probe(self) -> None:
        now = time.monotonic_ns()
        if self.tally.in_window(time.time_ns()):
            self.lag.record(now - self._probe_due)
        self._probe_due = now + int(LAG_PROBE * 1e9)
        if not self.finished:
            self.reactor.callLater(LAG_PROBE, self._probe)

    # --- connecting ---

    def _connect_tick(self) -> None:
        if not self.queue:
            return
        s = self.settings
        share = self.plan.connections
        rate = s.ramp * share / max(1, s.connections)
        concurrency = max(1, s.ramp_concurrency * share // max(1, s.connections))
        elapsed = (time.time_ns() - self.connect_started_ns) / 1e9
        due = min(share, int(elapsed * rate) + 1)
        while self.queue and self.tally.started < due and self.pending < concurrency:
            self._open(*self.queue.pop())

    def _open(self, role: str, index: int, role_index: int) -> None:
        tally = self.tally
        tally.started += 1
        self.pending += 1
        letter = {IDLE: "", RECEIVER: "r", SENDER: "s"}[role]
        nick = f"{self.settings.nick_prefix}-{self.settings.run_tag}-{self.plan.index}-{letter}{role_index}"
        connection = BenchConnection(
            tally,
            self.reactor,
            index,
            nick.encode("ascii"),
            role,
            self.settings.connect_timeout,
            self._registered,
            self._ended,
        )
        connection.sender_id = role_index
        self.connections.add(connection)
        d: Deferred[Any] = connectProtocol(self.endpoint, connection)

        def failed(reason: Failure) -> None:
            self.connections.discard(connection)
            self._settled()
            tally.note_failure(f"{nick}: could not connect: {describe_failure(reason)}")

        d.addErrback(failed)

    def _settled(self) -> None:
        self.pending -= 1
        if not self.queue and self.pending == 0 and not self.connect_ended_ns:
            self.connect_ended_ns = time.time_ns()

    def _registered(self, connection: BenchConnection) -> None:
        self._settled()
        if connection.role == IDLE:
            phase = phase_ns(connection.index, self.settings.clients, self.period_ns)
            self.schedule[phase // self.slot_ns % self.slots].add(connection)
        elif connection.role == SENDER:
            self.senders.append(connection)

    def _ended(self, connection: BenchConnection) -> None:
        if not connection.registered:
            if connection in self.connections:
                self._settled()
        elif connection.role == IDLE:
            phase = phase_ns(connection.index, self.settings.clients, self.period_ns)
            self.schedule[phase // self.slot_ns % self.slots].discard(connection)
        elif connection.role == SENDER and connection in self.senders:
            self.senders.remove(connection)
        self.connections.discard(connection)

    # --- idle: pings on a schedule shared by all workers ---

    def _ping_tick(self) -> None:
        now = time.time_ns()
        position = (now - self.plan.base_ns) // self.slot_ns
        if self.last_slot < 0:
            self.last_slot = position - 1
        for slot in due_slots(self.last_slot, position, self.slots):
            for connection in list(self.schedule[slot]):
                connection.send_ping(now)
        self.last_slot = max(self.last_slot, position)

    # --- fanout: senders, paced or flat out ---

    def _send_tick(self) -> None:
        if not self.sending:
            return
        now = time.time_ns()
        if now < self.send_from_ns:
            return
        tally = self.tally
        if now >= tally.window_end:
            self.sending = False
            self.sending_done = True
            return
        in_window = tally.window_start <= now
        rate = self.settings.rate
        per_sender = rate / max(1, self.settings.senders) if rate is not None else 0.0
        run, padding = tally.run_tag, self.padding
        for sender in self.senders:
            if sender.paused:
                continue
            if rate is None:
                writes, batch = FLAT_WRITES, FLAT_BATCH
            else:
                due = int(per_sender * (now - self.send_from_ns) / 1e9) + 1 - sender.seq
                writes, batch = (1, min(due, MAX_BATCH)) if due > 0 else (0, 0)
            for _ in range(writes):
                if sender.paused:
                    break
                first = sender.seq
                data = b"".join(
                    b"SAY " + stamp_text(now, run, sender.sender_id, seq, padding) + b"\n"
                    for seq in range(first, first + batch)
                )
                sender.seq += batch
                tally.sent += batch
                if in_window:
                    tally.sent_window += batch
                sender.write(data)

    # --- commands from the parent ---

    def _poll(self) -> None:
        try:
            while self.pipe.poll():
                self._command(self.pipe.recv())
        except (EOFError, OSError):
            self._stop(hurry=True)

    def _command(self, message: dict[str, Any]) -> None:
        command = message.get("cmd")
        tally = self.tally
        if command == "window":
            tally.window_start = int(message["start_ns"])
            tally.window_end = int(message["end_ns"])
            timeline_end = int(message["timeline_end_ns"])
            span = (timeline_end - tally.window_start) / 1e9
            bin_ns = timeline_bin_ns(span)
            tally.timeline = Timeline(tally.window_start, bin_ns, int(span * 1e9 // bin_ns) + 1)
            self.reactor.callLater(max(0.0, (tally.window_start - time.time_ns()) / 1e9), self._window_opens)
            self.reactor.callLater(max(0.0, (tally.window_end - time.time_ns()) / 1e9), self._window_closes)
            if "send_from_ns" in message and self.plan.senders:
                self.send_from_ns = int(message["send_from_ns"])
                self.sending = True
                self._loop(self._send_tick, SEND_TICK)
            elif "send_from_ns" in message:
                self.sending_done = True
        elif command == "finish":
            self._finish()
        elif command == "leave":
            self._stop(hurry=False)
        elif command == "abort":
            self._finish()
            self._stop(hurry=True)

    def _window_opens(self) -> None:
        self.cpu_window = [cpu_seconds(), time.monotonic()]

    def _window_closes(self) -> None:
        if len(self.cpu_window) == 2:
            cpu, wall = self.cpu_window
            self.cpu_window += [cpu_seconds() - cpu, time.monotonic() - wall]

    def _progress(self) -> None:
        message: dict[str, Any] = {"type": "progress", "worker": self.plan.index, **self.tally.counters()}
        message["pending"] = self.pending
        message["connected_all"] = not self.queue and self.pending == 0
        message["sending_done"] = self.sending_done
        message["open"] = len(self.connections)
        message["first_failure"] = self.tally.fail_notes[0] if self.tally.fail_notes else ""
        self._send(message)

    def result(self) -> dict[str, Any]:
        tally = self.tally
        cpu = self.cpu_window[2] / self.cpu_window[3] if len(self.cpu_window) == 4 and self.cpu_window[3] else None
        return {
            "type": "result",
            "worker": self.plan.index,
            "pid": os.getpid(),
            "counters": tally.counters(),
            "fail_notes": tally.fail_notes,
            "drop_notes": tally.drop_notes,
            "hello": tally.hello,
            "connect_s": ((self.connect_ended_ns or time.time_ns()) - self.connect_started_ns) / 1e9,
            "rtt": tally.rtt.to_json(),
            "latency": tally.latency.to_json(),
            "timeline": tally.timeline.to_json() if tally.timeline is not None else None,
            "lag": self.lag.to_json(),
            "cpu_util": cpu,
        }

    def _finish(self) -> None:
        if self.finished or self.reported:
            return
        self.reported = True
        self.sending = False
        for loop in self.loops:
            if loop.running and loop.f != self._poll:
                loop.stop()
        self._progress()
        self._send(self.result())
        self.reactor.callLater(LEAVE_WAIT, self._stop, False)

    def _stop(self, hurry: bool) -> None:
        """Stop every loop, leave every connection, and stop the reactor once they are gone."""
        if self.finished:
            return
        self.finished = True
        for loop in self.loops:
            if loop.running:
                loop.stop()
        self.tally.closing = True
        for connection in list(self.connections):
            if hurry or not connection.registered:
                if connection.transport is not None:
                    connection.transport.abortConnection()
            else:
                connection.quit()
        deadline = time.monotonic() + (0.5 if hurry else CLOSE_WAIT)

        def check() -> None:
            if not self.connections or time.monotonic() >= deadline:
                self.reactor.stop()
            else:
                self.reactor.callLater(0.05, check)

        self.reactor.callLater(0, check)


def worker_main(pipe: Any, settings: RunSettings, plan: WorkerPlan) -> None:
    """The entry point of a worker process."""
    # The parent decides when to stop (Ctrl-C included) and tells the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise_fd_limit()
    from twisted.internet import reactor

    worker = Worker(reactor, pipe, settings, plan)

    def hard_stop() -> None:
        # Far past --max-time: the parent should have stopped us long ago.
        os._exit(3)

    reactor.callLater(settings.max_time + 30, hard_stop)
    reactor.callWhenRunning(worker.start)
    try:
        cast(Any, reactor).run(installSignalHandlers=False)
    except Exception:
        try:
            pipe.send({"type": "error", "message": traceback.format_exc()})
        except (OSError, EOFError, ValueError):
            pass
        sys.exit(1)
    finally:
        try:
            pipe.close()
        except OSError:
            pass
