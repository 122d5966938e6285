"""
The parent process of ``hbchat-bench idle`` and ``fanout``: workers, phases, progress, totals.

The parent runs no reactor.  It starts the workers (multiprocessing, spawn), reads their
progress reports, and moves the run through its phases, each one bounded in time:

1. *connecting*: every worker opens its share at its share of ``--ramp``;
2. *settling*: until no JOIN or LEFT has arrived for ``--settle`` seconds (the JOIN storm of
   the ramp is over), at most ``--settle-max``;
3. *window*: ``--duration`` seconds of measurement (fanout: after ``--warmup`` of sending),
   announced to every worker as wall-clock times, so all of them measure the same window;
4. *grace* (idle: late PONGs) or *draining* (fanout: messages still in flight, until all
   arrived, nothing moved for 2 s, or ``--drain``);
5. *finishing*: every worker reports its counters and histograms; then all leave (QUIT).

``--max-time`` caps the whole run: past it the workers are told to abort, and killed (by
their PIDs) if they do not.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

from hbchat.bench.plan import plans
from hbchat.bench.progress import Progress
from hbchat.bench.resources import read_proc
from hbchat.bench.settings import RunSettings
from hbchat.bench.totals import collect
from hbchat.bench.worker import worker_main

#: Seconds the window starts after it is announced, so that every worker knows it in time.
LEAD = 0.3
#: Fanout drain: stop waiting when nothing arrived for this long.
DRAIN_STALL = 2.0
RESULT_WAIT = 15.0


class RunError(Exception):
    """The run could not go on; its text is one line for the user."""


class TimeUpError(RunError):
    """--max-time passed."""


class Run:
    """One run of ``idle`` or ``fanout``: :meth:`execute` returns the results, as JSON-ready data."""

    def __init__(self, settings: RunSettings, progress: Progress, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.progress = progress
        self.clock = clock
        self.started = clock()
        self.deadline = self.started + settings.max_time
        self.workers = 0
        self.processes: list[Any] = []
        self.pipes: list[Connection] = []
        self.latest: dict[int, dict[str, Any]] = {}
        self.results: dict[int, dict[str, Any]] = {}
        self.errors: list[str] = []
        self.phases: dict[str, float] = {}
        self.window: tuple[int, int] = (0, 0)
        self.server: dict[str, Any] = {}
        self.timed_out = False
        self.interrupted = False
        self.settled = False

    # --- workers ---

    def start_workers(self, workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        base_ns = time.time_ns()
        self.workers = workers
        for plan in plans(self.settings, workers, base_ns):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=worker_main,
                args=(child_end, self.settings, plan),
                name=f"hbchat-bench-worker-{plan.index}",
                daemon=True,
            )
            process.start()
            child_end.close()
            self.processes.append(process)
            self.pipes.append(parent_end)

    def broadcast(self, message: dict[str, Any]) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(message)
            except (OSError, ValueError):
                pass

    def pump(self, timeout: float = 0.1) -> None:
        """Read whatever the workers said within ``timeout``; fail on a worker's error or death."""
        if self.clock() > self.deadline:
            raise TimeUpError(f"--max-time ({self.settings.max_time:g}s) reached")
        open_pipes = [pipe for pipe in self.pipes if not pipe.closed]
        for ready in wait(open_pipes, timeout):
            pipe = ready if isinstance(ready, Connection) else None
            if pipe is None:
                continue
            index = self.pipes.index(pipe)
            try:
                while pipe.poll():
                    self._received(index, pipe.recv())
            except (EOFError, OSError):
                pipe.close()
                if index not in self.results:
                    code = self.processes[index].exitcode
                    raise RunError(f"worker {index} ended unexpectedly (exit status {code})") from None

    def _received(self, index: int, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "progress":
            self.latest[index] = message
        elif kind == "result":
            self.results[index] = message
        elif kind == "error":
            text = str(message.get("message", "")).strip()
            raise RunError(f"worker {index} failed: {text.splitlines()[-1] if text else 'unknown error'}")

    def total(self, key: str) -> int:
        return sum(int(report.get(key, 0)) for report in self.latest.values())

    def all_reported(self, key: str) -> bool:
        return len(self.latest) == self.workers and all(report.get(key) for report in self.latest.values())

    def wait_until(
        self, condition: Callable[[], bool], limit: float, phase: str, show: Callable[[], tuple[float, str]]
    ) -> bool:
        """Pump until ``condition()`` or ``limit`` (a clock time); returns whether it held."""
        while True:
            if condition():
                return True
            if self.clock() >= limit:
                return False
            self.pump(min(0.1, max(0.0, limit - self.clock())))
            fraction, text = show()
            self.progress.update(phase, fraction, text)

    def stop_workers(self, hurry: bool) -> None:
        """Ask for the results, wait (boundedly) for them and for the processes to end, kill the rest."""
        self.broadcast({"cmd": "abort" if hurry else "finish"})
        limit = self.clock() + (3.0 if hurry else RESULT_WAIT)

        def waiting() -> bool:
            return any(not pipe.closed and index not in self.results for index, pipe in enumerate(self.pipes))

        while waiting() and self.clock() < limit:
            try:
                self.pump(0.1)
            except TimeUpError:
                self.deadline = limit + 10  # finishing has its own bound
            except RunError as error:
                self.errors.append(str(error))  # and go on collecting the others
        if not hurry:
            self.broadcast({"cmd": "leave"})
        for process in self.processes:
            process.join(max(0.1, min(5.0, limit + 5 - self.clock())))
        for process in self.processes:
            if process.is_alive():
                process.kill()  # by its PID: only the workers this run started
                process.join(2)
        for pipe in self.pipes:
            pipe.close()

    # --- the run ---

    def execute(self, workers: int) -> dict[str, Any]:
        s = self.settings
        total = s.connections
        try:
            self.sample_server("before_connect")
            self.start_workers(workers)
            self.phase("connecting")
            connect_limit = self.clock() + total / s.ramp + s.connect_timeout + 30

            def connecting() -> tuple[float, str]:
                done = self.total("registered") + self.total("failed")
                return done / total, (
                    f"{self.total('registered')}/{total} registered, {self.total('failed')} failed, "
                    f"{self.total('pending')} in progress"
                )

            if not self.wait_until(lambda: self.all_reported("connected_all"), connect_limit, "connecting", connecting):
                raise RunError(f"connections not done within {connect_limit - self.phases['connecting']:.0f}s")
            if self.total("registered") == 0:
                raise RunError("no connection could be registered" + self.first_failure())
            self.phase("settling")
            settle_start = self.clock()

            def quiet() -> bool:
                last = max((int(r.get("last_event_ns", 0)) for r in self.latest.values()), default=0)
                calm = (time.time_ns() - last) / 1e9 >= s.settle
                return calm and self.clock() - settle_start >= s.settle / 2

            def settling() -> tuple[float, str]:
                return (self.clock() - settle_start) / max(s.settle, 0.001), (
                    f"waiting for {s.settle:g}s without JOIN/LEFT ({self.total('joins')} JOINs seen)"
                )

            self.settled = self.wait_until(quiet, settle_start + s.settle_max, "settling", settling)
            if s.scenario == "idle":
                self.idle_window()
            else:
                self.fanout_window()
            self.stop_workers(hurry=False)
        except TimeUpError as error:
            self.timed_out = True
            self.errors.append(str(error))
            self.stop_workers(hurry=True)
        except RunError as error:
            self.errors.append(str(error))
            self.stop_workers(hurry=True)
        except KeyboardInterrupt:
            self.interrupted = True
            self.errors.append("interrupted")
            self.stop_workers(hurry=True)
        finally:
            self.progress.clear()
        return self.collect()

    def first_failure(self) -> str:
        """`` (e.g. <why>)`` from the first failure a worker reported, if any."""
        notes = [report["first_failure"] for report in self.latest.values() if report.get("first_failure")]
        return f" (e.g. {notes[0]})" if notes else ""

    def phase(self, name: str) -> None:
        self.phases[name] = self.clock()

    def sample_server(self, key: str) -> None:
        if self.settings.server_pid:
            sample = read_proc(self.settings.server_pid)
            if sample is not None:
                self.server[key] = sample

    def idle_window(self) -> None:
        s = self.settings
        start = time.time_ns() + int(LEAD * 1e9)
        end = start + int(s.duration * 1e9)
        self.window = (start, end)
        self.broadcast({"cmd": "window", "start_ns": start, "end_ns": end, "timeline_end_ns": end + int(s.grace * 1e9)})
        self.sample_server("before_window")
        self.wait_for_wall(start, "window", lambda: (0.0, "starting"))
        self.phase("window")
        self.sample_server("window_start")

        def measuring() -> tuple[float, str]:
            elapsed = (time.time_ns() - start) / 1e9
            return elapsed / s.duration, (
                f"{elapsed:.1f}/{s.duration:g}s, {self.total('open')} connections, "
                f"{self.total('pongs_window')}/{self.total('pings_sent_window')} PONGs, {self.total('drops')} drops"
            )

        self.wait_for_wall(end, "window", measuring)
        self.sample_server("window_end")
        self.phase("grace")
        self.wait_for_wall(end + int(s.grace * 1e9), "grace", lambda: (1.0, "waiting for late PONGs"))

    def fanout_window(self) -> None:
        s = self.settings
        send_from = time.time_ns() + int(LEAD * 1e9)
        start = send_from + int(s.warmup * 1e9)
        end = start + int(s.duration * 1e9)
        self.window = (start, end)
        self.broadcast(
            {
                "cmd": "window",
                "send_from_ns": send_from,
                "start_ns": start,
                "end_ns": end,
                "timeline_end_ns": end + int(s.drain * 1e9),
            }
        )
        self.sample_server("before_window")
        self.wait_for_wall(send_from, "warm-up", lambda: (0.0, "starting"))
        self.phase("warm-up")
        self.wait_for_wall(
            start, "warm-up", lambda: ((time.time_ns() - send_from) / max(1.0, start - send_from), "sending")
        )
        self.phase("window")
        self.sample_server("window_start")

        def measuring() -> tuple[float, str]:
            elapsed = (time.time_ns() - start) / 1e9
            return elapsed / s.duration, (
                f"{elapsed:.1f}/{s.duration:g}s, sent {self.total('sent_window')}, "
                f"received {self.total('received_window')}, {self.total('drops')} drops"
            )

        self.wait_for_wall(end, "window", measuring)
        self.sample_server("window_end")
        self.phase("draining")
        drain_start = self.clock()
        self.wait_until(
            lambda: self.all_reported("sending_done"),
            drain_start + 5,
            "draining",
            lambda: (0.0, "waiting for the senders to stop"),
        )
        progress = {"last": -1, "at": self.clock()}

        def drained() -> bool:
            expected = self.total("sent_window") * s.receivers
            got = self.total("received_window")
            if got >= expected:
                return True
            if got != progress["last"]:
                progress["last"], progress["at"] = got, self.clock()
            return self.clock() - progress["at"] >= DRAIN_STALL

        def draining() -> tuple[float, str]:
            expected = self.total("sent_window") * s.receivers
            got = self.total("received_window")
            return got / max(1, expected), f"{got}/{expected} delivered"

        self.wait_until(drained, drain_start + s.drain, "draining", draining)
        self.phases["drained"] = self.clock()

    def wait_for_wall(self, until_ns: int, phase: str, show: Callable[[], tuple[float, str]]) -> None:
        def reached() -> bool:
            return time.time_ns() >= until_ns

        self.wait_until(reached, self.clock() + max(0.0, (until_ns - time.time_ns()) / 1e9) + 1.0, phase, show)

    # --- the totals ---

    def collect(self) -> dict[str, Any]:
        return collect(self)
