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
import os
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, TextIO

from hbchat.bench.conn import MAX_NOTES
from hbchat.bench.settings import RunSettings
from hbchat.bench.stats import Histogram, Timeline, fit, merged, offsets, progress_bar, split
from hbchat.bench.worker import WorkerPlan, worker_main

#: Seconds the window starts after it is announced, so that every worker knows it in time.
LEAD = 0.3
#: Fanout drain: stop waiting when nothing arrived for this long.
DRAIN_STALL = 2.0
RESULT_WAIT = 15.0
STATUS_EVERY = 5.0


class RunError(Exception):
    """The run could not go on; its text is one line for the user."""


class TimeUpError(RunError):
    """--max-time passed."""


class Progress:
    """A progress bar on a terminal; a status line every few seconds anywhere else."""

    def __init__(self, stream: TextIO, tty: bool | None = None, width: int | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.width = width or _terminal_width(stream)
        self.phase = ""
        self._last_draw = 0.0
        self._drawn = False

    def update(self, phase: str, fraction: float, text: str) -> None:
        now = time.monotonic()
        changed = phase != self.phase
        self.phase = phase
        line = f"{progress_bar(fraction)} {phase}: {text}"
        if self.tty:
            if changed or now - self._last_draw >= 0.1:
                self.stream.write("\r" + fit(line, self.width - 1).ljust(min(len(line), self.width - 1)) + "\x1b[K")
                self.stream.flush()
                self._last_draw = now
                self._drawn = True
        elif changed or now - self._last_draw >= STATUS_EVERY:
            self.stream.write(f"[{time.strftime('%H:%M:%S')}] {phase}: {text}\n")
            self.stream.flush()
            self._last_draw = now

    def message(self, text: str) -> None:
        self.clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False


def _terminal_width(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 100


def plans(settings: RunSettings, workers: int, base_ns: int) -> list[WorkerPlan]:
    """Each worker's share of the connections (receivers and senders spread alike)."""
    clients = split(settings.clients, workers)
    receivers = split(settings.receivers, workers)
    # Senders go to the workers with the fewest receivers first.
    senders = split(settings.senders, workers)[::-1]
    return [
        WorkerPlan(
            index=w,
            clients=clients[w],
            first_client=offsets(clients)[w],
            receivers=receivers[w],
            first_receiver=offsets(receivers)[w],
            senders=senders[w],
            first_sender=offsets(senders)[w],
            base_ns=base_ns,
        )
        for w in range(workers)
    ]


def read_proc(pid: int) -> dict[str, float] | None:
    """CPU seconds and RSS of a (server) process, from /proc; ``None`` where unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return {"cpu_s": cpu, "rss_kib": rss, "at": time.monotonic()}


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
        s = self.settings
        results = [self.results[index] for index in sorted(self.results)]
        counters: dict[str, int] = {}
        for result in results:
            for key, value in result["counters"].items():
                counters[key] = (
                    max(counters.get(key, 0), value) if key == "last_event_ns" else counters.get(key, 0) + value
                )
        if len(results) < self.workers:
            # A worker that never reported: use its last progress for the counts we have.
            for index, report in self.latest.items():
                if index not in self.results:
                    for key, value in report.items():
                        if isinstance(value, int) and not isinstance(value, bool) and key != "worker":
                            counters[key] = counters.get(key, 0) + value
        rtt = merged(Histogram.from_json(r["rtt"]) for r in results)
        latency = merged(Histogram.from_json(r["latency"]) for r in results)
        lag = merged(Histogram.from_json(r["lag"]) for r in results)
        timelines = [Timeline.from_json(r["timeline"]) for r in results if r.get("timeline")]
        timeline = timelines[0] if timelines else None
        for other in timelines[1:]:
            assert timeline is not None
            timeline.merge(other)
        hello: dict[str, str] = next((r["hello"] for r in results if r.get("hello")), {})
        fail_notes = [note for r in results for note in r["fail_notes"]][:8]
        drop_notes = [note for r in results for note in r["drop_notes"]][:MAX_NOTES]
        data: dict[str, Any] = {
            "scenario": s.scenario,
            "workers": self.workers,
            "worker_pids": [r.get("pid") for r in results],
            "connections": {
                "requested": s.connections,
                "registered": counters.get("registered", 0),
                "failed": counters.get("failed", 0),
                "fail_notes": fail_notes,
                "ramp_s": round(max((r["connect_s"] for r in results), default=0.0), 3),
            },
            "server_hello": hello,
            "settled": self.settled,
            "window": {
                "start_ns": self.window[0],
                "end_ns": self.window[1],
                "seconds": round((self.window[1] - self.window[0]) / 1e9, 3),
            },
            "drops": {
                "total": counters.get("drops", 0),
                "window": counters.get("drops_window", 0),
                "notes": drop_notes,
            },
            "presence": {"join_lines": counters.get("joins", 0), "left_lines": counters.get("lefts", 0)},
            # The server's rate limit bit: lines refused with ERR 429, connections cut with BYE kicked.
            "rate_limit": {"err_429": counters.get("rate_limited", 0), "kicked": counters.get("kicked", 0)},
            "driver": {
                "cpu_util_per_worker": [r.get("cpu_util") for r in results],
                "reactor_lag": lag.stats(),
            },
            "counters": counters,
            "errors": self.errors,
            "timed_out": self.timed_out,
            "interrupted": self.interrupted,
        }
        if s.scenario == "idle":
            sent, got = counters.get("pings_sent_window", 0), counters.get("pongs_window", 0)
            data["idle"] = {
                "client_pings_sent": sent,
                "pongs": got,
                "missing_pongs": max(0, sent - got),
                "server_pings_answered": counters.get("server_pings_window", 0),
                "heartbeats": got + counters.get("server_pings_window", 0),
                "pong_rtt": rtt.stats(),
            }
        else:
            window_s = s.duration
            sent = counters.get("sent_window", 0)
            expected = sent * s.receivers
            received = counters.get("received_window", 0)
            data["fanout"] = {
                "target_msgs_per_s": s.rate,
                "sent_msgs_window": sent,
                "achieved_msgs_per_s": round(sent / window_s, 1),
                "expected_deliveries": expected,
                "received_deliveries": received,
                "loss": round(1 - received / expected, 6) if expected and received < expected else 0.0,
                "delivered_per_s": round(counters.get("delivered_in_window", 0) / window_s, 1),
                "sender_echoes": counters.get("echoes", 0),
                "out_of_order": counters.get("out_of_order", 0),
                "foreign_msgs": counters.get("foreign", 0),
                "unstamped_msgs": counters.get("unstamped", 0),
                "drain_s": round(self.phases.get("drained", 0.0) - self.phases.get("draining", 0.0), 3)
                if "drained" in self.phases
                else None,
                "latency": latency.stats(),
            }
        if self.server:
            data["server"] = self.server_summary()
        data["_histogram"] = (rtt if s.scenario == "idle" else latency).to_json()
        data["_timeline"] = timeline.to_json() if timeline is not None else None
        return data

    def server_summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {"pid": self.settings.server_pid}
        start, end = self.server.get("window_start"), self.server.get("window_end")
        if start and end and end["at"] > start["at"]:
            summary["cpu_util_window"] = round((end["cpu_s"] - start["cpu_s"]) / (end["at"] - start["at"]), 3)
            summary["rss_kib_window_end"] = end["rss_kib"]
        before = self.server.get("before_connect")
        if before and end:
            summary["rss_kib_before_connect"] = before["rss_kib"]
            registered = self.total("registered")
            if registered:
                summary["rss_kib_per_connection"] = round((end["rss_kib"] - before["rss_kib"]) / registered, 2)
        return summary
